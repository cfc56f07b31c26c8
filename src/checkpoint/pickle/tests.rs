//! The interpreter on small hand-written pickles.

use super::*;
use crate::checkpoint::error::CheckpointError;

fn run(bytes: &[u8]) -> Result<Value, CheckpointError> {
    let mut pos = 0;
    read_pickle(bytes, &mut pos, &mut TorchStorages::default())
}

#[test]
fn reads_a_small_dict() {
    // {'a': 1, 'b': [2, 3]} at protocol 2
    let bytes =
        b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02K\x03eu.";
    let Value::Dict(d) = run(bytes).expect("valid pickle") else {
        panic!("not a dict")
    };
    let d = d.borrow();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].0.as_str(), Some("a"));
    assert_eq!(d[1].1.items().map(|i| i.len()), Some(2));
}

#[test]
fn rejects_unknown_globals_by_name() {
    let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
    match run(bytes) {
        Err(CheckpointError::ForbiddenGlobal(name)) => assert_eq!(name, "posix.system"),
        other => panic!("expected a forbidden global, got {other:?}"),
    }
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let bytes = b"\x80\x02}q\x00(X\x01\x00\x00";
    assert!(matches!(run(bytes), Err(CheckpointError::Malformed(_))));
    assert!(run(b"").is_err());
    assert!(run(b"\x80\x02\xff").is_err());
}

#[test]
fn big_longs_are_kept_as_bytes() {
    // LONG1 with the legacy torch magic number 0x1950a86a20f9469cfc6c.
    let bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
    let Value::BigInt(b) = run(bytes).expect("valid") else {
        panic!("not a bigint")
    };
    assert_eq!(
        b,
        vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
    );
}

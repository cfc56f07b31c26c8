//! Panics inside third-party code that the app catches on purpose (image decoders) become an
//! error value, without Rust's panic message and backtrace on stderr: the file is reported
//! in one line where it is skipped. Panics anywhere else still print as usual.

use std::cell::Cell;
use std::panic::{self, UnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch_quietly`] calls this thread is inside.
    static QUIET_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Wraps the process's panic hook once: silent inside [`catch_quietly`], unchanged elsewhere.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET_DEPTH.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it is returned as its message instead of being printed.
pub fn catch_quietly<R>(f: impl FnOnce() -> R + UnwindSafe) -> Result<R, String> {
    install_hook();
    QUIET_DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(f);
    QUIET_DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_is_a_value_and_the_depth_recovers() {
        let result: Result<(), String> = catch_quietly(|| panic!("decoder assertion"));
        assert_eq!(result, Err("decoder assertion".to_owned()));
        assert_eq!(catch_quietly(|| 7), Ok(7));
        assert_eq!(QUIET_DEPTH.with(Cell::get), 0);
    }
}

//! Seeded mutation fuzzing of everything that reads files a user (or a stranger) hands the app:
//! the `.pth` importer (zip and legacy pickle), a saved model's `model.json` + safetensors, the
//! hub's `config.json`, the ONNX writer (a round trip) and the image path (format sniffing,
//! EXIF orientation, size limits).
//!
//! Each case must end without a panic, within [`HANG_SECS`], and allocate no more than its
//! target's bound (a multiple of the input's size; for images the decode limit). A fixed number
//! of cases runs in CI; `FUZZ_SECS=N` runs each target for N seconds instead and `FUZZ_SEED`
//! picks another stream (see `scripts/fuzz.sh`). A failing case names its seed and index, which
//! reproduce it, and its input is written under the system's temporary folder.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A case running longer than this is a hang: the process prints the case and aborts.
const HANG_SECS: u64 = 20;
const MIB: usize = 1 << 20;

// ---- allocation accounting -------------------------------------------------------------

/// The system allocator, counting bytes in use and their peak (all threads: the targets
/// decode in parallel).
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- the driver ------------------------------------------------------------------------

/// One target at a time: the allocation counters are process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// Milliseconds since [`epoch`] at which the running case started (0: none running).
static CASE_STARTED_MS: AtomicU64 = AtomicU64::new(0);
/// The running case and its input, for the hang report.
static CASE_LABEL: Mutex<String> = Mutex::new(String::new());
static CASE_INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn epoch() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Aborts the process, naming the case, when one runs longer than [`HANG_SECS`].
fn start_watchdog() {
    static WATCHDOG: Once = Once::new();
    WATCHDOG.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let started = CASE_STARTED_MS.load(Ordering::Relaxed);
                if started != 0 && now_ms() - started > HANG_SECS * 1000 {
                    let label = CASE_LABEL.lock().map(|l| l.clone()).unwrap_or_default();
                    let path = std::env::temp_dir().join("transfer-studio-fuzz-hang.bin");
                    if let Ok(input) = CASE_INPUT.lock() {
                        let _ = std::fs::write(&path, &*input);
                    }
                    eprintln!(
                        "fuzz: HANG (> {HANG_SECS} s) in {label}; input written to {}",
                        path.display()
                    );
                    std::process::abort();
                }
            }
        });
    });
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a5f_2026)
}

/// How long a target runs: `ci_cases` cases, or `FUZZ_SECS` seconds when set.
enum Budget {
    Cases(usize),
    Secs(f64),
}

fn budget(ci_cases: usize) -> Budget {
    match std::env::var("FUZZ_SECS").ok().and_then(|s| s.parse().ok()) {
        Some(secs) => Budget::Secs(secs),
        None => Budget::Cases(ci_cases),
    }
}

/// What a target's run saw.
#[derive(Default)]
struct Tally {
    cases: usize,
    outcomes: BTreeMap<String, usize>,
    max_peak_bytes: usize,
    slowest_ms: u128,
}

/// Runs `target` on inputs made by `make(rng)`. `run` returns an outcome label (counted) or
/// panics on a broken property; `bound(len)` is the most a case may allocate.
fn fuzz(
    name: &str,
    ci_cases: usize,
    make: impl Fn(&mut ChaCha8Rng) -> Vec<u8>,
    bound: impl Fn(usize) -> usize,
    run: impl Fn(&[u8]) -> String,
) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    start_watchdog();
    let seed = base_seed();
    let budget = budget(ci_cases);
    let start = Instant::now();
    let mut tally = Tally::default();
    // FUZZ_CASE=N runs that one case (to reproduce a failure).
    let only: Option<usize> = std::env::var("FUZZ_CASE").ok().and_then(|c| c.parse().ok());
    for case in only.unwrap_or(0).. {
        match budget {
            _ if only.is_some_and(|o| case > o) => break,
            Budget::Cases(n) if case >= n && only.is_none() => break,
            Budget::Secs(s) if start.elapsed().as_secs_f64() >= s => break,
            _ => {}
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (case as u64).wrapping_mul(0x9e37_79b9));
        let input = make(&mut rng);
        let label = format!(
            "{name} case {case} (FUZZ_SEED={seed}, {} bytes)",
            input.len()
        );
        if let Ok(mut l) = CASE_LABEL.lock() {
            l.clone_from(&label);
        }
        if let Ok(mut stored) = CASE_INPUT.lock() {
            stored.clone_from(&input);
        }
        if only.is_some() {
            // A case that kills the process (a stack overflow) leaves its input here.
            let path = std::env::temp_dir().join(format!("transfer-studio-fuzz-{name}-{case}.bin"));
            let _ = std::fs::write(&path, &input);
            eprintln!("fuzz: {label}: input in {}", path.display());
        }
        let baseline = IN_USE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let case_start = Instant::now();
        CASE_STARTED_MS.store(now_ms(), Ordering::Relaxed);
        let result = catch_unwind(AssertUnwindSafe(|| run(&input)));
        CASE_STARTED_MS.store(0, Ordering::Relaxed);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => fail(name, case, &input, &label, "panicked"),
        };
        if peak > bound(input.len()) {
            let why = format!("allocated {} MiB", peak / MIB);
            fail(name, case, &input, &label, &why);
        }
        tally.cases += 1;
        *tally.outcomes.entry(outcome).or_default() += 1;
        tally.max_peak_bytes = tally.max_peak_bytes.max(peak);
        tally.slowest_ms = tally.slowest_ms.max(case_start.elapsed().as_millis());
    }
    report(name, &tally, start.elapsed());
}

fn fail(name: &str, case: usize, input: &[u8], label: &str, why: &str) -> ! {
    let path = std::env::temp_dir().join(format!("transfer-studio-fuzz-{name}-{case}.bin"));
    let _ = std::fs::write(&path, input);
    panic!("{label}: {why}; input written to {}", path.display());
}

fn report(name: &str, tally: &Tally, elapsed: Duration) {
    let line = serde_json::json!({
        "target": name,
        "cases": tally.cases,
        "secs": elapsed.as_secs_f64(),
        "outcomes": tally.outcomes,
        "max_peak_mib": tally.max_peak_bytes as f64 / MIB as f64,
        "slowest_ms": tally.slowest_ms,
    });
    eprintln!("fuzz: {line}");
    if let Ok(path) = std::env::var("FUZZ_REPORT")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

// ---- mutations -------------------------------------------------------------------------

const INTERESTING_U32: [u32; 9] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 20,
];

/// A seed from `seeds` with 1–8 random edits: bit flips, byte and integer overwrites,
/// deletions, duplications, insertions, truncation, splicing with another seed.
fn mutate(seeds: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    let edits = 1 + rng.random_range(0..8usize).min(rng.random_range(0..8usize));
    for _ in 0..edits {
        let len = data.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..10) {
            0 | 1 if len > 0 => data[at] ^= 1 << rng.random_range(0..8),
            2 if len > 0 => data[at] = rng.random(),
            3 if len > 0 => data[at] = [0, 1, 0x7f, 0x80, 0xff][rng.random_range(0..5)],
            4 if len >= 4 => {
                let value = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let bytes = if rng.random() {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let at = at.min(len - 4);
                data[at..at + 4].copy_from_slice(&bytes);
            }
            5 if len > 0 => {
                let n = rng.random_range(1..=(len - at).min(64));
                data.drain(at..at + n);
            }
            6 if len > 0 => {
                let n = rng.random_range(1..=(len - at).min(64));
                let copy = data[at..at + n].to_vec();
                data.splice(at..at, copy);
            }
            7 => {
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(at..at, bytes);
            }
            8 if len > 0 => data.truncate(at),
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
    }
    data
}

/// A JSON document with one value somewhere replaced by an extreme one.
fn mutate_json(text: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(text) else {
        return text.to_vec();
    };
    let mut leaves = Vec::new();
    collect_pointers(&value, String::new(), &mut leaves);
    if leaves.is_empty() {
        return text.to_vec();
    }
    let pointer = &leaves[rng.random_range(0..leaves.len())];
    let extreme = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(4_294_967_296u64),
        serde_json::json!(1e308),
        serde_json::json!(-1e-300),
        serde_json::json!(""),
        serde_json::json!("block999"),
        serde_json::json!(null),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!(["a"]),
        serde_json::json!("../../../../dev/zero"),
    ];
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = extreme[rng.random_range(0..extreme.len())].clone();
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| text.to_vec())
}

fn collect_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                collect_pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The outcome label of a `Result`: "ok" or the error's first words (its kind, not its data).
fn outcome<T, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => {
            let text = e.to_string();
            let words: Vec<&str> = text
                .split([':', '('])
                .next()
                .unwrap_or("")
                .split_whitespace()
                .filter(|w| !w.contains('/') && !w.chars().any(|c| c.is_ascii_digit()))
                .take(5)
                .collect();
            format!("error: {}", words.join(" "))
        }
    }
}

#[path = "fuzz/targets.rs"]
mod targets;

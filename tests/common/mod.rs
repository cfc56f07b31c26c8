//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Builds the compute thread pool once per test process. (Unlike `main`, tests run on many
/// threads, so they leave the environment alone.)
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let runtime = transfer_studio::runtime::thread_count();
        transfer_studio::runtime::init_thread_pool(runtime);
    });
}

use std::path::Path;

use image::{Rgb, RgbImage};

/// Draws class `kind` (0 circle, 1 square, 2 triangle, 3 cross) on a random background.
pub fn shape_image(kind: usize, size_px: u32, seed: u64) -> RgbImage {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: u32| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % u64::from(n.max(1))) as u32
    };
    let bg = Rgb([next(256) as u8, next(256) as u8, next(256) as u8]);
    let fg = Rgb([255 - bg[0], 255 - bg[1], 255 - bg[2]]);
    let mut img = RgbImage::from_pixel(size_px, size_px, bg);
    let s = size_px as i64;
    let side = s / 3 + i64::from(next((size_px / 4).max(1)));
    let x0 = i64::from(next((s - side).max(1) as u32));
    let y0 = i64::from(next((s - side).max(1) as u32));
    for y in 0..s {
        for x in 0..s {
            let (dx, dy) = (x - x0, y - y0);
            let inside = dx >= 0
                && dy >= 0
                && dx < side
                && dy < side
                && match kind % 4 {
                    0 => {
                        let (cx, cy) = (2 * dx - side, 2 * dy - side);
                        cx * cx + cy * cy <= side * side
                    }
                    1 => true,
                    2 => 2 * dx >= side - dy && 2 * dx <= side + dy,
                    _ => (2 * dx - side).abs() < side / 3 || (2 * dy - side).abs() < side / 3,
                };
            if inside {
                img.put_pixel(x as u32, y as u32, fg);
            }
        }
    }
    img
}

pub const SHAPE_CLASSES: [&str; 4] = ["circle", "square", "triangle", "cross"];

/// Writes `root/<class>/<i>.png` for the first `classes` shape kinds.
pub fn write_shapes(root: &Path, classes: usize, per_class: usize, size_px: u32, seed: u64) {
    for (kind, name) in SHAPE_CLASSES.iter().enumerate().take(classes) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("class dir");
        for i in 0..per_class {
            let img = shape_image(kind, size_px, seed ^ ((kind * 1000 + i) as u64 * 7919));
            img.save(dir.join(format!("{i:03}.png")))
                .expect("write png");
        }
    }
}

/// The `transfer-studio` binary of this build.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_transfer-studio"))
}

/// Runs a command that must succeed (its stderr shown if not) and parses its stdout as one
/// JSON document.
pub fn json_of(command: &mut std::process::Command) -> serde_json::Value {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

/// Runs a command that must succeed and parses each line of its stdout as a JSON object.
pub fn json_lines(command: &mut std::process::Command) -> Vec<serde_json::Value> {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect()
}

/// The names in `dir`, sorted (none when it does not exist).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

//! The dataset doctor on a set with known faults, built from both bundled demo packs
//! (8 classes × 30 images: 24 for training, 6 for validation): 5 % of the training labels
//! flipped, 10 exact copies, 10 copies resized and re-encoded as JPEG quality 70, and 5
//! training images copied into validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use transfer_studio::data::dataset::{LoadOptions, LoadProgress, load_dataset};
use transfer_studio::data::demo::DemoPack;
use transfer_studio::doctor::{DoctorError, DoctorEvent, DoctorOptions, Report, examine};

/// What was planted, by path.
#[derive(Default)]
struct Faults {
    flipped: Vec<PathBuf>,
    exact: Vec<(PathBuf, PathBuf)>,
    near: Vec<(PathBuf, PathBuf)>,
    leaks: Vec<(PathBuf, PathBuf)>,
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Resized by `scale` and saved as JPEG quality 70.
fn reencode(from: &Path, to: &Path, scale: f32) {
    let image = image::open(from).expect("decode").to_rgb8();
    let (w, h) = (
        ((image.width() as f32 * scale).round() as u32).max(8),
        ((image.height() as f32 * scale).round() as u32).max(8),
    );
    let resized = image::imageops::resize(&image, w, h, image::imageops::FilterType::CatmullRom);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 70)
        .encode_image(&resized)
        .expect("jpeg");
    write(to, &bytes);
}

fn build(root: &Path, seed: u64) -> Faults {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut classes = Vec::new();
    for pack in DemoPack::ALL {
        let mut files: Vec<(&str, &[u8])> = pack.files().collect();
        files.sort();
        for (path, bytes) in files {
            let (class, name) = path.split_once('/').expect("class/file");
            let class = format!("{}-{class}", pack.name());
            let number: usize = name
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("numbered");
            let side = if number < 24 { "train" } else { "val" };
            let to = root.join(side).join(&class).join(name);
            write(&to, bytes);
            if side == "train" {
                train.push((class.clone(), to));
            }
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
    }
    train.shuffle(&mut rng);
    let mut faults = Faults::default();
    for (class, path) in &train[..12] {
        let others: Vec<&String> = classes.iter().filter(|c| *c != class).collect();
        let to_class = others[rng.random_range(0..others.len())];
        let to = root
            .join("train")
            .join(to_class)
            .join(path.file_name().expect("name"));
        std::fs::rename(path, &to).expect("flip");
        faults.flipped.push(to);
    }
    let copy_name = |path: &Path, prefix: &str, ext: &str| {
        let stem = path.file_stem().expect("stem").to_string_lossy();
        path.with_file_name(format!("{prefix}-{stem}.{ext}"))
    };
    for (_, path) in &train[12..22] {
        let ext = path
            .extension()
            .expect("ext")
            .to_string_lossy()
            .into_owned();
        let to = copy_name(path, "copy", &ext);
        std::fs::copy(path, &to).expect("copy");
        faults.exact.push((path.clone(), to));
    }
    for (k, (_, path)) in train[22..32].iter().enumerate() {
        let to = copy_name(path, "near", "jpg");
        reencode(path, &to, if k % 2 == 0 { 1.5 } else { 0.75 });
        faults.near.push((path.clone(), to));
    }
    for (class, path) in &train[32..37] {
        let to = root
            .join("val")
            .join(class)
            .join(path.file_name().expect("name"));
        let to = copy_name(
            &to,
            "leak",
            &path.extension().expect("ext").to_string_lossy(),
        );
        std::fs::copy(path, &to).expect("copy");
        faults.leaks.push((path.clone(), to));
    }
    faults
}

/// The report without its maps (the examination stops once the report is out).
fn diagnose(root: &Path) -> Report {
    let options = LoadOptions {
        val_dir: Some(root.join("val")),
        ..LoadOptions::default()
    };
    let dataset =
        load_dataset(&root.join("train"), &options, &LoadProgress::default()).expect("load");
    let mut report = None;
    let result = examine(
        &dataset,
        &DoctorOptions::default(),
        &candle_core::Device::Cpu,
        |event| match event {
            DoctorEvent::Report(r) => {
                report = Some(*r);
                Err(DoctorError::Cancelled)
            }
            _ => Ok(()),
        },
    );
    assert!(matches!(result, Err(DoctorError::Cancelled)), "{result:?}");
    report.expect("a report")
}

#[test]
fn the_doctor_finds_planted_copies_leaks_and_flipped_labels() {
    crate::common::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = build(dir.path(), 7);
    let report = diagnose(dir.path());
    let index = |p: &Path| {
        report
            .images
            .iter()
            .position(|i| i.path == p)
            .unwrap_or_else(|| panic!("{} not examined", p.display()))
    };
    let mut found: HashSet<(usize, usize)> = HashSet::new();
    for group in &report.duplicates {
        for (k, &a) in group.images.iter().enumerate() {
            for &b in &group.images[k + 1..] {
                found.insert((a.min(b), a.max(b)));
            }
        }
    }
    let pair = |(a, b): &(PathBuf, PathBuf)| {
        let (a, b) = (index(a), index(b));
        (a.min(b), a.max(b))
    };
    let planted: HashSet<(usize, usize)> = (faults.exact.iter())
        .chain(&faults.near)
        .chain(&faults.leaks)
        .map(pair)
        .collect();
    let missed = |list: &[(PathBuf, PathBuf)]| -> Vec<String> {
        (list.iter())
            .filter(|p| !found.contains(&pair(p)))
            .map(|(a, b)| format!("{} = {}", a.display(), b.display()))
            .collect()
    };
    assert!(
        missed(&faults.exact).is_empty(),
        "exact copies missed: {:?}",
        missed(&faults.exact)
    );
    assert!(
        missed(&faults.leaks).is_empty(),
        "leaks missed: {:?}",
        missed(&faults.leaks)
    );
    let near_found = faults.near.len() - missed(&faults.near).len();
    assert!(
        near_found * 100 >= 95 * faults.near.len(),
        "near copies found {near_found} / {}: missed {:?}",
        faults.near.len(),
        missed(&faults.near)
    );
    let false_pairs: Vec<_> = found.difference(&planted).collect();
    assert!(
        false_pairs.len() * 100 <= found.len(),
        "{} false pairs of {}: {false_pairs:?}",
        false_pairs.len(),
        found.len()
    );
    // Every leak reported as such, with the validation copy on the validation side.
    let leaks: HashSet<(usize, usize)> = (report.leakage.iter())
        .map(|l| (l.train.min(l.validation), l.train.max(l.validation)))
        .collect();
    for leak in &faults.leaks {
        assert!(leaks.contains(&pair(leak)), "leak not flagged: {leak:?}");
    }
    // Flipped labels among the top 2k suspects.
    let k = faults.flipped.len();
    let top: HashSet<usize> = report
        .suspects
        .iter()
        .take(2 * k)
        .map(|s| s.image)
        .collect();
    let caught = faults
        .flipped
        .iter()
        .filter(|p| top.contains(&index(p)))
        .count();
    assert!(
        caught * 100 >= 60 * k,
        "flipped labels in the top {}: {caught} / {k}",
        2 * k
    );
    assert_eq!(report.health.counts.len(), 8);
    assert!(report.health.probe_accuracy > 0.8, "{:?}", report.health);
}

//! The guide's measurements on generated data: recommendation, depth probe, compare-all-four.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use image::RgbImage;
use transfer_studio::data::dataset::{LoadOptions, LoadProgress, load_dataset};
use transfer_studio::guide::compare::compare_all;
use transfer_studio::guide::probe::{ProbeOptions, depth_probe};
use transfer_studio::guide::recommend::{
    RecommendOptions, Similarity, Size, Thresholds, recommend,
};
use transfer_studio::model::Backbone;
use transfer_studio::train::{Case, TrainPlan};

/// Photo-like data: random crops of the four fixture photos, one class per photo.
fn write_photo_crops(root: &Path, per_class: usize, side_px: u32) {
    let photos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"];
    for (k, name) in photos.iter().enumerate() {
        let img = image::open(common::fixture(name))
            .expect("fixture")
            .to_rgb8();
        let small = image::imageops::resize(&img, 192, 192, image::imageops::FilterType::Triangle);
        let dir = root.join(name.split('.').next().unwrap_or("photo"));
        std::fs::create_dir_all(&dir).expect("dir");
        for i in 0..per_class {
            let span = 192 - 96;
            let x = ((i * 37 + k * 11) % span) as u32;
            let y = ((i * 53 + k * 7) % span) as u32;
            let crop: RgbImage = image::imageops::crop_imm(&small, x, y, 96, 96).to_image();
            let crop = image::imageops::resize(
                &crop,
                side_px,
                side_px,
                image::imageops::FilterType::Triangle,
            );
            crop.save(dir.join(format!("{i:03}.png"))).expect("save");
        }
    }
}

fn load(root: &Path) -> transfer_studio::data::dataset::Dataset {
    load_dataset(root, &LoadOptions::default(), &LoadProgress::default()).expect("dataset")
}

#[test]
fn photo_crops_score_similar_and_flat_clip_art_different() {
    common::init();
    let photos = tempfile::tempdir().expect("dir");
    write_photo_crops(photos.path(), 6, 96);
    let shapes = tempfile::tempdir().expect("dir");
    common::write_shapes(shapes.path(), 4, 6, 48, 5);
    let options = RecommendOptions {
        max_images: 24,
        image_size_px: 128,
        ..RecommendOptions::default()
    };
    let device = Device::Cpu;
    let p = recommend(&load(photos.path()), &options, &device, |_, _| {}).expect("photos");
    let s = recommend(&load(shapes.path()), &options, &device, |_, _| {}).expect("shapes");
    assert!(
        p.similarity_score > s.similarity_score + 0.1,
        "photos {:.3} vs shapes {:.3}",
        p.similarity_score,
        s.similarity_score
    );
    assert_eq!(p.similarity, Similarity::Similar, "photos: {p:?}");
    assert_eq!(s.similarity, Similarity::Different, "shapes: {s:?}");
    assert_eq!(p.size, Size::Small);
    assert_eq!(p.case, Case::SmallSimilar);
    assert_eq!(s.case, Case::SmallDifferent);
    assert_eq!(p.layers.len(), 7);
    // The JSON the CLI prints has the documented fields.
    let json = serde_json::to_value(&p).expect("json");
    for key in [
        "images_per_class",
        "size",
        "similarity_score",
        "similarity",
        "case",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    assert_eq!(json["size"], "small");
    // Thresholds move the case without measuring again.
    let large = p.with_thresholds(Thresholds {
        large_images_per_class: 2,
        ..Thresholds::default()
    });
    assert_eq!(large.case, Case::LargeSimilar);
}

#[test]
fn the_depth_probe_reports_every_cut() {
    common::init();
    let shapes = tempfile::tempdir().expect("dir");
    common::write_shapes(shapes.path(), 3, 10, 40, 9);
    let dataset = load(shapes.path());
    let options = ProbeOptions {
        image_size_px: 64,
        epochs: 30,
        ..ProbeOptions::default()
    };
    let points = depth_probe(&dataset, &options, &Device::Cpu, |_, _| {}).expect("probe");
    assert_eq!(points.len(), Backbone::default().probe_units().len());
    let best = points
        .iter()
        .filter_map(|p| p.val_accuracy)
        .fold(0.0f64, f64::max);
    assert!(best > 1.0 / 3.0 + 0.1, "best probe {best}");
    for p in &points {
        assert!((0.0..=1.0).contains(&p.train_accuracy));
        assert!(p.features > 0);
    }
    assert_eq!(points.last().map(|p| p.features), Some(1280));
}

#[test]
fn compare_trains_the_four_presets_and_saves_each() {
    common::init();
    let shapes = tempfile::tempdir().expect("dir");
    common::write_shapes(shapes.path(), 2, 8, 40, 3);
    let dataset = Arc::new(load(shapes.path()));
    let out = tempfile::tempdir().expect("out");
    let shrink = |p: TrainPlan| TrainPlan {
        image_size_px: 32,
        epochs: p.epochs.min(2),
        head_epochs: p.head_epochs.min(1),
        batch_size: 8,
        ..p
    };
    let mut events = 0;
    let rows = compare_all(
        dataset,
        None,
        &Device::Cpu,
        Some(out.path()),
        |case: Case| shrink(case.plan()),
        |_, _| events += 1,
        None,
    )
    .expect("compare");
    assert!(events > 0);
    let cases: Vec<String> = rows.iter().map(|r| r.case.to_string()).collect();
    assert_eq!(
        cases,
        [
            "small-similar",
            "small-different",
            "large-similar",
            "large-different"
        ]
    );
    for r in &rows {
        assert!(r.val_accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)));
        assert!(r.trainable_parameters > 0);
        let dir = r.model_dir.as_ref().expect("saved");
        assert!(dir.join("model.json").is_file());
    }
    // The frozen cases train only the classifier; fine-tuning trains far more.
    assert!(rows[2].trainable_parameters > 100 * rows[0].trainable_parameters);
}

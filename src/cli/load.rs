//! Loading image folders for the guide's commands, each skipped file reported in one line.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::dataset::{Dataset, LoadOptions, LoadProgress, load_dataset};

/// A folder of test images: every image is evaluated (no validation split).
pub fn load_test(dir: &Path) -> anyhow::Result<Dataset> {
    let options = LoadOptions {
        val_fraction: 0.0,
        ..LoadOptions::default()
    };
    load_with(dir, &options)
        .with_context(|| format!("loading the test images in {}", dir.display()))
}

pub fn load(data: &Path, val: Option<PathBuf>) -> anyhow::Result<Dataset> {
    let options = LoadOptions {
        val_dir: val,
        ..LoadOptions::default()
    };
    load_with(data, &options).with_context(|| format!("loading {}", data.display()))
}

/// Loads a folder, reporting each skipped file in one line.
pub fn load_with(dir: &Path, options: &LoadOptions) -> anyhow::Result<Dataset> {
    let dataset = load_dataset(dir, options, &LoadProgress::default())?;
    for s in &dataset.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(dataset)
}

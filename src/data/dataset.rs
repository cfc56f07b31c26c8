//! Image-folder datasets: `DIR/<class>/<image>`, class names from the sub-folder names (sorted).
//!
//! Loading decodes every image once, in parallel, so that unusable files are found up front and
//! reported with their reasons (never a panic, nothing silently dropped). Decoded images are
//! kept in memory, already shrunk for the network, up to a byte budget; beyond it samples are
//! decoded again from disk when used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::decode::{decode_rgb, has_image_extension};
use super::resize::resize_shorter_side;
use super::split::stratified_split;

/// Default in-memory budget for decoded images.
pub const DEFAULT_CACHE_BYTES: usize = 1536 << 20;
/// Environment variable: MiB of decoded images kept in memory (default 1536); beyond it,
/// images are read from disk again when used (a helper thread reads ahead while training).
pub const CACHE_MB_VAR: &str = "TRANSFER_STUDIO_CACHE_MB";

fn cache_budget_from_env() -> Option<usize> {
    let mib: usize = std::env::var(CACHE_MB_VAR).ok()?.trim().parse().ok()?;
    Some(mib.saturating_mul(1 << 20))
}

/// Mixed into the seed of [`Dataset::subset`] so that it does not repeat the split's shuffle.
const SUBSET_SEED_SALT: u64 = 0x2545_f491_4f6c_dd1d;
/// Images of a class of `n` that a subset of `fraction` keeps: at least one.
fn keep_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).clamp(n.min(1), n)
}

/// Default share of each class held out for validation when no validation folder is given.
pub const DEFAULT_VAL_FRACTION: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset folder {0} does not exist or is not a folder")]
    NotAFolder(PathBuf),
    #[error("cannot list {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{0} needs at least two class sub-folders (one per class, images inside); found {1}")]
    TooFewClasses(PathBuf, usize),
    #[error("class folder {0} has no usable image")]
    EmptyClass(PathBuf),
    #[error("validation folder {folder} has classes the training folder lacks: {classes:?}")]
    UnknownValidationClasses {
        folder: PathBuf,
        classes: Vec<String>,
    },
    #[error("loading was cancelled")]
    Cancelled,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// An image of the dataset; its pixels are cached or re-read from `path` when needed.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
    cached: Option<Arc<RgbImage>>,
    /// Whether `cached` was shrunk from a larger file (then only a request for exactly its
    /// size is served from it).
    shrunk: bool,
}

impl Sample {
    /// The image with its shorter side at most `short_side_px` (never enlarged here): the same
    /// pixels whatever size the dataset was cached at. A copy shrunk to another size is
    /// neither enlarged nor resized a second time; the file is decoded again instead.
    pub fn image(&self, short_side_px: u32) -> Result<Arc<RgbImage>, String> {
        if let Some(img) = &self.cached {
            let short = img.width().min(img.height());
            if !self.shrunk || short == short_side_px {
                if short <= short_side_px {
                    return Ok(img.clone());
                }
                return Ok(Arc::new(resize_shorter_side(img, short_side_px)));
            }
        }
        let img = decode_rgb(&self.path).map_err(|e| e.to_string())?;
        Ok(Arc::new(shrink(img, short_side_px)))
    }

    /// A sample whose pixels are already in memory (benchmarks, generated demos).
    pub fn in_memory(path: PathBuf, label: usize, image: RgbImage) -> Self {
        Self {
            path,
            label,
            cached: Some(Arc::new(image)),
            shrunk: false,
        }
    }

    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }
}

/// Shrinks so that the shorter side is `short_side_px`, as evaluation preprocessing does
/// first; smaller images are kept as they are (they are enlarged per batch).
fn shrink(img: RgbImage, short_side_px: u32) -> RgbImage {
    if img.width().min(img.height()) > short_side_px {
        resize_shorter_side(&img, short_side_px)
    } else {
        img
    }
}

/// Images per class in each split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: String,
    pub train: usize,
    pub val: usize,
}

/// Where the validation images came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationSource {
    /// A stratified, seeded split of the training folder.
    Split { fraction: f64, seed: u64 },
    /// A separate folder with the same classes.
    Folder(PathBuf),
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub skipped: Vec<SkippedFile>,
    pub validation: ValidationSource,
    /// Shorter side (px) cached images were shrunk to.
    pub cache_short_side_px: u32,
}

/// How to load a dataset.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub val_dir: Option<PathBuf>,
    pub val_fraction: f64,
    pub seed: u64,
    /// Images are kept with their shorter side at most this (the eval resize of the plan).
    pub cache_short_side_px: u32,
    pub cache_budget_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            val_dir: None,
            val_fraction: DEFAULT_VAL_FRACTION,
            seed: 0,
            cache_short_side_px: 256,
            cache_budget_bytes: cache_budget_from_env().unwrap_or(DEFAULT_CACHE_BYTES),
        }
    }
}

/// Progress of a load: files decoded so far out of the total.
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub done: AtomicUsize,
    pub total: AtomicUsize,
    pub cancel: AtomicBool,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// A folder's class sub-folders and their candidate files.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderScan {
    pub root: PathBuf,
    /// (class name, image files), classes sorted by name, files sorted by path.
    pub classes: Vec<(String, Vec<PathBuf>)>,
    pub skipped: Vec<SkippedFile>,
}

/// Lists `root/<class>/…` without decoding anything. Hidden files and folders are ignored;
/// files with other extensions and files outside any class folder are listed as skipped.
pub fn scan_folder(root: &Path) -> Result<FolderScan, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::NotAFolder(root.to_owned()));
    }
    let mut classes = BTreeMap::new();
    let mut skipped = Vec::new();
    for entry in read_dir_sorted(root)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            collect_files(&entry, &mut files, &mut skipped)?;
            classes.insert(name, files);
        } else {
            skipped.push(SkippedFile {
                path: entry,
                reason: "not inside a class folder".into(),
            });
        }
    }
    Ok(FolderScan {
        root: root.to_owned(),
        classes: classes.into_iter().collect(),
        skipped,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let unreadable = |e: std::io::Error| DatasetError::Unreadable {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect::<Vec<_>>();
    entries.sort();
    Ok(entries)
}

fn collect_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<SkippedFile>,
) -> Result<(), DatasetError> {
    for entry in read_dir_sorted(dir)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            collect_files(&entry, files, skipped)?;
        } else if has_image_extension(&entry) {
            files.push(entry);
        } else {
            skipped.push(SkippedFile {
                path: entry,
                reason: "not an image file (jpeg, png, bmp, gif, webp or tiff)".into(),
            });
        }
    }
    Ok(())
}

/// A decoded file: kept in memory (`Some`) or decoded but over the budget (`None`), and
/// whether it was shrunk; or why it could not be used.
type DecodeOutcome = Result<(Option<Arc<RgbImage>>, bool), String>;

/// Decoded files of one folder: usable samples per class, and what was skipped.
struct Decoded {
    per_class: Vec<Vec<Sample>>,
    skipped: Vec<SkippedFile>,
}

fn decode_all(
    scan: &FolderScan,
    class_index: &dyn Fn(&str) -> Option<usize>,
    num_classes: usize,
    short_side_px: u32,
    budget: &AtomicUsize,
    progress: &LoadProgress,
) -> Result<Decoded, DatasetError> {
    let jobs: Vec<(usize, &PathBuf)> = scan
        .classes
        .iter()
        .filter_map(|(name, files)| class_index(name).map(|c| (c, files)))
        .flat_map(|(c, files)| files.iter().map(move |f| (c, f)))
        .collect();
    let results: Vec<(usize, &PathBuf, DecodeOutcome)> = jobs
        .par_iter()
        .map(|&(label, path)| {
            if progress.cancel.load(Ordering::Relaxed) {
                return (label, path, Err("cancelled".into()));
            }
            let result = decode_rgb(path).map_err(|e| e.to_string()).map(|img| {
                let shrunk = img.width().min(img.height()) > short_side_px;
                let img = shrink(img, short_side_px);
                let bytes = img.as_raw().len();
                // Keep it in memory while the budget lasts.
                let fits = budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(bytes)
                    })
                    .is_ok();
                (fits.then(|| Arc::new(img)), shrunk)
            });
            progress.done.fetch_add(1, Ordering::Relaxed);
            (label, path, result)
        })
        .collect();
    if progress.cancel.load(Ordering::Relaxed) {
        return Err(DatasetError::Cancelled);
    }
    let mut per_class = vec![Vec::new(); num_classes];
    let mut skipped = scan.skipped.clone();
    for (label, path, result) in results {
        match result {
            Ok((cached, shrunk)) => per_class[label].push(Sample {
                path: path.clone(),
                label,
                cached,
                shrunk,
            }),
            Err(reason) => skipped.push(SkippedFile {
                path: path.clone(),
                reason,
            }),
        }
    }
    Ok(Decoded { per_class, skipped })
}

/// Loads a dataset: scans, decodes in parallel, splits or reads the validation folder.
pub fn load_dataset(
    root: &Path,
    options: &LoadOptions,
    progress: &LoadProgress,
) -> Result<Dataset, DatasetError> {
    let scan = scan_folder(root)?;
    let val_scan = options.val_dir.as_deref().map(scan_folder).transpose()?;
    let classes: Vec<String> = scan.classes.iter().map(|(n, _)| n.clone()).collect();
    if classes.len() < 2 {
        return Err(DatasetError::TooFewClasses(root.to_owned(), classes.len()));
    }
    if let Some(vs) = &val_scan {
        let unknown: Vec<String> = vs
            .classes
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !classes.contains(n))
            .collect();
        if !unknown.is_empty() {
            return Err(DatasetError::UnknownValidationClasses {
                folder: vs.root.clone(),
                classes: unknown,
            });
        }
    }
    let total = scan.classes.iter().map(|(_, f)| f.len()).sum::<usize>()
        + val_scan
            .as_ref()
            .map_or(0, |v| v.classes.iter().map(|(_, f)| f.len()).sum());
    progress.total.store(total, Ordering::Relaxed);
    let budget = AtomicUsize::new(options.cache_budget_bytes);
    let index = |name: &str| classes.iter().position(|c| c == name);

    let decoded = decode_all(
        &scan,
        &index,
        classes.len(),
        options.cache_short_side_px,
        &budget,
        progress,
    )?;
    for (c, samples) in decoded.per_class.iter().enumerate() {
        if samples.is_empty() {
            return Err(DatasetError::EmptyClass(root.join(&classes[c])));
        }
    }
    let mut skipped = decoded.skipped;

    let (train, val, validation) = match &val_scan {
        Some(vs) => {
            let val_decoded = decode_all(
                vs,
                &index,
                classes.len(),
                options.cache_short_side_px,
                &budget,
                progress,
            )?;
            skipped.extend(val_decoded.skipped);
            (
                decoded.per_class.into_iter().flatten().collect(),
                val_decoded.per_class.into_iter().flatten().collect(),
                ValidationSource::Folder(vs.root.clone()),
            )
        }
        None => {
            let (train, val) =
                stratified_split(decoded.per_class, options.val_fraction, options.seed, |s| {
                    &s.path
                });
            (
                train,
                val,
                ValidationSource::Split {
                    fraction: options.val_fraction,
                    seed: options.seed,
                },
            )
        }
    };
    Ok(Dataset {
        root: root.to_owned(),
        classes,
        train,
        val,
        skipped,
        validation,
        cache_short_side_px: options.cache_short_side_px,
    })
}

impl Dataset {
    /// The same images split again with another seed (as loading with that seed would split
    /// them; the decoded pixels are shared). `None` where validation is a separate folder.
    pub fn resplit(&self, seed: u64) -> Option<Self> {
        let ValidationSource::Split { fraction, .. } = self.validation else {
            return None;
        };
        let mut per_class: Vec<Vec<Sample>> = vec![Vec::new(); self.classes.len()];
        for sample in self.train.iter().chain(&self.val) {
            per_class.get_mut(sample.label)?.push(sample.clone());
        }
        for samples in &mut per_class {
            samples.sort_by(|a, b| a.path.cmp(&b.path));
        }
        let (train, val) = stratified_split(per_class, fraction, seed, |s| &s.path);
        Some(Self {
            train,
            val,
            validation: ValidationSource::Split { fraction, seed },
            ..self.clone()
        })
    }

    /// The first `count` training samples of `class` (the examples thumbnails show).
    pub fn examples(&self, class: usize, count: usize) -> impl Iterator<Item = &Sample> {
        self.train
            .iter()
            .filter(move |s| s.label == class)
            .take(count)
    }

    /// Whether loading with `options` would give this dataset: the same cache size and the
    /// same validation images (folder, or split fraction and seed).
    pub fn loaded_with(&self, options: &LoadOptions) -> bool {
        let validation = match &options.val_dir {
            Some(dir) => ValidationSource::Folder(dir.clone()),
            None => ValidationSource::Split {
                fraction: options.val_fraction,
                seed: options.seed,
            },
        };
        self.cache_short_side_px == options.cache_short_side_px && self.validation == validation
    }

    /// Images per class in each split.
    pub fn counts(&self) -> Vec<ClassCount> {
        let mut counts: Vec<ClassCount> = self
            .classes
            .iter()
            .map(|c| ClassCount {
                class: c.clone(),
                train: 0,
                val: 0,
            })
            .collect();
        for s in &self.train {
            counts[s.label].train += 1;
        }
        for s in &self.val {
            counts[s.label].val += 1;
        }
        counts
    }

    /// Training images per class (the size axis of the guide), on average.
    pub fn images_per_class(&self) -> f64 {
        (self.train.len() + self.val.len()) as f64 / self.classes.len().max(1) as f64
    }

    /// The same dataset with only `fraction` of each class's training images (seeded, at
    /// least one per class); validation is kept whole so that results stay comparable.
    pub fn subset(&self, fraction: f64, seed: u64) -> Dataset {
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction >= 1.0 {
            return self.clone();
        }
        let mut per_class: Vec<Vec<Sample>> = vec![Vec::new(); self.classes.len()];
        for s in &self.train {
            per_class[s.label].push(s.clone());
        }
        let mut train = Vec::new();
        for (c, mut samples) in per_class.into_iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SUBSET_SEED_SALT ^ c as u64);
            samples.shuffle(&mut rng);
            samples.truncate(keep_count(samples.len(), fraction));
            train.extend(samples);
        }
        train.sort_by(|a, b| a.path.cmp(&b.path));
        Dataset {
            root: self.root.clone(),
            classes: self.classes.clone(),
            train,
            val: self.val.clone(),
            skipped: self.skipped.clone(),
            validation: self.validation.clone(),
            cache_short_side_px: self.cache_short_side_px,
        }
    }

    /// How many training images [`Dataset::subset`] keeps, without building it (the window
    /// shows this every frame; a 100 000-image subset takes tens of milliseconds to build).
    pub fn subset_len(&self, fraction: f64) -> usize {
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction >= 1.0 {
            return self.train.len();
        }
        self.counts()
            .iter()
            .map(|c| keep_count(c.train, fraction))
            .sum()
    }

    /// How many samples are held in memory.
    pub fn cached_count(&self) -> usize {
        self.train
            .iter()
            .chain(&self.val)
            .filter(|s| s.is_cached())
            .count()
    }
}

/// Up to `max` samples, spread evenly over classes (round-robin in each class's order), so
/// that a measurement on a subset sees every class.
pub fn balanced_subset(samples: &[Sample], classes: usize, max: usize) -> Vec<Sample> {
    let mut per_class: Vec<Vec<&Sample>> = vec![Vec::new(); classes];
    for s in samples {
        if let Some(list) = per_class.get_mut(s.label) {
            list.push(s);
        }
    }
    let mut out = Vec::with_capacity(max.min(samples.len()));
    let mut round = 0;
    while out.len() < max {
        let mut added = false;
        for list in &per_class {
            if let Some(s) = list.get(round)
                && out.len() < max
            {
                out.push((*s).clone());
                added = true;
            }
        }
        if !added {
            break;
        }
        round += 1;
    }
    out
}

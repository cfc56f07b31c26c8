//! Exact and near copies. An exact copy has the same bytes (SHA-256). A near copy is the same
//! picture resized, re-encoded or slightly cropped: its perceptual hash (a DCT hash of the
//! grey image, 64 bits) is within [`NEAR_MAX_HASH_BITS`] bits *and* its pretrained features
//! point the same way (cosine at least [`NEAR_MIN_COSINE`]). Either test alone pairs
//! different pictures: hashes of small grey images of one kind collide, and features of two
//! photos of one scene agree; together they rarely do.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{ImageEntry, Side};
use crate::data::dataset::{Sample, SkippedFile};
pub(super) use crate::train::head::dot;

/// Near copies differ by at most this many of the perceptual hash's 64 bits.
pub const NEAR_MAX_HASH_BITS: u32 = 12;
/// A resized or re-encoded copy: its 16×16 grey thumbnail correlates at least this well.
pub const NEAR_MIN_PIXEL_CORRELATION: f32 = 0.99;
/// A slightly cropped copy: pretrained features (at the cut the run uses) with at least this
/// cosine, and a thumbnail that still correlates at least [`CROP_MIN_PIXEL_CORRELATION`].
pub const NEAR_MIN_COSINE: f32 = 0.975;
pub const CROP_MIN_PIXEL_CORRELATION: f32 = 0.9;
/// Side of the grey thumbnails compared pixel by pixel.
const THUMB_PX: u32 = 16;

/// Files read per step (progress and stop requests between steps).
const READ_CHUNK: usize = 64;

/// One image's fingerprints.
#[derive(Debug, Clone)]
pub(super) struct ReadImage {
    /// Index into the examined samples.
    pub index: usize,
    pub digest: [u8; 32],
    pub hash: u64,
    /// The 16×16 grey thumbnail, centred and scaled to unit length (a correlation is a dot).
    pub thumb: Vec<f32>,
}

/// How alike the images of a group are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateKind {
    /// The same bytes.
    Exact,
    /// The same picture, resized, re-encoded or slightly cropped.
    Near,
}

impl DuplicateKind {
    /// What kind of copy, in words.
    pub fn words(self) -> &'static str {
        match self {
            DuplicateKind::Exact => "the same file",
            DuplicateKind::Near => "resized or re-encoded",
        }
    }
}

/// Images that are copies of one another (indices into the report's images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    pub images: Vec<usize>,
    /// `Exact` when every image has the same bytes.
    pub kind: DuplicateKind,
    /// Some images are in training and some in validation.
    pub leaks: bool,
    /// Some images are labelled with different classes.
    pub mixed_labels: bool,
}

/// A copy across the split: the validation image's score is flattered by the training one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakPair {
    pub train: usize,
    pub validation: usize,
    pub kind: DuplicateKind,
    pub cosine: f32,
    pub hash_bits: u32,
}

/// The perceptual hash: mean-thresholded low frequencies of the DCT of the grey image.
fn perceptual_hash(hasher: &image_hasher::Hasher, image: &image::RgbImage) -> u64 {
    let mut bits = [0u8; 8];
    for (b, byte) in bits.iter_mut().zip(hasher.hash_image(image).as_bytes()) {
        *b = *byte;
    }
    u64::from_le_bytes(bits)
}

/// The grey thumbnail as a unit vector with zero mean (a flat image: all zeros).
fn thumbnail(image: &image::RgbImage) -> Vec<f32> {
    let grey = image::imageops::grayscale(image);
    let small = image::imageops::resize(
        &grey,
        THUMB_PX,
        THUMB_PX,
        image::imageops::FilterType::Triangle,
    );
    let values: Vec<f32> = small.as_raw().iter().map(|&v| f32::from(v)).collect();
    let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
    let centred: Vec<f32> = values.iter().map(|v| v - mean).collect();
    unit_rows(&centred, centred.len())
}

fn hasher() -> image_hasher::Hasher {
    image_hasher::HasherConfig::new()
        .hash_size(8, 8)
        .preproc_dct()
        .hash_alg(image_hasher::HashAlg::Mean)
        .to_hasher()
}

/// Reads one file's bytes (digest) and its pixels (hash and thumbnail).
fn read_one(
    hasher: &image_hasher::Hasher,
    index: usize,
    sample: &Sample,
    side_px: u32,
) -> Result<ReadImage, String> {
    let bytes = std::fs::read(&sample.path).map_err(|e| e.to_string())?;
    let image = sample.image(side_px)?;
    Ok(ReadImage {
        index,
        digest: Sha256::digest(&bytes).into(),
        hash: perceptual_hash(hasher, &image),
        thumb: thumbnail(&image),
    })
}

/// Digests and hashes of every sample; unreadable files are skipped with their reason.
/// `progress(done, total)` after each step; an error from it (a stop request) ends the reading.
pub(super) fn read_all<E>(
    all: &[(&Sample, Side)],
    side_px: u32,
    mut progress: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<(Vec<ReadImage>, Vec<SkippedFile>), E> {
    let hasher = hasher();
    let (mut read, mut skipped) = (Vec::with_capacity(all.len()), Vec::new());
    for start in (0..all.len()).step_by(READ_CHUNK) {
        let end = (start + READ_CHUNK).min(all.len());
        let results: Vec<_> = (start..end)
            .into_par_iter()
            .map(|i| (i, read_one(&hasher, i, all[i].0, side_px)))
            .collect();
        for (index, result) in results {
            match result {
                Ok(image) => read.push(image),
                Err(reason) => skipped.push(SkippedFile {
                    path: all[index].0.path.clone(),
                    reason,
                }),
            }
        }
        progress(end, all.len())?;
    }
    Ok((read, skipped))
}

/// Rows scaled to unit length (a zero row stays zero).
pub(super) fn unit_rows(values: &[f32], dim: usize) -> Vec<f32> {
    let mut out = values.to_vec();
    for row in out.chunks_exact_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

/// A pair of copies: (i, j, cosine, hash bits apart), i < j.
type Pair = (usize, usize, f32, u32);

/// Every pair of copies among the images (rows of `features`, `dim` wide).
fn pairs(read: &[ReadImage], features: &[f32], dim: usize) -> Vec<Pair> {
    let rows = unit_rows(features, dim);
    let dim = dim.max(1);
    (0..read.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let a = &rows[i * dim..(i + 1) * dim];
            let rows = &rows;
            (i + 1..read.len()).filter_map(move |j| {
                let bits = (read[i].hash ^ read[j].hash).count_ones();
                let exact = read[i].digest == read[j].digest;
                if !exact && bits > NEAR_MAX_HASH_BITS {
                    return None;
                }
                let cosine = dot(a, &rows[j * dim..(j + 1) * dim]);
                let pixels = dot(&read[i].thumb, &read[j].thumb);
                let copy = exact
                    || pixels >= NEAR_MIN_PIXEL_CORRELATION
                    || (cosine >= NEAR_MIN_COSINE && pixels >= CROP_MIN_PIXEL_CORRELATION);
                copy.then_some((i, j, cosine, bits))
            })
        })
        .collect()
}

/// The root of `i` in a union-find forest (with path halving).
fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Groups of copies and the pairs that leak across the split. `images` and `read` are
/// parallel; `features` are their rows at the run's cut.
pub(super) fn find(
    images: &[ImageEntry],
    read: &[ReadImage],
    features: &[f32],
    dim: usize,
) -> (Vec<DuplicateGroup>, Vec<LeakPair>) {
    let pairs = pairs(read, features, dim);
    let mut parent: Vec<usize> = (0..images.len()).collect();
    for &(i, j, _, _) in &pairs {
        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
        parent[a.max(b)] = a.min(b);
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..images.len() {
        let r = root(&mut parent, i);
        members.entry(r).or_default().push(i);
    }
    let mut groups: Vec<DuplicateGroup> = members
        .into_values()
        .filter(|m| m.len() > 1)
        .map(|m| DuplicateGroup {
            kind: if m.iter().all(|&i| read[i].digest == read[m[0]].digest) {
                DuplicateKind::Exact
            } else {
                DuplicateKind::Near
            },
            leaks: m.iter().any(|&i| images[i].side != images[m[0]].side),
            mixed_labels: m.iter().any(|&i| images[i].class != images[m[0]].class),
            images: m,
        })
        .collect();
    // Leaks first, then mixed labels, then exact copies.
    groups.sort_by_key(|g| (!g.leaks, !g.mixed_labels, g.kind != DuplicateKind::Exact));
    let leakage = pairs
        .iter()
        .filter(|&&(i, j, _, _)| images[i].side != images[j].side)
        .map(|&(i, j, cosine, hash_bits)| {
            let (train, validation) = if images[i].side == Side::Train {
                (i, j)
            } else {
                (j, i)
            };
            LeakPair {
                train,
                validation,
                kind: if read[i].digest == read[j].digest {
                    DuplicateKind::Exact
                } else {
                    DuplicateKind::Near
                },
                cosine,
                hash_bits,
            }
        })
        .collect();
    (groups, leakage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(hash: u64, digest: u8, thumb: [f32; 2]) -> ReadImage {
        ReadImage {
            index: 0,
            digest: [digest; 32],
            hash,
            thumb: thumb.to_vec(),
        }
    }

    fn entry(class: usize, side: Side) -> ImageEntry {
        ImageEntry {
            path: std::path::PathBuf::from(format!("{class}")),
            class,
            side,
        }
    }

    #[test]
    fn copies_need_a_close_hash_and_close_features_and_leaks_are_found() {
        // Image 0 and 1: the same bytes. Image 2: near copy of 0 (3 bits, the same pixels
        // nearly). Image 3: close hash but other pixels and features. Image 4: the same pixels
        // and features, far hash.
        let read = [
            read(0, 1, [1.0, 0.0]),
            read(0, 1, [1.0, 0.0]),
            read(0b111, 2, [0.995, 0.0998]),
            read(0b11, 3, [0.5, 0.866]),
            read(u64::MAX, 4, [1.0, 0.0]),
        ];
        let features = [
            1.0, 0.0, //
            1.0, 0.0, //
            0.99, 0.05, //
            0.0, 1.0, //
            1.0, 0.0,
        ];
        let images = [
            entry(0, Side::Train),
            entry(0, Side::Train),
            entry(1, Side::Validation),
            entry(0, Side::Train),
            entry(0, Side::Train),
        ];
        let (groups, leakage) = find(&images, &read, &features, 2);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].images, vec![0, 1, 2]);
        assert_eq!(groups[0].kind, DuplicateKind::Near);
        assert!(groups[0].leaks && groups[0].mixed_labels);
        assert_eq!(leakage.len(), 2, "{leakage:?}");
        assert!(leakage.iter().all(|l| l.validation == 2));
    }
}

//! Running the frozen part of the network once over a dataset and keeping its outputs:
//! head-only training, the similarity score and the depth probe all work on these.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::augment::at_least;
use crate::data::dataset::{Sample, SkippedFile};
use crate::data::preprocess::Preprocessing;

/// Pooled features of a set of images, with their labels.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// `[N, F]`.
    pub features: Tensor,
    /// `[N]`, u32.
    pub labels: Tensor,
    pub label_values: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.label_values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.label_values.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.features.dims().get(1).copied().unwrap_or(0)
    }
}

/// Evaluation crops of samples, in parallel; a sample that can no longer be read is an error
/// entry (its file changed or vanished since loading).
pub fn eval_crops(samples: &[Sample], pre: &Preprocessing) -> Vec<Result<RgbImage, String>> {
    samples
        .par_iter()
        .map(|s| {
            let image = s.image(pre.resize_px)?;
            Ok(pre.eval_crop(&at_least(&image, pre.resize_px)))
        })
        .collect()
}

/// One group of samples, read and cropped.
#[derive(Default)]
struct Batch<'a> {
    crops: Vec<RgbImage>,
    kept: Vec<&'a Sample>,
    skipped: Vec<SkippedFile>,
}

/// Runs `forward` (an NHWC batch → `[B, F]` per output) over `samples` in batches of `batch`
/// and stacks the results: one [`FeatureSet`] per output of `forward`.
///
/// `progress(done, total)` is called after each batch; an error from it (a stop request)
/// ends the extraction.
pub fn extract_multi<E: From<candle_core::Error>>(
    samples: &[Sample],
    pre: &Preprocessing,
    batch: usize,
    device: &Device,
    forward: impl Fn(&Tensor) -> candle_core::Result<Vec<Tensor>>,
    mut progress: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<(Vec<FeatureSet>, Vec<SkippedFile>), E> {
    // Each output's rows, appended in place: holding the batches and then concatenating them
    // would need twice the memory (100 000 Lite0 features are 512 MB).
    let mut stacked: Vec<(Vec<f32>, usize)> = Vec::new();
    let mut labels = Vec::with_capacity(samples.len());
    let mut paths = Vec::with_capacity(samples.len());
    let mut skipped = Vec::new();
    let groups: Vec<&[Sample]> = samples.chunks(batch.max(1)).collect();
    // The next groups are read and cropped on a helper thread while this one runs forward.
    let prepare = |g: usize| {
        let crops = eval_crops(groups[g], pre);
        let mut batch = Batch::default();
        for (sample, crop) in groups[g].iter().zip(crops) {
            match crop {
                Ok(c) => {
                    batch.crops.push(c);
                    batch.kept.push(sample);
                }
                Err(reason) => batch.skipped.push(SkippedFile {
                    path: sample.path.clone(),
                    reason,
                }),
            }
        }
        let input = (!batch.crops.is_empty()).then(|| pre.batch_tensor(&batch.crops, device));
        (batch, input)
    };
    crate::data::prefetch::prefetched(groups.len(), prepare, |prepared| {
        let mut done = 0;
        for (batch, input) in prepared {
            done += batch.kept.len() + batch.skipped.len();
            labels.extend(batch.kept.iter().map(|s| s.label));
            paths.extend(batch.kept.iter().map(|s| s.path.clone()));
            skipped.extend(batch.skipped);
            if let Some(input) = input {
                let outputs = forward(&input?)?;
                if stacked.is_empty() {
                    for t in &outputs {
                        let width = t.dim(1)?;
                        stacked.push((Vec::with_capacity(samples.len() * width), width));
                    }
                }
                for ((rows, _), t) in stacked.iter_mut().zip(&outputs) {
                    rows.extend(t.flatten_all()?.to_vec1::<f32>()?);
                }
            }
            progress(done, samples.len())?;
        }
        Ok::<(), E>(())
    })?;
    let label_tensor = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<u32>>(),
        labels.len(),
        device,
    )?;
    let mut sets = Vec::with_capacity(stacked.len());
    for (rows, width) in stacked {
        let count = rows.len() / width.max(1);
        sets.push(FeatureSet {
            features: Tensor::from_vec(rows, (count, width), device)?,
            labels: label_tensor.clone(),
            label_values: labels.clone(),
            paths: paths.clone(),
        });
    }
    Ok((sets, skipped))
}

/// [`extract_multi`] with a single output.
pub fn extract_features<E: From<candle_core::Error>>(
    samples: &[Sample],
    pre: &Preprocessing,
    batch: usize,
    device: &Device,
    forward: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    progress: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<(FeatureSet, Vec<SkippedFile>), E> {
    let (mut sets, skipped) = extract_multi(
        samples,
        pre,
        batch,
        device,
        |x| Ok(vec![forward(x)?]),
        progress,
    )?;
    let set = match sets.pop() {
        Some(s) => s,
        None => FeatureSet {
            features: Tensor::zeros((0, 0), candle_core::DType::F32, device)?,
            labels: Tensor::zeros(0, candle_core::DType::U32, device)?,
            label_values: Vec::new(),
            paths: Vec::new(),
        },
    };
    Ok((set, skipped))
}

//! Grad-CAM (Selvaraju et al., 2017): the class score's gradient, averaged over positions,
//! weights the channels of the last feature map before pooling; the positive part of that
//! weighted sum says where the image raised the score.

use candle_core::{DType, Tensor, Var};
use image::RgbImage;
use serde::Serialize;

use super::error::InspectError;
use crate::model::{Unit, softmax};
use crate::predict::Predictor;

/// Where the network looked for one class.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub class_index: usize,
    pub label: String,
    /// The class's probability for this image.
    pub prob: f32,
    /// The unit whose output the map was taken at (the last map before pooling).
    pub unit: Unit,
    /// Rows × columns over the network's input crop, non-negative, maximum 1 (all 0 where no
    /// position raised the score).
    pub grid: Vec<Vec<f32>>,
    /// Every class's probability (the pass that made the map computed them anyway).
    #[serde(skip)]
    pub probs: Vec<f32>,
}

/// The class `text` names: an index, or a label (case-insensitive).
pub fn resolve_class(labels: &[String], text: &str) -> Result<usize, InspectError> {
    let text = text.trim();
    if let Ok(index) = text.parse::<usize>()
        && index < labels.len()
    {
        return Ok(index);
    }
    labels
        .iter()
        .position(|l| l.eq_ignore_ascii_case(text))
        .ok_or_else(|| InspectError::UnknownClass {
            given: text.to_owned(),
            classes: labels.len(),
        })
}

/// Grad-CAM of `class` (default: the most probable) for one evaluation crop.
pub fn grad_cam(
    predictor: &Predictor,
    crop: &RgbImage,
    class: Option<usize>,
) -> Result<Explanation, InspectError> {
    let traced = class_gradient(predictor, crop, class)?;
    let grid = match &traced.gradient {
        Some(gradient) => weighted_map(&traced.map, gradient)?,
        // The score does not depend on the map (cannot happen for a connected network).
        None => {
            let (_, rows, columns, _) = traced.map.dims4()?;
            vec![vec![0.0; columns]; rows]
        }
    };
    Ok(Explanation {
        class_index: traced.class_index,
        label: predictor.labels()[traced.class_index].clone(),
        prob: traced.probs[traced.class_index],
        unit: predictor.network().unit_at(traced.map_unit),
        grid,
        probs: traced.probs,
    })
}

/// The last feature map and the gradient of a class's score (its logit) with respect to it.
struct ClassGradient {
    /// `[1, H, W, C]`, the output of unit `map_unit`.
    map: Tensor,
    map_unit: usize,
    gradient: Option<Tensor>,
    probs: Vec<f32>,
    class_index: usize,
}

fn class_gradient(
    predictor: &Predictor,
    crop: &RgbImage,
    class: Option<usize>,
) -> Result<ClassGradient, InspectError> {
    let input = predictor.input_tensor(std::slice::from_ref(crop))?;
    let map_unit = last_map_index(predictor);
    let map = predictor
        .folded()
        .forward_units(&input, 0, map_unit + 1)?
        .to_dtype(DType::F32)?;
    let map = Var::from_tensor(&map)?;
    let logits = logits_from_map(predictor, map.as_tensor(), map_unit)?;
    let probs = softmax(&logits)?.squeeze(0)?.to_vec1::<f32>()?;
    let class_index = match class {
        Some(c) if c < probs.len() => c,
        Some(c) => {
            return Err(InspectError::UnknownClass {
                given: c.to_string(),
                classes: probs.len(),
            });
        }
        None => top1(&probs),
    };
    let score = logits.narrow(1, class_index, 1)?.sum_all()?;
    let gradient = score.backward()?.remove(map.as_tensor());
    Ok(ClassGradient {
        map: map.as_tensor().detach(),
        map_unit,
        gradient,
        probs,
        class_index,
    })
}

/// The classifier's logits from the output of unit `map_unit` (gradients kept).
fn logits_from_map(
    predictor: &Predictor,
    map: &Tensor,
    map_unit: usize,
) -> Result<Tensor, InspectError> {
    let features = predictor.folded().pooled_from_unit(map, map_unit + 1)?;
    Ok(predictor.logits_of_features(&features)?)
}

/// The index of the last kept unit with a spatial output.
fn last_map_index(predictor: &Predictor) -> usize {
    super::maps::spatial_units(predictor)
        .last()
        .map_or(0, |&unit| predictor.network().index_of(unit))
}

fn top1(probs: &[f32]) -> usize {
    probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
}

/// ReLU(Σ_k α_k A_k) with α_k the mean gradient of channel k, scaled to a maximum of 1.
fn weighted_map(map: &Tensor, gradient: &Tensor) -> Result<Vec<Vec<f32>>, InspectError> {
    let alpha = gradient.mean_keepdim(1)?.mean_keepdim(2)?;
    let cam = map
        .broadcast_mul(&alpha)?
        .sum(3)?
        .relu()?
        .squeeze(0)?
        .to_vec2::<f32>()?;
    let max = cam.iter().flatten().copied().fold(0f32, f32::max);
    Ok(if max > 0.0 {
        cam.into_iter()
            .map(|row| row.into_iter().map(|v| v / max).collect())
            .collect()
    } else {
        cam
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, HeadInit, Network, NetworkSpec};
    use candle_core::Device;

    /// On a network whose fully connected layers follow the map (VGG16 keeping fc6 and fc7),
    /// the mean gradient of each channel agrees with finite differences of the score.
    #[test]
    fn the_gradient_through_fully_connected_layers_matches_finite_differences() {
        let vgg: Backbone = "vgg16".parse().expect("registered");
        let spec = NetworkSpec {
            num_classes: 3,
            ..NetworkSpec::pretrained(vgg)
        };
        let network = Network::build(spec, None, HeadInit::Random, 5, &Device::Cpu).expect("vgg");
        let labels = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let predictor =
            Predictor::from_network(&network, labels, vgg.preprocessing(64)).expect("predictor");
        let crop = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x * y) % 256) as u8])
        });
        let traced = class_gradient(&predictor, &crop, Some(1)).expect("gradient");
        assert_eq!(vgg.unit_at(traced.map_unit), Unit::Block(12));
        let gradient = traced.gradient.expect("the score depends on the map");
        let (_, rows, columns, channels) = traced.map.dims4().expect("map");
        let alpha = gradient
            .mean_keepdim(1)
            .and_then(|g| g.mean_keepdim(2))
            .and_then(|g| g.flatten_all())
            .and_then(|g| g.to_vec1::<f32>())
            .expect("alpha");
        // Small against the map's scale (ReLUs make the score piecewise linear), large
        // against f32 rounding.
        let mean_square = traced
            .map
            .sqr()
            .and_then(|m| m.mean_all())
            .and_then(|m| m.to_scalar::<f32>());
        let step = mean_square.expect("mean square").sqrt() / 25.0;
        let mut pairs = Vec::new();
        for channel in (0..channels).step_by(channels / 8) {
            let mut nudge = vec![0f32; channels];
            nudge[channel] = step;
            let nudge = Tensor::from_vec(nudge, (1, 1, 1, channels), &Device::Cpu).expect("nudge");
            let score = |sign: f32| {
                let moved = traced
                    .map
                    .broadcast_add(&(&nudge * f64::from(sign)).expect("scaled"))
                    .expect("moved");
                logits_from_map(&predictor, &moved, traced.map_unit)
                    .and_then(|l| Ok(l.flatten_all()?.to_vec1::<f32>()?[1]))
                    .expect("score")
            };
            let numeric = (score(1.0) - score(-1.0)) / (2.0 * step) / (rows * columns) as f32;
            pairs.push((channel, numeric, alpha[channel]));
        }
        let largest = pairs.iter().map(|p| p.1.abs()).fold(0f32, f32::max);
        assert!(largest > 1e-4, "the score does not move: {pairs:?}");
        for (channel, numeric, analytic) in pairs {
            assert!(
                (numeric - analytic).abs() <= 0.03 * largest,
                "channel {channel}: finite differences {numeric}, gradient {analytic}"
            );
        }
    }

    #[test]
    fn classes_are_named_by_index_or_label() {
        let labels: Vec<String> = ["cat", "dog", "7"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_class(&labels, "1").expect("index"), 1);
        assert_eq!(resolve_class(&labels, "Dog").expect("label"), 1);
        // A number past the classes can still be a label.
        assert_eq!(resolve_class(&labels, " 7 ").expect("label"), 2);
        let error = resolve_class(&labels, "horse").expect_err("unknown");
        assert!(error.to_string().contains("below 3"), "{error}");
    }
}

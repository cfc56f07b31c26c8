//! Arguments and helpers that several commands share: which model, which network and
//! weights, and the image the looking-inside commands open.

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::RgbImage;

use crate::data::decode::decode_rgb;
use crate::inspect;
use crate::model::{Backbone, WeightsSource};
use crate::predict::Predictor;
use crate::runtime;
use crate::train::TrainedModel;

/// Which model classifies: the bundled network's ImageNet head, or a saved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    Builtin,
    Saved(PathBuf),
}

impl std::str::FromStr for ModelChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "builtin" {
            ModelChoice::Builtin
        } else {
            ModelChoice::Saved(PathBuf::from(s))
        })
    }
}

/// `--backbone` and `--weights`, shared by the commands that build a pretrained network.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// The network: efficientnet-lite0 (bundled; `lite0` for short), resnet18, resnet50, vgg16.
    #[arg(long, default_value = "efficientnet-lite0", value_parser = parse_backbone)]
    pub backbone: Backbone,
    /// Pretrained weights: a .safetensors or .pth file, or hf:ORG/REPO (default: bundled for
    /// Lite0, timm's torchvision weights from the Hugging Face hub for the others).
    #[arg(long, value_parser = parse_weights)]
    pub weights: Option<WeightsSource>,
}

impl NetworkArgs {
    /// The weights to load: the ones given, else the network's default.
    pub fn source(&self) -> WeightsSource {
        self.backbone.weights_or_default(self.weights.as_ref())
    }
}

/// A registered network, by name (`lite0` for short).
pub fn parse_backbone(s: &str) -> Result<Backbone, String> {
    let name = if s == "lite0" {
        "efficientnet-lite0"
    } else {
        s
    };
    name.parse()
        .map_err(|e: crate::model::ModelError| e.to_string())
}

/// A weights source: a file, `hf:ORG/REPO` or `bundled`.
pub fn parse_weights(s: &str) -> Result<WeightsSource, String> {
    s.parse()
        .map_err(|e: crate::model::ModelError| e.to_string())
}

/// The classifier `model` names: the network `network` names with its ImageNet head, or a
/// saved model.
pub fn load_predictor(model: &ModelChoice, network: &NetworkArgs) -> anyhow::Result<Predictor> {
    let backbone = network.backbone;
    let device = runtime::compute_device();
    let dir = match model {
        ModelChoice::Builtin => {
            let source = network.source();
            return Predictor::pretrained(backbone, &source, &device)
                .with_context(|| format!("loading {} with weights {source}", backbone.title()));
        }
        ModelChoice::Saved(dir) => dir,
    };
    let (trained, _) = TrainedModel::load(dir, &device)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    Ok(Predictor::from_network(
        &trained.network,
        trained.classes,
        trained.preprocessing,
    )?)
}

/// The model and image both commands look at.
#[derive(Debug, clap::Args)]
pub struct ImageModelArgs {
    /// `builtin` (the pretrained ImageNet classifier) or a directory saved by `train`.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    /// With `--model builtin`: the network and its weights.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The PNG to write.
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    pub image: PathBuf,
}

/// The predictor, and the image's evaluation crop.
pub fn open(args: &ImageModelArgs) -> anyhow::Result<(Predictor, RgbImage)> {
    let image = decode_rgb(&args.image)?;
    let predictor = load_predictor(&args.model, &args.network)?;
    let crop = predictor.preprocessing().eval_crop(&image);
    Ok((predictor, crop))
}

pub fn write_png(path: &Path, image: &RgbImage) -> anyhow::Result<()> {
    let bytes = inspect::encode_png(image).context("encoding the PNG")?;
    crate::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

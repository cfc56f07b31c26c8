//! `inspect` (the strongest activation maps at a unit) and `explain` (Grad-CAM) for one image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use image::RgbImage;

use super::{ModelChoice, NetworkArgs, load_predictor};
use crate::data::decode::decode_rgb;
use crate::inspect::{self, DEFAULT_CHANNELS};
use crate::predict::Predictor;

/// Side of one map's tile in the PNG.
const TILE_PX: u32 = 112;

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

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The unit to look at: stem, a block number (`3` or `block3`) or head.
    #[arg(long)]
    pub unit: String,
    /// How many channels to show (the strongest by mean activation).
    #[arg(long, default_value_t = DEFAULT_CHANNELS)]
    pub channels: usize,
    #[command(flatten)]
    pub common: ImageModelArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The class to explain, by index or label (default: the most probable).
    #[arg(long)]
    pub class: Option<String>,
    #[command(flatten)]
    pub common: ImageModelArgs,
}

/// The predictor, and the image's evaluation crop.
fn open(args: &ImageModelArgs) -> anyhow::Result<(Predictor, RgbImage)> {
    let image = decode_rgb(&args.image)?;
    let predictor = load_predictor(
        &args.model,
        args.network.backbone,
        args.network.weights.as_ref(),
    )?;
    let crop = predictor.preprocessing().eval_crop(&image);
    Ok((predictor, crop))
}

fn write_png(path: &Path, image: &RgbImage) -> anyhow::Result<()> {
    let bytes = inspect::encode_png(image).context("encoding the PNG")?;
    crate::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn inspect_command(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let (predictor, crop) = open(common)?;
    let unit = predictor.network().parse_unit(&args.unit)?;
    let maps = inspect::activation_maps(&predictor, &crop, &[unit], args.channels.max(1))?
        .pop()
        .context("no maps")?;
    write_png(&common.out, &inspect::maps_grid(&maps, TILE_PX))?;
    if common.json {
        let doc = serde_json::json!({
            "image": common.image,
            "backbone": predictor.network().name(),
            "unit": maps.unit,
            "map": { "rows": maps.rows, "columns": maps.columns },
            "channels_total": maps.channels_total,
            "channels": maps.channels,
            "out": common.out,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{} at {}: the {} strongest of {} channels, {} x {} maps; written to {}",
            common.image.display(),
            maps.unit,
            maps.channels.len(),
            maps.channels_total,
            maps.rows,
            maps.columns,
            common.out.display()
        );
        for c in &maps.channels {
            println!(
                "  channel {:>4}: mean {:.3}, max {:.3}",
                c.channel, c.mean_activation, c.max_activation
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain_command(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let (predictor, crop) = open(common)?;
    let class = args
        .class
        .as_deref()
        .map(|c| inspect::resolve_class(predictor.labels(), c))
        .transpose()?;
    let explanation = inspect::grad_cam(&predictor, &crop, class)?;
    write_png(&common.out, &inspect::overlay(&crop, &explanation.grid))?;
    if common.json {
        let doc = serde_json::json!({
            "image": common.image,
            "class_index": explanation.class_index,
            "label": explanation.label,
            "prob": explanation.prob,
            "grid": explanation.grid,
            "unit": explanation.unit,
            "out": common.out,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{}: {} ({}), {:.1} %; Grad-CAM at {} ({} x {}) written to {}",
            common.image.display(),
            explanation.label,
            explanation.class_index,
            explanation.prob * 100.0,
            explanation.unit,
            explanation.grid.len(),
            explanation.grid.first().map_or(0, Vec::len),
            common.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

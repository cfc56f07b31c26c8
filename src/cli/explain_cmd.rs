//! `transfer-studio explain`: Grad-CAM for one image, as a PNG overlay.

use std::process::ExitCode;

use super::args::{ImageModelArgs, open, write_png};
use crate::inspect;

/// Grad-CAM: where in the image the network found a class (default: its top-1), as a PNG
/// overlay of the network's input crop.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The class to explain, by index or label (default: the most probable).
    #[arg(long)]
    pub class: Option<String>,
    #[command(flatten)]
    pub common: ImageModelArgs,
}

impl ExplainArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let args = self;
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
}

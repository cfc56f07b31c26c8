//! `transfer-studio inspect`: the strongest activation maps of one image at a unit, as a PNG.

use std::process::ExitCode;

use anyhow::Context;

use super::args::{ImageModelArgs, open, write_png};
use crate::inspect::{self, DEFAULT_CHANNELS};

/// Side of one map's tile in the PNG.
const TILE_PX: u32 = 112;

/// The strongest activation maps of one image at a unit of the network, as a PNG grid.
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

impl InspectArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let args = self;
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
}

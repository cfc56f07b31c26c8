//! The strongest activation maps at a unit: the channels with the highest mean activation on
//! one image, colour-mapped side by side.

use candle_core::DType;
use image::RgbImage;
use serde::Serialize;

use super::colour::heat_colour;
use super::error::InspectError;
use crate::model::Unit;
use crate::predict::Predictor;

/// Channels shown by default (a 4 × 4 grid).
pub const DEFAULT_CHANNELS: usize = 16;

/// Pixels between tiles of a grid.
const GAP_PX: u32 = 4;

/// One channel's map.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelMap {
    pub channel: usize,
    pub mean_activation: f32,
    pub max_activation: f32,
    /// Row-major, `rows × columns` of the parent [`ActivationMaps`].
    #[serde(skip)]
    pub values: Vec<f32>,
}

/// The strongest channels at one unit, strongest first.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationMaps {
    pub unit: Unit,
    pub rows: usize,
    pub columns: usize,
    /// Channels the unit has (of which `channels` are shown).
    pub channels_total: usize,
    pub channels: Vec<ChannelMap>,
}

/// The units of the predictor's network that have a map (convolutional, not cut away), in order.
pub fn spatial_units(predictor: &Predictor) -> Vec<Unit> {
    let network = predictor.network();
    let cut = network.index_of(predictor.cut_after());
    network
        .units()
        .iter()
        .take(cut + 1)
        .map(|info| info.unit)
        .filter(|unit| !matches!(unit, Unit::Fc(_)))
        .collect()
}

/// The `count` strongest channels at each of `units` for one evaluation crop (one forward
/// pass), in the order of `units`.
pub fn activation_maps(
    predictor: &Predictor,
    crop: &RgbImage,
    units: &[Unit],
    count: usize,
) -> Result<Vec<ActivationMaps>, InspectError> {
    let network = predictor.network();
    let cut = predictor.cut_after();
    let mut wanted = Vec::with_capacity(units.len());
    for &unit in units {
        if !network.has_unit(unit) {
            return Err(crate::model::ModelError::UnknownUnit(format!(
                "{} has no unit {unit}",
                network.title()
            ))
            .into());
        }
        if matches!(unit, Unit::Fc(_)) {
            return Err(InspectError::NotSpatial { unit });
        }
        let index = network.index_of(unit);
        if index > network.index_of(cut) {
            return Err(InspectError::UnitCutAway { unit, cut });
        }
        wanted.push(index);
    }
    let folded = predictor.folded();
    let mut h = predictor.input_tensor(std::slice::from_ref(crop))?;
    let last = wanted.iter().copied().max().unwrap_or(0);
    let mut found = vec![None; units.len()];
    for index in 0..=last {
        h = folded.forward_units(&h, index, index + 1)?;
        for (slot, _) in wanted.iter().enumerate().filter(|(_, w)| **w == index) {
            found[slot] = Some(strongest(&h, units[slot], count)?);
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// The `count` channels of an NHWC map (batch of one) with the highest mean.
fn strongest(
    map: &candle_core::Tensor,
    unit: Unit,
    count: usize,
) -> Result<ActivationMaps, InspectError> {
    let (_, rows, columns, channels_total) = map.dims4()?;
    let flat = map.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let positions = rows * columns;
    let mut sums = vec![0f64; channels_total];
    for pixel in flat.chunks_exact(channels_total) {
        for (sum, &v) in sums.iter_mut().zip(pixel) {
            *sum += f64::from(v);
        }
    }
    let mut order: Vec<usize> = (0..channels_total).collect();
    order.sort_by(|&a, &b| sums[b].total_cmp(&sums[a]).then(a.cmp(&b)));
    let channels = order
        .into_iter()
        .take(count)
        .map(|channel| {
            let values: Vec<f32> = flat
                .iter()
                .skip(channel)
                .step_by(channels_total)
                .copied()
                .collect();
            ChannelMap {
                channel,
                mean_activation: (sums[channel] / positions as f64) as f32,
                max_activation: values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                values,
            }
        })
        .collect();
    Ok(ActivationMaps {
        unit,
        rows,
        columns,
        channels_total,
        channels,
    })
}

/// The maps as a square-ish grid of `tile_px` tiles, strongest first in reading order. Each
/// map is coloured on its own scale (0, or its minimum if lower, to its maximum) and enlarged
/// without smoothing, so that the map's real resolution shows.
pub fn maps_grid(maps: &ActivationMaps, tile_px: u32) -> RgbImage {
    let n = maps.channels.len().max(1) as u32;
    let grid_columns = (n as f64).sqrt().ceil() as u32;
    let grid_rows = n.div_ceil(grid_columns);
    let side = |tiles: u32| tiles * tile_px + (tiles + 1) * GAP_PX;
    let mut out = RgbImage::from_pixel(
        side(grid_columns),
        side(grid_rows),
        image::Rgb([24, 24, 24]),
    );
    for (i, map) in maps.channels.iter().enumerate() {
        let (tile_row, tile_column) = (i as u32 / grid_columns, i as u32 % grid_columns);
        let x0 = GAP_PX + tile_column * (tile_px + GAP_PX);
        let y0 = GAP_PX + tile_row * (tile_px + GAP_PX);
        let low = map.values.iter().copied().fold(0f32, f32::min);
        let range = map.max_activation - low;
        for ty in 0..tile_px {
            let row = (ty as usize * maps.rows) / tile_px as usize;
            for tx in 0..tile_px {
                let column = (tx as usize * maps.columns) / tile_px as usize;
                let v = map.values[row * maps.columns + column];
                let t = if range > 0.0 { (v - low) / range } else { 0.0 };
                out.put_pixel(x0 + tx, y0 + ty, heat_colour(colorous::INFERNO, t));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn strongest_channels_are_ordered_by_mean_and_keep_their_map() {
        // 2 × 2 positions, 3 channels: means 1.0, 4.0, 2.5.
        let values = [
            0f32, 4.0, 1.0, //
            2.0, 4.0, 2.0, //
            1.0, 4.0, 3.0, //
            1.0, 4.0, 4.0,
        ];
        let map = Tensor::from_slice(&values, (1, 2, 2, 3), &Device::Cpu).expect("tensor");
        let maps = strongest(&map, Unit::Stem, 2).expect("maps");
        assert_eq!((maps.rows, maps.columns, maps.channels_total), (2, 2, 3));
        let order: Vec<usize> = maps.channels.iter().map(|c| c.channel).collect();
        assert_eq!(order, [1, 2]);
        assert_eq!(maps.channels[1].values, [1.0, 2.0, 3.0, 4.0]);
        assert!((maps.channels[1].mean_activation - 2.5).abs() < 1e-6);
        assert_eq!(maps.channels[1].max_activation, 4.0);
    }

    #[test]
    fn the_grid_has_a_tile_per_map_and_shows_each_maps_peak() {
        let channel = |c: usize| ChannelMap {
            channel: c,
            mean_activation: 0.25,
            max_activation: 1.0,
            values: vec![0.0, 0.0, 0.0, 1.0],
        };
        let maps = ActivationMaps {
            unit: Unit::Stem,
            rows: 2,
            columns: 2,
            channels_total: 5,
            channels: (0..5).map(channel).collect(),
        };
        let grid = maps_grid(&maps, 10);
        // 5 maps: 3 columns × 2 rows of 10 px tiles with 4 px gaps.
        assert_eq!(grid.dimensions(), (3 * 10 + 4 * 4, 2 * 10 + 3 * 4));
        let low = grid.get_pixel(GAP_PX + 1, GAP_PX + 1);
        let high = grid.get_pixel(GAP_PX + 8, GAP_PX + 8);
        let brightness = |p: &image::Rgb<u8>| p.0.iter().map(|&v| u32::from(v)).sum::<u32>();
        assert!(brightness(high) > brightness(low) + 300, "{low:?} {high:?}");
    }
}

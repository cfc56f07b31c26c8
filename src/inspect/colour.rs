//! Colour maps and the Grad-CAM overlay.

use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// `t` in [0, 1] (clamped) on a colour map.
pub(super) fn heat_colour(map: colorous::Gradient, t: f32) -> Rgb<u8> {
    let c = map.eval_continuous(f64::from(t.clamp(0.0, 1.0)));
    Rgb([c.r, c.g, c.b])
}

/// The crop with a Grad-CAM `grid` (rows of values in [0, 1]) laid over it: the grid is
/// enlarged smoothly to the crop's size and coloured (turbo), more opaque where it is higher,
/// so that the image stays readable where the network did not look.
pub fn overlay(crop: &RgbImage, grid: &[Vec<f32>]) -> RgbImage {
    let (width, height) = crop.dimensions();
    let rows = grid.len() as u32;
    let columns = grid.first().map_or(0, |r| r.len()) as u32;
    if rows == 0 || columns == 0 {
        return crop.clone();
    }
    let flat: Vec<f32> = grid.iter().flatten().copied().collect();
    let Some(small) = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(columns, rows, flat) else {
        return crop.clone();
    };
    let heat =
        image::imageops::resize(&small, width, height, image::imageops::FilterType::Triangle);
    let mut out = crop.clone();
    for (pixel, value) in out.pixels_mut().zip(heat.pixels()) {
        let t = value.0[0].clamp(0.0, 1.0);
        let colour = heat_colour(colorous::TURBO, t);
        let alpha = 0.15 + 0.5 * t;
        for (channel, c) in pixel.0.iter_mut().zip(colour.0) {
            *channel = (f32::from(*channel) * (1.0 - alpha) + f32::from(c) * alpha).round() as u8;
        }
    }
    out
}

/// PNG bytes of an image (for writing atomically).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_is_strongest_where_the_grid_is_high() {
        let crop = RgbImage::from_pixel(32, 32, Rgb([128, 128, 128]));
        let grid = vec![vec![0.0, 0.0], vec![0.0, 1.0]];
        let out = overlay(&crop, &grid);
        assert_eq!(out.dimensions(), (32, 32));
        let change = |x, y| {
            let p = out.get_pixel(x, y);
            p.0.iter().map(|&v| (i32::from(v) - 128).abs()).sum::<i32>()
        };
        assert!(
            change(28, 28) > change(3, 3) + 60,
            "{} {}",
            change(28, 28),
            change(3, 3)
        );
    }
}

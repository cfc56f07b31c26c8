//! Bilinear resampling that reproduces Pillow's `Image.resize(..., BILINEAR)` bit for bit
//! (antialiased when shrinking, 8-bit fixed-point, two passes with rounding in between).
//!
//! The pretrained weights' reference figures were made with torchvision on Pillow images; on
//! photos whose top classes are close (chelsea.png's top two differ by 0.0006) any other resize
//! changes the ranking, so the same arithmetic is used here.

use image::RgbImage;

/// Pillow's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-pixel source window and fixed-point weights along one axis.
struct Coefficients {
    /// (first source index, number of source pixels) per output pixel.
    bounds: Vec<(usize, usize)>,
    /// Fixed-point weights, `ksize` per output pixel.
    weights: Vec<i32>,
    ksize: usize,
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `0..in_size`.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear support is 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut row = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filter_scale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, w) in row.iter_mut().enumerate().take(count) {
            *w = bilinear((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *w;
        }
        let out = &mut weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..count {
            let w = if total != 0.0 { row[x] / total } else { row[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            out[x] = if fixed < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coefficients {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width` x `height` exactly as Pillow's bilinear filter does.
pub fn resize_bilinear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width.max(1) as usize, height.max(1) as usize);
    if in_w == out_w && in_h == out_h {
        return src.clone();
    }
    let horizontal = coefficients(in_w, out_w);
    let vertical = coefficients(in_h, out_h);
    let half = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass over only the source rows the vertical pass will read.
    let (first_row, rows, stage, stage_w) = if in_w != out_w {
        let first = vertical.bounds.first().map_or(0, |b| b.0);
        let last = vertical.bounds.last().map_or(in_h, |b| b.0 + b.1);
        let rows = last - first;
        let mut stage = vec![0u8; rows * out_w * 3];
        let src_raw = src.as_raw();
        for (y, out_row) in stage.chunks_exact_mut(out_w * 3).enumerate() {
            let in_row = &src_raw[(first + y) * in_w * 3..(first + y + 1) * in_w * 3];
            for (xx, &(xmin, count)) in horizontal.bounds.iter().enumerate() {
                let k = &horizontal.weights[xx * horizontal.ksize..][..count];
                let mut acc = [half; 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &in_row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i64::from(p[c]) * i64::from(w);
                    }
                }
                for c in 0..3 {
                    out_row[xx * 3 + c] = clip8(acc[c]);
                }
            }
        }
        (first, rows, stage, out_w)
    } else {
        (0, in_h, src.as_raw().clone(), in_w)
    };
    debug_assert_eq!(stage.len(), rows * stage_w * 3);

    if in_h == out_h {
        return RgbImage::from_raw(stage_w as u32, rows as u32, stage)
            .unwrap_or_else(|| RgbImage::new(stage_w as u32, rows as u32));
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    let row_len = stage_w * 3;
    for (yy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, count) = vertical.bounds[yy];
        let ymin = ymin - first_row;
        let k = &vertical.weights[yy * vertical.ksize..][..count];
        for (i, dst) in out_row.iter_mut().enumerate() {
            let mut acc = half;
            for (y, &w) in k.iter().enumerate() {
                acc += i64::from(stage[(ymin + y) * row_len + i]) * i64::from(w);
            }
            *dst = clip8(acc);
        }
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, out)
        .unwrap_or_else(|| RgbImage::new(out_w as u32, out_h as u32))
}

/// torchvision's `Resize(short_side_px)`: the shorter side becomes `short_side_px`, the longer
/// one `int(short_side_px * long / short)` (truncated, as torchvision does).
pub fn resize_shorter_side(src: &RgbImage, short_side_px: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    let (short, long) = (w.min(h).max(1), w.max(h));
    let new_long = ((u64::from(short_side_px) * u64::from(long)) / u64::from(short)).max(1) as u32;
    let (new_w, new_h) = if w <= h {
        (short_side_px, new_long)
    } else {
        (new_long, short_side_px)
    };
    resize_bilinear(src, new_w, new_h)
}

/// Python's `round()` of `x / 2` (round half to even), as torchvision's `CenterCrop` uses.
fn half_round_even(x: u32) -> u32 {
    let floor = x / 2;
    if x.is_multiple_of(2) || floor.is_multiple_of(2) {
        floor
    } else {
        floor + 1
    }
}

/// torchvision's `CenterCrop(size_px)` for images at least `size_px` on each side; smaller
/// images are first padded with black, as torchvision does.
pub fn center_crop(src: &RgbImage, size_px: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    if w < size_px || h < size_px {
        let (pw, ph) = (w.max(size_px), h.max(size_px));
        let mut padded = RgbImage::new(pw, ph);
        let (left, top) = ((pw - w) / 2, (ph - h) / 2);
        image::imageops::replace(&mut padded, src, i64::from(left), i64::from(top));
        return center_crop(&padded, size_px);
    }
    let left = half_round_even(w - size_px);
    let top = half_round_even(h - size_px);
    image::imageops::crop_imm(src, left, top, size_px, size_px).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_of_halves() {
        assert_eq!(half_round_even(160), 80);
        assert_eq!(half_round_even(1), 0); // round(0.5) == 0
        assert_eq!(half_round_even(3), 2); // round(1.5) == 2
        assert_eq!(half_round_even(5), 2); // round(2.5) == 2
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for (w, h) in [(10, 7), (80, 50), (37, 5), (3, 23)] {
            let out = resize_bilinear(&src, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]), "{w}x{h}");
        }
    }

    #[test]
    fn shorter_side_truncates_the_long_side_like_torchvision() {
        let src = RgbImage::new(451, 300);
        assert_eq!(resize_shorter_side(&src, 256).dimensions(), (384, 256));
        let src = RgbImage::new(300, 451);
        assert_eq!(resize_shorter_side(&src, 256).dimensions(), (256, 384));
    }

    #[test]
    fn downscaling_averages_like_pillow() {
        // 4 -> 2 pixels: the triangle filter is stretched to a support of 2 source pixels
        // around each output centre, clipped at the border and renormalised.
        let mut src = RgbImage::new(4, 1);
        for (x, v) in [0u8, 100, 200, 255].iter().enumerate() {
            src.put_pixel(x as u32, 0, image::Rgb([*v, *v, *v]));
        }
        let out = resize_bilinear(&src, 2, 1);
        // Values from Pillow 13.0: Image.resize((2, 1), BILINEAR) on the same row.
        let got: Vec<u8> = out.pixels().map(|p| p[0]).collect();
        assert_eq!(got, vec![71, 209]);
    }

    #[test]
    fn center_crop_pads_small_images() {
        let src = RgbImage::from_pixel(3, 5, image::Rgb([9, 9, 9]));
        let out = center_crop(&src, 4);
        assert_eq!(out.dimensions(), (4, 4));
    }
}

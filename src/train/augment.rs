//! Training crops: random resized crop + flip (evaluation crops are
//! [`crate::data::preprocess::Preprocessing::eval_crop`]).
//!
//! Every sample's randomness comes from its own generator seeded by (run seed, epoch, index),
//! so batches are identical from run to run however the work is spread over threads.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::resize::{resize_bilinear, resize_shorter_side};

/// Smallest share of the image's area a random crop keeps.
pub const MIN_CROP_AREA: f64 = 0.25;
/// Aspect-ratio range of random crops (before resizing to a square).
pub const CROP_ASPECT: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// The stream of an epoch's dropout masks (apart from every sample's own crop stream).
pub const DROPOUT_STREAM: usize = usize::MAX;

/// A generator for one sample of one epoch.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(crate::seed::mix2(seed, epoch as u64, index as u64))
}

/// A training view: a random crop covering 25–100 % of the area with an aspect ratio in
/// [3/4, 4/3], resized to `size_px` square, flipped horizontally half the time.
pub fn train_crop(image: &RgbImage, size_px: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let area = w * h;
    let mut window = None;
    for _ in 0..10 {
        let target = area * rng.random_range(MIN_CROP_AREA..=1.0);
        let log_ratio = rng.random_range(CROP_ASPECT.0.ln()..=CROP_ASPECT.1.ln());
        let ratio = log_ratio.exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
            let x = rng.random_range(0.0..=(w - cw)).floor();
            let y = rng.random_range(0.0..=(h - ch)).floor();
            window = Some((x as u32, y as u32, cw as u32, ch as u32));
            break;
        }
    }
    // Fallback, as torchvision: the largest centred square-ish crop.
    let (x, y, cw, ch) = window.unwrap_or_else(|| {
        let side = w.min(h) as u32;
        (
            (image.width() - side) / 2,
            (image.height() - side) / 2,
            side,
            side,
        )
    });
    let crop = image::imageops::crop_imm(image, x, y, cw.max(1), ch.max(1)).to_image();
    let mut out = resize_bilinear(&crop, size_px, size_px);
    if rng.random_bool(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// Enlarges images whose shorter side is below `short_side_px` (tiny datasets such as 28 px
/// digits), leaving others untouched.
pub fn at_least(image: &RgbImage, short_side_px: u32) -> std::borrow::Cow<'_, RgbImage> {
    if image.width().min(image.height()) < short_side_px {
        std::borrow::Cow::Owned(resize_shorter_side(image, short_side_px))
    } else {
        std::borrow::Cow::Borrowed(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_crops_are_square_and_reproducible() {
        let mut img = RgbImage::new(40, 30);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([x as u8 * 6, y as u8 * 8, 7]);
        }
        let a = train_crop(&img, 16, &mut sample_rng(1, 2, 3));
        let b = train_crop(&img, 16, &mut sample_rng(1, 2, 3));
        let c = train_crop(&img, 16, &mut sample_rng(1, 2, 4));
        assert_eq!(a.dimensions(), (16, 16));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

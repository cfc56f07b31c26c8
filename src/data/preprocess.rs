//! Network input preprocessing, as the bundled weights were trained and evaluated with:
//! RGB, shorter side resized to `resize_px` (bilinear, antialiased), centre crop of
//! `image_size_px`, `x / 255`, then `(x - 0.5) / 0.5` (range [-1, 1]).
//!
//! ImageNet's mean/std would be wrong for these weights: it inflates the stem's input variance
//! about five-fold.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::resize;

/// The resolution the backbone was pretrained at.
pub const PRETRAINED_IMAGE_SIZE_PX: u32 = 224;

/// How an image becomes a network input. Saved with every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Side of the square crop the network sees.
    pub image_size_px: u32,
    /// Shorter side after resizing, before the centre crop (256 for 224: the usual 0.875 crop).
    pub resize_px: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Preprocessing {
    fn default() -> Self {
        Self::for_size(PRETRAINED_IMAGE_SIZE_PX)
    }
}

impl Preprocessing {
    /// Standard evaluation preprocessing for a crop of `image_size_px`.
    pub fn for_size(image_size_px: u32) -> Self {
        let size = image_size_px.max(1);
        Self {
            image_size_px: size,
            resize_px: (size * 8).div_ceil(7).max(size),
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }

    /// torchvision's ImageNet preprocessing for a crop of `image_size_px`: the same resize
    /// rule, ImageNet's mean and standard deviation.
    pub fn imagenet(image_size_px: u32) -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            ..Self::for_size(image_size_px)
        }
    }

    /// Whether a network can use these values (they come from files: a saved model, a hub
    /// `config.json`): a crop of 16–1024 px, a resize side from the crop to 4× it, finite
    /// means and positive standard deviations.
    pub fn validate(&self) -> Result<(), String> {
        let size = self.image_size_px;
        if !(16..=1024).contains(&size) {
            return Err(format!("image size {size} px is outside 16-1024"));
        }
        if !(size..=size.saturating_mul(4)).contains(&self.resize_px) {
            return Err(format!(
                "resize side {} px does not fit a {size} px crop",
                self.resize_px
            ));
        }
        if !self.mean.iter().all(|m| m.is_finite()) {
            return Err("the mean is not a finite number".into());
        }
        if !self.std.iter().all(|s| s.is_finite() && *s > 1e-6) {
            return Err("the standard deviation must be a positive number".into());
        }
        Ok(())
    }

    /// Resize + centre crop: the square image the network sees at evaluation. Images already
    /// at the resize side (cached that way) are only cropped.
    pub fn eval_crop(&self, image: &RgbImage) -> RgbImage {
        if image.width().min(image.height()) == self.resize_px {
            return resize::center_crop(image, self.image_size_px);
        }
        let resized = resize::resize_shorter_side(image, self.resize_px);
        resize::center_crop(&resized, self.image_size_px)
    }

    /// Writes a square `image_size_px` crop as normalised HWC floats into `out`.
    pub fn normalize_into(&self, crop: &RgbImage, out: &mut [f32]) {
        for (dst, px) in out.chunks_exact_mut(3).zip(crop.pixels()) {
            for c in 0..3 {
                // Same float operations as torchvision: divide, subtract, divide.
                dst[c] = (f32::from(px[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
    }

    /// Normalises square crops of `image_size_px` into an NHWC batch tensor.
    pub fn batch_tensor(&self, crops: &[RgbImage], device: &Device) -> candle_core::Result<Tensor> {
        let side = self.image_size_px as usize;
        let per_image = side * side * 3;
        let mut data = vec![0f32; crops.len() * per_image];
        for (crop, out) in crops.iter().zip(data.chunks_exact_mut(per_image)) {
            if crop.dimensions() != (self.image_size_px, self.image_size_px) {
                candle_core::bail!("crop is {:?}, expected {side}x{side}", crop.dimensions());
            }
            self.normalize_into(crop, out);
        }
        Tensor::from_vec(data, (crops.len(), side, side, 3), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_sizes_follow_the_0875_rule() {
        assert_eq!(Preprocessing::for_size(224).resize_px, 256);
        assert_eq!(Preprocessing::for_size(32).resize_px, 37);
    }

    #[test]
    fn normalisation_maps_to_minus_one_one() {
        let p = Preprocessing::for_size(1);
        let mut out = [0f32; 3];
        p.normalize_into(
            &RgbImage::from_pixel(1, 1, image::Rgb([0, 255, 51])),
            &mut out,
        );
        assert_eq!(out[0], -1.0);
        assert_eq!(out[1], 1.0);
        assert!((out[2] + 0.6).abs() < 1e-6);
    }
}

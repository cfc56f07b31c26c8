//! Image decoding that never panics on bad input: every failure is a typed reason a user can read.
//!
//! All images become 8-bit RGB: grey, 16-bit and palette images are converted, EXIF orientation
//! is applied, and transparent pixels are composited over [`ALPHA_BACKGROUND`].

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Transparent pixels are composited over white, the background that clip art and logos with
/// alpha are drawn for.
pub const ALPHA_BACKGROUND: [u8; 3] = [255, 255, 255];

pub use super::limits::{MAX_DECODE_BYTES, MAX_SIDE_PX};

/// File extensions treated as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Whether a path has one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Why an image could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a supported image (jpeg, png, bmp, gif, webp, tiff)")]
    UnknownFormat,
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PX);
    limits.max_image_height = Some(MAX_SIDE_PX);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

fn map_image_error(error: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    match error {
        E::Limits(e) => DecodeError::TooLarge(e.to_string()),
        E::Unsupported(e) => match e.kind() {
            image::error::UnsupportedErrorKind::Format(_) => DecodeError::UnknownFormat,
            _ => DecodeError::Corrupt(e.to_string()),
        },
        E::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("file ends early".into())
        }
        E::IoError(e) => DecodeError::Io(e.to_string()),
        other => DecodeError::Corrupt(other.to_string().trim().to_owned()),
    }
}

/// Decodes an image file into upright 8-bit RGB.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    decode_rgb_bytes(&bytes)
}

/// Decodes image bytes (format detected from the content) into upright 8-bit RGB.
pub fn decode_rgb_bytes(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Io(e.to_string()))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    reader.limits(limits());
    let format = reader.format();
    if format == Some(ImageFormat::Tiff) {
        super::variants::check_tiff_text_fields(bytes).map_err(DecodeError::TooLarge)?;
    }
    // Decoders are third-party code: a panic inside one must not take the app down, nor
    // print panic text; the file is reported as unreadable.
    let decoded = crate::quiet_panic::catch_quietly(move || {
        decode_with_image_crate(reader)
            .or_else(|error| decode_refused_variant(format, bytes).ok_or(error))
    })
    .map_err(|_| DecodeError::Corrupt("the decoder failed on this file".into()))??;
    Ok(to_rgb(decoded))
}

/// Valid variants the image crate refuses, read another way: TIFFs from their raw samples,
/// GIFs without a colour table with a grey one. `None`: not one of them (the crate's error
/// stands).
fn decode_refused_variant(format: Option<ImageFormat>, bytes: &[u8]) -> Option<DynamicImage> {
    match format? {
        ImageFormat::Tiff => super::variants::decode_tiff(bytes)
            .ok()
            .map(DynamicImage::ImageRgb8),
        ImageFormat::Gif => {
            let patched = super::variants::with_grey_palette(bytes)?;
            let mut reader = ImageReader::with_format(
                std::io::Cursor::new(patched.as_slice()),
                ImageFormat::Gif,
            );
            reader.limits(limits());
            decode_with_image_crate(reader).ok()
        }
        _ => None,
    }
}

fn decode_with_image_crate(
    reader: ImageReader<std::io::Cursor<&[u8]>>,
) -> Result<DynamicImage, DecodeError> {
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    // Not every decoder holds to `max_alloc` (GIF's canvas did not): the size the
    // header announces is checked here, before any pixel is allocated.
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(
            "the image has no pixels (0 wide or high)".into(),
        ));
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(DecodeError::TooLarge(format!(
            "{width} x {height} pixels need more than {} MiB",
            MAX_DECODE_BYTES >> 20
        )));
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// Converts any colour type to RGB, compositing alpha over [`ALPHA_BACKGROUND`].
pub fn to_rgb(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut out = RgbImage::new(width, height);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(src[3]);
        for c in 0..3 {
            let blended =
                u32::from(src[c]) * alpha + u32::from(ALPHA_BACKGROUND[c]) * (255 - alpha);
            dst[c] = ((blended + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).expect("encode");
        bytes.into_inner()
    }

    #[test]
    fn alpha_is_composited_on_white() {
        let mut rgba = RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let bytes = encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
        let rgb = decode_rgb_bytes(&bytes).expect("decode");
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn sixteen_bit_grey_becomes_rgb() {
        let grey =
            image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(3, 2, image::Luma([65535]));
        let bytes = encode(&DynamicImage::ImageLuma16(grey), ImageFormat::Png);
        let rgb = decode_rgb_bytes(&bytes).expect("decode");
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(2, 1).0, [255, 255, 255]);
    }

    #[test]
    fn bad_inputs_give_reasons() {
        assert_eq!(decode_rgb_bytes(b""), Err(DecodeError::Empty));
        assert_eq!(
            decode_rgb_bytes(b"hello, this is text"),
            Err(DecodeError::UnknownFormat)
        );
        let png = encode(
            &DynamicImage::ImageRgb8(RgbImage::new(64, 64)),
            ImageFormat::Png,
        );
        let truncated = &png[..png.len() / 2];
        assert!(matches!(
            decode_rgb_bytes(truncated),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn oversized_dimensions_are_refused_before_decoding() {
        // A PNG header claiming 30000 x 30000 pixels.
        let png = encode(
            &DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
            ImageFormat::Png,
        );
        let mut bomb = png.clone();
        // IHDR width/height live at bytes 16..24; the CRC becomes wrong, which the limit check
        // must still catch first or report as corrupt; both are refusals.
        bomb[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        assert!(decode_rgb_bytes(&bomb).is_err());
    }
}

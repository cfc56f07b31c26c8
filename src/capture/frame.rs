//! Camera frames as they come off the device (MJPEG or YUYV 4:2:2) and their decoding to RGB.
//! The live camera, a recorded stream and the tests all go through this one code.

use image::RgbImage;

use super::error::CaptureError;
use super::jpeg_tables::standard_dht_segment;

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PixelLayout {
    /// One JPEG image per frame, usually without Huffman tables (the MJPEG convention).
    Mjpeg,
    /// Packed 4:2:2: Y0 U Y1 V for each pair of pixels (BT.601, video range).
    Yuyv,
}

impl PixelLayout {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
        }
    }
}

/// One frame's bytes, owned (the device's buffer is handed back at once).
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub layout: PixelLayout,
    pub width_px: u32,
    pub height_px: u32,
    /// Bytes per row for YUYV (at least `2 × width`); unused for MJPEG.
    pub stride_bytes: usize,
    pub bytes: Vec<u8>,
}

impl RawFrame {
    /// A YUYV frame with rows packed tightly.
    pub fn yuyv(width_px: u32, height_px: u32, bytes: Vec<u8>) -> Self {
        Self {
            layout: PixelLayout::Yuyv,
            width_px,
            height_px,
            stride_bytes: width_px as usize * 2,
            bytes,
        }
    }

    /// An MJPEG frame (its size is read from the JPEG when decoded).
    pub fn mjpeg(bytes: Vec<u8>) -> Self {
        Self {
            layout: PixelLayout::Mjpeg,
            width_px: 0,
            height_px: 0,
            stride_bytes: 0,
            bytes,
        }
    }

    /// The frame as RGB.
    pub fn decode(&self) -> Result<RgbImage, CaptureError> {
        match self.layout {
            PixelLayout::Mjpeg => {
                let jpeg = complete_jpeg(&self.bytes)?;
                let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                    .map_err(|e| CaptureError::BadFrame(format!("MJPEG: {e}")))?;
                Ok(image.into_rgb8())
            }
            PixelLayout::Yuyv => yuyv_to_rgb(
                &self.bytes,
                self.width_px,
                self.height_px,
                self.stride_bytes,
            ),
        }
    }
}

/// The JPEG with the standard Huffman tables put in before the scan when the frame has none
/// (borrowed unchanged when it has them). Errors on bytes that are not a JPEG.
pub fn complete_jpeg(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CaptureError> {
    let bad = |why: &str| CaptureError::BadFrame(format!("MJPEG: {why}"));
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(bad("no JPEG start marker"));
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF runs) may precede a marker.
        while at < bytes.len() && bytes[at] == 0xFF && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if at + 4 > bytes.len() || bytes[at] != 0xFF {
            return Err(bad("truncated before the image data"));
        }
        match bytes[at + 1] {
            0xC4 => return Ok(std::borrow::Cow::Borrowed(bytes)),
            0xDA => {
                let mut out = Vec::with_capacity(bytes.len() + 432);
                out.extend_from_slice(&bytes[..at]);
                out.extend_from_slice(&standard_dht_segment());
                out.extend_from_slice(&bytes[at..]);
                return Ok(std::borrow::Cow::Owned(out));
            }
            0xD9 => return Err(bad("the image ends before its data")),
            _ => {
                let length = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
                if length < 2 {
                    return Err(bad("a segment with a bad length"));
                }
                at += 2 + length;
            }
        }
    }
}

/// YUYV 4:2:2 (BT.601 video range, as UVC cameras send it) to RGB.
pub fn yuyv_to_rgb(
    bytes: &[u8],
    width_px: u32,
    height_px: u32,
    stride_bytes: usize,
) -> Result<RgbImage, CaptureError> {
    let (w, h) = (width_px as usize, height_px as usize);
    if w == 0 || h == 0 || w % 2 != 0 || stride_bytes < 2 * w {
        return Err(CaptureError::BadFrame(format!(
            "YUYV: a {w}×{h} frame with {stride_bytes} bytes per row"
        )));
    }
    let needed = stride_bytes * (h - 1) + 2 * w;
    if bytes.len() < needed {
        return Err(CaptureError::BadFrame(format!(
            "YUYV: {} bytes for a {w}×{h} frame that needs {needed}",
            bytes.len()
        )));
    }
    let mut out = vec![0u8; w * h * 3];
    for (row, rgb_row) in out.chunks_exact_mut(w * 3).enumerate() {
        let src = &bytes[row * stride_bytes..row * stride_bytes + 2 * w];
        for (pair, rgb) in src.chunks_exact(4).zip(rgb_row.chunks_exact_mut(6)) {
            let (u, v) = (pair[1] as i32 - 128, pair[3] as i32 - 128);
            put_rgb(pair[0], u, v, &mut rgb[..3]);
            put_rgb(pair[2], u, v, &mut rgb[3..]);
        }
    }
    RgbImage::from_raw(width_px, height_px, out)
        .ok_or_else(|| CaptureError::BadFrame("YUYV: size mismatch".into()))
}

/// One pixel, integer BT.601 (video range) in 8.8 fixed point.
fn put_rgb(y: u8, u: i32, v: i32, rgb: &mut [u8]) {
    let c = 298 * (y as i32 - 16);
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    rgb[0] = clamp(c + 409 * v);
    rgb[1] = clamp(c - 100 * u - 208 * v);
    rgb[2] = clamp(c + 516 * u);
}

/// RGB to YUYV 4:2:2 (the inverse of [`yuyv_to_rgb`], chroma averaged over each pair): how a
/// camera would send `image`. For tests and recorded streams.
pub fn rgb_to_yuyv(image: &RgbImage) -> Vec<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut out = Vec::with_capacity(w * h * 2);
    for row in image.as_raw().chunks_exact(w * 3).take(h) {
        for pair in row.chunks_exact(6) {
            let yuv = |p: &[u8]| {
                let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
                let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
                let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
                (y, u, v)
            };
            let (y0, u0, v0) = yuv(&pair[..3]);
            let (y1, u1, v1) = yuv(&pair[3..]);
            let byte = |x: f32| x.round().clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[
                byte(y0),
                byte((u0 + u1) / 2.0),
                byte(y1),
                byte((v0 + v1) / 2.0),
            ]);
        }
    }
    out
}

/// `image` as a camera's MJPEG frame: baseline JPEG with the Huffman tables taken out.
pub fn rgb_to_mjpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, CaptureError> {
    let jpeg = encode_jpeg(image, quality)?;
    Ok(strip_huffman_tables(&jpeg))
}

/// Baseline JPEG of `image`.
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, CaptureError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .map_err(|e| CaptureError::BadFrame(format!("JPEG encoding: {e}")))?;
    Ok(out)
}

/// The JPEG without its DHT segments (what MJPEG cameras send).
fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            break;
        }
        let length = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + length]);
        }
        at += 2 + length;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        })
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn yuyv_round_trips_within_a_few_levels() {
        let image = gradient(64, 48);
        let frame = RawFrame::yuyv(64, 48, rgb_to_yuyv(&image));
        let back = frame.decode().expect("decode");
        assert_eq!(back.dimensions(), (64, 48));
        assert!(mean_abs_diff(&image, &back) < 3.0);
    }

    #[test]
    fn yuyv_rows_with_padding_are_read_at_their_stride() {
        let image = gradient(32, 8);
        let packed = rgb_to_yuyv(&image);
        let mut padded = Vec::new();
        for row in packed.chunks_exact(64) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&[0xEE; 16]);
        }
        let frame = RawFrame {
            stride_bytes: 80,
            ..RawFrame::yuyv(32, 8, padded)
        };
        let back = frame.decode().expect("decode");
        assert!(mean_abs_diff(&image, &back) < 3.0);
    }

    #[test]
    fn a_short_yuyv_frame_is_an_error_not_a_panic() {
        let frame = RawFrame::yuyv(64, 48, vec![0; 100]);
        assert!(matches!(frame.decode(), Err(CaptureError::BadFrame(_))));
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_and_is_saved_complete() {
        let image = gradient(80, 60);
        let mjpeg = rgb_to_mjpeg(&image, 90).expect("encode");
        assert!(
            !mjpeg.windows(2).any(|w| w == [0xFF, 0xC4]),
            "tables left in"
        );
        let back = RawFrame::mjpeg(mjpeg.clone()).decode().expect("decode");
        assert!(mean_abs_diff(&image, &back) < 4.0);
        let complete = complete_jpeg(&mjpeg).expect("complete");
        assert!(complete.windows(2).any(|w| w == [0xFF, 0xC4]));
        let full = encode_jpeg(&image, 90).expect("encode");
        assert!(matches!(
            complete_jpeg(&full),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
    }

    #[test]
    fn garbage_and_truncated_mjpeg_are_errors() {
        assert!(RawFrame::mjpeg(vec![1, 2, 3, 4, 5]).decode().is_err());
        let mjpeg = rgb_to_mjpeg(&gradient(16, 16), 80).expect("encode");
        assert!(RawFrame::mjpeg(mjpeg[..40].to_vec()).decode().is_err());
    }
}

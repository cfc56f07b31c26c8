//! Where frames come from: a camera, or a recorded stream played back at the camera's pace.

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::CaptureError;
use super::frame::RawFrame;

/// A source of frames; `next_frame` blocks until one is there.
pub trait FrameSource: Send {
    /// The next frame, or `None` when a recorded stream has ended.
    fn next_frame(&mut self) -> Result<Option<RawFrame>, CaptureError>;
    /// The format in words ("MJPEG 640×480").
    fn describe(&self) -> String;
}

/// A camera (or a recorded file) the user can pick.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CameraInfo {
    /// What `open` takes: a device path (`/dev/video0`) or a recorded file.
    pub id: String,
    pub name: String,
}

/// Frames played back in order at `fps`, from the start again after the last when looping.
pub struct RecordedStream {
    frames: Vec<RawFrame>,
    next: usize,
    period: Duration,
    due: Option<Instant>,
    looping: bool,
    name: String,
}

impl std::fmt::Debug for RecordedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedStream").finish_non_exhaustive()
    }
}

impl RecordedStream {
    pub fn new(frames: Vec<RawFrame>, fps: f64, looping: bool, name: String) -> Self {
        Self {
            frames,
            next: 0,
            period: Duration::from_secs_f64(1.0 / fps.max(0.1)),
            due: None,
            looping,
            name,
        }
    }

    /// A `.mjpeg` file (JPEG images one after another, as cameras and `ffmpeg -f mjpeg` write
    /// them), looped at `fps`.
    pub fn open_mjpeg_file(path: &Path, fps: f64) -> Result<Self, CaptureError> {
        let bytes = std::fs::read(path).map_err(|e| CaptureError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let frames: Vec<RawFrame> = split_mjpeg(&bytes)
            .into_iter()
            .map(|f| RawFrame::mjpeg(f.to_vec()))
            .collect();
        if frames.is_empty() {
            return Err(CaptureError::BadFrame(format!(
                "{} holds no JPEG frame",
                path.display()
            )));
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self::new(frames, fps, true, name))
    }

    /// A raw YUYV stream of `width × height` frames packed one after another.
    pub fn from_yuyv_bytes(bytes: &[u8], width_px: u32, height_px: u32, fps: f64) -> Self {
        let size = width_px as usize * height_px as usize * 2;
        let frames = bytes
            .chunks_exact(size.max(1))
            .map(|f| RawFrame::yuyv(width_px, height_px, f.to_vec()))
            .collect();
        Self::new(frames, fps, false, "YUYV stream".into())
    }
}

impl FrameSource for RecordedStream {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        if self.next >= self.frames.len() {
            if !self.looping || self.frames.is_empty() {
                return Ok(None);
            }
            self.next = 0;
        }
        // Paced like a camera: a frame is due one period after the last.
        let now = Instant::now();
        let due = self.due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        self.due = Some(due.max(now) + self.period);
        self.next += 1;
        Ok(Some(self.frames[self.next - 1].clone()))
    }

    fn describe(&self) -> String {
        match self.frames.first() {
            Some(f) => format!("{} ({}, recorded)", self.name, f.layout.name()),
            None => self.name.clone(),
        }
    }
}

/// The JPEG images in a byte stream, each from its start marker to its end marker. Markers
/// inside a header segment (an EXIF thumbnail's) are skipped; bytes between images are ignored.
pub fn split_mjpeg(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = find_start(bytes, at) {
        match jpeg_end(bytes, start) {
            Some(end) => {
                out.push(&bytes[start..end]);
                at = end;
            }
            None => break,
        }
    }
    out
}

fn find_start(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(2))
        .find(|&i| bytes[i] == 0xFF && bytes[i + 1] == 0xD8 && bytes[i + 2] == 0xFF)
}

/// The index just past the end marker of the JPEG starting at `start`.
fn jpeg_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 2;
    // Header segments, each with its length, up to the start of scan.
    loop {
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xD9 {
            return Some(at + 2);
        }
        let length = u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]) as usize;
        at += 2 + length;
        if marker == 0xDA {
            break;
        }
    }
    // Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker, or
    // the next marker (another scan of a progressive image, or the end).
    while at + 1 < bytes.len() {
        if bytes[at] == 0xFF {
            match bytes[at + 1] {
                0xD9 => return Some(at + 2),
                0x00 | 0xD0..=0xD7 | 0xFF => {}
                _ => {
                    let length = u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]);
                    at += 2 + length as usize;
                    continue;
                }
            }
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::frame::{encode_jpeg, rgb_to_mjpeg};

    #[test]
    fn a_stream_of_jpegs_splits_into_its_frames_even_with_exif_thumbnails() {
        let image =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 9]));
        let a = rgb_to_mjpeg(&image, 80).expect("encode");
        let thumb = encode_jpeg(&image, 50).expect("encode");
        // A JPEG with an APP1 segment holding a whole JPEG (end marker included).
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE1];
        b.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        b.extend_from_slice(&thumb);
        b.extend_from_slice(&a[2..]);
        let mut stream = a.clone();
        stream.extend_from_slice(b"junk between frames");
        stream.extend_from_slice(&b);
        stream.extend_from_slice(&a);
        let frames = split_mjpeg(&stream);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], &a[..]);
        assert_eq!(frames[1], &b[..]);
        for f in frames {
            RawFrame::mjpeg(f.to_vec())
                .decode()
                .expect("each frame decodes");
        }
    }

    #[test]
    fn a_recorded_stream_is_paced_and_ends_unless_looping() {
        let frames = vec![RawFrame::mjpeg(vec![1]); 3];
        let mut once = RecordedStream::new(frames.clone(), 100.0, false, "t".into());
        let start = Instant::now();
        let mut n = 0;
        while once.next_frame().expect("frame").is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(start.elapsed() >= Duration::from_millis(19), "not paced");
        let mut looped = RecordedStream::new(frames, 1000.0, true, "t".into());
        for _ in 0..7 {
            assert!(looped.next_frame().expect("frame").is_some());
        }
    }
}

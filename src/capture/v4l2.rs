//! Cameras on Linux through V4L2 (`linuxvideo`: plain ioctls, nothing to build in C).

use std::path::Path;

use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, CapabilityFlags, Device};

use super::error::CaptureError;
use super::frame::{PixelLayout, RawFrame};
use super::source::{CameraInfo, FrameSource};

/// The size asked of a camera: enough for 224-px crops, small enough for ≥ 10 frames/s.
const WANT_WIDTH_PX: u32 = 640;
const WANT_HEIGHT_PX: u32 = 480;

/// Every capture device under `/dev`, by path and card name. Devices that cannot be opened
/// (busy, no permission) are listed with the reason in their name.
pub fn list_cameras() -> Vec<CameraInfo> {
    let Ok(devices) = linuxvideo::list() else {
        return Vec::new();
    };
    let mut out: Vec<CameraInfo> = devices
        .filter_map(Result::ok)
        .filter(|d| {
            d.capabilities().is_ok_and(|c| {
                c.device_capabilities()
                    .contains(CapabilityFlags::VIDEO_CAPTURE)
            })
        })
        .filter(|d| pick_layout(d).is_some())
        .filter_map(|d| {
            let path = d.path().ok()?;
            let card = d.capabilities().ok()?.card().to_owned();
            Some(CameraInfo {
                id: path.display().to_string(),
                name: format!("{card} ({})", path.display()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// MJPEG where the camera has it (small frames, high rates), else YUYV.
fn pick_layout(device: &Device) -> Option<(PixelFormat, PixelLayout)> {
    let formats: Vec<PixelFormat> = device
        .formats(BufType::VIDEO_CAPTURE)
        .filter_map(Result::ok)
        .map(|f| f.pixel_format())
        .collect();
    [
        (PixelFormat::MJPG, PixelLayout::Mjpeg),
        (PixelFormat::JPEG, PixelLayout::Mjpeg),
        (PixelFormat::YUYV, PixelLayout::Yuyv),
    ]
    .into_iter()
    .find(|(f, _)| formats.contains(f))
}

/// A streaming V4L2 camera.
pub struct V4l2Camera {
    stream: ReadStream,
    layout: PixelLayout,
    width_px: u32,
    height_px: u32,
    stride_bytes: usize,
    name: String,
}

impl std::fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera").finish_non_exhaustive()
    }
}

impl V4l2Camera {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let io = |e: std::io::Error| CaptureError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let device = Device::open(path).map_err(io)?;
        let name = device.capabilities().map_err(io)?.card().to_owned();
        let (format, layout) = pick_layout(&device).ok_or_else(|| {
            CaptureError::Unsupported(format!("{name} sends neither MJPEG nor YUYV frames"))
        })?;
        let capture = device
            .video_capture(PixFormat::new(WANT_WIDTH_PX, WANT_HEIGHT_PX, format))
            .map_err(io)?;
        let negotiated = capture.format();
        let (width_px, height_px) = (negotiated.width(), negotiated.height());
        let stride_bytes = (negotiated.bytes_per_line() as usize).max(width_px as usize * 2);
        let stream = capture.into_stream().map_err(io)?;
        Ok(Self {
            stream,
            layout,
            width_px,
            height_px,
            stride_bytes,
            name,
        })
    }
}

impl FrameSource for V4l2Camera {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        let bytes = self
            .stream
            .dequeue(|buffer| Ok(buffer.to_vec()))
            .map_err(|e| CaptureError::Device(e.to_string()))?;
        Ok(Some(RawFrame {
            layout: self.layout,
            width_px: self.width_px,
            height_px: self.height_px,
            stride_bytes: self.stride_bytes,
            bytes,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} {}×{})",
            self.name,
            self.layout.name(),
            self.width_px,
            self.height_px
        )
    }
}

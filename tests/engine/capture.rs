//! The capture pipeline fed from generated camera byte streams (MJPEG and YUYV), through the
//! same reading, decoding and writing code a camera uses; a v4l2loopback device where the
//! module is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{Rgb, RgbImage};
use transfer_studio::capture::frame::{rgb_to_mjpeg, rgb_to_yuyv};
use transfer_studio::capture::session::record_frames;
use transfer_studio::capture::{Frame, RecordedStream, live, open_source};
use transfer_studio::predict::Predictor;

const W: u32 = 64;
const H: u32 = 48;

/// Frame `i`: a gradient whose blue channel says which frame it is.
fn scene(i: u32) -> RgbImage {
    RgbImage::from_fn(W, H, |x, y| {
        Rgb([(x * 4) as u8, (y * 5) as u8, (i * 20) as u8])
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

/// Every saved file is a complete JPEG of the right size that looks like one of the scenes;
/// nothing else (no temporary file) is in the folder.
fn check_saved(dir: &Path, saved: &[PathBuf], scenes: &[RgbImage]) {
    let on_disk = std::fs::read_dir(dir).expect("list").count();
    assert_eq!(on_disk, saved.len(), "the folder holds other files");
    for path in saved {
        assert!(path.starts_with(dir));
        let image = image::open(path).expect("a saved frame opens").into_rgb8();
        assert_eq!(image.dimensions(), (W, H));
        let best = scenes
            .iter()
            .map(|s| mean_abs_diff(s, &image))
            .fold(f64::INFINITY, f64::min);
        assert!(best < 4.0, "{} matches no scene ({best})", path.display());
    }
}

#[test]
fn an_mjpeg_stream_is_recorded_into_the_class_folder_as_complete_jpegs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenes: Vec<RgbImage> = (0..6).map(scene).collect();
    let mut stream = Vec::new();
    for s in &scenes {
        stream.extend(rgb_to_mjpeg(s, 90).expect("encode"));
    }
    let file = tmp.path().join("camera.mjpeg");
    std::fs::write(&file, &stream).expect("write the stream");
    let class = tmp.path().join("mug");
    std::fs::create_dir(&class).expect("class folder");
    let source = open_source(&file.display().to_string()).expect("open the recording");
    let (saved, errors) = record_frames(source, class.clone(), 8, 60).expect("record");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(saved.len() >= 8, "saved {}", saved.len());
    check_saved(&class, &saved, &scenes);
    // Frames saved as the camera sent them, with the Huffman tables put back.
    let bytes = std::fs::read(&saved[0]).expect("read");
    assert!(bytes.windows(2).any(|w| w == [0xFF, 0xC4]));
}

#[test]
fn a_yuyv_stream_is_decoded_and_saved_as_jpegs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenes: Vec<RgbImage> = (0..5).map(scene).collect();
    let bytes: Vec<u8> = scenes.iter().flat_map(rgb_to_yuyv).collect();
    // 40 frames/s from the camera, all saved (the rate allows 60).
    let source = RecordedStream::from_yuyv_bytes(&bytes, W, H, 40.0);
    let class = tmp.path().join("pen");
    std::fs::create_dir(&class).expect("class folder");
    let (saved, errors) = record_frames(Box::new(source), class.clone(), 5, 60).expect("record");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(saved.len(), 5);
    check_saved(&class, &saved, &scenes);
}

#[test]
fn recording_into_a_missing_folder_says_so_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..3).map(scene).flat_map(|s| rgb_to_yuyv(&s)).collect();
    let source = RecordedStream::from_yuyv_bytes(&bytes, W, H, 200.0);
    let gone = tmp.path().join("deleted-class");
    let (saved, errors) = record_frames(Box::new(source), gone.clone(), 3, 1000).expect("record");
    assert!(saved.is_empty());
    assert!(
        !errors.is_empty() && errors[0].contains("no longer exists"),
        "{errors:?}"
    );
    assert!(!gone.exists());
}

#[test]
fn a_live_answer_has_the_top_classes_and_an_overlay_when_asked() {
    let predictor = Predictor::imagenet(&candle_core::Device::Cpu).expect("bundled network");
    let photo = image::open(crate::common::fixture("coffee.png"))
        .expect("fixture")
        .into_rgb8();
    let frame = Frame {
        image: Arc::new(photo),
        number: 7,
    };
    let plain = live::answer(&predictor, &frame, false);
    assert_eq!(plain.frame_number, 7);
    assert_eq!(plain.top.len(), live::LIVE_TOP_K);
    assert!(plain.overlay.is_none() && plain.error.is_none());
    let explained = live::answer(&predictor, &frame, true);
    assert_eq!(explained.top[0].label, plain.top[0].label);
    assert!((explained.top[0].prob - plain.top[0].prob).abs() < 1e-3);
    let overlay = explained.overlay.expect("an overlay");
    let side = predictor.preprocessing().image_size_px;
    assert_eq!(overlay.dimensions(), (side, side));
}

/// Through a real V4L2 device: frames written to a v4l2loopback output are read back by the
/// camera code. Skipped (and said) where the module is not loaded.
#[cfg(target_os = "linux")]
#[test]
fn a_v4l2loopback_device_is_captured_where_the_module_is_loaded() {
    use linuxvideo::format::{PixFormat, PixelFormat};
    let Some(path) = loopback_device() else {
        eprintln!("skipped: no v4l2loopback device (modprobe v4l2loopback exclusive_caps=0)");
        return;
    };
    let output = linuxvideo::Device::open(&path)
        .and_then(|d| d.video_output(PixFormat::new(W, H, PixelFormat::YUYV)))
        .and_then(|o| o.into_stream());
    let Ok(mut output) = output else {
        eprintln!("skipped: {} does not take output", path.display());
        return;
    };
    let frame = rgb_to_yuyv(&scene(2));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = stop.clone();
    let feeder = std::thread::spawn(move || {
        while !writing.load(std::sync::atomic::Ordering::Relaxed) {
            let sent = output.enqueue(|mut buf| {
                let n = buf.len().min(frame.len());
                buf[..n].copy_from_slice(&frame[..n]);
                Ok(())
            });
            if sent.is_err() {
                break;
            }
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = open_source(&path.display().to_string()).expect("open the loopback camera");
    let (saved, errors) = record_frames(source, tmp.path().to_owned(), 3, 30).expect("record");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    assert!(errors.is_empty(), "{errors:?}");
    check_saved(tmp.path(), &saved, &[scene(2)]);
}

#[cfg(target_os = "linux")]
fn loopback_device() -> Option<PathBuf> {
    linuxvideo::list()
        .ok()?
        .filter_map(Result::ok)
        .find(|d| {
            d.capabilities()
                .is_ok_and(|c| c.driver().contains("loopback"))
        })
        .and_then(|d| d.path().ok())
}

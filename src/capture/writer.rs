//! Recorded frames written into a class folder on a thread of their own: each one a complete
//! JPEG, flushed, then moved into place under a free name, so a folder never holds half a frame
//! and never loses a file to a name taken twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use image::RgbImage;

use super::error::CaptureError;
use super::frame::{PixelLayout, RawFrame, complete_jpeg, encode_jpeg};

/// JPEG quality for frames that arrive uncompressed (YUYV).
const JPEG_QUALITY: u8 = 92;
/// Frames waiting to be written; more than this and new ones are dropped (and counted).
const QUEUE_FRAMES: usize = 16;

/// A frame to save into `dir`.
pub struct WriteJob {
    pub dir: PathBuf,
    pub raw: Arc<RawFrame>,
    pub rgb: Arc<RgbImage>,
}

impl std::fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteJob").finish_non_exhaustive()
    }
}

/// What the writer did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Saved(PathBuf),
    Failed { dir: PathBuf, message: String },
}

/// The writing thread: `submit` never blocks; results come back on `done`.
pub struct FrameWriter {
    tx: Option<Sender<WriteJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Starts the thread; `done` gets one [`Written`] per frame, `wake` runs after each.
    pub fn start(
        done: Sender<Written>,
        wake: impl Fn() + Send + 'static,
    ) -> Result<Self, CaptureError> {
        let (tx, rx) = bounded::<WriteJob>(QUEUE_FRAMES);
        let thread = std::thread::Builder::new()
            .name("frame-writer".into())
            .spawn(move || write_loop(&rx, &done, &wake))
            .map_err(|e| CaptureError::Device(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a frame; false when the queue is full (the frame is dropped).
    pub fn submit(&self, job: WriteJob) -> bool {
        match self.tx.as_ref().map(|tx| tx.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// Writes what is queued, then stops.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(rx: &Receiver<WriteJob>, done: &Sender<Written>, wake: &dyn Fn()) {
    let mut namer = Namer::default();
    for job in rx {
        let result = match save_frame(&job, &namer.next()) {
            Ok(path) => Written::Saved(path),
            Err(message) => Written::Failed {
                dir: job.dir.clone(),
                message,
            },
        };
        let _ = done.send(result);
        wake();
    }
}

/// Writes one frame into its folder; the error in words.
pub fn save_frame(job: &WriteJob, name: &str) -> Result<PathBuf, String> {
    let jpeg = match job.raw.layout {
        // The camera's own JPEG, with the tables it left out: no second compression.
        PixelLayout::Mjpeg => complete_jpeg(&job.raw.bytes)
            .map(|c| c.into_owned())
            .map_err(|e| e.to_string())?,
        PixelLayout::Yuyv => encode_jpeg(&job.rgb, JPEG_QUALITY).map_err(|e| e.to_string())?,
    };
    write_new_file(&job.dir, name, &jpeg).map_err(|e| explain(&job.dir, &e))
}

/// `bytes` as a new file `name` (or `name (2)`, …) in `dir`: written to a hidden temporary
/// file, flushed, then renamed without replacing anything.
pub fn write_new_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    // Named as the other atomic writes name theirs, so a killed run's leftover is recognised.
    let mut staged = tempfile::Builder::new()
        .prefix(&crate::fsutil::staging_prefix(name, "partial"))
        .tempfile_in(dir)?;
    staged.write_all(bytes)?;
    crate::fsutil::make_readable(staged.as_file())?;
    staged.as_file().sync_all()?;
    let staged = staged.into_temp_path();
    let path = crate::data::edit::place_under_free_name(&staged, dir, name)?;
    // In place: the temporary name is gone, nothing to remove.
    let _ = staged.keep();
    Ok(path)
}

fn explain(dir: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            format!(
                "{} is read-only: frames cannot be saved there",
                dir.display()
            )
        }
        std::io::ErrorKind::NotFound => format!("{} no longer exists", dir.display()),
        _ => format!("cannot save a frame in {}: {error}", dir.display()),
    }
}

/// Names frames `cam-YYYYMMDD-HHMMSS-NNNN.jpg` (UTC), numbered within the second.
#[derive(Default)]
struct Namer {
    second: u64,
    count: u32,
}

impl Namer {
    fn next(&mut self) -> String {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.second {
            self.second = secs;
            self.count = 0;
        }
        self.count += 1;
        format!("cam-{}-{:04}.jpg", utc_stamp(secs), self.count)
    }
}

/// `YYYYMMDD-HHMMSS` of a Unix time (UTC).
fn utc_stamp(unix_secs: u64) -> String {
    let [year, month, day, h, m, s] = crate::data::trash::utc_civil(unix_secs);
    format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_the_calendar_date() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-12-07 10:27:29 UTC.
        assert_eq!(utc_stamp(1_796_639_249), "20261207-102729");
        // A leap day.
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }

    #[test]
    fn a_taken_name_gets_a_number_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write_new_file(dir.path(), "x.jpg", b"one").expect("write");
        let b = write_new_file(dir.path(), "x.jpg", b"two").expect("write");
        assert_eq!(a.file_name().and_then(|n| n.to_str()), Some("x.jpg"));
        assert_eq!(b.file_name().and_then(|n| n.to_str()), Some("x (2).jpg"));
        assert_eq!(std::fs::read(&a).expect("read"), b"one");
        let names = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(names, 2, "a temporary file was left");
    }
}

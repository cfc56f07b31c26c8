//! A running camera: one thread reads and decodes frames, hands the newest to the window and to
//! the live predictor (dropping what they have not taken), and, while recording, queues frames
//! for the writer at the chosen rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use image::RgbImage;

use super::error::CaptureError;
use super::slot::LatestSlot;
use super::source::FrameSource;
use super::writer::{FrameWriter, WriteJob, Written};

/// A decoded frame, shared (never copied) between the preview, the predictor and the writer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub image: Arc<RgbImage>,
    /// Counts frames from the start of the session.
    pub number: u64,
}

/// What a session reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureEvent {
    /// The source is open: its format in words.
    Started(String),
    Written(Written),
    /// Frames arrived faster than the writer could keep up with; this many were not saved.
    Dropped(u64),
    /// A frame that could not be decoded (skipped).
    BadFrame(String),
    /// The source failed or ended; the session is over.
    Ended(Option<String>),
}

/// Where and how fast to record.
#[derive(Debug, Default)]
struct Recording {
    dir: Mutex<Option<PathBuf>>,
    /// Frames per second to save (the camera may send more).
    fps: AtomicU32,
}

/// A camera (or recorded stream) being read on its own thread.
pub struct CaptureSession {
    stop: Arc<AtomicBool>,
    recording: Arc<Recording>,
    /// The newest frame for the window.
    pub preview: Arc<LatestSlot<Frame>>,
    /// The newest frame for the live predictor.
    pub live: Arc<LatestSlot<Frame>>,
    pub events: Receiver<CaptureEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for CaptureSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSession").finish_non_exhaustive()
    }
}

/// Frames per second saved while recording, unless set otherwise.
pub const DEFAULT_RECORD_FPS: u32 = 10;

impl CaptureSession {
    /// Starts reading `open()`'s source on a new thread (opening it there too: a camera may take
    /// a second to start). `wake` runs whenever there is something new.
    pub fn start(
        open: impl FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send + 'static,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, CaptureError> {
        let (tx, events) = bounded(256);
        let stop = Arc::new(AtomicBool::new(false));
        let recording = Arc::new(Recording {
            dir: Mutex::new(None),
            fps: AtomicU32::new(DEFAULT_RECORD_FPS),
        });
        let preview = Arc::new(LatestSlot::new());
        let live = Arc::new(LatestSlot::new());
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let reader = Reader {
            stop: stop.clone(),
            recording: recording.clone(),
            preview: preview.clone(),
            live: live.clone(),
            tx,
            wake,
        };
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || reader.run(open))
            .map_err(|e| CaptureError::Device(format!("cannot start the camera thread: {e}")))?;
        Ok(Self {
            stop,
            recording,
            preview,
            live,
            events,
            thread: Some(thread),
        })
    }

    /// Records into `dir` from now on (`None`: stop recording).
    pub fn record_into(&self, dir: Option<PathBuf>) {
        *self
            .recording
            .dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = dir;
    }

    pub fn set_record_fps(&self, fps: u32) {
        self.recording
            .fps
            .store(fps.clamp(1, 60), Ordering::Relaxed);
    }

    /// Stops reading; frames already queued are still written.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.record_into(None);
        if let Some(t) = self.thread.take() {
            // The reader may sit in a blocking read; it ends at its next frame.
            std::thread::spawn(move || {
                let _ = t.join();
            });
        }
    }
}

impl Drop for CaptureSession {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The reading thread's half.
struct Reader {
    stop: Arc<AtomicBool>,
    recording: Arc<Recording>,
    preview: Arc<LatestSlot<Frame>>,
    live: Arc<LatestSlot<Frame>>,
    tx: Sender<CaptureEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Reader {
    fn send(&self, event: CaptureEvent) {
        let _ = self.tx.try_send(event);
        (self.wake)();
    }

    fn run(self, open: impl FnOnce() -> Result<Box<dyn FrameSource>, CaptureError>) {
        let mut source = match open() {
            Ok(s) => s,
            Err(e) => return self.send(CaptureEvent::Ended(Some(e.to_string()))),
        };
        self.send(CaptureEvent::Started(source.describe()));
        let (done_tx, done_rx) = bounded::<Written>(64);
        let wake = self.wake.clone();
        let writer = match FrameWriter::start(done_tx, move || wake()) {
            Ok(w) => w,
            Err(e) => return self.send(CaptureEvent::Ended(Some(e.to_string()))),
        };
        let end = self.read_frames(source.as_mut(), &writer, &done_rx);
        writer.finish();
        for written in done_rx.try_iter() {
            self.send(CaptureEvent::Written(written));
        }
        self.send(CaptureEvent::Ended(end));
    }

    /// Reads until stopped or the source ends; the reason it ended, if an error.
    fn read_frames(
        &self,
        source: &mut dyn FrameSource,
        writer: &FrameWriter,
        done: &Receiver<Written>,
    ) -> Option<String> {
        let mut number = 0u64;
        let mut next_save: Option<Instant> = None;
        let mut dropped = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            for written in done.try_iter() {
                self.send(CaptureEvent::Written(written));
            }
            let raw = match source.next_frame() {
                Ok(Some(raw)) => raw,
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            };
            let image = match raw.decode() {
                Ok(image) => Arc::new(image),
                Err(e) => {
                    self.send(CaptureEvent::BadFrame(e.to_string()));
                    continue;
                }
            };
            number += 1;
            let frame = Frame { image, number };
            self.live.put(frame.clone());
            self.preview.put(frame.clone());
            (self.wake)();
            if let Some(dir) = self.due_recording(&mut next_save) {
                let job = WriteJob {
                    dir,
                    raw: Arc::new(raw),
                    rgb: frame.image,
                };
                if !writer.submit(job) {
                    dropped += 1;
                    self.send(CaptureEvent::Dropped(dropped));
                }
            }
        }
        None
    }

    /// The folder to save this frame into, when recording and a frame is due at the rate.
    /// Saves follow a schedule (one period after the last due time, never more than one period
    /// behind), so a frame that was handled late does not cost the next one its place.
    fn due_recording(&self, next_save: &mut Option<Instant>) -> Option<PathBuf> {
        let dir = self
            .recording
            .dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(dir) = dir else {
            *next_save = None;
            return None;
        };
        let fps = self.recording.fps.load(Ordering::Relaxed).max(1);
        // A little slack, so a 10 frames/s camera is not halved by jitter at 10 frames/s.
        let period = Duration::from_secs_f64(0.9 / fps as f64);
        let now = Instant::now();
        let due = next_save.unwrap_or(now);
        if now < due {
            return None;
        }
        let floor = now.checked_sub(period).unwrap_or(now);
        *next_save = Some(due.max(floor) + period);
        Some(dir)
    }
}

/// Feeds `source` through the session's own decoding and writing into `dir` until `frames`
/// are saved (or the source ends): what a recording does, without a window. Returns the files
/// written and any errors in words.
pub fn record_frames(
    source: Box<dyn FrameSource>,
    dir: PathBuf,
    frames: usize,
    fps: u32,
) -> Result<(Vec<PathBuf>, Vec<String>), CaptureError> {
    // The source is handed over only once recording is set, so its first frame is saved too.
    let (go, ready) = bounded::<()>(1);
    let opened = move || {
        let _ = ready.recv();
        Ok(source)
    };
    let mut session = CaptureSession::start(opened, || {})?;
    session.set_record_fps(fps);
    session.record_into(Some(dir));
    let _ = go.send(());
    let mut saved = Vec::new();
    let mut errors = Vec::new();
    loop {
        let Ok(event) = session.events.recv_timeout(Duration::from_secs(30)) else {
            // A stalled source may never return: the session is let go, not waited for.
            errors.push("the source sent nothing for 30 s".into());
            return Ok((saved, errors));
        };
        if collect(event, &mut saved, &mut errors) || saved.len() >= frames {
            break;
        }
    }
    // Stop, let the writer finish what is queued, and collect what it still reports.
    session.stop.store(true, Ordering::Relaxed);
    session.record_into(None);
    if let Some(t) = session.thread.take() {
        let _ = t.join();
    }
    for event in session.events.try_iter() {
        collect(event, &mut saved, &mut errors);
    }
    Ok((saved, errors))
}

/// Adds what a recording's event says to `saved` and `errors`; true when the session ended.
fn collect(event: CaptureEvent, saved: &mut Vec<PathBuf>, errors: &mut Vec<String>) -> bool {
    match event {
        CaptureEvent::Written(Written::Saved(path)) => saved.push(path),
        CaptureEvent::Written(Written::Failed { message, .. }) => errors.push(message),
        CaptureEvent::BadFrame(e) => errors.push(e),
        CaptureEvent::Ended(reason) => {
            errors.extend(reason);
            return true;
        }
        CaptureEvent::Started(_) | CaptureEvent::Dropped(_) => {}
    }
    false
}

//! Live prediction: a thread classifies the newest camera frame (older ones are dropped, never
//! queued) and, when asked, explains it with Grad-CAM every so often.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::session::Frame;
use super::slot::LatestSlot;
use crate::inspect::{grad_cam, overlay};
use crate::predict::{ClassProb, Predictor};

/// Classes shown live.
pub const LIVE_TOP_K: usize = 5;
/// Time between Grad-CAM overlays: one costs a backward pass, so the top classes keep their
/// pace while the overlay updates a few times a second.
const OVERLAY_PERIOD: Duration = Duration::from_millis(250);

/// One live answer.
#[derive(Debug, Clone)]
pub struct LiveAnswer {
    pub frame_number: u64,
    pub top: Vec<ClassProb>,
    /// The Grad-CAM overlay on the network's crop, when one was made for this frame.
    pub overlay: Option<RgbImage>,
    pub error: Option<String>,
}

/// The predicting thread; stops when dropped.
pub struct LivePredictor {
    stop: Arc<AtomicBool>,
    explain: Arc<AtomicBool>,
    pub answers: Arc<LatestSlot<LiveAnswer>>,
}

impl std::fmt::Debug for LivePredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePredictor").finish_non_exhaustive()
    }
}

impl LivePredictor {
    pub fn start(
        predictor: Arc<Predictor>,
        frames: Arc<LatestSlot<Frame>>,
        explain: bool,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let explain = Arc::new(AtomicBool::new(explain));
        let answers = Arc::new(LatestSlot::new());
        let worker = Worker {
            predictor,
            frames,
            stop: stop.clone(),
            explain: explain.clone(),
            answers: answers.clone(),
        };
        // No thread, no live answers: said by the missing answers, never a panic.
        let _ = std::thread::Builder::new()
            .name("live-predict".into())
            .spawn(move || worker.run(&wake));
        Self {
            stop,
            explain,
            answers,
        }
    }

    /// Turns the Grad-CAM overlay on or off.
    pub fn set_explain(&self, on: bool) {
        self.explain.store(on, Ordering::Relaxed);
    }
}

impl Drop for LivePredictor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Worker {
    predictor: Arc<Predictor>,
    frames: Arc<LatestSlot<Frame>>,
    stop: Arc<AtomicBool>,
    explain: Arc<AtomicBool>,
    answers: Arc<LatestSlot<LiveAnswer>>,
}

impl Worker {
    fn run(&self, wake: &dyn Fn()) {
        let mut last_overlay: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(frame) = self.frames.wait_take(Duration::from_millis(200)) else {
                continue;
            };
            let explain = self.explain.load(Ordering::Relaxed)
                && last_overlay.is_none_or(|t| t.elapsed() >= OVERLAY_PERIOD);
            if explain {
                last_overlay = Some(Instant::now());
            }
            self.answers.put(answer(&self.predictor, &frame, explain));
            wake();
        }
    }
}

/// The top classes of one frame, and its Grad-CAM overlay when `explain`.
pub fn answer(predictor: &Predictor, frame: &Frame, explain: bool) -> LiveAnswer {
    let crop = predictor.preprocessing().eval_crop(&frame.image);
    let mut out = LiveAnswer {
        frame_number: frame.number,
        top: Vec::new(),
        overlay: None,
        error: None,
    };
    if explain {
        // One pass gives both: the probabilities come with the gradient.
        match grad_cam(predictor, &crop, None) {
            Ok(e) => {
                out.top = predictor.top_k(&e.probs, LIVE_TOP_K);
                out.overlay = Some(overlay(&crop, &e.grid));
                return out;
            }
            Err(e) => out.error = Some(e.to_string()),
        }
    }
    match predictor.probabilities(std::slice::from_ref(&crop)) {
        Ok(probs) => {
            if let Some(p) = probs.first() {
                out.top = predictor.top_k(p, LIVE_TOP_K);
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

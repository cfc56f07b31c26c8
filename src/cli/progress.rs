//! A training run on the terminal: a progress bar and one line per epoch, or one JSON object
//! per event with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{Observer, TrainEvent};

/// A share as a percentage with one decimal, `-` for none.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// Renders a run's events on the terminal (see the module docs).
#[derive(Debug)]
pub struct TerminalObserver {
    json: bool,
    show_bar: bool,
    bar: ProgressBar,
}

impl TerminalObserver {
    pub fn new(json: bool) -> Self {
        let show_bar = !json && std::io::stderr().is_terminal();
        let bar = ProgressBar::hidden();
        if show_bar {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self {
            json,
            show_bar,
            bar,
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn say(&self, line: String) {
        if self.show_bar {
            self.bar.println(line);
        } else if !self.json {
            eprintln!("{line}");
        }
    }

    fn progress(&self, done: usize, total: usize, message: String) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(message);
    }

    fn started(&self, event: &TrainEvent) {
        let TrainEvent::Started {
            plan,
            case,
            counts,
            skipped,
            trainable_parameters,
            device,
            ..
        } = event
        else {
            return;
        };
        self.say(format!(
            "{}: {}",
            case.map_or_else(|| "custom plan".into(), |c| format!("{c} ({})", c.title())),
            plan.summary()
        ));
        for c in counts {
            self.say(format!(
                "  {:<20} {:>6} train {:>6} val",
                c.class, c.train, c.val
            ));
        }
        if !skipped.is_empty() {
            self.say(format!("skipped {} files:", skipped.len()));
            for s in skipped {
                self.say(format!("  {}: {}", s.path.display(), s.reason));
            }
        }
        self.say(format!(
            "{trainable_parameters} trainable parameters on {device}"
        ));
    }
}

impl Observer for TerminalObserver {
    fn on_event(&mut self, event: &TrainEvent) {
        if self.json {
            match serde_json::to_string(event) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("cannot print an event: {e}"),
            }
        }
        match event {
            TrainEvent::Downloading {
                done_bytes,
                total_bytes,
            } => self.progress(
                (*done_bytes / 1_000_000) as usize,
                (*total_bytes / 1_000_000) as usize,
                "MB of pretrained weights downloaded".into(),
            ),
            TrainEvent::Loading { done, total } => {
                self.progress(*done, *total, "decoding images".into());
            }
            TrainEvent::ChoosingCut { done, total } => self.progress(
                *done,
                *total,
                "choosing the cut: features of the training images".into(),
            ),
            TrainEvent::CutChosen(choice) => {
                for p in &choice.points {
                    let mark = if p.unit == choice.chosen {
                        "  <- cut"
                    } else {
                        ""
                    };
                    self.say(format!(
                        "  {:<8} {:>5} features  {:5.1} % cross-validated, loss {:.3}{mark}",
                        p.unit.to_string(),
                        p.features,
                        p.cv_accuracy * 100.0,
                        p.cv_loss
                    ));
                }
                self.say(choice.sentence());
            }
            TrainEvent::Started { .. } => self.started(event),
            TrainEvent::CachingFeatures { done, total } => self.progress(
                *done,
                *total,
                "computing features of the frozen layers".into(),
            ),
            TrainEvent::PhaseStarted { phase, epochs } => {
                self.say(format!("phase {phase:?}: {epochs} epochs"));
            }
            TrainEvent::Batch {
                epoch,
                batch,
                batches,
                loss,
                images_per_sec,
                eta_secs,
                ..
            } => self.progress(
                *batch,
                *batches,
                format!(
                    "epoch {epoch} loss {loss:.3} {images_per_sec:.1} img/s ETA {eta_secs:.0}s"
                ),
            ),
            TrainEvent::Epoch(m) => self.say(format!(
                "epoch {:>3}  train loss {:.4} acc {}  val loss {} acc {}  lr {:.2e}",
                m.epoch,
                m.train_loss,
                percent(Some(m.train_accuracy)),
                m.val_loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
                percent(m.val_accuracy),
                m.head_lr
            )),
            TrainEvent::Paused => self.say("paused".into()),
            TrainEvent::Resumed => self.say("resumed".into()),
            TrainEvent::Warning { message } => self.say(format!("warning: {message}")),
            TrainEvent::Finished(_) | TrainEvent::Failed { .. } | TrainEvent::Cancelled => {}
        }
    }
}

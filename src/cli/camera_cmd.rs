//! `transfer-studio camera`: the window's camera without the window. Lists the cameras, records
//! frames into a class folder, or classifies frames live, and says how fast each went.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::args::{ModelChoice, NetworkArgs, load_predictor};
use crate::capture::session::record_frames;
use crate::capture::slot::RateMeter;
use crate::capture::{CaptureSession, list_cameras, live, open_source};

/// List cameras, record frames into a class folder, or classify a camera's frames live.
#[derive(Debug, clap::Args)]
pub struct CameraArgs {
    /// A camera (`/dev/video0`) or a recorded `.mjpeg` file; without one, lists the cameras.
    pub source: Option<String>,
    /// Save frames into this class folder (it must exist).
    #[arg(long, value_name = "DIR", conflicts_with = "live")]
    pub record_into: Option<PathBuf>,
    /// Frames to save with `--record-into`.
    #[arg(long, default_value_t = 50)]
    pub frames: usize,
    /// Frames per second to save.
    #[arg(long, default_value_t = 10)]
    pub fps: u32,
    /// Classify frames as they come, for `--secs` seconds.
    #[arg(long)]
    pub live: bool,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// With `--live`: a Grad-CAM overlay every quarter second as the window makes them.
    #[arg(long)]
    pub grad_cam: bool,
    /// `builtin` (the pretrained ImageNet classifier) or a directory saved by `train`.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl CameraArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let Some(source) = &self.source else {
            let cameras = list_cameras();
            if cameras.is_empty() {
                println!("{}", crate::capture::no_camera_reason());
            }
            for c in cameras {
                println!("{}\t{}", c.id, c.name);
            }
            return Ok(ExitCode::SUCCESS);
        };
        if let Some(dir) = &self.record_into {
            return self.record(source, dir);
        }
        if self.live {
            return self.live(source);
        }
        anyhow::bail!("say what to do with {source}: --record-into DIR or --live")
    }

    fn record(&self, source: &str, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
        let opened = open_source(source).with_context(|| format!("opening {source}"))?;
        let start = Instant::now();
        let (saved, errors) = record_frames(opened, dir.to_owned(), self.frames, self.fps)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "saved {} frames into {} in {secs:.2} s ({:.1} frames/s)",
            saved.len(),
            dir.display(),
            saved.len() as f64 / secs
        );
        for e in &errors {
            eprintln!("error: {e}");
        }
        Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    fn live(&self, source: &str) -> anyhow::Result<ExitCode> {
        let predictor = Arc::new(load_predictor(&self.model, &self.network)?);
        let id = source.to_owned();
        let session = CaptureSession::start(move || open_source(&id), || {})?;
        let predicting =
            live::LivePredictor::start(predictor, session.live.clone(), self.grad_cam, || {});
        let (mut answers, mut overlays) = (
            RateMeter::new(Duration::from_secs(3600)),
            RateMeter::new(Duration::from_secs(3600)),
        );
        let mut last = None;
        let end = Instant::now() + Duration::from_secs_f64(self.secs);
        while Instant::now() < end {
            if let Ok(crate::capture::CaptureEvent::Ended(reason)) = session.events.try_recv() {
                anyhow::bail!(
                    "{source}: {}",
                    reason.unwrap_or_else(|| "the stream ended".into())
                );
            }
            let Some(answer) = predicting.answers.wait_take(Duration::from_millis(100)) else {
                continue;
            };
            answers.tick(Instant::now());
            if answer.overlay.is_some() {
                overlays.tick(Instant::now());
            }
            if let Some(e) = &answer.error {
                anyhow::bail!("predicting a frame: {e}");
            }
            last = answer.top.first().cloned();
        }
        session.stop();
        print!("{:.1} predictions/s", answers.per_sec());
        if self.grad_cam {
            print!(", {:.1} Grad-CAM overlays/s", overlays.per_sec());
        }
        match last {
            Some(top) => println!("; last frame: {} ({:.1} %)", top.label, top.prob * 100.0),
            None => println!("; no frame was classified"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

//! Work the window hands to background threads (dialogs, decoding, inference, saving), and
//! the results that come back over one bounded channel. The UI thread never waits on these.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, bounded};
use image::RgbImage;

use crate::data::dataset::{Dataset, DatasetError, LoadOptions, LoadProgress, load_dataset};
use crate::data::decode::{DecodeError, decode_rgb};
use crate::guide::probe::{ProbeOptions, ProbePoint, depth_probe};
use crate::guide::recommend::{RecommendError, RecommendOptions, Recommendation, recommend};
use crate::model::ModelError;
use crate::predict::{ClassProb, Predictor};
use crate::train::{SavedMetrics, StoreError, TrainedModel, Waker};

/// Why background work failed (the window shows the message).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Recommend(#[from] RecommendError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error("cannot write the demo pack under {path}: {source}")]
    Demo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Results of background work.
#[derive(Debug)]
pub enum JobResult {
    FolderPicked {
        purpose: FolderPurpose,
        path: PathBuf,
    },
    ImagesPicked(Vec<PathBuf>),
    ModelFolderPicked {
        save: bool,
        path: PathBuf,
    },
    DatasetLoaded(Result<Arc<Dataset>, JobError>),
    Thumbnail {
        path: PathBuf,
        image: egui::ColorImage,
    },
    Predicted {
        path: PathBuf,
        result: Result<(egui::ColorImage, Vec<ClassProb>), JobError>,
    },
    ModelSaved(Result<PathBuf, JobError>),
    OnnxFilePicked(PathBuf),
    Exported(Result<PathBuf, JobError>),
    ModelOpened(Result<Box<TrainedModel>, JobError>),
    Recommended(Result<Recommendation, JobError>),
    Probed(Result<Vec<ProbePoint>, JobError>),
}

/// What a picked folder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderPurpose {
    Train,
    Validation,
}

/// Spawns named threads for background work and collects their results.
pub struct Jobs {
    tx: Sender<JobResult>,
    pub rx: Receiver<JobResult>,
    waker: Waker,
    /// Progress of the dataset load in flight, if any.
    loading: Option<Arc<LoadProgress>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

/// Thumbnail side in pixels.
pub const THUMBNAIL_PX: u32 = 96;

pub fn to_color_image(image: &RgbImage) -> egui::ColorImage {
    egui::ColorImage::from_rgb(
        [image.width() as usize, image.height() as usize],
        image.as_raw(),
    )
}

fn thumbnail(path: &std::path::Path) -> Result<egui::ColorImage, DecodeError> {
    let image = decode_rgb(path)?;
    let thumb = image::imageops::thumbnail(&image, THUMBNAIL_PX, THUMBNAIL_PX);
    Ok(to_color_image(&thumb))
}

impl Jobs {
    pub fn new(waker: Waker) -> Self {
        let (tx, rx) = bounded(256);
        Self {
            tx,
            rx,
            waker,
            loading: None,
        }
    }

    /// Images decoded so far of the dataset being loaded (done, total).
    pub fn loading_progress(&self) -> Option<(usize, usize)> {
        self.loading.as_ref().map(|p| {
            (
                p.done.load(std::sync::atomic::Ordering::Relaxed),
                p.total.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// The load in flight has reported its result.
    pub fn loading_done(&mut self) {
        self.loading = None;
    }

    fn spawn(&self, name: &str, work: impl FnOnce(&Sender<JobResult>) + Send + 'static) {
        let tx = self.tx.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                work(&tx);
                waker();
            });
        if spawned.is_err() {
            (self.waker)();
        }
    }

    fn send(tx: &Sender<JobResult>, result: JobResult) {
        // The window is closing if nobody receives; nothing to do then.
        let _ = tx.send(result);
    }

    /// Native folder dialog (blocking, so on its own thread). `None` (no portal, or the user
    /// cancelled) sends nothing.
    pub fn pick_folder(&self, purpose: FolderPurpose) {
        self.spawn("folder-dialog", move |tx| {
            if let Some(path) = rfd::FileDialog::new().pick_folder() {
                Self::send(tx, JobResult::FolderPicked { purpose, path });
            }
        });
    }

    pub fn pick_model_folder(&self, save: bool) {
        self.spawn("model-dialog", move |tx| {
            if let Some(path) = rfd::FileDialog::new().pick_folder() {
                Self::send(tx, JobResult::ModelFolderPicked { save, path });
            }
        });
    }

    pub fn pick_images(&self) {
        self.spawn("image-dialog", move |tx| {
            let exts = crate::data::decode::IMAGE_EXTENSIONS;
            if let Some(paths) = rfd::FileDialog::new()
                .add_filter("images", exts)
                .pick_files()
            {
                Self::send(tx, JobResult::ImagesPicked(paths));
            }
        });
    }

    /// Loads (decodes and splits) a dataset, then decodes a few thumbnails per class.
    pub fn load_dataset(&mut self, root: PathBuf, options: LoadOptions, thumbs_per_class: usize) {
        let progress = Arc::new(LoadProgress::default());
        if let Some(old) = self.loading.replace(progress.clone()) {
            old.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let waker = self.waker.clone();
        self.spawn("dataset-loader", move |tx| {
            let result = load_dataset(&root, &options, &progress).map_err(JobError::from);
            let thumbs: Vec<PathBuf> = match &result {
                Ok(d) => (0..d.classes.len())
                    .flat_map(|c| {
                        d.train
                            .iter()
                            .filter(move |s| s.label == c)
                            .take(thumbs_per_class)
                            .map(|s| s.path.clone())
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            Self::send(tx, JobResult::DatasetLoaded(result.map(Arc::new)));
            waker();
            for path in thumbs {
                if let Ok(image) = thumbnail(&path) {
                    Self::send(tx, JobResult::Thumbnail { path, image });
                }
            }
        });
    }

    /// Decodes thumbnails for images of a confusion cell or the mistakes gallery.
    pub fn thumbnails(&self, paths: Vec<PathBuf>) {
        self.spawn("thumbnails", move |tx| {
            for path in paths {
                if let Ok(image) = thumbnail(&path) {
                    Self::send(tx, JobResult::Thumbnail { path, image });
                }
            }
        });
    }

    /// Classifies images with `predictor` (ImageNet's head, or a trained one).
    pub fn predict(&self, predictor: Arc<Predictor>, paths: Vec<PathBuf>) {
        self.spawn("predictor", move |tx| {
            for path in paths {
                let result = decode_rgb(&path).map_err(JobError::from).and_then(|img| {
                    let top = predictor
                        .classify_images(std::slice::from_ref(&img), 5)?
                        .pop()
                        .unwrap_or_default();
                    let thumb = image::imageops::thumbnail(&img, THUMBNAIL_PX, THUMBNAIL_PX);
                    Ok((to_color_image(&thumb), top))
                });
                Self::send(tx, JobResult::Predicted { path, result });
            }
        });
    }

    pub fn save_model(&self, model: TrainedModel, metrics: Option<SavedMetrics>, dir: PathBuf) {
        self.spawn("model-saver", move |tx| {
            let result = model
                .save(&dir, metrics)
                .map(|()| dir)
                .map_err(JobError::from);
            Self::send(tx, JobResult::ModelSaved(result));
        });
    }

    /// Native save dialog for an `.onnx` file.
    pub fn pick_onnx_file(&self) {
        self.spawn("onnx-dialog", move |tx| {
            if let Some(path) = rfd::FileDialog::new()
                .add_filter("ONNX", &["onnx"])
                .set_file_name("model.onnx")
                .save_file()
            {
                Self::send(tx, JobResult::OnnxFilePicked(path));
            }
        });
    }

    /// Exports a trained model to ONNX.
    pub fn export_onnx(&self, model: TrainedModel, metrics: Option<SavedMetrics>, path: PathBuf) {
        self.spawn("onnx-export", move |tx| {
            let result = crate::export::trained_parts(&model, metrics)
                .and_then(|(predictor, info)| crate::export::write_onnx(&predictor, &info, &path))
                .map(|()| path)
                .map_err(JobError::from);
            Self::send(tx, JobResult::Exported(result));
        });
    }

    pub fn open_model(&self, dir: PathBuf, device: Device) {
        self.spawn("model-loader", move |tx| {
            let result = TrainedModel::load(&dir, &device)
                .map(|(m, _)| Box::new(m))
                .map_err(JobError::from);
            Self::send(tx, JobResult::ModelOpened(result));
        });
    }

    /// Measures where the dataset sits on the grid (a forward pass over a few hundred images).
    pub fn recommend(&self, dataset: Arc<Dataset>, options: RecommendOptions, device: Device) {
        self.spawn("recommender", move |tx| {
            let result = recommend(&dataset, &options, &device, |_, _| {}).map_err(JobError::from);
            Self::send(tx, JobResult::Recommended(result));
        });
    }

    /// Writes a demo pack out (disk I/O, so here) and hands its folder back as the training
    /// folder.
    pub fn open_demo(&self, pack: crate::data::demo::DemoPack) {
        self.spawn("demo-pack", move |tx| {
            let root = crate::data::demo::default_demo_root();
            match crate::data::demo::materialize(pack, &root) {
                Ok(path) => Self::send(
                    tx,
                    JobResult::FolderPicked {
                        purpose: FolderPurpose::Train,
                        path,
                    },
                ),
                Err(source) => Self::send(
                    tx,
                    JobResult::DatasetLoaded(Err(JobError::Demo { path: root, source })),
                ),
            }
        });
    }

    /// Linear probes at several depths.
    pub fn probe(&self, dataset: Arc<Dataset>, device: Device) {
        self.spawn("depth-probe", move |tx| {
            let result = depth_probe(&dataset, &ProbeOptions::default(), &device, |_, _| {})
                .map_err(JobError::from);
            Self::send(tx, JobResult::Probed(result));
        });
    }
}

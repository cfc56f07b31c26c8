//! Work the window hands to background threads (dialogs, decoding, inference, saving), and
//! the results that come back over one bounded channel. The UI thread never waits on these.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, bounded};
use image::RgbImage;

use super::browser::PathRequest;
use crate::data::dataset::{Dataset, DatasetError, LoadOptions, LoadProgress, load_dataset};
use crate::data::decode::{DecodeError, decode_rgb};
use crate::data::edit::Journal;
use crate::guide::probe::{ProbeOptions, cross_validated_cut};
use crate::guide::recommend::{RecommendError, RecommendOptions, Recommendation, recommend};
use crate::model::ModelError;
use crate::predict::{ClassProb, Predictor};
use crate::train::cut::CutChoice;
use crate::train::{SavedMetrics, StoreError, TrainPlan, TrainedModel, Waker};

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
    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
    #[error("every class needs at least 2 training images to cross-validate the cut")]
    TooFewToProbe,
    #[error("cannot write the demo pack under {path}: {source}")]
    Demo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an export needs.
#[derive(Debug)]
pub struct ModelExport {
    pub model: TrainedModel,
    pub metrics: Option<SavedMetrics>,
    pub path: PathBuf,
    pub precision: crate::export::Precision,
    /// The loaded dataset, to check the file on its validation split.
    pub data: Option<Arc<Dataset>>,
}

/// Results of background work.
#[derive(Debug)]
pub enum JobResult {
    /// A file dialog's answer (native or in-window).
    Picked {
        request: PathRequest,
        paths: Vec<PathBuf>,
    },
    /// The desktop's file dialog could not open.
    DialogUnavailable(PathRequest),
    /// What augmentation does to a few training images.
    AugmentationPreview(Vec<PreviewRow<egui::ColorImage>>),
    /// A folder listed for the in-window browser.
    Listed {
        dir: PathBuf,
        entries: Result<Vec<super::browser::Entry>, String>,
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
    /// An ONNX file written, and its check in words.
    Exported(Result<(PathBuf, String), JobError>),
    ModelOpened(Result<Box<TrainedModel>, JobError>),
    Recommended(Result<Recommendation, JobError>),
    Probed(Result<CutChoice, JobError>),
    /// The doctor's progress, report and maps, as they come.
    Doctor(crate::doctor::DoctorEvent),
    /// An examination ended (`Err`: why it stopped early, in words).
    DoctorDone(Result<(), String>),
    Inspected(Result<Inspection, JobError>),
    Explained(Explained),
    /// An edit of the folders was made (as far as it could be).
    Edited(Edited),
    /// Images in each class folder of the training folder, for the camera's counters.
    CameraCounts(Result<std::collections::BTreeMap<String, usize>, String>),
    /// A class folder made from the Camera section (no dataset loaded).
    CameraClassMade(Result<(), String>),
    /// An edit was undone (or could not be): `journal` and `before` as the edit left them.
    Undone {
        journal: Journal,
        before: Arc<Dataset>,
        result: Result<(), String>,
    },
}

/// What an edit of the folders did.
#[derive(Debug)]
pub struct Edited {
    pub journal: Journal,
    /// What could not be done, one line each.
    pub errors: Vec<String>,
    pub before: Arc<Dataset>,
    pub after: Arc<Dataset>,
}

/// An image's activation maps at some units, for the Inspect view.
#[derive(Debug)]
pub struct Inspection {
    pub path: PathBuf,
    /// The image's crop as the network sees it.
    pub crop: egui::ColorImage,
    /// Per unit: the maps and their colour-mapped grid.
    pub maps: Vec<(crate::inspect::ActivationMaps, egui::ColorImage)>,
}

impl Inspection {
    pub fn units(&self) -> Vec<crate::model::Unit> {
        self.maps.iter().map(|(m, _)| m.unit).collect()
    }
}

/// A Grad-CAM overlay of one image, made with the model of `generation`.
#[derive(Debug)]
pub struct Explained {
    pub path: PathBuf,
    pub generation: u64,
    /// The overlay, and what it explains in words.
    pub result: Result<(egui::ColorImage, String), JobError>,
}

/// A dialog answering faster than this showed nothing (nobody cancels a dialog that quickly).
const NO_DIALOG_SECS: std::time::Duration = std::time::Duration::from_millis(300);

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

/// Rows of the augmentation preview: a class, its first image's evaluation crop, and the
/// training views of that image in the first [`PREVIEW_EPOCHS`] epochs that augment.
pub type PreviewRow<I> = (String, I, Vec<I>);
pub const PREVIEW_EPOCHS: usize = 5;
const PREVIEW_CLASSES: usize = 3;

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

    /// Wakes the window (work that reports as it goes calls it after each report).
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs `work` on a named thread; what it sends arrives in [`Self::rx`].
    pub fn run(&self, name: &str, work: impl FnOnce(&Sender<JobResult>) + Send + 'static) {
        self.spawn(name, work);
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

    pub fn send(tx: &Sender<JobResult>, result: JobResult) {
        // The window is closing if nobody receives; nothing to do then.
        let _ = tx.send(result);
    }

    /// The desktop's file dialog (blocking, so on its own thread). It answers `Picked`; a
    /// dialog that returns nothing at once (no xdg-desktop-portal and no zenity: rfd gives up
    /// without showing anything) answers `DialogUnavailable`; a cancelled one, nothing.
    pub fn pick(&self, request: PathRequest) {
        self.spawn("file-dialog", move |tx| {
            let started = std::time::Instant::now();
            let dialog = rfd::FileDialog::new().set_title(request.title());
            let paths = match request {
                PathRequest::Images => dialog
                    .add_filter("images", crate::data::decode::IMAGE_EXTENSIONS)
                    .pick_files(),
                PathRequest::Weights => dialog
                    .add_filter("weights", super::browser::WEIGHTS_EXTENSIONS)
                    .pick_file()
                    .map(|p| vec![p]),
                PathRequest::ExportFile => dialog
                    .add_filter("ONNX", &["onnx"])
                    .add_filter("TFLite", &["tflite"])
                    .set_file_name(request.default_name())
                    .save_file()
                    .map(|p| vec![p]),
                _ => dialog.pick_folder().map(|p| vec![p]),
            };
            match paths {
                Some(paths) => Self::send(tx, JobResult::Picked { request, paths }),
                None if started.elapsed() < NO_DIALOG_SECS => {
                    Self::send(tx, JobResult::DialogUnavailable(request));
                }
                None => {}
            }
        });
    }

    /// Lists a folder for the in-window browser.
    pub fn list_dir(&self, dir: PathBuf, request: PathRequest) {
        self.spawn("list-dir", move |tx| {
            let entries = super::browser::list_dir(&dir, request);
            Self::send(tx, JobResult::Listed { dir, entries });
        });
    }

    /// The training views of a few images, exactly as training would crop and flip them
    /// (each sample's randomness depends only on the seed, the epoch and its index).
    pub fn preview_augmentation(&self, dataset: Arc<Dataset>, plan: TrainPlan) {
        use crate::train::augment::{at_least, sample_rng, train_crop};
        self.spawn("augmentation-preview", move |tx| {
            let pre = plan.preprocessing();
            // Augmentation runs in the fine-tuning epochs, after any classifier-only ones.
            let first_epoch = plan.head_only_epochs() + 1;
            let mut rows = Vec::new();
            for (class, name) in dataset.classes.iter().enumerate().take(PREVIEW_CLASSES) {
                let Some((index, sample)) = dataset
                    .train
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.label == class)
                else {
                    continue;
                };
                let Ok(image) = sample.image(pre.resize_px) else {
                    continue;
                };
                let image = at_least(&image, pre.resize_px);
                let views = (first_epoch..first_epoch + PREVIEW_EPOCHS)
                    .map(|epoch| {
                        let mut rng = sample_rng(plan.seed, epoch, index);
                        to_color_image(&train_crop(&image, pre.image_size_px, &mut rng))
                    })
                    .collect();
                rows.push((name.clone(), to_color_image(&pre.eval_crop(&image)), views));
            }
            Self::send(tx, JobResult::AugmentationPreview(rows));
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
                    .flat_map(|c| d.examples(c, thumbs_per_class).map(|s| s.path.clone()))
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

    /// Exports a trained model to ONNX or TFLite (by the file's extension), then runs the file
    /// on the loaded dataset's validation split (when its classes are the model's; else the
    /// demo photos) to check it.
    pub fn export_model(&self, export: ModelExport) {
        use crate::export::check::{check_file, demo_images, validation_images};
        self.spawn("model-export", move |tx| {
            let format = crate::export::Format::of_path(&export.path);
            let result = crate::export::trained_parts(&export.model, export.metrics)
                .and_then(|(predictor, mut info)| {
                    info.precision = export.precision;
                    let crops = match export.precision {
                        crate::export::Precision::Int8 => Some(calibration_crops(
                            export.data.as_deref(),
                            &predictor,
                            export.model.training_folder.as_deref(),
                        )?),
                        _ => None,
                    };
                    let bytes = crate::export::export_file(
                        &predictor,
                        &info,
                        format,
                        &export.path,
                        crops.as_deref(),
                    )?;
                    let (images, on) = match &export.data {
                        Some(d) if d.classes == export.model.classes => {
                            (validation_images(d, &predictor), "the validation split")
                        }
                        _ => (demo_images(&predictor), "the demo photos"),
                    };
                    let check = check_file(format, &bytes, &predictor, &images)?;
                    Ok((export.path, check.summary(on)))
                })
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
                    JobResult::Picked {
                        request: PathRequest::TrainFolder,
                        paths: vec![path],
                    },
                ),
                Err(source) => Self::send(
                    tx,
                    JobResult::DatasetLoaded(Err(JobError::Demo { path: root, source })),
                ),
            }
        });
    }

    /// The strongest activation maps of one image at `units` (one forward pass).
    pub fn inspect(
        &self,
        predictor: Arc<Predictor>,
        path: PathBuf,
        units: Vec<crate::model::Unit>,
    ) {
        use crate::inspect::{DEFAULT_CHANNELS, activation_maps, maps_grid};
        /// Side of one map's tile in the view's grids.
        const TILE_PX: u32 = 96;
        self.spawn("inspect", move |tx| {
            let result = decode_rgb(&path).map_err(JobError::from).and_then(|image| {
                let crop = predictor.preprocessing().eval_crop(&image);
                let maps = activation_maps(&predictor, &crop, &units, DEFAULT_CHANNELS)?
                    .into_iter()
                    .map(|m| {
                        let grid = to_color_image(&maps_grid(&m, TILE_PX));
                        (m, grid)
                    })
                    .collect();
                Ok(Inspection {
                    path: path.clone(),
                    crop: to_color_image(&crop),
                    maps,
                })
            });
            Self::send(tx, JobResult::Inspected(result));
        });
    }

    /// Grad-CAM overlays (of each image's top-1 class) for `paths`.
    pub fn explain(&self, predictor: Arc<Predictor>, paths: Vec<PathBuf>, generation: u64) {
        use crate::inspect::{grad_cam, overlay};
        self.spawn("explain", move |tx| {
            for path in paths {
                let result = decode_rgb(&path).map_err(JobError::from).and_then(|image| {
                    let crop = predictor.preprocessing().eval_crop(&image);
                    let explanation = grad_cam(&predictor, &crop, None)?;
                    let caption = format!(
                        "where it found {} ({:.1} %)",
                        explanation.label,
                        explanation.prob * 100.0
                    );
                    Ok((to_color_image(&overlay(&crop, &explanation.grid)), caption))
                });
                let explained = Explained {
                    path,
                    generation,
                    result,
                };
                Self::send(tx, JobResult::Explained(explained));
            }
        });
    }

    /// The cross-validated choice of the cut on the training split, as a run of `plan`
    /// choosing its cut would make it.
    pub fn probe(&self, dataset: Arc<Dataset>, plan: TrainPlan, device: Device) {
        self.spawn("depth-probe", move |tx| {
            let options = ProbeOptions {
                backbone: plan.backbone,
                weights: plan.weights.clone(),
                image_size_px: plan.image_size_px,
                seed: plan.seed,
                ..ProbeOptions::default()
            };
            let result = cross_validated_cut(&dataset, &options, &device, |_, _| {})
                .map_err(JobError::from)
                .and_then(|choice| choice.ok_or(JobError::TooFewToProbe));
            Self::send(tx, JobResult::Probed(result));
        });
    }
}

/// Up to 256 evaluation crops of the loaded training images, to calibrate an int8 export on;
/// with none loaded, of the folder the model was trained on (recorded when it was saved).
fn calibration_crops(
    data: Option<&Dataset>,
    predictor: &Predictor,
    trained_on: Option<&std::path::Path>,
) -> Result<Vec<RgbImage>, crate::export::ExportError> {
    let pre = predictor.preprocessing();
    if let (None, Some(dir)) = (data, trained_on.filter(|d| d.is_dir())) {
        return crate::export::int8::calibration_crops(dir, pre, 256);
    }
    let train = data.map_or(&[][..], |d| &d.train[..]);
    let step = train.len().div_ceil(256).max(1);
    let crops: Vec<RgbImage> = train
        .iter()
        .step_by(step)
        .filter_map(|s| s.image(pre.resize_px).ok())
        .map(|image| pre.eval_crop(&image))
        .collect();
    if crops.is_empty() {
        return Err(crate::export::ExportError::Check(
            "an int8 export is calibrated on the training images: load the training folder first"
                .into(),
        ));
    }
    Ok(crops)
}

/// Answers of the inspection jobs, waiting for the UI thread's context to become textures.
#[derive(Debug)]
pub enum PendingImages {
    Inspected(Inspection),
    Explained {
        path: PathBuf,
        result: Result<(egui::ColorImage, String), String>,
    },
}

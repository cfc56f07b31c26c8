//! Editing a dataset where it lives. Classes are folders and an image's label is the folder it
//! sits in, so every edit is a file-system move: a new class is a new folder, relabelling moves
//! the file, removing sends it to the desktop's trash. Moves never overwrite (a name taken in
//! the target folder gets a ` (2)` suffix) and are atomic where the file system allows; each
//! action is recorded in a [`Journal`] that [`undo`] plays backwards, and [`apply`] brings a
//! loaded [`Dataset`] up to date without decoding anything again.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, Sample, ValidationSource};
use super::trash::{Trash, Trashed, numbered};
use crate::fsutil::move_no_replace;

/// Why an edit could not be made (nothing is lost in any case).
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0:?} cannot be a class name: give a name without '/' or '\\', not starting with '.'")]
    BadName(String),
    #[error("a class {0:?} exists already")]
    ClassExists(String),
    #[error("there is no class {0:?}")]
    NoSuchClass(String),
    #[error("{} is read-only: the dataset cannot be edited there", .0.display())]
    ReadOnly(PathBuf),
    #[error("cannot move {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no trash folder (neither XDG_DATA_HOME nor HOME is set): nothing was removed")]
    NoTrash,
}

impl EditError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        if matches!(
            source.kind(),
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
        ) {
            return Self::ReadOnly(path.parent().unwrap_or(path).to_owned());
        }
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One step of an action, as it was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A folder was created (a new class).
    Made(PathBuf),
    /// A file or folder was moved (relabelled, or a class renamed).
    Moved { from: PathBuf, to: PathBuf },
    /// A file or folder went to the trash; `path` as the dataset names it.
    Trashed { path: PathBuf, item: Trashed },
}

/// What one action did: one entry for undo, however many files it touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    pub steps: Vec<Step>,
    /// The action in words ("moved 3 images to cat").
    pub summary: String,
}

/// The folders of a dataset: the training folder, and the validation folder when separate.
#[derive(Debug, Clone, Copy)]
pub struct Folders<'a> {
    pub train: &'a Path,
    pub val: Option<&'a Path>,
}

impl<'a> Folders<'a> {
    /// The folders of a loaded dataset.
    pub fn of(dataset: &'a Dataset) -> Self {
        let val = match &dataset.validation {
            ValidationSource::Folder(dir) => Some(dir.as_path()),
            ValidationSource::Split { .. } => None,
        };
        Self {
            train: &dataset.root,
            val,
        }
    }

    fn roots(self) -> impl Iterator<Item = &'a Path> {
        std::iter::once(self.train).chain(self.val)
    }
}

fn check_name(name: &str) -> Result<(), EditError> {
    let bad = name.trim().is_empty()
        || name != name.trim()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.len() > 255;
    if bad {
        return Err(EditError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Creates the class `name` (its folder in the training folder, and in a separate validation
/// folder).
pub fn new_class(folders: Folders<'_>, name: &str) -> Result<Journal, EditError> {
    check_name(name)?;
    if folders.train.join(name).exists() {
        return Err(EditError::ClassExists(name.to_owned()));
    }
    let mut journal = Journal {
        summary: format!("new class {name}"),
        ..Journal::default()
    };
    for root in folders.roots() {
        let dir = root.join(name);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| EditError::io(&dir, e))?;
            journal.steps.push(Step::Made(dir));
        }
    }
    Ok(journal)
}

/// Renames the class `from` to `to` (its folder, wherever it has one).
pub fn rename_class(folders: Folders<'_>, from: &str, to: &str) -> Result<Journal, EditError> {
    check_name(to)?;
    if !folders.train.join(from).is_dir() {
        return Err(EditError::NoSuchClass(from.to_owned()));
    }
    let mut journal = Journal {
        summary: format!("renamed class {from} to {to}"),
        ..Journal::default()
    };
    for root in folders.roots() {
        let (old, new) = (root.join(from), root.join(to));
        if !old.is_dir() {
            continue;
        }
        match move_no_replace(&old, &new) {
            Ok(()) => journal.steps.push(Step::Moved { from: old, to: new }),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                undo_steps(&journal.steps, None)?;
                return Err(EditError::ClassExists(to.to_owned()));
            }
            Err(e) => {
                undo_steps(&journal.steps, None)?;
                return Err(EditError::io(&old, e));
            }
        }
    }
    Ok(journal)
}

/// Sends the class `name` (its folders, with their images) to the trash.
pub fn delete_class(
    folders: Folders<'_>,
    name: &str,
    trash: Option<&Trash>,
) -> Result<Journal, EditError> {
    let trash = trash.ok_or(EditError::NoTrash)?;
    if !folders.train.join(name).is_dir() {
        return Err(EditError::NoSuchClass(name.to_owned()));
    }
    let mut journal = Journal {
        summary: format!("deleted class {name} (to the trash)"),
        ..Journal::default()
    };
    for root in folders.roots() {
        let dir = root.join(name);
        if dir.is_dir() {
            let item = trash.put(&dir).map_err(|e| EditError::io(&dir, e))?;
            journal.steps.push(Step::Trashed { path: dir, item });
        }
    }
    Ok(journal)
}

/// Moves images to the class `class`, each within its own dataset folder (training images to
/// the training folder's `class/`, validation images to the validation folder's). Images that
/// cannot be moved are reported; the others are moved.
pub fn move_images(images: &[PathBuf], class: &str) -> (Journal, Vec<EditError>) {
    let mut journal = Journal {
        summary: format!("moved {} image(s) to {class}", images.len()),
        ..Journal::default()
    };
    let mut errors = Vec::new();
    for image in images {
        let Some(root) = image.parent().and_then(Path::parent) else {
            continue;
        };
        let dir = root.join(class);
        if image.parent() == Some(dir.as_path()) {
            continue;
        }
        if !dir.is_dir() {
            match std::fs::create_dir(&dir) {
                Ok(()) => journal.steps.push(Step::Made(dir.clone())),
                Err(e) => {
                    errors.push(EditError::io(&dir, e));
                    continue;
                }
            }
        }
        match move_to_free_name(image, &dir) {
            Ok(to) => journal.steps.push(Step::Moved {
                from: image.clone(),
                to,
            }),
            Err(e) => errors.push(EditError::io(image, e)),
        }
    }
    (journal, errors)
}

/// Sends images to the trash.
pub fn remove_images(images: &[PathBuf], trash: Option<&Trash>) -> (Journal, Vec<EditError>) {
    let mut journal = Journal {
        summary: format!("removed {} image(s) (to the trash)", images.len()),
        ..Journal::default()
    };
    let Some(trash) = trash else {
        return (journal, vec![EditError::NoTrash]);
    };
    let mut errors = Vec::new();
    for image in images {
        match trash.put(image) {
            Ok(item) => journal.steps.push(Step::Trashed {
                path: image.clone(),
                item,
            }),
            Err(e) => errors.push(EditError::io(image, e)),
        }
    }
    (journal, errors)
}

/// Moves `file` into `dir` under its own name, or `name (2)`, `name (3)`, … when taken.
fn move_to_free_name(file: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not a file"))?
        .to_string_lossy()
        .into_owned();
    place_under_free_name(file, dir, &name)
}

/// Moves `file` into `dir` as `name`, or `name (2)`, `name (3)`, … when taken; never over
/// an existing file.
pub fn place_under_free_name(file: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    for n in 1..10_000 {
        let to = dir.join(if n == 1 {
            name.to_owned()
        } else {
            numbered(name, n)
        });
        match move_no_replace(file, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "no free name in the target folder",
    ))
}

/// Plays an action backwards: files back where they were (never over something now there),
/// trashed ones back from the trash, new folders removed when empty.
pub fn undo(journal: &Journal, trash: Option<&Trash>) -> Result<(), EditError> {
    undo_steps(&journal.steps, trash)
}

fn undo_steps(steps: &[Step], trash: Option<&Trash>) -> Result<(), EditError> {
    for step in steps.iter().rev() {
        match step {
            Step::Made(dir) => {
                // Something put there since keeps it.
                let _ = std::fs::remove_dir(dir);
            }
            Step::Moved { from, to } => {
                move_no_replace(to, from).map_err(|e| EditError::io(to, e))?;
            }
            Step::Trashed { path, item } => {
                let trash = trash.ok_or(EditError::NoTrash)?;
                trash.restore(item).map_err(|e| EditError::io(path, e))?;
            }
        }
    }
    Ok(())
}

/// The dataset after `journal`'s action: samples follow their files (their cached pixels kept),
/// trashed ones go, and the classes are the training folder's class folders as they now are.
pub fn apply(dataset: &Dataset, journal: &Journal) -> Dataset {
    let relocate = |path: &Path| -> Option<PathBuf> {
        let mut path = path.to_owned();
        for step in &journal.steps {
            match step {
                Step::Moved { from, to } => {
                    if let Ok(rest) = path.strip_prefix(from) {
                        path = if rest.as_os_str().is_empty() {
                            to.clone()
                        } else {
                            to.join(rest)
                        };
                    }
                }
                Step::Trashed { path: gone, .. } if path.starts_with(gone) => return None,
                _ => {}
            }
        }
        Some(path)
    };
    let class_of = |path: &Path| {
        path.parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    let mut classes: BTreeSet<String> = dataset
        .classes
        .iter()
        .filter_map(|c| relocate(&dataset.root.join(c)))
        .filter_map(|dir| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for step in &journal.steps {
        if let Step::Made(dir) = step
            && dir.parent() == Some(dataset.root.as_path())
            && let Some(name) = dir.file_name()
        {
            classes.insert(name.to_string_lossy().into_owned());
        }
    }
    let classes: Vec<String> = classes.into_iter().collect();
    let follow = |samples: &[Sample]| -> Vec<Sample> {
        let mut out: Vec<Sample> = samples
            .iter()
            .filter_map(|s| {
                let path = relocate(&s.path)?;
                let label = classes
                    .iter()
                    .position(|c| Some(c) == class_of(&path).as_ref())?;
                let mut moved = s.clone();
                moved.path = path;
                moved.label = label;
                Some(moved)
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    };
    Dataset {
        root: dataset.root.clone(),
        train: follow(&dataset.train),
        val: follow(&dataset.val),
        classes,
        skipped: dataset.skipped.clone(),
        validation: dataset.validation.clone(),
        cache_short_side_px: dataset.cache_short_side_px,
    }
}

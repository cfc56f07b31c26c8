//! Editing the dataset from the window: classes made, renamed and deleted, images moved to
//! another class or removed, and undo. The file moves run on a job thread (one edit at a
//! time); the answer brings the loaded dataset up to date without decoding it again.

use std::path::PathBuf;
use std::sync::Arc;

use super::app::StudioApp;
use super::command::{Command, THUMBNAILS_PER_CLASS};
use super::jobs::{Edited, JobResult, Jobs};
use super::state::data::{UNDO_LEVELS, UndoEntry};
use super::state::shell::Topic;
use crate::data::dataset::Dataset;
use crate::data::edit::{self, EditError, Folders, Journal};
use crate::data::trash::Trash;

/// An edit to make on disk.
#[derive(Debug, Clone)]
enum Action {
    NewClass(String),
    RenameClass { from: String, to: String },
    DeleteClass(String),
    Move { images: Vec<PathBuf>, class: String },
    Remove(Vec<PathBuf>),
}

impl StudioApp {
    /// Sets where removed images and classes go (the desktop's trash by default).
    pub fn set_trash(&mut self, trash: Trash) {
        self.trash = Some(trash);
    }

    /// The editing commands.
    pub(super) fn apply_edit_command(&mut self, command: Command) {
        let data = &mut self.state.data;
        let action = match command {
            Command::SetClassDraft(name) => {
                data.class_draft = name;
                return;
            }
            Command::SelectImage { path, add } => {
                if !data.selection.remove(&path) {
                    if !add {
                        data.selection.clear();
                    }
                    data.selection.insert(path);
                }
                return;
            }
            Command::ClearSelection => {
                data.selection.clear();
                return;
            }
            Command::SelectImages { paths, add } => {
                if !add {
                    data.selection.clear();
                }
                data.selection.extend(paths);
                return;
            }
            Command::MoveImages { images, class } => Action::Move { images, class },
            Command::RemoveImages(images) => Action::Remove(images),
            Command::UndoEdit => return self.undo_edit(),
            Command::NewClass(name) => Action::NewClass(name.trim().to_owned()),
            Command::RenameClass { from, to } => Action::RenameClass {
                from,
                to: to.trim().to_owned(),
            },
            Command::DeleteClass(name) => Action::DeleteClass(name),
            Command::MoveSelected(class) => Action::Move {
                images: data.selection.iter().cloned().collect(),
                class,
            },
            Command::RemoveSelected => Action::Remove(data.selection.iter().cloned().collect()),
            _ => return,
        };
        self.start_edit(action);
    }

    fn start_edit(&mut self, action: Action) {
        let Some(dataset) = self.state.data.dataset.clone() else {
            return;
        };
        if self.state.data.editing || self.is_training() || self.jobs.is_loading() {
            self.state
                .shell
                .notices
                .push("wait for the training or loading in progress before editing".into());
            return;
        }
        if matches!(&action, Action::Move { images, .. } | Action::Remove(images) if images.is_empty())
        {
            return;
        }
        self.state.data.editing = true;
        let trash = self.trash.clone();
        self.jobs.run("dataset-edit", move |tx| {
            let (journal, errors) = perform(&dataset, action, trash.as_ref());
            let after = Arc::new(edit::apply(&dataset, &journal));
            Jobs::send(
                tx,
                JobResult::Edited(Edited {
                    journal,
                    errors: errors.iter().map(ToString::to_string).collect(),
                    before: dataset,
                    after,
                }),
            );
        });
    }

    fn undo_edit(&mut self) {
        if self.state.data.editing || self.is_training() {
            return;
        }
        let Some(entry) = self.state.data.undo.pop() else {
            return;
        };
        self.state.data.editing = true;
        let trash = self.trash.clone();
        self.jobs.run("dataset-undo", move |tx| {
            let result = edit::undo(&entry.journal, trash.as_ref()).map_err(|e| e.to_string());
            let UndoEntry { journal, before } = entry;
            Jobs::send(
                tx,
                JobResult::Undone {
                    journal,
                    before,
                    result,
                },
            );
        });
    }

    /// An edit was made: the dataset follows, the edit can be undone.
    pub(super) fn on_edited(&mut self, edited: Edited) {
        let data = &mut self.state.data;
        data.editing = false;
        data.selection.clear();
        if edited.errors.is_empty() {
            self.state.shell.succeeded(Topic::Data);
        }
        for e in edited.errors {
            self.state.shell.error(Topic::Data, e);
        }
        if edited.journal.steps.is_empty() {
            return;
        }
        self.state
            .shell
            .notices
            .push(edited.journal.summary.clone());
        data.undo.push(UndoEntry {
            journal: edited.journal,
            before: edited.before,
        });
        if data.undo.len() > UNDO_LEVELS {
            data.undo.remove(0);
        }
        self.dataset_edited(edited.after);
    }

    /// An undo ended: on success the dataset is the one before the edit again.
    pub(super) fn on_undone(&mut self, entry: UndoEntry, result: Result<(), String>) {
        self.state.data.editing = false;
        match result {
            Ok(()) => {
                self.state.shell.succeeded(Topic::Data);
                let summary = format!("undone: {}", entry.journal.summary);
                self.state.shell.notices.push(summary);
                self.dataset_edited(entry.before);
            }
            Err(e) => self
                .state
                .shell
                .error(Topic::Data, format!("cannot undo: {e}")),
        }
    }

    fn dataset_edited(&mut self, dataset: Arc<Dataset>) {
        self.state.data.revision += 1;
        let missing: Vec<PathBuf> = (0..dataset.classes.len())
            .flat_map(|c| dataset.examples(c, THUMBNAILS_PER_CLASS))
            .map(|s| s.path.clone())
            .filter(|p| !self.state.shell.thumbnails.contains_key(p))
            .collect();
        self.jobs.thumbnails(missing);
        self.state.data.dataset = Some(dataset);
        self.refresh_recommendation();
        // A dataset from before a reload for another plan is loaded again as the plan needs.
        self.dataset_follows_plan();
    }
}

/// Makes `action` on disk: what was done, and what could not be.
fn perform(dataset: &Dataset, action: Action, trash: Option<&Trash>) -> (Journal, Vec<EditError>) {
    let folders = Folders::of(dataset);
    let one = |result: Result<Journal, EditError>| match result {
        Ok(journal) => (journal, Vec::new()),
        Err(e) => (Journal::default(), vec![e]),
    };
    match action {
        Action::NewClass(name) => one(edit::new_class(folders, &name)),
        Action::RenameClass { from, to } => one(edit::rename_class(folders, &from, &to)),
        Action::DeleteClass(name) => one(edit::delete_class(folders, &name, trash)),
        Action::Move { images, class } => edit::move_images(&images, &class),
        Action::Remove(images) => edit::remove_images(&images, trash),
    }
}

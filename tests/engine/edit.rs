//! Editing a dataset on disk: classes made, renamed and deleted, images moved and removed, each
//! undone; the loaded dataset follows every edit exactly as a fresh load of the folder would.

use crate::common;

use std::path::{Path, PathBuf};

use transfer_studio::data::dataset::{Dataset, LoadOptions, LoadProgress, load_dataset};
use transfer_studio::data::edit::{self, EditError, Folders, Journal};
use transfer_studio::data::trash::Trash;

fn load(root: &Path) -> Dataset {
    let options = LoadOptions {
        val_fraction: 0.0,
        ..LoadOptions::default()
    };
    load_dataset(root, &options, &LoadProgress::default()).expect("load")
}

/// Paths and labels by class name: what must agree between an edited dataset and a reload.
fn listing(d: &Dataset) -> Vec<(PathBuf, String)> {
    let mut all: Vec<(PathBuf, String)> = d
        .train
        .iter()
        .chain(&d.val)
        .map(|s| (s.path.clone(), d.classes[s.label].clone()))
        .collect();
    all.sort();
    all
}

/// Applies `journal` to `dataset` and checks it against a reload of the folder (a new class
/// with no image yet is the one difference a reload cannot show).
fn follows(dataset: &Dataset, journal: &Journal) -> Dataset {
    let edited = edit::apply(dataset, journal);
    let fresh = load(&dataset.root);
    assert_eq!(listing(&edited), listing(&fresh));
    edited
}

#[test]
fn each_edit_moves_files_on_disk_and_the_dataset_follows_and_undo_restores() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("data");
    common::write_shapes(&root, 2, 3, 24, 5);
    let trash = Trash::at(dir.path().join("Trash"));
    let original = load(&root);
    let folders = Folders::of(&original);

    // A new class, then images relabelled into it (a name taken there gets a suffix).
    let made = edit::new_class(folders, "star").expect("new class");
    assert!(root.join("star").is_dir());
    assert!(matches!(
        edit::new_class(folders, "circle"),
        Err(EditError::ClassExists(_))
    ));
    assert!(matches!(
        edit::new_class(folders, "../x"),
        Err(EditError::BadName(_))
    ));
    std::fs::copy(root.join("circle/000.png"), root.join("star/000.png")).expect("copy");
    let moved_images = vec![root.join("circle/000.png"), root.join("square/001.png")];
    let (moved, errors) = edit::move_images(&moved_images, "star");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        common::names_in(&root.join("star")),
        ["000 (2).png", "000.png", "001.png"]
    );
    assert_eq!(
        common::names_in(&root.join("circle")),
        ["001.png", "002.png"]
    );

    // Undo puts them back; the folder is as before the move.
    edit::undo(&moved, Some(&trash)).expect("undo move");
    assert_eq!(
        common::names_in(&root.join("circle")),
        ["000.png", "001.png", "002.png"]
    );
    assert_eq!(common::names_in(&root.join("star")), ["000.png"]);
    std::fs::remove_file(root.join("star/000.png")).expect("rm");
    edit::undo(&made, Some(&trash)).expect("undo new class");
    assert!(!root.join("star").exists());
    assert_eq!(listing(&load(&root)), listing(&original));

    // Relabel, as the window does it: the dataset follows without a reload.
    let (moved, _) = edit::move_images(&[root.join("circle/002.png")], "square");
    let relabelled = follows(&original, &moved);
    assert_eq!(relabelled.train.len(), original.train.len());

    // Rename a class, remove an image, delete a class: each followed, each undone.
    let renamed = edit::rename_class(Folders::of(&relabelled), "square", "box").expect("rename");
    let boxed = follows(&relabelled, &renamed);
    assert_eq!(boxed.classes, ["box", "circle"]);
    let (removed, errors) = edit::remove_images(&[root.join("box/000.png")], Some(&trash));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(trash.root().join("files/000.png").is_file());
    let fewer = follows(&boxed, &removed);
    assert_eq!(fewer.train.len(), original.train.len() - 1);
    let deleted = edit::delete_class(Folders::of(&fewer), "circle", Some(&trash)).expect("delete");
    assert!(!root.join("circle").exists());
    let one_class = edit::apply(&fewer, &deleted);
    assert_eq!(one_class.classes, ["box"]);

    for journal in [&deleted, &removed, &renamed, &moved] {
        edit::undo(journal, Some(&trash)).expect("undo");
    }
    assert_eq!(listing(&load(&root)), listing(&original));
    assert_eq!(
        common::names_in(&trash.root().join("files")),
        Vec::<String>::new()
    );
}

#[test]
fn a_read_only_folder_says_so_and_keeps_its_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("data");
    common::write_shapes(&root, 2, 2, 24, 6);
    let locked = std::fs::Permissions::from_mode(0o555);
    for class in ["circle", "square"] {
        std::fs::set_permissions(root.join(class), locked.clone()).expect("chmod");
    }
    std::fs::set_permissions(&root, locked).expect("chmod");
    let (journal, errors) = edit::move_images(&[root.join("circle/000.png")], "square");
    let writable = std::fs::Permissions::from_mode(0o755);
    for path in [root.clone(), root.join("circle"), root.join("square")] {
        std::fs::set_permissions(path, writable.clone()).expect("chmod");
    }
    // Root ignores permissions: then the move simply happens.
    if journal.steps.is_empty() {
        assert!(
            matches!(errors.as_slice(), [EditError::ReadOnly(_)]),
            "{errors:?}"
        );
        assert!(errors[0].to_string().contains("read-only"));
        assert!(root.join("circle/000.png").is_file());
    } else {
        eprintln!("running as root: permissions do not stop the move");
    }
}

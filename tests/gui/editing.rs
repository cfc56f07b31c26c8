//! Building and fixing the dataset in the window: a class made, images moved to it and removed
//! with the keyboard, each undone; the folder on disk matches the window at every step.

use crate::common;
use crate::harness::{harness, step_until};

use std::path::Path;

use egui_kittest::kittest::Queryable;
use transfer_studio::data::trash::Trash;
use transfer_studio::ui::{AppState, Command, Tab};

fn class_of(state: &AppState, file: &Path) -> Option<String> {
    let d = state.data.dataset.as_ref()?;
    let s = d.train.iter().chain(&d.val).find(|s| s.path == file)?;
    Some(d.classes[s.label].clone())
}

fn idle(state: &AppState) -> bool {
    !state.data.editing
}

#[test]
fn a_class_is_made_images_moved_and_removed_with_keys_and_each_step_undone() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("data");
    common::write_shapes(&root, 2, 3, 32, 8);
    let mut h = harness();
    h.state_mut().set_trash(Trash::at(dir.path().join("Trash")));
    h.state_mut().apply(Command::SetTrainFolder(root.clone()));
    h.state_mut().apply(Command::ShowTab(Tab::Data));
    let first = root.join("circle/000.png");
    let second = root.join("square/001.png");
    step_until(&mut h, "the dataset and its thumbnails", |s| {
        s.data.dataset.is_some()
            && [&first, &second]
                .iter()
                .all(|p| s.shell.thumbnails.contains_key(p.as_path()))
    });

    // A new class, typed and clicked: a new folder.
    let field = h.get_by(|n| n.author_id() == Some("class-name"));
    field.focus();
    field.type_text("star");
    h.run();
    h.get_by(|n| n.author_id() == Some("new-class")).click();
    step_until(&mut h, "the new class", |s| {
        idle(s)
            && s.data
                .dataset
                .as_ref()
                .is_some_and(|d| d.classes.len() == 3)
    });
    assert!(root.join("star").is_dir());
    assert_eq!(
        h.state()
            .state()
            .data
            .dataset
            .as_ref()
            .expect("data")
            .classes,
        ["circle", "square", "star"]
    );

    // Select an image, press 3: it moves to star.
    let thumb = |p: &Path| format!("thumb:{}", p.display());
    h.get_by(|n| n.author_id() == Some(&thumb(&first))).click();
    h.run();
    assert!(h.state().state().data.selection.contains(&first));
    h.key_press(egui::Key::Num3);
    step_until(&mut h, "the move", |s| {
        idle(s) && s.data.selection.is_empty()
    });
    assert_eq!(common::names_in(&root.join("star")), ["000.png"]);
    assert_eq!(
        common::names_in(&root.join("circle")),
        ["001.png", "002.png"]
    );
    assert_eq!(
        class_of(h.state().state(), &root.join("star/000.png")).as_deref(),
        Some("star")
    );

    // Select another, press Delete: it goes to the trash.
    step_until(&mut h, "the thumbnails", |s| {
        s.shell.thumbnails.contains_key(second.as_path())
    });
    h.get_by(|n| n.author_id() == Some(&thumb(&second))).click();
    h.run();
    h.key_press(egui::Key::Delete);
    step_until(&mut h, "the removal", |s| {
        idle(s) && s.data.selection.is_empty()
    });
    assert_eq!(
        common::names_in(&root.join("square")),
        ["000.png", "002.png"]
    );
    assert_eq!(
        common::names_in(&dir.path().join("Trash/files")),
        ["001.png"]
    );
    assert_eq!(class_of(h.state().state(), &second), None);

    // Ctrl+Z, one action at a time.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    step_until(&mut h, "the first undo", |s| {
        idle(s) && s.data.undo.len() == 2
    });
    assert_eq!(
        common::names_in(&root.join("square")),
        ["000.png", "001.png", "002.png"]
    );
    assert_eq!(
        class_of(h.state().state(), &second).as_deref(),
        Some("square")
    );
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    step_until(&mut h, "the second undo", |s| {
        idle(s) && s.data.undo.len() == 1
    });
    assert_eq!(
        common::names_in(&root.join("circle")),
        ["000.png", "001.png", "002.png"]
    );
    assert_eq!(common::names_in(&root.join("star")), Vec::<String>::new());
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    step_until(&mut h, "the third undo", |s| {
        idle(s) && s.data.undo.is_empty()
    });
    assert!(!root.join("star").exists());
    assert_eq!(
        h.state()
            .state()
            .data
            .dataset
            .as_ref()
            .expect("data")
            .classes,
        ["circle", "square"]
    );
}

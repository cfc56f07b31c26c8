//! The in-window file browser's window: a typed or pasted path, the folder's contents, and the
//! answer (this folder, the picked files, or a new name here).

use std::path::PathBuf;

use egui::{Color32, TextEdit};

use super::widgets::tag;
use crate::ui::browser::{BrowserEdit, FileBrowser, PathRequest, typed_path};
use crate::ui::command::Command;

const LIST_HEIGHT_PX: f32 = 260.0;

pub(super) fn browser_ui(ctx: &egui::Context, browser: &FileBrowser, out: &mut Vec<Command>) {
    egui::Window::new(browser.request.title())
        .id(egui::Id::unique("file-browser"))
        .collapsible(false)
        .anchor(egui::Align2::CENTER_TOP, [0.0, 80.0])
        .default_width(560.0)
        .show(ctx, |ui| {
            path_row_ui(ui, browser, out);
            ui.horizontal(|ui| {
                if let Some(parent) = browser.dir.parent()
                    && ui.button("Up").clicked()
                {
                    out.push(Command::BrowseTo(parent.to_path_buf()));
                }
                ui.label(browser.dir.display().to_string());
            });
            ui.separator();
            listing_ui(ui, browser, out);
            ui.separator();
            answer_ui(ui, browser, out);
        });
}

/// The typed or pasted path; Enter or Go shows it.
fn path_row_ui(ui: &mut egui::Ui, browser: &FileBrowser, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        let label = ui.label("Path");
        let mut typed = browser.typed.clone();
        let field = ui.add(
            TextEdit::singleline(&mut typed)
                .desired_width(400.0)
                .hint_text("type or paste a folder"),
        );
        let field = field.labelled_by(label.id);
        tag(ui, &field, "browser-path");
        if field.changed() {
            out.push(Command::EditBrowser(BrowserEdit::Typed(typed.clone())));
        }
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Go").clicked() || entered {
            out.push(Command::BrowseTo(typed_path(&typed)));
        }
    });
}

/// The folder's sub-folders (click to open) and usable files (click to pick).
fn listing_ui(ui: &mut egui::Ui, browser: &FileBrowser, out: &mut Vec<Command>) {
    let entries = match &browser.entries {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("reading the folder…");
            });
            return;
        }
        Some(Err(e)) => {
            ui.colored_label(Color32::from_rgb(200, 40, 40), e);
            return;
        }
        Some(Ok(entries)) => entries,
    };
    if entries.is_empty() {
        ui.label("(nothing to show here)");
    }
    let row_height_px = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    egui::ScrollArea::vertical()
        .id_salt("browser-list")
        .max_height(LIST_HEIGHT_PX)
        .auto_shrink([false, true])
        .show_rows(ui, row_height_px, entries.len(), |ui, range| {
            for entry in &entries[range] {
                if entry.is_dir {
                    if ui
                        .selectable_label(false, format!("{}/", entry.name))
                        .clicked()
                    {
                        out.push(Command::BrowseTo(entry.path.clone()));
                    }
                    continue;
                }
                let picked = browser.selected.contains(&entry.path);
                if ui.selectable_label(picked, &entry.name).clicked() {
                    out.push(Command::EditBrowser(match browser.request {
                        PathRequest::ExportFile => BrowserEdit::NewName(entry.name.clone()),
                        _ => BrowserEdit::Toggle(entry.path.clone()),
                    }));
                }
            }
        });
}

/// The new name (saving, exporting) and the buttons that answer or cancel.
fn answer_ui(ui: &mut egui::Ui, browser: &FileBrowser, out: &mut Vec<Command>) {
    let request = browser.request;
    if request.wants_new_name() {
        ui.horizontal(|ui| {
            let label = ui.label("Name");
            let mut name = browser.new_name.clone();
            let field = ui.add(TextEdit::singleline(&mut name).desired_width(300.0));
            if field.labelled_by(label.id).changed() {
                out.push(Command::EditBrowser(BrowserEdit::NewName(name)));
            }
        });
    }
    let answer = match request {
        PathRequest::SaveModel => "Save here".to_owned(),
        PathRequest::ExportFile => "Export here".to_owned(),
        PathRequest::Images => match browser.selected.len() {
            1 => "Add 1 image".to_owned(),
            n => format!("Add {n} images"),
        },
        _ => "Choose this folder".to_owned(),
    };
    ui.horizontal(|ui| {
        let chosen: Option<Vec<PathBuf>> = browser.chosen();
        let button = ui.add_enabled(chosen.is_some(), egui::Button::new(answer));
        tag(ui, &button, "browser-choose");
        if button.clicked() {
            out.push(Command::ChooseInBrowser);
        }
        if ui.button("Cancel").clicked() {
            out.push(Command::CloseBrowser);
        }
    });
}

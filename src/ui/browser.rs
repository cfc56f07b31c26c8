//! The in-window file browser: used when the desktop's file dialog cannot open (no
//! xdg-desktop-portal and no zenity, as on a plain X session), and for a typed or pasted path.

use std::path::{Path, PathBuf};

/// What a file dialog is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRequest {
    TrainFolder,
    ValidationFolder,
    OpenModel,
    SaveModel,
    Images,
    ExportFile,
    /// A network's pretrained weights (.safetensors, .pth or .pt).
    Weights,
}

/// Files a weights file may be.
pub const WEIGHTS_EXTENSIONS: &[&str] = &["safetensors", "pth", "pt"];

impl PathRequest {
    pub fn title(self) -> &'static str {
        match self {
            Self::TrainFolder => "Choose the training folder",
            Self::ValidationFolder => "Choose the validation folder",
            Self::OpenModel => "Open a saved model (its folder)",
            Self::SaveModel => "Save the model (choose or name a folder)",
            Self::Images => "Add images",
            Self::ExportFile => "Export the model (.onnx or .tflite)",
            Self::Weights => "Choose the network's weights (.safetensors, .pth or .pt)",
        }
    }

    /// Whether the answer is the folder being shown (else files in it).
    pub fn wants_folder(self) -> bool {
        matches!(
            self,
            Self::TrainFolder | Self::ValidationFolder | Self::OpenModel | Self::SaveModel
        )
    }

    /// Whether the answer is a new name inside the folder shown.
    pub fn wants_new_name(self) -> bool {
        matches!(self, Self::SaveModel | Self::ExportFile)
    }

    /// Files listed besides folders (`None`: folders only).
    pub fn extensions(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Images => Some(crate::data::decode::IMAGE_EXTENSIONS),
            Self::ExportFile => Some(&["onnx", "tflite"]),
            Self::Weights => Some(WEIGHTS_EXTENSIONS),
            _ => None,
        }
    }

    /// The name offered for a new file or folder.
    pub fn default_name(self) -> &'static str {
        match self {
            Self::SaveModel => "my-model",
            Self::ExportFile => "model.onnx",
            _ => "",
        }
    }
}

/// An edit of the browser's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserEdit {
    Typed(String),
    NewName(String),
    /// Picks a file, or unpicks it.
    Toggle(PathBuf),
}

/// A listed folder or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub is_dir: bool,
}

/// The browser's state: the folder shown, its listing (filled by a background job), the typed
/// path, the picked files and the new name.
#[derive(Debug, Clone)]
pub struct FileBrowser {
    pub request: PathRequest,
    pub dir: PathBuf,
    pub typed: String,
    /// `None` while the listing is being read.
    pub entries: Option<Result<Vec<Entry>, String>>,
    pub selected: Vec<PathBuf>,
    pub new_name: String,
}

impl FileBrowser {
    pub fn new(request: PathRequest, dir: PathBuf) -> Self {
        Self {
            request,
            typed: dir.display().to_string(),
            dir,
            entries: None,
            selected: Vec::new(),
            new_name: request.default_name().to_owned(),
        }
    }

    pub fn edit(&mut self, edit: BrowserEdit) {
        match edit {
            BrowserEdit::Typed(text) => self.typed = text,
            BrowserEdit::NewName(name) => self.new_name = name,
            BrowserEdit::Toggle(path) => match self.selected.iter().position(|p| *p == path) {
                Some(i) => {
                    self.selected.remove(i);
                }
                None => self.selected.push(path),
            },
        }
    }

    /// Shows `dir` (its listing follows from a background job).
    pub fn go_to(&mut self, dir: PathBuf) {
        self.typed = dir.display().to_string();
        self.dir = dir;
        self.entries = None;
    }

    /// The answer, once there is one: the folder shown, the picked files, or a new name in
    /// the folder shown.
    pub fn chosen(&self) -> Option<Vec<PathBuf>> {
        if self.request.wants_new_name() {
            let name = self.new_name.trim();
            let plain = !name.is_empty() && Path::new(name).file_name().is_some_and(|n| n == name);
            return plain.then(|| vec![self.dir.join(name)]);
        }
        if self.request.wants_folder() {
            return Some(vec![self.dir.clone()]);
        }
        (!self.selected.is_empty()).then(|| self.selected.clone())
    }
}

/// A typed or pasted path: surrounding spaces and quotes dropped, `~` for the home folder,
/// `file://` URIs (as file managers paste them) read as paths.
pub fn typed_path(text: &str) -> PathBuf {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let text = text.strip_prefix("file://").unwrap_or(text);
    match (text.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(text),
    }
}

/// Where a browser starts: `near` (a folder chosen before) when given, else the home folder.
pub fn start_dir(near: Option<&Path>) -> PathBuf {
    near.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The folders of `dir` and the files `request` can use, folders first, each sorted by name;
/// hidden entries left out. (Blocking: run it off the UI thread.)
pub fn list_dir(dir: &Path, request: PathRequest) -> Result<Vec<Entry>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut entries: Vec<Entry> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let is_dir = path.is_dir();
            let wanted = is_dir
                || request.extensions().is_some_and(|exts| {
                    path.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| exts.iter().any(|w| w.eq_ignore_ascii_case(x)))
                });
            (!name.starts_with('.') && wanted).then_some(Entry { name, path, is_dir })
        })
        .collect();
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_puts_folders_first_and_keeps_only_usable_files() {
        let dir = tempfile::tempdir().expect("dir");
        for name in ["b.png", "a.JPG", "notes.txt", ".hidden.png", "model.onnx"] {
            std::fs::write(dir.path().join(name), b"x").expect("file");
        }
        std::fs::create_dir(dir.path().join("zoo")).expect("dir");
        let names = |request| -> Vec<String> {
            list_dir(dir.path(), request)
                .expect("list")
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names(PathRequest::Images), ["zoo", "a.JPG", "b.png"]);
        assert_eq!(names(PathRequest::ExportFile), ["zoo", "model.onnx"]);
        assert_eq!(names(PathRequest::TrainFolder), ["zoo"]);
        assert!(list_dir(&dir.path().join("absent"), PathRequest::Images).is_err());
    }

    #[test]
    fn typed_paths_lose_quotes_uris_and_tildes() {
        assert_eq!(typed_path("  '/data/cats' "), PathBuf::from("/data/cats"));
        assert_eq!(typed_path("file:///data/cats"), PathBuf::from("/data/cats"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(typed_path("~/cats"), PathBuf::from(home).join("cats"));
        }
        assert_eq!(typed_path("~bob/cats"), PathBuf::from("~bob/cats"));
    }

    #[test]
    fn the_answer_depends_on_the_request() {
        let mut b = FileBrowser::new(PathRequest::TrainFolder, PathBuf::from("/data"));
        assert_eq!(b.chosen(), Some(vec![PathBuf::from("/data")]));
        b.request = PathRequest::Images;
        assert_eq!(b.chosen(), None);
        b.selected.push(PathBuf::from("/data/a.png"));
        assert_eq!(b.chosen(), Some(vec![PathBuf::from("/data/a.png")]));
        b.request = PathRequest::ExportFile;
        b.new_name = "out.onnx".into();
        assert_eq!(b.chosen(), Some(vec![PathBuf::from("/data/out.onnx")]));
        b.new_name = "../escape.onnx".into();
        assert_eq!(b.chosen(), None, "a name, not a path");
    }
}

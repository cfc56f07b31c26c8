//! The bundled demo packs (see `assets/demo/README.md`), embedded in the binary and written
//! out to a folder on first use, so that a demo works offline with one click.

use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));
}

/// A bundled dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoPack {
    /// Crops of natural photos: the recommendation says *similar*.
    Photos,
    /// Fashion-MNIST clothing: *different*.
    Clothing,
}

impl DemoPack {
    pub const ALL: [DemoPack; 2] = [DemoPack::Photos, DemoPack::Clothing];

    pub fn name(self) -> &'static str {
        match self {
            DemoPack::Photos => "photos",
            DemoPack::Clothing => "clothing",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            DemoPack::Photos => "4 classes of natural photos (similar to ImageNet)",
            DemoPack::Clothing => "4 classes of 28 px grey clothing, Fashion-MNIST (different)",
        }
    }

    /// (path inside the pack, bytes) of every image.
    pub fn files(self) -> impl Iterator<Item = (&'static str, &'static [u8])> {
        let prefix = self.name();
        embedded::DEMO_FILES
            .iter()
            .filter_map(move |(path, bytes)| {
                path.strip_prefix(prefix)
                    .and_then(|p| p.strip_prefix('/'))
                    .map(|p| (p, *bytes))
            })
    }
}

/// Where packs are written: `$XDG_DATA_HOME/transfer-studio/demo` (or
/// `~/.local/share/transfer-studio/demo`, or the temporary folder without a home).
pub fn default_demo_root() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("transfer-studio").join("demo")
}

/// Writes the pack under `root` (atomically, once; an existing complete copy is reused) and
/// returns its folder.
pub fn materialize(pack: DemoPack, root: &Path) -> std::io::Result<PathBuf> {
    let target = root.join(pack.name());
    let marker = ".transfer-studio-demo";
    let expected = pack.files().count().to_string();
    if std::fs::read_to_string(target.join(marker)).is_ok_and(|s| s == expected) {
        return Ok(target);
    }
    std::fs::create_dir_all(root)?;
    crate::fsutil::replace_dir_atomically(
        &target,
        |dir| dir.join(marker).is_file(),
        |staging| {
            for (rel, bytes) in pack.files() {
                let path = staging.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, bytes)?;
            }
            std::fs::write(staging.join(marker), &expected)
        },
    )?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_embedded_and_written_out_once() {
        for pack in DemoPack::ALL {
            assert!(
                pack.files().count() >= 100,
                "{} is nearly empty",
                pack.name()
            );
        }
        let root = tempfile::tempdir().expect("dir");
        let dir = materialize(DemoPack::Clothing, root.path()).expect("write");
        let classes: Vec<_> = std::fs::read_dir(&dir)
            .expect("read")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .collect();
        assert_eq!(classes.len(), 4);
        // A second call reuses the copy.
        let again = materialize(DemoPack::Clothing, root.path()).expect("reuse");
        assert_eq!(again, dir);
    }
}

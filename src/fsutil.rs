//! Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of it.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over
/// `path`. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".transfer-studio-")
        .suffix(".partial")
        .tempfile_in(parent)?;
    file.write_all(bytes)?;
    make_readable(file.as_file())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Fills a fresh temporary directory beside `target` with `fill`, then moves it to `target`.
///
/// A half-filled directory is never visible under `target`: on error (or a crash) only a
/// hidden `.NAME.partial-*` sibling can remain, and it is removed on error. An existing
/// `target` is replaced only if `is_replaceable` accepts it (so a user's unrelated folder is
/// never overwritten).
pub fn replace_dir_atomically(
    target: &Path,
    is_replaceable: impl Fn(&Path) -> bool,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "target has no file name"))?
        .to_string_lossy()
        .into_owned();
    if target.exists() && !(target.is_dir() && is_replaceable(target)) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a saved model; choose another folder",
                target.display()
            ),
        ));
    }
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&parent)?;
    fill(staging.path())?;
    #[cfg(unix)]
    std::fs::set_permissions(
        staging.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(&parent)?;
        // Move the old directory aside (into a fresh empty name), the new one in, then drop the old.
        let old_path = old.path().to_owned();
        std::fs::remove_dir(&old_path)?;
        std::fs::rename(target, &old_path)?;
        if let Err(e) = std::fs::rename(staging.path(), target) {
            let _ = std::fs::rename(&old_path, target);
            return Err(e);
        }
        let _ = staging.keep();
        let _ = std::fs::remove_dir_all(&old_path);
    } else {
        std::fs::rename(staging.path(), target)?;
        let _ = staging.keep();
    }
    Ok(())
}

/// Writes a file that is flushed to disk before the directory holding it is published.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Temporary files are created private (0600); a saved file should be readable like any other.
fn make_readable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.bin");
        write_atomic(&path, b"first").expect("write");
        write_atomic(&path, b"second").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    }

    #[test]
    fn directories_are_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("model");
        let ok = |_: &Path| true;
        replace_dir_atomically(&target, ok, |d| write_synced(&d.join("a"), b"1")).expect("first");
        assert_eq!(std::fs::read(target.join("a")).expect("read"), b"1");
        let failed = replace_dir_atomically(&target, ok, |d| {
            write_synced(&d.join("a"), b"2")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(target.join("a")).expect("read"), b"1");
        replace_dir_atomically(&target, ok, |d| write_synced(&d.join("b"), b"3")).expect("second");
        assert!(!target.join("a").exists());
        assert_eq!(std::fs::read(target.join("b")).expect("read"), b"3");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("model")]);
        let refused = replace_dir_atomically(&target, |_| false, |_| Ok(()));
        assert!(refused.is_err());
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent").join("out.bin");
        assert!(write_atomic(&path, b"x").is_err());
    }
}

//! Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of it.
//!
//! Temporary files and staging folders carry the writing process's id in their names, so that
//! the next write to the same place removes what a killed process left behind (and never what a
//! live one is still writing).

use std::io::{Error, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over
/// `path`. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    if !parent.is_dir() {
        // Said plainly: the temporary file's error would name a path the user never chose.
        let message = format!("the folder {} does not exist", parent.display());
        return Err(Error::new(ErrorKind::NotFound, message));
    }
    remove_stale(&parent, &name);
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::Builder::new()
            .prefix(&staging_prefix(&name, "partial"))
            .tempfile_in(&parent)?;
        file.write_all(bytes)?;
        make_readable(file.as_file())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(explain)
}

/// Fills a fresh temporary directory beside `target` with `fill`, then moves it to `target`.
///
/// A half-filled directory is never visible under `target`: on error (or a crash) only a
/// hidden `.NAME.partial-PID-*` sibling can remain; it is removed on error, or by the next save
/// once its process is gone. An existing `target` is swapped with the new one in one step
/// where the file system can (Linux `renameat2` with `RENAME_EXCHANGE`), so that a crash at
/// any moment leaves either the old or the new directory at `target`. It is replaced only if
/// `is_replaceable` accepts it (so a user's unrelated folder is never overwritten).
pub fn replace_dir_atomically(
    target: &Path,
    is_replaceable: impl Fn(&Path) -> bool,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (parent, name) = parent_and_name(target)?;
    remove_stale(&parent, &name);
    if target.exists() && !(target.is_dir() && is_replaceable(target)) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a saved model; choose another folder",
                target.display()
            ),
        ));
    }
    let publish = || -> std::io::Result<()> {
        std::fs::create_dir_all(&parent)?;
        let staging = tempfile::Builder::new()
            .prefix(&staging_prefix(&name, "partial"))
            .tempdir_in(&parent)?;
        fill(staging.path())?;
        #[cfg(unix)]
        std::fs::set_permissions(
            staging.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        if !target.exists() {
            std::fs::rename(staging.path(), target)?;
            let _ = staging.keep();
        } else if exchange(staging.path(), target)? {
            // `staging` now holds the old directory; dropping it removes it.
            drop(staging);
        } else {
            replace_in_two_steps(staging, target, &parent, &name)?;
        }
        sync_dir(&parent);
        Ok(())
    };
    publish().map_err(explain)
}

/// Where `exchange` is not available: moves the old directory aside, the new one in, and
/// drops the old. A crash between the two renames leaves the old directory under a
/// `.NAME.old-PID-*` name, which the next save puts back (see [`remove_stale`]).
fn replace_in_two_steps(
    staging: tempfile::TempDir,
    target: &Path,
    parent: &Path,
    name: &str,
) -> std::io::Result<()> {
    let old = tempfile::Builder::new()
        .prefix(&staging_prefix(name, "old"))
        .tempdir_in(parent)?;
    let old_path = old.keep();
    std::fs::remove_dir(&old_path)?;
    std::fs::rename(target, &old_path)?;
    if let Err(e) = std::fs::rename(staging.path(), target) {
        let _ = std::fs::rename(&old_path, target);
        return Err(e);
    }
    let _ = staging.keep();
    let _ = std::fs::remove_dir_all(&old_path);
    Ok(())
}

/// Swaps two paths in one step. `Ok(false)`: this file system or platform cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

/// Linux `renameat2` with `flags`. `Ok(false)`: this file system (or kernel) does not know
/// the flag; nothing was renamed.
#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|e| Error::new(ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let error = Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(error),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Renames `from` to `to` only if `to` does not exist (an existing one is an `AlreadyExists`
/// error, never overwritten), in one step where the platform can (Linux `renameat2` with
/// `RENAME_NOREPLACE`). Across file systems a file is copied beside `to`, flushed, put in place
/// the same way, and only then removed at `from`: a crash leaves both copies, never neither.
pub fn move_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match rename_no_replace(from, to) {
        Err(e) if is_cross_device(&e) && from.is_file() => copy_then_remove(from, to),
        other => other,
    }
}

fn is_cross_device(error: &Error) -> bool {
    error.kind() == ErrorKind::CrossesDevices
}

fn copy_then_remove(from: &Path, to: &Path) -> std::io::Result<()> {
    let (parent, name) = parent_and_name(to)?;
    let staged = tempfile::Builder::new()
        .prefix(&staging_prefix(&name, "partial"))
        .tempfile_in(&parent)?;
    std::fs::copy(from, staged.path())?;
    staged.as_file().sync_all()?;
    let staged = staged.into_temp_path();
    rename_no_replace(&staged, to)?;
    // The copy is in place and durable: only now does the original go.
    let _ = staged.keep();
    sync_dir(&parent);
    std::fs::remove_file(from)
}

#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    if renameat2(from, to, libc::RENAME_NOREPLACE)? {
        return Ok(());
    }
    // A file system without the flag: check, then rename (a narrow race, as elsewhere).
    checked_rename(from, to)
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    checked_rename(from, to)
}

fn checked_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    std::fs::rename(from, to)
}

/// Makes the renames in `dir` durable (best effort: not every platform can open a folder).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn parent_and_name(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the path has no file name"))?
        .to_string_lossy()
        .into_owned();
    Ok((parent, name))
}

/// `.NAME.KIND-PID-`: the start of this process's temporary names for `name`.
pub(crate) fn staging_prefix(name: &str, kind: &str) -> String {
    format!(".{name}.{kind}-{}-", std::process::id())
}

/// Removes the temporary files and folders for `name` in `parent` whose process has ended (a
/// killed run's), and puts back an old directory that a crash left aside while `name` is
/// missing. Best effort: what cannot be removed is left for the next time.
pub fn remove_stale(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some((kind, pid)) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(parse_staging)
        else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let target = parent.join(name);
        if kind == "old" && !target.exists() {
            let _ = std::fs::rename(&path, &target);
        } else if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `partial-PID-XXXX` or `old-PID-XXXX` → (kind, pid).
fn parse_staging(rest: &str) -> Option<(&str, u32)> {
    let (kind, rest) = rest.split_once('-')?;
    if kind != "partial" && kind != "old" {
        return None;
    }
    let pid = rest.split_once('-')?.0.parse().ok()?;
    Some((kind, pid))
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Without a cheap portable check, assume it is alive: leftovers are only clutter.
        true
    }
}

/// A full disk (or a file-size limit) says so in words, and that nothing was replaced.
fn explain(error: Error) -> Error {
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded => Error::new(
            error.kind(),
            format!("not enough disk space ({error}); the previous file was kept"),
        ),
        _ => error,
    }
}

/// Writes a file that is flushed to disk before the directory holding it is published.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Temporary files are created private (0600); a saved file should be readable like any other.
pub(crate) fn make_readable(file: &std::fs::File) -> std::io::Result<()> {
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

    /// The id of a process that has ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn what_a_killed_writer_left_is_cleaned_up_by_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("model");
        let ok = |_: &Path| true;
        replace_dir_atomically(&target, ok, |d| write_synced(&d.join("a"), b"1")).expect("first");
        let dead = dead_pid();
        let stale = dir.path().join(format!(".model.partial-{dead}-abc"));
        std::fs::create_dir(&stale).expect("stale dir");
        std::fs::write(stale.join("weights"), b"half").expect("stale file");
        let stale_file = dir.path().join(format!(".out.onnx.partial-{dead}-xyz"));
        std::fs::write(&stale_file, b"half").expect("stale file");
        let live = dir
            .path()
            .join(format!(".model.partial-{}-live", std::process::id()));
        std::fs::create_dir(&live).expect("live dir");
        let other = dir.path().join(".model.partial-notapid-x");
        std::fs::create_dir(&other).expect("other dir");

        replace_dir_atomically(&target, ok, |d| write_synced(&d.join("a"), b"2")).expect("second");
        assert!(
            !stale.exists(),
            "a dead process's staging folder is removed"
        );
        assert!(live.exists(), "a live process's staging folder is kept");
        assert!(other.exists(), "names we did not make are kept");
        assert!(
            stale_file.exists(),
            "another target's leftovers wait for its own write"
        );
        write_atomic(&dir.path().join("out.onnx"), b"onnx").expect("write");
        assert!(!stale_file.exists());
    }

    #[test]
    fn an_old_directory_left_aside_by_a_crash_is_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let aside = dir.path().join(format!(".model.old-{}-q", dead_pid()));
        std::fs::create_dir(&aside).expect("aside");
        std::fs::write(aside.join("a"), b"old").expect("write");
        remove_stale(dir.path(), "model");
        assert_eq!(
            std::fs::read(dir.path().join("model/a")).expect("read"),
            b"old"
        );
        assert!(!aside.exists());
    }

    #[test]
    fn missing_directory_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent").join("out.bin");
        let error = write_atomic(&path, b"x").expect_err("no folder");
        assert_eq!(error.kind(), ErrorKind::NotFound);
        let message = error.to_string();
        assert!(
            message.contains("absent") && !message.contains("partial"),
            "{message}"
        );
        assert!(!dir.path().join("absent").exists());
    }
}

//! The desktop's trash (freedesktop.org Trash specification, the home trash): removed images
//! and classes go there, where the file manager shows them and can put them back, and where
//! the window's undo finds them.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::move_no_replace;

/// Items of one name the trash takes (`name`, `name (2)`, …) before it gives up.
const MAX_SAME_NAME: u32 = 100_000;

/// A trash folder with `files/` (what was removed) and `info/` (where it came from, when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trash {
    root: PathBuf,
}

/// Something in the trash: where it is now and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trashed {
    pub original: PathBuf,
    pub in_trash: PathBuf,
    info: PathBuf,
}

impl Trash {
    /// The user's home trash: `$XDG_DATA_HOME/Trash`, else `~/.local/share/Trash`.
    pub fn desktop() -> Option<Self> {
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
        Some(Self::at(data_home.join("Trash")))
    }

    /// A trash folder at `root` (created when first used).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves `path` (a file, or a folder on the trash's file system) into the trash. The info
    /// file is written first, so that a crash between the two steps leaves the item where it
    /// was and at most an orphan info file, never an item nobody can trace.
    pub fn put(&self, path: &Path) -> std::io::Result<Trashed> {
        let original = std::path::absolute(path)?;
        let name = original
            .file_name()
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "nothing to trash"))?
            .to_string_lossy()
            .into_owned();
        let (files, info_dir) = (self.root.join("files"), self.root.join("info"));
        std::fs::create_dir_all(&files)?;
        std::fs::create_dir_all(&info_dir)?;
        for n in 1..MAX_SAME_NAME {
            let candidate = if n == 1 {
                name.clone()
            } else {
                numbered(&name, n)
            };
            let info = info_dir.join(format!("{candidate}.trashinfo"));
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&info)
            {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let in_trash = files.join(&candidate);
            let written = file
                .write_all(trash_info(&original).as_bytes())
                .and_then(|()| file.sync_all());
            let moved = written.and_then(|()| move_no_replace(&original, &in_trash));
            return match moved {
                Ok(()) => Ok(Trashed {
                    original,
                    in_trash,
                    info,
                }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&info);
                    continue;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&info);
                    Err(e)
                }
            };
        }
        Err(std::io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{MAX_SAME_NAME} items named {name} in the trash already"),
        ))
    }

    /// Puts a trashed item back where it came from (never over something now there).
    pub fn restore(&self, item: &Trashed) -> std::io::Result<()> {
        move_no_replace(&item.in_trash, &item.original)?;
        let _ = std::fs::remove_file(&item.info);
        Ok(())
    }
}

/// `name (n).ext`: the spec leaves the choice of a free name to the implementation.
pub fn numbered(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({n}).{ext}"),
        _ => format!("{name} ({n})"),
    }
}

fn trash_info(original: &Path) -> String {
    format!(
        "[Trash Info]\nPath={}\nDeletionDate={}\n",
        percent_encode(&original.to_string_lossy()),
        deletion_date(std::time::SystemTime::now())
    )
}

/// RFC 3986 percent-encoding of a path, slashes kept (as the spec asks).
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `YYYY-MM-DDThh:mm:ss` (UTC: the spec's local time would need the time zone database).
fn deletion_date(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let [year, month, day, h, m, s] = utc_civil(secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")
}

/// Year, month, day, hour, minute, second (UTC) of a Unix time, by Howard Hinnant's
/// civil-from-days.
pub fn utc_civil(unix_secs: u64) -> [i64; 6] {
    let (days, rest) = ((unix_secs / 86_400) as i64, (unix_secs % 86_400) as i64);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year, month, day, rest / 3600, rest % 3600 / 60, rest % 60]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_go_to_the_trash_with_their_origin_and_come_back() {
        let dir = tempfile::tempdir().expect("dir");
        let trash = Trash::at(dir.path().join("Trash"));
        let file = dir.path().join("a b.jpg");
        std::fs::write(&file, b"x").expect("write");
        let first = trash.put(&file).expect("trash");
        std::fs::write(&file, b"y").expect("write");
        let second = trash.put(&file).expect("trash");
        assert_eq!(second.in_trash.file_name().expect("a name"), "a b (2).jpg");
        let info = std::fs::read_to_string(&first.info).expect("info");
        assert!(
            info.contains("Path=") && info.contains("a%20b.jpg"),
            "{info}"
        );
        assert!(!file.exists());
        trash.restore(&first).expect("restore");
        assert_eq!(std::fs::read(&file).expect("read"), b"x");
        assert!(!first.info.exists());
        // Never over what is there now.
        assert!(trash.restore(&second).is_err());
        assert_eq!(
            std::fs::read(&second.in_trash).expect("still trashed"),
            b"y"
        );
    }

    #[test]
    fn deletion_dates_are_calendar_dates() {
        let at = |secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(deletion_date(at(0)), "1970-01-01T00:00:00");
        assert_eq!(deletion_date(at(1_796_460_000)), "2026-12-05T08:40:00");
        assert_eq!(deletion_date(at(951_782_400)), "2000-02-29T00:00:00");
    }
}

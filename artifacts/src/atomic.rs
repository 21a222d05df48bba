//! Writing a file so that a crash leaves the old file or the new one,
//! never half of one: fill a temporary file in the destination's file
//! system, fsync it, set its mode, rename it into place, fsync the folder.
//! Every atomic write of the project goes through here: the store's
//! records, refs and marker, and (through `textgcn-cli`) models, charts
//! and downloads. Store objects add content addressing on top (see
//! [`crate::Store::publish`]).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{IoContext, Result, StoreError};

/// A new temporary file `dir/<prefix>XXXXXX<suffix>`, removed if dropped
/// before [`land`].
pub fn temp_in(dir: &Path, prefix: &str, suffix: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new().prefix(prefix).suffix(suffix).tempfile_in(dir).ctx("creating a temporary file in", dir)
}

/// Lands a filled temporary file at `dest`: fsync, mode `mode`, rename
/// (over an existing `dest` only when `replace`), fsync of `dest`'s folder.
/// Returns whether `dest` was written (`false`: it existed and `replace`
/// was off; the temporary file is then removed).
pub fn land(tmp: NamedTempFile, dest: &Path, mode: u32, replace: bool) -> Result<bool> {
    tmp.as_file().sync_all().ctx("fsyncing", tmp.path())?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).ctx("setting the mode of", tmp.path())?;
    let r = if replace { tmp.persist(dest).map(|_| ()) } else { tmp.persist_noclobber(dest).map(|_| ()) };
    match r {
        Ok(()) => {}
        Err(e) if !replace && e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(StoreError::Io { op: "renaming into", path: dest.to_path_buf(), error: e.error }),
    }
    sync_dir(parent(dest))?;
    Ok(true)
}

/// Renames a complete, closed file `from` to `to` durably: fsync of the
/// file, rename, fsync of the folder (for files that had to be built under
/// a known name first, such as a resumable download's `.part`).
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    File::open(from).and_then(|f| f.sync_all()).ctx("fsyncing", from)?;
    fs::rename(from, to).ctx("renaming into", to)?;
    sync_dir(parent(to))
}

/// Writes `bytes` to `path` atomically, replacing it, world-readable
/// (0644); the temporary file sits beside `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_with(path, |tmp| std::fs::write(tmp, bytes).ctx("writing", tmp)).map(drop)
}

/// Like [`write_file`], but `fill` writes the temporary file, given its
/// path (which keeps `path`'s extension, as some writers choose the format
/// by it). `fill`'s error is returned as is.
pub fn write_file_with<E: From<StoreError>>(path: &Path, fill: impl FnOnce(&Path) -> std::result::Result<(), E>) -> std::result::Result<(), E> {
    let suffix = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = temp_in(parent(path), ".tmp-", &suffix)?;
    fill(tmp.path())?;
    land(tmp, path, 0o644, true)?;
    Ok(())
}

/// fsyncs directory `dir` (makes a rename or creation in it durable).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsyncing directory", dir)
}

fn parent(p: &Path) -> &Path {
    p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_or_keep_and_leave_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        let mut t = temp_in(d.path(), ".x-", "").unwrap();
        std::io::Write::write_all(&mut t, b"three").unwrap();
        assert!(!land(t, &p, 0o444, false).unwrap(), "an existing file is kept when not replacing");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let e: std::result::Result<(), StoreError> = write_file_with(&d.path().join("b.png"), |tmp| {
            assert_eq!(tmp.extension().unwrap(), "png");
            Err(StoreError::Io { op: "drawing", path: tmp.into(), error: std::io::Error::other("no") })
        });
        assert!(e.is_err());
        let names: Vec<String> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.json"], "a failed or kept write leaves nothing behind");
    }
}

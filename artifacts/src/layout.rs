//! The store's directory layout: which directories may become a store,
//! its marker (`STORE`) and layout version, the upgrade from layout 1, and
//! the sweep of temporary files a crash left.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::atomic::{self, sync_dir};
use crate::error::{IoContext, Result, StoreError};
use crate::nofollow::ignore_missing;

/// Version of the on-disk layout, written to `STORE`.
/// Layout 2 added record digests, output kinds and sizes, and refs that pin
/// record digests; a layout-1 store is upgraded by the first build.
pub const LAYOUT_VERSION: u32 = 2;

pub(crate) const DIRS: [&str; 7] = ["objects", "records", "refs", "locks", "provenance", "quarantine", "tmp"];

/// Names a store creates in its root before (or while) it writes `STORE`:
/// a directory holding only these may become a store.
pub(crate) fn is_own_startup_name(name: &str) -> bool {
    name == "gate.lock" || name == "store.lock" || name.starts_with(".STORE-")
}

/// Whether `root` may hold a store: it does not exist, is a store (has
/// `STORE`), or is a directory with nothing in it but the lock files and
/// marker temporaries a store creates first, and plain files of the user's
/// whose names the store never uses (a log the shell redirected there, as
/// in `textgcn build --store d 2>d/err`). A directory with any
/// subdirectory or link (a project, a home directory) is refused: the store
/// only ever touches its own names, but it does not move in among others'.
pub(crate) fn check_can_host(root: &Path) -> Result<()> {
    let refuse = |reason: String| Err(StoreError::NotAStore { path: root.to_path_buf(), reason });
    match fs::metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Io { op: "examining", path: root.to_path_buf(), error: e }),
        Ok(m) if !m.is_dir() => return refuse("it exists and is not a directory".into()),
        Ok(_) => {}
    }
    if fs::symlink_metadata(root.join("STORE")).is_ok() {
        return Ok(());
    }
    let mut foreign = Vec::new();
    for e in fs::read_dir(root).ctx("listing", root)? {
        let e = e.ctx("listing", root)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let plain_file = e.file_type().ctx("examining", e.path())?.is_file();
        let store_name = name == "STORE" || DIRS.contains(&name.as_str());
        if !is_own_startup_name(&name) && (!plain_file || store_name) {
            foreign.push(name);
        }
    }
    // Another process may have created the store between the marker check
    // and the listing: it writes `STORE` before anything else, so a marker
    // present now accounts for every store name the listing saw.
    if foreign.is_empty() || fs::symlink_metadata(root.join("STORE")).is_ok() {
        return Ok(());
    }
    foreign.sort();
    let more = if foreign.len() > 3 { format!(" and {} more", foreign.len() - 3) } else { String::new() };
    refuse(format!(
        "the directory is not empty ({}{more}) and has no STORE marker; a store is only created in a new directory, or one holding nothing but plain files of other names (choose another --store)",
        foreign.iter().take(3).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    ))
}

/// The layout version in `STORE`, or `None` when there is no marker.
pub(crate) fn marker_version(marker: &Path) -> Result<Option<u32>> {
    let text = match fs::read_to_string(marker) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io { op: "reading", path: marker.to_path_buf(), error: e }),
    };
    text.trim()
        .strip_prefix("textgcn-store ")
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| StoreError::BadMetadata { path: marker.to_path_buf(), what: "store marker", detail: format!("expected \"textgcn-store {LAYOUT_VERSION}\", found {:?}", text.trim()) })
}

/// Writes `STORE` (replacing an older marker when `replace`): temporary
/// file `.STORE-*` beside it, fsync, rename, fsync the directory.
pub(crate) fn write_marker_file(root: &Path, replace: bool) -> Result<()> {
    let mut tmp = atomic::temp_in(root, ".STORE-", "")?;
    tmp.write_all(format!("textgcn-store {LAYOUT_VERSION}\n").as_bytes()).ctx("writing", tmp.path())?;
    atomic::land(tmp, &root.join("STORE"), 0o644, replace)?;
    Ok(())
}

/// Removes `.STORE-*` files a crashed creator left in `root` (only those:
/// they are the store's own names).
pub(crate) fn remove_marker_temporaries(root: &Path) -> Result<()> {
    for e in fs::read_dir(root).ctx("listing", root)? {
        let e = e.ctx("listing", root)?;
        let own = e.file_name().to_string_lossy().starts_with(".STORE-");
        if own && !e.file_type().ctx("examining", e.path())?.is_dir() {
            fs::remove_file(e.path()).or_else(ignore_missing).ctx("removing leftover", e.path())?;
        }
    }
    Ok(())
}

/// Upgrades a layout-1 store (records without digests, refs without
/// pinned digests): its records and refs are moved to
/// `quarantine/layout-1-*/`, objects stay (content-addressed, still
/// valid, reused by the next build), and the marker says layout 2. The
/// next build of each config recomputes its records; `gc` later removes
/// the quarantine and whatever no ref reaches. Idempotent, so a crash
/// half-way is finished by the next open. Call with the store lock held
/// exclusively.
pub(crate) fn upgrade_layout_1(root: &Path) -> Result<()> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dest = root.join("quarantine").join(format!("layout-1-{stamp}"));
    for d in ["records", "refs"] {
        let src = root.join(d);
        if fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir()) {
            fs::create_dir_all(&dest).ctx("creating", &dest)?;
            fs::rename(&src, dest.join(d)).ctx("moving to quarantine", &src)?;
        }
    }
    sync_dir(root)?;
    write_marker_file(root, true)
}

/// The name prefix of the scratch directories of [`crate::Store::scratch_dir`].
pub(crate) const SCRATCH_PREFIX: &str = ".scratch-";

/// Removes the temporary files of crashed publishes from `tmp/` (call only
/// with the store lock held exclusively). Only the store's own names are
/// removed: files `.obj-*` and `.meta-*`, and scratch directories
/// `.scratch-*` (a real directory, never a link, removed with what is in
/// it); `tmp` itself must be a real directory, not a link to somewhere
/// else.
pub(crate) fn sweep_tmp(root: &Path) -> Result<()> {
    let dir = root.join("tmp");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(StoreError::Damaged { path: dir, detail: "not a directory (a symbolic link?); the store will not sweep it".into() }),
        Err(e) => return Err(StoreError::Io { op: "examining", path: dir, error: e }),
    }
    for e in fs::read_dir(&dir).ctx("listing", &dir)? {
        let e = e.ctx("listing", &dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().ctx("examining", e.path())?.is_dir();
        if is_dir && name.starts_with(SCRATCH_PREFIX) {
            fs::remove_dir_all(e.path()).or_else(ignore_missing).ctx("removing leftover", e.path())?;
            continue;
        }
        let own = name.starts_with(".obj-") || name.starts_with(".meta-");
        if !own || is_dir {
            continue;
        }
        fs::remove_file(e.path()).or_else(ignore_missing).ctx("removing leftover", e.path())?;
    }
    Ok(())
}

//! Run directories published whole: a run's files are written into a
//! staging directory beside the target (`.<name>.tmp-*`), fsynced, and the
//! staging directory is renamed into place at the end. A reader never sees
//! a run directory with `metrics.json` but no model, and a killed run
//! leaves only a staging directory, which the next run into the same
//! parent removes once nobody holds its lock.
//!
//! An existing target is replaced only when it holds nothing but the files
//! a run writes; anything else in it is the user's, and the run refuses
//! before it trains.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The files a run directory holds (see [`crate::run::write_outputs`]).
pub const RUN_FILES: [&str; 7] = ["metrics.json", "epochs.csv", "curves.png", "predictions.parquet", "model.safetensors", "predictor.json", "predictor.safetensors"];

/// Whether a name in a run directory is one that textgcn writes: a run
/// file, or a temporary file of an older textgcn's per-file writes.
fn is_run_name(name: &str) -> bool {
    RUN_FILES.contains(&name) || name.starts_with(".tmp-")
}

fn name_of(dir: &Path) -> Result<String> {
    match dir.file_name() {
        Some(n) => Ok(n.to_string_lossy().into_owned()),
        None => bail!("run directory {}: the path has no final name", dir.display()),
    }
}

fn parent_of(dir: &Path) -> &Path {
    dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Checks that `dir` can receive a run: it does not exist, or it is a
/// directory holding only run files (an earlier run's). Call before
/// training, so a bad `--out` costs nothing.
pub fn check_target(dir: &Path) -> Result<()> {
    name_of(dir)?;
    let meta = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("examining the run directory {}", dir.display())),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        bail!("run directory {} exists and is not a directory (a {}); choose another --out", dir.display(), if meta.file_type().is_symlink() { "symbolic link" } else { "file" });
    }
    let mut foreign: Vec<String> = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = e.with_context(|| format!("listing {}", dir.display()))?.file_name().to_string_lossy().into_owned();
        if !is_run_name(&name) {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "run directory {} holds files a run does not write ({}); the run would replace the directory, so move them or choose another --out",
            dir.display(),
            foreign.iter().take(5).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// A staging directory for one run, removed on drop unless published.
pub struct Staging {
    target: PathBuf,
    dir: Option<tempfile::TempDir>,
    /// Held while the staging directory lives, so a concurrent run does
    /// not take it for a leftover.
    _lock: File,
}

impl Staging {
    /// Creates the staging directory beside `target` (its parent is
    /// created), after removing leftovers of killed runs into that target.
    pub fn create(target: &Path) -> Result<Self> {
        check_target(target)?;
        let name = name_of(target)?;
        let parent = parent_of(target);
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        remove_leftovers(parent, &name)?;
        let dir = tempfile::Builder::new().prefix(&format!(".{name}.tmp-")).tempdir_in(parent).with_context(|| format!("creating a staging directory in {}", parent.display()))?;
        let lock = File::open(dir.path()).with_context(|| format!("opening {}", dir.path().display()))?;
        lock.try_lock().map_err(|e| anyhow::anyhow!("locking {}: {e:?}", dir.path().display()))?;
        Ok(Staging { target: target.to_path_buf(), dir: Some(dir), _lock: lock })
    }

    /// Where the run's files are written.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(&self.target)
    }

    /// fsyncs every file and the directory, then renames it to the target.
    /// An earlier run directory there is first renamed aside, then removed.
    pub fn publish(mut self) -> Result<PathBuf> {
        let dir = self.dir.take().expect("published once");
        for e in fs::read_dir(dir.path()).with_context(|| format!("listing {}", dir.path().display()))? {
            let p = e?.path();
            File::open(&p).and_then(|f| f.sync_all()).with_context(|| format!("fsyncing {}", p.display()))?;
        }
        File::open(dir.path()).and_then(|f| f.sync_all()).with_context(|| format!("fsyncing {}", dir.path().display()))?;
        let staged = dir.keep();
        textgcn_artifacts::failpoint("before-run-publish");
        let name = name_of(&self.target)?;
        let parent = parent_of(&self.target).to_path_buf();
        let old = if fs::symlink_metadata(&self.target).is_ok() {
            // Checked again: the directory may have changed during training.
            check_target(&self.target)?;
            let aside = parent.join(format!(".{name}.old-{}", std::process::id()));
            fs::rename(&self.target, &aside).with_context(|| format!("moving the earlier run {} aside", self.target.display()))?;
            Some(aside)
        } else {
            None
        };
        fs::rename(&staged, &self.target).with_context(|| format!("renaming {} to {}", staged.display(), self.target.display()))?;
        File::open(&parent).and_then(|f| f.sync_all()).with_context(|| format!("fsyncing {}", parent.display()))?;
        if let Some(old) = old {
            remove_run_dir(&old)?;
        }
        Ok(self.target.clone())
    }
}

/// Removes `.<name>.tmp-*` staging directories whose run is gone (their
/// lock is free) and `.<name>.old-*` directories of an interrupted publish.
fn remove_leftovers(parent: &Path, name: &str) -> Result<()> {
    let (tmp, old) = (format!(".{name}.tmp-"), format!(".{name}.old-"));
    for e in fs::read_dir(parent).with_context(|| format!("listing {}", parent.display()))? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if !(n.starts_with(&tmp) || n.starts_with(&old)) || !e.file_type()?.is_dir() {
            continue;
        }
        let Ok(f) = File::open(e.path()) else { continue };
        if f.try_lock().is_ok() {
            remove_run_dir(&e.path())?;
        }
    }
    Ok(())
}

/// Removes a run directory that holds only run files (never anything else:
/// a foreign name stops the removal with an error naming it).
fn remove_run_dir(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if !is_run_name(&n) || e.file_type()?.is_dir() {
            bail!("{} holds {n:?}, which a run does not write; left it in place", dir.display());
        }
        fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
    }
    fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_appears_whole_and_replaces_only_run_files() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("runs/seed-0");
        let s = Staging::create(&target).unwrap();
        fs::write(s.path().join("metrics.json"), b"{}").unwrap();
        assert!(!target.exists(), "nothing is visible before publish");
        s.publish().unwrap();
        assert_eq!(fs::read(target.join("metrics.json")).unwrap(), b"{}");

        // A second run replaces the first.
        let s = Staging::create(&target).unwrap();
        fs::write(s.path().join("epochs.csv"), b"e").unwrap();
        s.publish().unwrap();
        assert!(!target.join("metrics.json").exists() && target.join("epochs.csv").exists());

        // A staging directory dropped without publishing is gone; a killed
        // run's (lock free) is removed by the next run.
        let s = Staging::create(&target).unwrap();
        let staged = s.path().to_path_buf();
        drop(s);
        assert!(!staged.exists());
        let killed = root.path().join("runs/.seed-0.tmp-killed");
        fs::create_dir(&killed).unwrap();
        fs::write(killed.join("metrics.json"), b"{}").unwrap();
        let s = Staging::create(&target).unwrap();
        assert!(!killed.exists(), "the leftover staging directory is removed");
        // A concurrent run's staging directory (locked) is left alone.
        let other = Staging::create(&root.path().join("runs/seed-0")).unwrap();
        assert!(s.path().exists() && other.path().exists());

        // A directory with the user's files is refused, and kept.
        fs::write(target.join("notes.txt"), b"mine").unwrap();
        let e = Staging::create(&target).err().unwrap().to_string();
        assert!(e.contains("notes.txt") && e.contains("choose another --out"), "{e}");
        assert_eq!(fs::read(target.join("notes.txt")).unwrap(), b"mine");
    }
}

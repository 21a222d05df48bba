//! The store's locks, all `flock`s that the kernel releases when a holder
//! dies: the store lock (shared by builders, exclusive for gc, repair and
//! sweeps), the gate in front of it, and one lock per stage fingerprint.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// An exclusive lock on one stage fingerprint; released on drop (or when the
/// process dies, since it is an `flock`).
#[derive(Debug)]
pub struct StageLock {
    pub(crate) _file: File,
}

/// `gate.lock`: writers pass it (shared) while they open, gc and roll-backs
/// hold it (exclusive) while they wait for the exclusive store lock. `flock`
/// grants a shared lock whenever only shared locks are held, so without the
/// gate a steady stream of overlapping builds would keep an exclusive
/// waiter waiting for ever. Released on drop, or by the kernel when the
/// process dies.
pub(crate) struct Gate {
    _file: File,
}

impl Gate {
    /// Passes the gate: waits while gc or a roll-back holds it.
    pub(crate) fn shared(root: &Path) -> Result<Gate> {
        let (file, path) = Self::file(root)?;
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                crate::failpoint::reached("opener-waits-at-gate", root);
                file.lock_shared().ctx("locking (shared)", &path)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("locking (shared)", &path),
        }
        Ok(Gate { _file: file })
    }

    /// Closes the gate: waits for openers in progress, then holds new ones.
    pub(crate) fn exclusive(root: &Path) -> Result<Gate> {
        let (file, path) = Self::file(root)?;
        file.lock().ctx("locking (exclusive)", &path)?;
        Ok(Gate { _file: file })
    }

    fn file(root: &Path) -> Result<(File, PathBuf)> {
        let path = root.join("gate.lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).ctx("opening", &path)?;
        Ok((file, path))
    }
}

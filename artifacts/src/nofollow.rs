//! Opening files inside the store without following symbolic links, so
//! that no link planted in a store leads a read or a removal outside it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub(crate) fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

/// Reads a whole file without following a symbolic link at its last
/// component (a link gives `ELOOP`, see [`is_symlink_error`]).
pub(crate) fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open_no_follow(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Opens a file for reading without following a link at its last component.
pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Whether an open with `O_NOFOLLOW` failed because the path is a link.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

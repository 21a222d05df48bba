//! Writing large objects with O_DIRECT.
//!
//! On these machines, filling fresh page-cache pages costs 2.5-3 s per GiB,
//! while O_DIRECT writes of aligned 8 MiB chunks bypass the page cache
//! (measured with dd on a 432 MiB file: 1.27 s buffered + fsync, 0.25 s
//! direct). Objects smaller than one chunk, and file systems that refuse
//! O_DIRECT (tmpfs), are written buffered as usual.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::mapped::AlignedBuf;

const CHUNK_BLOCKS: usize = 2048; // 8 MiB

/// A writer into a temporary file that streams full aligned chunks with
/// O_DIRECT and the tail (and small files) through the normal descriptor.
pub(crate) struct DirectWriter<'a> {
    file: &'a File,
    direct: Option<File>,
    tried_direct: bool,
    path: &'a Path,
    buf: AlignedBuf,
    filled: usize,
    offset: u64,
}

impl<'a> DirectWriter<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path) -> Self {
        DirectWriter { file, direct: None, tried_direct: false, path, buf: AlignedBuf::new(CHUNK_BLOCKS), filled: 0, offset: 0 }
    }

    fn flush_full_chunk(&mut self) -> io::Result<()> {
        if !self.tried_direct {
            self.tried_direct = true;
            self.direct = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(self.path).ok();
        }
        let chunk = &self.buf.bytes()[..self.filled];
        let direct_ok = match &self.direct {
            Some(d) => match d.write_all_at(chunk, self.offset) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            },
            None => false,
        };
        if !direct_ok {
            self.direct = None;
            self.file.write_all_at(chunk, self.offset)?;
        }
        self.offset += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Writes what is buffered (the tail goes through the page cache).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            let chunk = &self.buf.bytes()[..self.filled];
            self.file.write_all_at(chunk, self.offset)?;
            self.offset += self.filled as u64;
            self.filled = 0;
        }
        Ok(())
    }
}

impl Write for DirectWriter<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let cap = self.buf.bytes().len();
            let take = (cap - self.filled).min(data.len());
            self.buf.bytes_mut()[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == cap {
                self.flush_full_chunk()?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_bytes_across_chunks() {
        for dir in [std::env::temp_dir(), std::env::current_dir().unwrap()] {
            let tmp = tempfile::NamedTempFile::new_in(&dir).unwrap();
            let data: Vec<u8> = (0..(8 << 20) * 2 + 12345).map(|i| (i * 31 % 251) as u8).collect();
            let mut w = DirectWriter::new(tmp.as_file(), tmp.path());
            for piece in data.chunks(1_000_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(tmp.path()).unwrap(), data);
        }
    }
}

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
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::mapped::AlignedBuf;

const CHUNK_BLOCKS: usize = 2048; // 8 MiB

/// O_DIRECT's unit of offsets and lengths (what `AlignedBuf` is aligned to).
const PAGE: usize = 4096;

/// A tail (or a whole small object) shorter than this goes through the
/// page cache: below it, waiting for the disk costs more than filling
/// fresh page-cache pages (~1.7 s per GiB measured in R8's builds, which
/// wrote 23.6 MB of their 82 MB that way).
const DIRECT_TAIL_MIN: usize = 256 << 10;

/// A full chunk for the writer thread: its buffer, bytes used, offset.
type Chunk = (AlignedBuf, usize, u64);

/// The thread that writes full chunks with O_DIRECT while the next one is
/// filled: an O_DIRECT write returns when the disk has the bytes, and in
/// that time the caller computes and hashes the next chunk (20ng's
/// `edge_index`: 432 MiB, ~0.25 s of such waiting).
struct Background {
    chunks: Option<SyncSender<Chunk>>,
    /// Buffers back from the thread, or the error that stopped it.
    done: Receiver<io::Result<AlignedBuf>>,
    thread: Option<JoinHandle<()>>,
    /// Chunks sent and not yet given back.
    in_flight: usize,
}

impl Background {
    /// The thread writing with a handle of its own to `direct`, or `None`
    /// when no thread could be started (the chunks are then written in the
    /// caller).
    fn start(direct: &File) -> Option<Self> {
        let (chunks, todo) = sync_channel::<Chunk>(1);
        let (give_back, done) = sync_channel(2);
        let theirs = direct.try_clone().ok()?;
        let thread = std::thread::Builder::new().name("textgcn-direct-write".into()).spawn(move || {
            for (buf, len, offset) in todo {
                let r = theirs.write_all_at(&buf.bytes()[..len], offset).map(|()| buf);
                let failed = r.is_err();
                if give_back.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let t = thread.ok()?;
        Some(Background { chunks: Some(chunks), done, thread: Some(t), in_flight: 0 })
    }

    /// Waits for a buffer to come back.
    fn take_back(&mut self) -> io::Result<AlignedBuf> {
        let r = self.done.recv().map_err(|_| io::Error::other("the O_DIRECT writer thread stopped"))?;
        self.in_flight -= 1;
        r
    }

    /// Waits for every chunk sent and stops the thread.
    fn finish(&mut self) -> io::Result<()> {
        self.chunks = None;
        let mut result = Ok(());
        while self.in_flight > 0 {
            if let Err(e) = self.take_back() {
                result = result.and(Err(e));
                break;
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A writer into a temporary file that streams full aligned chunks with
/// O_DIRECT, and the whole pages of the tail too where they are at least
/// [`DIRECT_TAIL_MIN`]; the last partial page (and small files) go
/// through the normal descriptor. After the first chunk (written here, to
/// learn whether the file system takes O_DIRECT), chunks go to a writer
/// thread, one at a time, while the next is filled.
pub(crate) struct DirectWriter<'a> {
    file: &'a File,
    direct: Option<File>,
    tried_direct: bool,
    path: &'a Path,
    buf: AlignedBuf,
    /// A second buffer, once the writer thread runs.
    spare: Option<AlignedBuf>,
    background: Option<Background>,
    filled: usize,
    offset: u64,
    /// Bytes handed to O_DIRECT writes so far (the rest went buffered).
    direct_bytes: u64,
}

impl<'a> DirectWriter<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path) -> io::Result<Self> {
        Ok(DirectWriter { file, direct: None, tried_direct: false, path, buf: AlignedBuf::new(CHUNK_BLOCKS)?, spare: None, background: None, filled: 0, offset: 0, direct_bytes: 0 })
    }

    fn flush_full_chunk(&mut self) -> io::Result<()> {
        let len = self.filled;
        if let Some(bg) = &mut self.background {
            let next = match self.spare.take() {
                Some(b) => b,
                None => bg.take_back()?,
            };
            let full = std::mem::replace(&mut self.buf, next);
            let sender = bg.chunks.as_ref().expect("the thread runs until finish");
            if sender.send((full, len, self.offset)).is_err() {
                // The thread stopped after a failed write: its error.
                return Err(bg.take_back().err().unwrap_or_else(|| io::Error::other("the O_DIRECT writer thread stopped")));
            }
            bg.in_flight += 1;
            self.direct_bytes += len as u64;
        } else {
            if !self.write_direct(len)? {
                self.file.write_all_at(&self.buf.bytes()[..len], self.offset)?;
            } else if let Some(d) = &self.direct {
                // O_DIRECT works here: the next chunks go to the thread
                // (or are written here as this one was, without a thread
                // or without a second buffer for it).
                if let Ok(spare) = AlignedBuf::new(CHUNK_BLOCKS)
                    && let Some(bg) = Background::start(d)
                {
                    self.background = Some(bg);
                    self.spare = Some(spare);
                }
            }
        }
        self.offset += len as u64;
        self.filled = 0;
        Ok(())
    }

    /// Writes the first `len` bytes of the buffer (a multiple of the
    /// page size) at the current offset with O_DIRECT, opening the file so
    /// on first use; `false` (nothing written) where the file system
    /// refuses O_DIRECT.
    fn write_direct(&mut self, len: usize) -> io::Result<bool> {
        if !self.tried_direct {
            self.tried_direct = true;
            self.direct = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(self.path).ok();
        }
        let Some(d) = &self.direct else { return Ok(false) };
        match d.write_all_at(&self.buf.bytes()[..len], self.offset) {
            Ok(()) => {
                self.direct_bytes += len as u64;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what is buffered and waits for the chunks in flight: the
    /// tail's whole pages with O_DIRECT (when there are at least
    /// [`DIRECT_TAIL_MIN`] bytes of them and the file system takes it),
    /// the rest through the page cache, so the file ends where the bytes do.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if let Some(mut bg) = self.background.take() {
            bg.finish()?;
        }
        if self.filled > 0 {
            let pages = self.filled / PAGE * PAGE;
            let direct = if pages >= DIRECT_TAIL_MIN && self.write_direct(pages)? { pages } else { 0 };
            let rest = &self.buf.bytes()[direct..self.filled];
            self.file.write_all_at(rest, self.offset + direct as u64)?;
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
        const CHUNK: usize = CHUNK_BLOCKS * PAGE;
        // (bytes, of which with O_DIRECT where the file system takes it):
        // five full chunks (the first written here, the next ones by the
        // thread, its two buffers each used twice) and a short tail; a tail
        // of whole pages and a partial one; a tail of whole pages only;
        // small objects with and without enough whole pages.
        let cases = [
            (CHUNK * 5 + 12345, CHUNK * 5),
            (CHUNK + DIRECT_TAIL_MIN + 3 * PAGE + 17, CHUNK + DIRECT_TAIL_MIN + 3 * PAGE),
            (CHUNK * 2 + DIRECT_TAIL_MIN, CHUNK * 2 + DIRECT_TAIL_MIN),
            (CHUNK + DIRECT_TAIL_MIN - 1, CHUNK),
            (DIRECT_TAIL_MIN + PAGE + 1, DIRECT_TAIL_MIN + PAGE),
            (DIRECT_TAIL_MIN - 1, 0),
            (1, 0),
        ];
        for dir in [std::env::temp_dir(), std::env::current_dir().unwrap()] {
            for (len, direct) in cases {
                let tmp = tempfile::NamedTempFile::new_in(&dir).unwrap();
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut w = DirectWriter::new(tmp.as_file(), tmp.path()).unwrap();
                for piece in data.chunks(1_000_003) {
                    w.write_all(piece).unwrap();
                }
                w.finish().unwrap();
                let takes_direct = w.direct.is_some();
                assert_eq!(w.direct_bytes, if takes_direct { direct as u64 } else { 0 }, "{len} bytes in {dir:?}");
                drop(w);
                assert_eq!(std::fs::read(tmp.path()).unwrap(), data, "{len} bytes in {dir:?}");
            }
        }
    }
}

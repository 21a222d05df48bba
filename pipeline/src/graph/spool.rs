//! Where the graph's rows wait between being computed and being written:
//! in memory up to a byte budget, then in spill files, in row order.
//!
//! Rows arrive as blocks (consecutive rows, each block from one worker) in
//! node order. The first blocks stay in memory while they fit the budget;
//! from the first block that does not fit, every later block goes to an
//! unnamed temporary file (its columns, then its weights, each padded to
//! 4 KiB), so memory-held blocks are always a prefix and the spilled ones
//! the rest. The writers then read the blocks back in order, from memory
//! or sequentially from the file: the published bytes are the same
//! whatever the budget (tested).
//!
//! The file is written and read with O_DIRECT where the file system allows
//! it: the spilled rows of a large graph (19 GB at a million documents)
//! would otherwise be copied through the page cache twice, which costs
//! more here than the disk itself (a fifth of the word rows' time was the
//! kernel's copy into the page cache). Each block passes through a
//! page-aligned staging buffer; reading back uses two, a reader thread
//! filling one from the disk while the rows of the other are used.
//!
//! Spilled blocks are written by a thread of the spool's own: a block
//! pushed for spilling is queued (up to a batch of blocks, see
//! [`RowSpool::new`]) and the worker that pushed it goes back to
//! computing rows while the disk writes. Written by the worker itself, a
//! block kept one of the two cores waiting on the disk: the word rows of
//! the generated 400,000 documents under an 1800 MiB limit (6.8 GiB of
//! them spilled) took 32.7-33.0 s, now 26.6-27.2 s. [`RowSpool::seal`]
//! waits until the queue is written (and reports the writer's error, if
//! any) before the rows are read back.
//!
//! What is held whatever the budget: one length and one degree per node
//! (`12·N` bytes), the staging buffers (each the size of the largest
//! spilled block) and the queue of blocks waiting to be spilled. Only the
//! columns and weights of held blocks count against the budget.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Consecutive rows of `A + I`: their concatenated columns and weights,
/// their lengths, and each row's weight sum (its degree).
#[derive(Default)]
pub(crate) struct Rows {
    pub(crate) cols: Vec<u32>,
    pub(crate) w: Vec<f64>,
    pub(crate) lens: Vec<u32>,
    pub(crate) sums: Vec<f64>,
}

impl Rows {
    /// Ends the row that began at edge `start`: records its length and its
    /// weight sum (summed in column order, as the normalisation needs).
    pub(crate) fn end_row(&mut self, start: usize) {
        self.lens.push((self.cols.len() - start) as u32);
        self.sums.push(self.w[start..].iter().sum());
    }

}

/// A block as the writers see it: its rows' columns, weights and lengths.
pub(crate) struct BlockView<'a> {
    pub(crate) cols: &'a [u32],
    pub(crate) w: &'a [f64],
    pub(crate) lens: &'a [u32],
}

/// The rows of a graph, in node order, held in memory up to a budget and
/// spilled to temporary files beyond it.
pub(crate) struct RowSpool {
    budget: usize,
    held: usize,
    dir: PathBuf,
    /// Blocks held in memory: columns, weights and row count (their
    /// lengths and sums are in `lens`/`sums`).
    mem: Vec<(Vec<u32>, Vec<f64>, usize)>,
    /// Blocks queued for spilling at most (the queue's bound).
    queue: usize,
    /// The thread writing spilled blocks, from the first block spilled
    /// until [`RowSpool::seal`].
    writer: Option<SpillWriter>,
    /// The spilled blocks, once sealed.
    spill: Option<Spill>,
    /// Whether the next read of the spilled blocks frees their disk space
    /// ([`RowSpool::free_disk_as_read`]), and whether one did.
    release: bool,
    released: std::sync::atomic::AtomicBool,
    /// Every row's length, in node order.
    pub(crate) lens: Vec<u32>,
    /// Every row's weight sum, in node order.
    pub(crate) sums: Vec<f64>,
    edges: usize,
}

/// The spilled blocks in one file (each block's columns, then its
/// weights, each padded to [`ALIGN`]), and each block's edge and row
/// counts.
struct Spill {
    /// The unnamed file, through the page cache (used where the direct
    /// descriptor cannot be had or is refused).
    file: File,
    /// The same file opened with O_DIRECT, where the file system allows.
    direct: Option<File>,
    /// Page-aligned staging for one block, for writing and reading back.
    stage: std::sync::Mutex<Stage>,
    blocks: Vec<(usize, usize)>,
    /// Where the next block goes (a multiple of [`ALIGN`]).
    end: u64,
    bytes: u64,
}

/// A spilled block: its columns, its weights and its row count.
type Block = (Vec<u32>, Vec<f64>, usize);

/// The thread writing spilled blocks in the order they are queued; it
/// gives the [`Spill`] back when the queue is closed.
struct SpillWriter {
    queue: std::sync::mpsc::SyncSender<Block>,
    thread: std::thread::JoinHandle<io::Result<Spill>>,
}

impl SpillWriter {
    /// A new unnamed spill file in `dir` and its writer thread, taking at
    /// most `queue` blocks ahead of the disk.
    fn start(dir: &Path, queue: usize) -> io::Result<Self> {
        let file = tempfile::tempfile_in(dir).map_err(|e| io::Error::new(e.kind(), format!("creating a spill file in {}: {e}", dir.display())))?;
        let direct = reopen_direct(&file);
        let stage = Stage::new().map_err(|e| io::Error::new(e.kind(), format!("a staging buffer for spilled graph rows: {e}")))?;
        let mut spill = Spill { file, direct, stage: std::sync::Mutex::new(stage), blocks: Vec::new(), end: 0, bytes: 0 };
        let (queue, blocks) = std::sync::mpsc::sync_channel::<Block>(queue);
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new().name("textgcn-spill".into()).spawn(move || {
            for (cols, w, rows) in blocks {
                spill.append(&cols, &w, rows).map_err(|e| io::Error::new(e.kind(), format!("writing spilled graph rows in {}: {e}", dir.display())))?;
            }
            Ok(spill)
        })?;
        Ok(SpillWriter { queue, thread })
    }
}

/// O_DIRECT's alignment of offsets, lengths and buffers (the page size,
/// a multiple of every logical block size in use).
const ALIGN: usize = 4096;

fn padded(bytes: usize) -> usize {
    bytes.div_ceil(ALIGN) * ALIGN
}

/// A page-aligned buffer (an anonymous mapping), grown on demand.
struct Stage(memmap2::MmapMut);

impl Stage {
    fn new() -> io::Result<Self> {
        memmap2::MmapMut::map_anon(ALIGN).map(Stage)
    }

    /// At least `len` bytes (a multiple of [`ALIGN`]).
    fn with_len(&mut self, len: usize) -> io::Result<&mut [u8]> {
        if self.0.len() < len {
            self.0 = memmap2::MmapMut::map_anon(len)?;
        }
        Ok(&mut self.0[..len])
    }
}

/// Reopens the unnamed file `file` with O_DIRECT (through its
/// `/proc/self/fd` link), or `None` where that is refused (tmpfs, no
/// `/proc`).
fn reopen_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

impl Spill {
    /// Appends a block: its columns, then its weights, each padded.
    fn append(&mut self, cols: &[u32], w: &[f64], rows: usize) -> io::Result<()> {
        let e = cols.len();
        let (pc, pw) = (padded(e * 4), padded(e * 8));
        let mut stage = self.stage.lock().expect("not poisoned");
        let stage = stage.with_len(pc + pw)?;
        stage[..e * 4].copy_from_slice(bytemuck::cast_slice(cols));
        stage[e * 4..pc].fill(0);
        stage[pc..pc + e * 8].copy_from_slice(bytemuck::cast_slice(w));
        stage[pc + e * 8..].fill(0);
        Spill::write_at(&self.file, &mut self.direct, stage, self.end)?;
        self.end += (pc + pw) as u64;
        self.blocks.push((e, rows));
        self.bytes += (e * 12) as u64;
        Ok(())
    }

    /// Frees the disk space of `len` bytes at `at` (punches a hole; the
    /// file keeps its length). Where the file system cannot, the space
    /// stays taken until the file is closed: nothing else changes, so
    /// that is only logged.
    fn free(&self, at: u64, len: u64) {
        use rustix::fs::FallocateFlags;
        if let Err(e) = rustix::fs::fallocate(&self.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, at, len) {
            tracing::debug!("graph: the disk space of spilled rows read back stays taken until the end of the stage (punching a hole: {e})");
        }
    }

    /// Writes `bytes` (a multiple of [`ALIGN`], from the stage) at `at`:
    /// directly where allowed, else through the page cache.
    fn write_at(file: &File, direct: &mut Option<File>, bytes: &[u8], at: u64) -> io::Result<()> {
        if let Some(d) = direct {
            match d.write_all_at(bytes, at) {
                Ok(()) => return Ok(()),
                // The file system refuses direct I/O after all.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => *direct = None,
                Err(e) => return Err(e),
            }
        }
        file.write_all_at(bytes, at)
    }

    /// Reads `buf.len()` bytes (a multiple of [`ALIGN`]) at `at`, as
    /// [`Spill::write_at`] wrote them.
    fn read_at(file: &File, direct: &Option<File>, buf: &mut [u8], at: u64) -> io::Result<()> {
        if let Some(d) = direct {
            match d.read_exact_at(buf, at) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        file.read_exact_at(buf, at)
    }
}

impl RowSpool {
    /// An empty spool keeping at most `budget` bytes of rows in memory and
    /// spilling the rest to unnamed temporary files in `dir` (gone when the
    /// spool is dropped, or when the process dies), with at most `queue`
    /// blocks waiting to be written.
    pub(crate) fn new(budget: usize, queue: usize, dir: &Path) -> Self {
        RowSpool {
            budget,
            held: 0,
            dir: dir.to_path_buf(),
            mem: Vec::new(),
            queue: queue.max(1),
            writer: None,
            spill: None,
            release: false,
            released: std::sync::atomic::AtomicBool::new(false),
            lens: Vec::new(),
            sums: Vec::new(),
            edges: 0,
        }
    }

    /// Appends the next block of rows: held while it fits the budget (and
    /// nothing has been spilled), else queued for the spill writer. Fails
    /// with the writer's error if it failed, and once a spool that spilled
    /// is sealed ([`RowSpool::seal`]).
    pub(crate) fn push(&mut self, block: Rows) -> io::Result<()> {
        if self.spill.is_some() {
            return Err(io::Error::other("a block pushed to a sealed spool"));
        }
        let Rows { cols, w, lens, sums } = block;
        let bytes = cols.capacity() * 4 + w.capacity() * 8;
        let edges = cols.len();
        if self.writer.is_none() && self.held + bytes <= self.budget {
            self.held += bytes;
            self.mem.push((cols, w, lens.len()));
        } else {
            let writer = match &mut self.writer {
                Some(w) => w,
                None => {
                    let writer = SpillWriter::start(&self.dir, self.queue)?;
                    self.writer.insert(writer)
                }
            };
            if writer.queue.send((cols, w, lens.len())).is_err() {
                // The writer stopped: it failed, and its error says why.
                return Err(self.seal().err().unwrap_or_else(|| io::Error::other("the spill writer stopped")));
            }
        }
        self.lens.extend_from_slice(&lens);
        self.sums.extend_from_slice(&sums);
        self.edges += edges;
        Ok(())
    }

    /// Makes the next [`RowSpool::for_each_block`] free each spilled
    /// block's disk space once it has read it (a hole punched in the spill
    /// file), so that the spill and the files written from it do not need
    /// the disk at once: 19 GB of spilled rows and 38 GB of artifacts at a
    /// million documents. The spilled rows cannot be read again after.
    pub(crate) fn free_disk_as_read(&mut self) {
        self.release = true;
    }

    /// Waits until every spilled block is written; the rows can then be
    /// read back ([`RowSpool::for_each_block`]). The writer's error, if it
    /// failed.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        let Some(SpillWriter { queue, thread }) = self.writer.take() else { return Ok(()) };
        drop(queue);
        let spill = thread.join().map_err(|_| io::Error::other("the spill writer panicked"))??;
        self.spill = Some(spill);
        Ok(())
    }

    /// Edges pushed so far.
    pub(crate) fn num_edges(&self) -> usize {
        self.edges
    }

    /// Bytes written to spill files (0 when everything fit in memory).
    pub(crate) fn spilled_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.bytes)
    }

    /// Calls `f` on every block in order; `weights: false` skips reading
    /// spilled weights (the view's `w` is then empty for those blocks).
    pub(crate) fn for_each_block(&self, weights: bool, mut f: impl FnMut(BlockView<'_>) -> io::Result<()>) -> io::Result<()> {
        if self.writer.is_some() {
            return Err(io::Error::other("the spilled rows are read back before the spool is sealed"));
        }
        let release = self.release && self.spill.is_some();
        if release && self.released.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("the spilled rows were read once and their disk space freed"));
        }
        let mut row = 0;
        for (cols, w, n) in &self.mem {
            f(BlockView { cols, w, lens: &self.lens[row..row + n] })?;
            row += n;
        }
        let Some(spill) = &self.spill else { return Ok(()) };
        let at = |e: io::Error| io::Error::new(e.kind(), format!("reading spilled graph rows in {}: {e}", self.dir.display()));
        // The writing stage is not needed any more: two reading stages
        // take its place, one filled by a reader thread from the disk
        // while the other's block is being used, so that the disk reads
        // overlap the work on the rows (direct reads get no read-ahead).
        *spill.stage.lock().expect("not poisoned") = Stage::new().map_err(at)?;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<io::Result<Stage>>(1);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Stage>();
        for _ in 0..2 {
            free_tx.send(Stage::new().map_err(at)?).expect("the receiver is here");
        }
        let blocks = &spill.blocks;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut off = 0u64;
                for &(e, _) in blocks {
                    // The consumer stopped (an error): stop reading.
                    let Ok(mut stage) = free_rx.recv() else { return };
                    let (pc, pw) = (padded(e * 4), padded(e * 8));
                    let len = if weights { pc + pw } else { pc };
                    let read = stage.with_len(len).and_then(|buf| Spill::read_at(&spill.file, &spill.direct, buf, off)).map(|()| stage);
                    if release && read.is_ok() {
                        spill.free(off, (pc + pw) as u64);
                    }
                    off += (pc + pw) as u64;
                    let failed = read.is_err();
                    if full_tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
            let mut consume = || -> io::Result<()> {
                for &(e, n) in blocks {
                    let stage = full_rx.recv().expect("the reader sends every block or an error").map_err(at)?;
                    let pc = padded(e * 4);
                    let buf = &stage.0[..];
                    // The stage is page-aligned and `pc` a multiple of a
                    // page, so both views are aligned for their types.
                    let cols: &[u32] = bytemuck::cast_slice(&buf[..e * 4]);
                    let w: &[f64] = if weights { bytemuck::cast_slice(&buf[pc..pc + e * 8]) } else { &[] };
                    f(BlockView { cols, w, lens: &self.lens[row..row + n] })?;
                    row += n;
                    // The reader may have finished: then the stage is dropped.
                    let _ = free_tx.send(stage);
                }
                Ok(())
            };
            let done = consume();
            // Hanging up both channels ends a reader that is still waiting
            // (after an error) before the scope waits for it.
            drop((full_rx, free_tx));
            done
        })
    }
}

impl Drop for RowSpool {
    /// Closes the queue and waits for the writer, so that no thread
    /// outlives the spool (its error, if any, no longer matters).
    fn drop(&mut self) {
        let _ = self.seal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(first: u32, rows: &[usize]) -> Rows {
        let mut r = Rows::default();
        let mut c = first;
        for &len in rows {
            let start = r.cols.len();
            for _ in 0..len {
                r.cols.push(c);
                r.w.push(c as f64 * 0.5);
                c += 1;
            }
            r.end_row(start);
        }
        r
    }

    /// Spilled blocks (of sizes around the padding) come back as pushed,
    /// with or without weights, and an error of the consumer midway
    /// returns (the reader thread does not hang the call).
    #[test]
    fn spilled_blocks_read_back_and_stop_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let shapes: [&[usize]; 4] = [&[1, 2], &[1024], &[1023, 1, 3000], &[]];
        for budget in [0, 100] {
            let mut spool = RowSpool::new(budget, 1, dir.path());
            let mut want = Vec::new();
            for (k, rows) in shapes.iter().enumerate() {
                let b = block(k as u32 * 10_000, rows);
                want.push((b.cols.clone(), b.w.clone(), b.lens.clone()));
                spool.push(b).unwrap();
            }
            // Not readable until sealed; then every block is on the disk.
            assert!(spool.for_each_block(true, |_| Ok(())).unwrap_err().to_string().contains("before the spool is sealed"));
            spool.seal().unwrap();
            let spilled: usize = want[spool.mem.len()..].iter().map(|(c, _, _)| c.len() * 12).sum();
            assert_eq!(spool.spilled_bytes(), spilled as u64);
            assert!(spilled > 0);
            // Nothing more goes in after.
            assert!(spool.push(block(99_999, &[1])).unwrap_err().to_string().contains("sealed"));
            for weights in [true, false] {
                let mut got = Vec::new();
                spool
                    .for_each_block(weights, |v| {
                        got.push((v.cols.to_vec(), v.w.to_vec(), v.lens.to_vec()));
                        Ok(())
                    })
                    .unwrap();
                let expect: Vec<_> = want.iter().map(|(c, w, l)| (c.clone(), if weights { w.clone() } else { Vec::new() }, l.clone())).collect();
                // Blocks held in memory always show their weights.
                let held = spool.mem.len();
                assert_eq!(got[held..], expect[held..], "budget {budget}, weights {weights}");
            }
            let mut seen = 0;
            let err = spool.for_each_block(true, |_| {
                seen += 1;
                Err(io::Error::other("stop"))
            });
            assert_eq!(err.unwrap_err().to_string(), "stop");
            assert_eq!(seen, 1);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A read that frees the disk space leaves a spill file of no blocks
    /// (where the file system punches holes) and the same rows; a second
    /// read is refused rather than reading holes.
    #[test]
    fn freeing_the_disk_as_read_gives_the_rows_once() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut spool = RowSpool::new(0, 2, dir.path());
        let mut want = Vec::new();
        for k in 0..5u32 {
            let b = block(k * 100_000, &[3000, 1, 7000]);
            want.push(b.cols.clone());
            spool.push(b).unwrap();
        }
        spool.seal().unwrap();
        let file = spool.spill.as_ref().unwrap().file.try_clone().unwrap();
        assert!(file.metadata().unwrap().blocks() > 0);
        spool.free_disk_as_read();
        let mut got = Vec::new();
        spool
            .for_each_block(true, |v| {
                got.push(v.cols.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(got, want);
        // Does this file system punch holes at all?
        let probe = tempfile::tempfile_in(dir.path()).unwrap();
        std::io::Write::write_all(&mut &probe, &[1u8; 8192]).unwrap();
        probe.sync_all().unwrap();
        let punches = rustix::fs::fallocate(&probe, rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE, 0, 8192).is_ok();
        if punches {
            assert_eq!(file.metadata().unwrap().blocks(), 0);
        } else {
            eprintln!("this file system does not punch holes: the space is only freed when the file closes");
        }
        assert!(spool.for_each_block(true, |_| Ok(())).unwrap_err().to_string().contains("read once"));
    }

    /// Where no spill file can be made, the push that needed one fails
    /// with the directory in its message; the blocks before it were held.
    #[test]
    fn a_spill_that_cannot_start_fails_the_push() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("missing");
        let mut spool = RowSpool::new(60, 2, &gone);
        spool.push(block(0, &[1, 1])).unwrap();
        let err = spool.push(block(2, &[3])).unwrap_err();
        assert!(err.to_string().contains("creating a spill file in") && err.to_string().contains("missing"), "{err}");
        assert_eq!((spool.mem.len(), spool.lens.len(), spool.num_edges()), (1, 2, 2));
    }
}

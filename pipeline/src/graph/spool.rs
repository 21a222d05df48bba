//! Where the graph's rows wait between being computed and being written:
//! in memory up to a byte budget, then in spill files, in row order.
//!
//! Rows arrive as blocks (consecutive rows, each block from one worker) in
//! node order. The first blocks stay in memory while they fit the budget;
//! from the first block that does not fit, every later block goes to two
//! unnamed temporary files (columns, weights), so memory-held blocks are
//! always a prefix and the spilled ones the rest. The writers then read the
//! blocks back in order, from memory or sequentially from the files: the
//! published bytes are the same whatever the budget (tested).
//!
//! What is held whatever the budget: one length and one degree per node
//! (`12·N` bytes) and the largest spilled block while it is read back.
//! Only columns and weights count against the budget.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
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
    spill: Option<Spill>,
    /// Every row's length, in node order.
    pub(crate) lens: Vec<u32>,
    /// Every row's weight sum, in node order.
    pub(crate) sums: Vec<f64>,
    edges: usize,
}

/// The spilled blocks: columns and weights in two files, and each block's
/// edge and row counts.
struct Spill {
    cols: File,
    w: File,
    blocks: Vec<(usize, usize)>,
    bytes: u64,
}

impl RowSpool {
    /// An empty spool keeping at most `budget` bytes of rows in memory and
    /// spilling the rest to unnamed temporary files in `dir` (gone when the
    /// spool is dropped, or when the process dies).
    pub(crate) fn new(budget: usize, dir: &Path) -> Self {
        RowSpool { budget, held: 0, dir: dir.to_path_buf(), mem: Vec::new(), spill: None, lens: Vec::new(), sums: Vec::new(), edges: 0 }
    }

    /// Appends the next block of rows.
    pub(crate) fn push(&mut self, block: Rows) -> io::Result<()> {
        self.lens.extend_from_slice(&block.lens);
        self.sums.extend_from_slice(&block.sums);
        self.edges += block.cols.len();
        let bytes = block.cols.capacity() * 4 + block.w.capacity() * 8;
        if self.spill.is_none() && self.held + bytes <= self.budget {
            self.held += bytes;
            self.mem.push((block.cols, block.w, block.lens.len()));
            return Ok(());
        }
        let spill = match &mut self.spill {
            Some(s) => s,
            None => {
                let open = || tempfile::tempfile_in(&self.dir).map_err(|e| io::Error::new(e.kind(), format!("creating a spill file in {}: {e}", self.dir.display())));
                self.spill.insert(Spill { cols: open()?, w: open()?, blocks: Vec::new(), bytes: 0 })
            }
        };
        let at = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("writing spilled graph {what} in {}: {e}", self.dir.display()));
        (&spill.cols).write_all(bytemuck::cast_slice(&block.cols)).map_err(|e| at("columns", e))?;
        (&spill.w).write_all(bytemuck::cast_slice(&block.w)).map_err(|e| at("weights", e))?;
        spill.blocks.push((block.cols.len(), block.lens.len()));
        spill.bytes += (block.cols.len() * 12) as u64;
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
        let mut row = 0;
        for (cols, w, n) in &self.mem {
            f(BlockView { cols, w, lens: &self.lens[row..row + n] })?;
            row += n;
        }
        let Some(spill) = &self.spill else { return Ok(()) };
        let largest = spill.blocks.iter().map(|&(e, _)| e).max().unwrap_or(0);
        let (mut cols, mut w) = (vec![0u32; largest], if weights { vec![0f64; largest] } else { Vec::new() });
        let mut off = 0u64;
        let at = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("reading spilled graph {what} in {}: {e}", self.dir.display()));
        for &(e, n) in &spill.blocks {
            spill.cols.read_exact_at(bytemuck::cast_slice_mut(&mut cols[..e]), off * 4).map_err(|err| at("columns", err))?;
            if weights {
                spill.w.read_exact_at(bytemuck::cast_slice_mut(&mut w[..e]), off * 8).map_err(|err| at("weights", err))?;
            }
            f(BlockView { cols: &cols[..e], w: if weights { &w[..e] } else { &[] }, lens: &self.lens[row..row + n] })?;
            off += e as u64;
            row += n;
        }
        Ok(())
    }
}

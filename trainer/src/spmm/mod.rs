//! The CPU sparse × dense product `Â · X` over the mapped CSR arrays.
//!
//! libtorch's CPU CSR product (MKL) converts int64 indices to int32 on
//! every call, allocating a buffer of the graph's size each time (measured:
//! +108 MB per product on 20ng). This kernel reads the mapped `row_ptr`
//! and `edge_attr` directly and the column half of `edge_index` as it is
//! or as a `u32` copy made once ([`Column`]; the trainer's graph uses the
//! copy: half the index bytes a product reads), allocates nothing but its
//! output, parallelises over rows (each output row is computed by
//! one thread in a fixed order, so results do not depend on the thread
//! count), and uses AVX-512 or AVX2 with FMA when the CPU has them.
//!
//! # The loop
//! The product gathers a row of `X` for every non-zero (27 M rows of 800
//! bytes per product on 20ng): memory, not arithmetic, bounds it. Each
//! output row is computed in as few passes over its non-zeros as the
//! registers allow: a pass keeps a tile of `T` output floats in registers
//! (up to 208 with AVX-512's 32 registers of 16 floats, 104 with AVX2's
//! 16 of 8), so with AVX-512 a hidden width of 200 is one pass that reads
//! each gathered row of `X` once, front to back. The rows of `X` that the
//! next non-zeros will read are prefetched ([`PREFETCH_AHEAD`] non-zeros
//! ahead), since no hardware prefetcher predicts a gather. Measured on
//! 20ng (k = 200, 2 threads; docs/benchmarks.md): 0.69-0.73 s for the
//! former 64-float tiles, 0.56 s for AVX2 tiles of 100 with prefetch,
//! 0.49 s for AVX-512 tiles of 200 with prefetch.
//!
//! A pass whose width `w` is not a multiple of 8 runs the tile `T` =
//! `w` rounded up to 8 and ignores the lanes past `w`: they read the next
//! floats of `X` (the next row's first ones), which only the last rows of
//! `X` cannot, so the non-zeros whose tile would run past the end of `X`
//! (the largest columns, at a row's end) take an exact-width loop. Every
//! output float is the same fused multiply-add chain, in column order,
//! whichever tile computes it: the AVX-512, AVX2 and fused axpy kernels
//! give the same bits (tested); the portable one rounds each product
//! before adding it.
//!
//! # Panels of columns
//! Where `X` is larger than the cache can hold (past [`ONE_PASS_BYTES`];
//! 20ng's `[61603, 200]` is 49 MB, and this host's VM gets far less than
//! its 32 MB of L3), most gathers wait on memory. The product is then
//! made in passes over panels of consecutive columns of `Â`, each panel's
//! rows of `X` at most [`PANEL_BYTES`]: a pass multiplies every row's
//! non-zeros in its panel and adds them to the row's partial sums (kept in
//! the output, loaded into the tile's registers and stored back), so the
//! gathers of a pass hit the cache, and the cost is a sequential sweep of
//! the output per panel. The non-zeros of a row are in column order, the
//! panels too: every output float is the same FMA chain as in one pass,
//! the same bits (tested). 20ng (k = 200, 2 threads, the AMD EPYC host,
//! 2026-12-06): 0.37-0.49 s a product in panels of 8,192-12,288 columns
//! against 0.66-0.94 s in one pass; a 20ng epoch 0.88-0.91 s in 6 panels
//! of 8 MiB against 1.58-1.65 s. At most [`MAX_PANELS`] panels: each
//! costs a sweep of the output, so a larger `X` gets wider ones. A pass
//! finds each row's non-zeros of its panel where the previous pass left
//! that row (a cursor per row), not by searching the row: a binary search
//! waits on a cache miss at each step.
//!
//! The best panel size depends on the host's caches (8 MiB on the AMD
//! EPYC host, 2 MiB on the Intel Xeon one: 20ng epochs of 0.77 s against
//! 1.0 s), so a product of a new shape is made in each of
//! `TRIED_PANELS` in turn, `TRIALS` times, and the fastest is kept
//! (`tuned`); an `X` within [`ONE_PASS_BYTES`] is also tried in one
//! pass (first), which the AMD host's caches favour for the smaller
//! benchmark graphs and the Intel host's do not (R8's epoch 0.114-0.122
//! s in one pass, 0.072-0.074 s in panels of 2 MiB). The panels never
//! change the bits, so the choice changes only the speed.
//!
//! Panels re-read `Â` once a pass. For the mapped graph that is the page
//! cache's copy, as long as the cache can keep it; a graph larger than the
//! memory left for the page cache (a million-document corpus on a 24 GB
//! machine, or any graph under a tight cgroup limit) would be read from
//! the disk once a pass, so its products are made in one pass
//! (`Panels::for_csr`).
//!
//! A few tile widths come out of the compiler as scalar code (40 and 48
//! floats with AVX-512; 32, 40 and 48 with AVX2: `SCALAR_TILES_AVX512`),
//! 5-8× slower than their neighbours; a width that would need one is
//! made in two or more passes of fast tiles instead (a hidden width of
//! 48 is two passes of 24).
//!
//! The SIMD builds come from `pulp`: [`pulp::x86::V4`] and
//! [`pulp::x86::V3`] are tokens that only run-time detection makes
//! (x86-64-v4: AVX-512; x86-64-v3: AVX2, FMA), and `vectorize` compiles
//! the inlined loop under those features and runs it. So this module has
//! no `unsafe`: the token is the proof, and the loops are plain Rust that
//! the compiler vectorises. The prefetch hint is
//! [`textgcn_pipeline::prefetch`].

use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use textgcn_pipeline::prefetch::prefetch;

#[cfg(target_arch = "x86_64")]
use pulp::x86::{V3, V4};

/// How many non-zeros ahead a row of `X` is prefetched (8 and 12 measured
/// alike on 20ng, 4 slower).
pub const PREFETCH_AHEAD: usize = 8;

/// The passes over a row of `k` output floats with tiles of at most
/// `max`: as few as that allows, of equal widths but the last, as
/// `(first float, width)`: what `fast_passes` gives where no tile is slow
/// (its test compares them); the kernels take `fast_passes`.
#[cfg(test)]
fn passes(k: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    passes_of(k, k.div_ceil(max))
}

/// `k` floats in `n` passes of equal widths but the last.
fn passes_of(k: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let width = k.div_ceil(n.max(1)).max(1);
    (0..k).step_by(width).map(move |t| (t, width.min(k - t)))
}

/// Tiles (floats) that the compiler leaves as scalar code: for these
/// widths LLVM's vectoriser gives up on the tile's loop, which then runs
/// one `vfmadd231ss` per float with the accumulators spilled to the stack
/// (seen in `perf annotate`), 5-8× slower than the tiles around them.
/// Measured with `spmm_bench` on 20ng (seconds a product, 2 threads,
/// 2026-12-06, the AMD EPYC host): AVX-512 tiles of 32, 40, 48, 56 floats
/// 0.060, 0.329, 0.505, 0.093; AVX2 tiles of 24, 32, 40, 48, 56 floats
/// 0.055, 0.239, 0.375, 0.512, 0.134.
const SCALAR_TILES_AVX512: &[usize] = &[40, 48];
/// The same for AVX2's tiles (see `SCALAR_TILES_AVX512`).
const SCALAR_TILES_AVX2: &[usize] = &[32, 40, 48];

/// The passes over a row of `k` output floats with tiles of at most
/// `max`: as few as that allows (of equal widths but the last), more
/// only where that avoids a tile of `slow`. The same floats and the same
/// bits either way: each output float's chain of FMAs does not depend on
/// its tile.
fn fast_passes(k: usize, max: usize, slow: &'static [usize]) -> impl Iterator<Item = (usize, usize)> {
    let fast = |n: usize| passes_of(k, n).all(|(_, w)| !slow.contains(&w.next_multiple_of(8)));
    let fewest = k.div_ceil(max);
    passes_of(k, (fewest..=k.max(1)).find(|&n| fast(n)).unwrap_or(fewest))
}

/// Runs one pass (`t`, `w`) of a block's rows under `simd`'s features
/// with the tile `T` = `w` rounded up to a multiple of 8 (every multiple
/// of 8 up to the largest tile is listed). Each tile is its own
/// vectorised closure: with all of them inside one closure, the compiler
/// left that closure out of line, without the target features, and its
/// FMAs became calls to `fmaf` (15× slower).
macro_rules! tiled {
    ($simd:expr, $block:expr, $x:expr, $k:expr, $out:expr, $t:expr, $w:expr, [$($T:literal),*]) => {
        match $w.next_multiple_of(8) {
            $($T => {
                let out = &mut *$out;
                $simd.vectorize(
                    #[inline(always)]
                    move || $block.tile_rows::<$T>($x, $k, out, $t, $w),
                )
            })*
            _ => unreachable!("a pass is at most the largest tile"),
        }
    };
}

/// A column index of a CSR matrix: the `i64` of the artifacts (and of
/// PyTorch), or a `u32` copy, half the bytes to read a product.
pub trait Column: Copy + Send + Sync + 'static {
    /// The column as an index.
    fn index(self) -> usize;
}

impl Column for i64 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

impl Column for u32 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

/// A CSR matrix as borrowed slices (the mapped artifacts, or arrays in
/// memory).
#[derive(Clone, Copy)]
pub struct Csr<'a, C = i64> {
    /// `N + 1` row offsets.
    pub row_ptr: &'a [i64],
    /// Column of each non-zero.
    pub cols: &'a [C],
    /// Value of each non-zero.
    pub vals: &'a [f32],
    /// Whether the arrays are mapped files, which the page cache holds
    /// (and may drop): then a product is split into panels only where
    /// the arrays stay resident between the passes (see `Panels::for_csr`).
    pub mapped: bool,
}

impl<C: Column> Csr<'_, C> {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    /// Bytes of the three arrays.
    pub fn bytes(&self) -> u64 {
        (std::mem::size_of_val(self.row_ptr) + std::mem::size_of_val(self.cols) + std::mem::size_of_val(self.vals)) as u64
    }

    /// Hints that the non-zeros from `i` on will be read soon: the cache
    /// lines of their first 16 columns and first values (three lines
    /// measured alike with five).
    #[inline(always)]
    fn prefetch_from(&self, i: usize) {
        prefetch(self.cols, i);
        prefetch(self.cols, i + 8);
        prefetch(self.vals, i);
    }

    /// The entries `(i, i)` of the rows `nodes` (`0` where a row has
    /// none); columns are sorted within each row.
    pub fn diagonal(&self, nodes: std::ops::Range<usize>) -> Vec<f32> {
        nodes
            .map(|i| {
                let (a, b) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
                let k = a + self.cols[a..b].partition_point(|&c| c.index() < i);
                if k < b && self.cols[k].index() == i { self.vals[k] } else { 0.0 }
            })
            .collect()
    }

    /// The first `rows` rows (row offsets start at 0, so they are a prefix
    /// of the arrays).
    pub fn prefix(&self, rows: usize) -> Self {
        let end = self.row_ptr[rows] as usize;
        Csr { row_ptr: &self.row_ptr[..=rows], cols: &self.cols[..end], vals: &self.vals[..end], mapped: self.mapped }
    }

    /// `out = self · x`, with `x` row-major `[ncols, k]` and `out` row-major
    /// `[rows, k]`. Panics on mismatched sizes or an out-of-range column.
    pub fn mul_dense(&self, x: &[f32], k: usize, out: &mut [f32]) {
        self.mul_dense_with(Kernel::pick(), x, k, out);
    }

    /// `out = self[:, ..cols] · x[..cols]`: the product with the columns
    /// from `cols` on left out (columns are sorted within each row, so each
    /// row stops at its first larger column). When the rows of `x` from
    /// `cols` on are zero this is [`Csr::mul_dense`] with the same bits, the
    /// skipped terms adding nothing; `x` needs only its first `cols` rows.
    pub fn mul_dense_columns_below(&self, cols: usize, x: &[f32], k: usize, out: &mut [f32]) {
        self.product(Kernel::pick(), Some(cols), x, k, out);
    }

    /// [`Csr::mul_dense`] with a chosen kernel (tests compare them all).
    pub fn mul_dense_with(&self, kernel: Kernel, x: &[f32], k: usize, out: &mut [f32]) {
        self.product(kernel, None, x, k, out);
    }

    fn product(&self, kernel: Kernel, col_end: Option<usize>, x: &[f32], k: usize, out: &mut [f32]) {
        let x_rows = x.len() / k.max(1);
        tuned(self.rows(), k, col_end, x_rows, Panels::for_csr(self, k, col_end, x_rows), |p| self.product_in_panels(kernel, col_end, x, k, out, p));
    }

    /// [`Csr::product`] in passes over panels of columns whose rows of `x`
    /// take at most `sizes.bytes` (see [`panels`]), all of them over one
    /// group of rows after another (see [`groups`]).
    fn product_in_panels(&self, kernel: Kernel, col_end: Option<usize>, x: &[f32], k: usize, out: &mut [f32], sizes: Panels) {
        let n = self.rows();
        assert_eq!(out.len(), n * k, "output size");
        assert!(self.row_ptr[n] as usize == self.cols.len() && self.cols.len() == self.vals.len(), "CSR arrays disagree");
        if k == 0 {
            return;
        }
        let panels = panels(k, col_end, x.len() / k, sizes);
        if let [columns] = panels[..] {
            // One pass: no cursors to keep between passes.
            out.par_chunks_mut(ROWS * k).enumerate().for_each(|(ci, chunk)| self.block(kernel, columns, false, x, k, ci * ROWS, chunk, &[]));
            return;
        }
        let at = cursors(n);
        for rows in groups(n, k, sizes.group) {
            let out = &mut out[rows.start * k..rows.end * k];
            for (i, &columns) in panels.iter().enumerate() {
                out.par_chunks_mut(ROWS * k).enumerate().for_each(|(ci, chunk)| self.block(kernel, columns, i > 0, x, k, rows.start + ci * ROWS, chunk, &at));
            }
        }
    }

    /// `self · x` a block of rows at a time, each block handed, while in
    /// cache, to `then(block, rows)` with the same rows of three
    /// row-aligned arrays of `[rows, k]` (the training step applies the
    /// gradient of `W0` to `W0` and Adam's moments this way). Blocks run in
    /// parallel, each row once; the product's floats are
    /// [`Csr::mul_dense`]'s. When `x` needs several panels, the partial
    /// sums of all but the last are held in a buffer of a group of rows
    /// (see [`groups`]), and the last panel's pass hands each block on.
    pub fn mul_dense_then(&self, x: &[f32], k: usize, rows: [&mut [f32]; 3], then: impl Fn(&mut [f32], [&mut [f32]; 3]) + Sync) {
        let x_rows = x.len() / k.max(1);
        tuned(self.rows(), k, None, x_rows, Panels::for_csr(self, k, None, x_rows), |p| self.mul_dense_then_in_panels(Kernel::pick(), x, k, rows, then, p));
    }

    fn mul_dense_then_in_panels(&self, kernel: Kernel, x: &[f32], k: usize, rows: [&mut [f32]; 3], then: impl Fn(&mut [f32], [&mut [f32]; 3]) + Sync, sizes: Panels) {
        let n = self.rows();
        assert!(rows.iter().all(|r| r.len() == n * k), "row-aligned arrays of the output's size");
        assert!(self.row_ptr[n] as usize == self.cols.len() && self.cols.len() == self.vals.len(), "CSR arrays disagree");
        if k == 0 {
            return;
        }
        let [a, b, c] = rows;
        let panels = panels(k, None, x.len() / k, sizes);
        let Some((&last, before)) = panels.split_last().filter(|(_, before)| !before.is_empty()) else {
            let blocks = a.par_chunks_mut(ROWS * k).zip(b.par_chunks_mut(ROWS * k)).zip(c.par_chunks_mut(ROWS * k)).enumerate();
            blocks.for_each(|(ci, ((a, b), c))| {
                let mut block = vec![0f32; a.len()];
                self.block(kernel, (0, usize::MAX), false, x, k, ci * ROWS, &mut block, &[]);
                then(&mut block, [a, b, c]);
            });
            return;
        };
        let groups = groups(n, k, sizes.group);
        let mut partial = vec![0f32; groups.iter().map(|g| g.len()).max().unwrap_or(0) * k];
        let at = cursors(n);
        for rows in groups {
            let range = rows.start * k..rows.end * k;
            let partial = &mut partial[..range.len()];
            for (i, &columns) in before.iter().enumerate() {
                partial.par_chunks_mut(ROWS * k).enumerate().for_each(|(ci, chunk)| self.block(kernel, columns, i > 0, x, k, rows.start + ci * ROWS, chunk, &at));
            }
            let blocks = a[range.clone()].par_chunks_mut(ROWS * k).zip(b[range.clone()].par_chunks_mut(ROWS * k)).zip(c[range].par_chunks_mut(ROWS * k));
            partial.par_chunks_mut(ROWS * k).zip(blocks).enumerate().for_each(|(ci, (block, ((a, b), c)))| {
                self.block(kernel, last, true, x, k, rows.start + ci * ROWS, block, &at);
                then(block, [a, b, c]);
            });
        }
    }

    /// Rows `first..` of the product (as many as `chunk` holds) into
    /// `chunk`, by `kernel`, for the non-zeros of the columns
    /// `columns.0..columns.1`. `at` holds a cursor per row of the matrix
    /// (empty for a product in one pass): where the row's non-zeros of
    /// these columns begin, counted from the row's start (where the
    /// previous panel's pass ended, 0 for the first); the block moves its
    /// rows' cursors past them. So no row is searched: a binary search of a
    /// row's columns for a panel's bounds waits on a cache miss at each
    /// step (14 % of a 20ng product's samples on the Intel host), while the
    /// scan for the end reads what the product reads next.
    ///
    /// A pass over a panel reads a short run of each row's non-zeros (27 on
    /// average for 20ng in 2 MiB panels) and jumps to the next row's: no
    /// hardware prefetcher follows that, and the scan for a row's end
    /// cannot start before the last row's ended (the branch that ends it
    /// mispredicts), so each row waited on memory in turn (`Csr::block`,
    /// mostly this scan, was 18 % of a 20ng epoch's samples). The block
    /// therefore prefetches its rows' runs before it scans them, and the
    /// next block's runs before its tiles, which then hide their latency
    /// (the next block is, as a rule, the same thread's next). Reading
    /// another block's cursors for this is a race only for the hint: a
    /// cursor the other block's thread already moved gives a useless
    /// prefetch, never a different result, since each block reads the
    /// cursors it computes with only after the previous pass ended.
    #[allow(clippy::too_many_arguments)]
    fn block(&self, kernel: Kernel, columns: (usize, usize), accumulate: bool, x: &[f32], k: usize, first: usize, chunk: &mut [f32], at: &[AtomicU32]) {
        let rows = chunk.len() / k;
        let (a, b) = (self.row_ptr[first] as usize, self.row_ptr[first + rows] as usize);
        // Where row `r`'s non-zeros of the panel begin (`at` is only read
        // past the first panel, so it may be empty for a single pass).
        let start = |r: usize| self.row_ptr[r] as usize + if columns.0 == 0 { 0 } else { at[r].load(Relaxed) as usize };
        if !at.is_empty() {
            (first..first + rows).for_each(|r| self.prefetch_from(start(r)));
        }
        let mut bounds = [(0usize, 0usize); ROWS];
        for (r, bound) in bounds.iter_mut().take(rows).enumerate() {
            let (row_start, end) = (self.row_ptr[first + r] as usize, self.row_ptr[first + r + 1] as usize);
            let lo = start(first + r);
            let hi = if columns.1 == usize::MAX { end } else { lo + self.cols[lo..end].iter().take_while(|&&c| c.index() < columns.1).count() };
            debug_assert_eq!(lo, row_start + self.cols[row_start..end].partition_point(|&c| c.index() < columns.0));
            if let Some(at) = at.get(first + r) {
                at.store(u32::try_from(hi - row_start).expect("a row of fewer than 2^32 non-zeros"), Relaxed);
            }
            *bound = (lo - a, hi - a);
        }
        if !at.is_empty() {
            let next = first + ROWS;
            (next..(next + ROWS).min(self.rows())).for_each(|r| self.prefetch_from(start(r)));
        }
        let block = Block { bounds: &bounds[..rows], cols: &self.cols[a..b], vals: &self.vals[a..b], accumulate };
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => {
                for (t, w) in fast_passes(k, 208, SCALAR_TILES_AVX512) {
                    tiled!(simd, block, x, k, chunk, t, w, [8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184, 192, 200, 208]);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => {
                for (t, w) in fast_passes(k, 104, SCALAR_TILES_AVX2) {
                    tiled!(simd, block, x, k, chunk, t, w, [8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104]);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::AxpyAvx2(simd) => simd.vectorize(
                #[inline(always)]
                move || block.run(x, k, chunk, axpy_fused),
            ),
            Kernel::Axpy => block.run(x, k, chunk, axpy_portable),
        }
    }
}

/// The most bytes of `x` one pass of the product gathers from: the rows
/// of `x` of a panel of columns (see `panels`). A gather that misses the
/// cache waits on memory; this host's VM gets far less of the L3 than its
/// 32 MB (20ng's products slow down past about 10 MB of `x`). Measured on
/// 20ng (k = 200, 2 threads, the AMD EPYC host, 2026-12-06): seconds a
/// product (`spmm_bench`), panels of 8,192 columns (6.6 MB of `x`)
/// 0.41-0.49, 12,288 (9.8 MB) 0.37-0.40, 16,384 (13 MB) 0.37-0.58,
/// 24,576 0.42-0.48, 32,768 0.50-0.53, all 61,603 (49 MB) in one pass
/// 0.66-0.94; the training step's `Â·W0` in ms (two sweeps): panels of 4
/// MiB 493/584, 6 MiB 410/478, 8 MiB 383/364, 10 MiB 435/378, 12 MiB
/// 499/380, 16 MiB 454/412, 24 MiB 547/370.
pub const PANEL_BYTES: usize = 8 << 20;

/// At most this many panels of [`PANEL_BYTES`]: each costs a sweep of
/// the output (loading and storing every row's partial sums), so a larger
/// `x` gets wider panels. The generated 100k-document corpus (326k nodes,
/// `x` 261 MB; a training epoch, seconds, the same minutes, when each
/// panel also binary-searched every row): one pass 8.6 / 9.3, panels of
/// 8 MiB (32 panels) 9.5, 16 MiB 6.9, 32 MiB 6.9 / 7.3, 64 MiB 9.1.
pub const MAX_PANELS: usize = 12;

/// The panel sizes a product of a given shape is tried in, with at most
/// how many panels each (see [`tuned`]): [`PANEL_BYTES`] first, then
/// narrower panels, in more of them. Which is fastest depends on the
/// host's caches: 20ng's epoch (k = 200, 2 threads, the Intel Xeon host
/// with 2 MiB of L2 a core, 2026-12-07, after panels stopped searching
/// their rows; `--epochs 6`, seconds) took 1.05-1.08 in panels of 8 MiB
/// (6), 0.84-0.86 in 4 MiB (12), 0.69-0.73 in 2 MiB (24), 0.79-0.85 in
/// 1 MiB (47), while on the AMD EPYC host (its 32 MB of L3) 8 MiB was the
/// fastest (see [`PANEL_BYTES`]). R8's (the same Intel host, 2026-12-07
/// 16:30, after the blocks prefetched their rows' runs; `--epochs 40`,
/// alternating, load 1.5-1.6): 0.103-0.122 s with 2 MiB the narrowest
/// tried, 0.086-0.095 s once 1 MiB (12 panels) was tried and chosen.
/// 1 MiB panels are at most as many as 2 MiB ones may be: a larger `x`
/// gets the same split, which the trials then time once.
const TRIED_PANELS: [(usize, usize); 4] = [(PANEL_BYTES, MAX_PANELS), (4 << 20, 2 * MAX_PANELS), (2 << 20, 4 * MAX_PANELS), (1 << 20, 4 * MAX_PANELS)];

/// The groups of rows of the panels tried (see [`groups`]): on the Intel
/// Xeon host, 20ng's epochs in groups of 4-16 MiB were alike, 5 % faster
/// than in one group. (Tried as candidates beside one group, the two
/// trials of each could not tell them apart: the choice flipped between
/// runs.)
const GROUP_BYTES: usize = 8 << 20;

/// How many times each distinct panel size is timed before the fastest
/// is kept (the first product of a run also faults the mapped graph in).
const TRIALS: usize = 2;

/// Up to this many bytes `x` is gathered from in one pass, unless the
/// trials of `tuned` find panels faster: one pass is then the first
/// candidate. On the AMD EPYC host the smaller benchmark graphs lost by
/// panels (the training step's `Â·W0`, ms, one pass against panels of 8
/// MiB, 3 runs each: R8, 12.3 MB of `x`, 30-34 against 34-37; ohsumed,
/// 17.2 MB, 79-85 against 85-87; mr, 23.5 MB, 20-25 against 23; 20ng, 49
/// MB, 728-747 against 384-397); on the Intel Xeon host (2 MiB of L2 a
/// core, 2026-12-07) they win: trials of R8's products, best seconds, one
/// pass 0.048, panels of 8 MiB 0.045, 4 MiB 0.035, 2 MiB 0.031; ohsumed
/// 0.125, 0.103, 0.089, 0.074.
pub const ONE_PASS_BYTES: usize = 24 << 20;

/// How a product is split into panels (see [`panels`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Panels {
    /// The most bytes of `x` a panel's rows take.
    bytes: usize,
    /// Up to this many bytes of `x`, one pass.
    one_pass: usize,
    /// At most this many panels (wider ones where `bytes` would need more).
    max: usize,
    /// The most bytes of output a group of rows takes (see [`groups`]):
    /// `usize::MAX` for one group of all rows.
    group: usize,
    /// Set by `TEXTGCN_SPMM_PANEL_BYTES` (or a test): kept whatever the
    /// memory.
    fixed: bool,
}

impl Panels {
    /// Every product in one pass.
    const ONE_PASS: Panels = Panels { bytes: usize::MAX, one_pass: usize::MAX, max: 1, group: usize::MAX, fixed: false };

    /// [`PANEL_BYTES`] and [`ONE_PASS_BYTES`], all rows in one group;
    /// `TEXTGCN_SPMM_PANEL_BYTES` sets both sizes (for measurements: a
    /// size past `x`'s is one pass, a small one splits any product), and
    /// with it `TEXTGCN_SPMM_GROUP_BYTES` the groups of rows.
    fn current() -> Panels {
        static P: std::sync::OnceLock<Panels> = std::sync::OnceLock::new();
        let var = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
        *P.get_or_init(|| match var("TEXTGCN_SPMM_PANEL_BYTES") {
            Some(bytes) => Panels { bytes, one_pass: bytes, max: MAX_PANELS, group: var("TEXTGCN_SPMM_GROUP_BYTES").unwrap_or(usize::MAX), fixed: true },
            None => Panels { bytes: PANEL_BYTES, one_pass: ONE_PASS_BYTES, max: MAX_PANELS, group: usize::MAX, fixed: false },
        })
    }

    /// The panels of a product of `csr` with `x` of `x_rows` rows of `k`
    /// (see [`panels`]): [`Panels::current`], unless they or a size the
    /// trials would try ([`candidates`]) split it, `csr` is mapped and the
    /// page cache cannot keep it (the
    /// [`crate::metrics::memory_room`] left for file pages, read at each
    /// such product: the trainer's own memory grows in its first step).
    /// See [`Panels::choose`].
    fn for_csr<C: Column>(csr: &Csr<C>, k: usize, col_end: Option<usize>, x_rows: usize) -> Panels {
        let p = Panels::current();
        if !csr.mapped || p.fixed || candidates(csr.rows(), k, col_end, x_rows, p).1.iter().all(|(split, _)| split.len() < 2) {
            return p;
        }
        let bytes = csr.bytes();
        let room = crate::metrics::memory_room();
        let chosen = Panels::choose(p, bytes, room);
        static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if chosen != p && !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(
                "sparse products over the mapped graph ({:.2} GB for this one) do not fit the memory left for the page cache ({:.2} GB): one pass each, not panels of columns",
                bytes as f64 / 1e9,
                room.unwrap_or(0) as f64 / 1e9
            );
        }
        chosen
    }

    /// `p` for a mapped matrix of `bytes` when the page cache can keep
    /// `room` bytes (`None`: unknown), else one pass. Each panel's pass
    /// reads every row's pages again (a row shorter than a page is read
    /// whole by each pass), so a matrix the page cache cannot keep would
    /// come from the disk once a pass: panels are kept only while the
    /// matrix takes at most three quarters of `room`. The generated
    /// 100k-document graph (2.4 GB of columns and weights), trained in a
    /// cgroup of 3000 MiB with 2.2 GB of it the trainer's own (AMD EPYC
    /// host, 2026-12-06, load 1.4-1.8): 17.4-19.0 s an epoch in 12 panels,
    /// 12.3-12.7 s in one pass (8.4 s in panels without the limit).
    fn choose(p: Panels, bytes: u64, room: Option<u64>) -> Panels {
        match room {
            Some(room) if bytes > room / 4 * 3 => Panels::ONE_PASS,
            _ => p,
        }
    }

    /// Panels of `bytes` whatever the size of `x` (tests).
    #[cfg(test)]
    fn of(bytes: usize) -> Panels {
        Panels { bytes, one_pass: 0, max: MAX_PANELS, group: usize::MAX, fixed: true }
    }
}

/// The column ranges of the product's passes: columns `0..ncols` (the
/// rows `x` has, or up to `col_end`) in panels whose rows of `x` take at
/// most `bytes` each, or in [`MAX_PANELS`] panels where that would take
/// more (one pass when all of `x` fits `bytes`, or takes at most
/// `one_pass`; a panel has at least one column). The last range runs on
/// to `col_end` (or without end), so that every non-zero the one-pass
/// product reads is in exactly one range.
/// Each pass adds its panel's terms to the partial sums of the ones before,
/// and the columns are in order within a row: every output float is the
/// same chain of multiply-adds, in column order, as in one pass.
fn panels(k: usize, col_end: Option<usize>, x_rows: usize, Panels { bytes, one_pass, max, .. }: Panels) -> Vec<(usize, usize)> {
    let end = col_end.unwrap_or(usize::MAX);
    let ncols = end.min(x_rows);
    let width = (bytes / (k.max(1) * 4)).max(ncols.div_ceil(max.max(1))).max(1);
    if ncols <= width || ncols.saturating_mul(k * 4) <= one_pass {
        return vec![(0, end)];
    }
    (0..ncols).step_by(width).map(|lo| (lo, if lo + width >= ncols { end } else { lo + width })).collect()
}

/// Runs a product of a `rows`-row matrix with `x` of `x_rows` rows of `k`
/// (up to column `col_end`) by `run`, in the panels that have been the
/// fastest for products of this shape. `base` is [`Panels::for_csr`]'s
/// choice: where that is not the usual panels (fixed by
/// `TEXTGCN_SPMM_PANEL_BYTES`, or one pass for a graph the page cache
/// cannot keep), it is kept. Otherwise each of [`TRIED_PANELS`] that
/// splits this product differently is timed [`TRIALS`] times, in turns,
/// and the fastest is kept for the rest of the process. The panels never
/// change a product's bits (tested), so neither does the choice: only
/// its speed, which depends on the host.
fn tuned(rows: usize, k: usize, col_end: Option<usize>, x_rows: usize, base: Panels, run: impl FnOnce(Panels)) {
    if base.fixed || base != Panels::current() {
        return run(base);
    }
    let (candidates, seen) = candidates(rows, k, col_end, x_rows, base);
    if candidates.len() < 2 {
        return run(candidates.first().copied().unwrap_or(base));
    }
    type Shapes = std::collections::HashMap<(usize, usize, Option<usize>, usize), Trial>;
    static SHAPES: std::sync::OnceLock<std::sync::Mutex<Shapes>> = std::sync::OnceLock::new();
    let shapes = SHAPES.get_or_init(Default::default);
    let key = (rows, k, col_end, x_rows);
    let i = shapes.lock().expect("not poisoned").entry(key).or_insert_with(|| Trial::new(candidates.len())).next();
    let started = std::time::Instant::now();
    run(candidates[i]);
    let seconds = started.elapsed().as_secs_f64();
    let mut shapes = shapes.lock().expect("not poisoned");
    let trial = shapes.get_mut(&key).expect("inserted above");
    if let Some(best) = trial.record(i, seconds) {
        tracing::debug!(
            "sparse product [{rows} × {x_rows}] · [{x_rows} × {k}]: panels of {} MiB ({} of them) in {} group(s) of rows are the fastest here; best seconds of each candidate tried: {:?}",
            candidates[best].bytes >> 20,
            seen[best].0.len(),
            seen[best].1,
            trial.best
        );
    }
}

/// The sizes of [`TRIED_PANELS`] (on `base`'s one-pass limit), over
/// groups of [`GROUP_BYTES`] of rows, that split a product of a
/// `rows`-row matrix with `x` of `x_rows` rows of `k` (up to `col_end`)
/// into different panels; and those panels with their numbers of groups.
/// Where `base` makes the product one pass (`x` within
/// [`ONE_PASS_BYTES`]), that pass is the first candidate and the sizes
/// are tried against it, without the limit.
fn candidates(rows: usize, k: usize, col_end: Option<usize>, x_rows: usize, base: Panels) -> (Vec<Panels>, Vec<(Vec<(usize, usize)>, usize)>) {
    let mut candidates: Vec<Panels> = Vec::new();
    let mut seen: Vec<(Vec<(usize, usize)>, usize)> = Vec::new();
    let one_pass = panels(k, col_end, x_rows, base).len() == 1;
    let sizes = TRIED_PANELS.iter().map(|&(bytes, max)| Panels { bytes, max, group: GROUP_BYTES, one_pass: if one_pass { 0 } else { base.one_pass }, ..base });
    for p in one_pass.then_some(base).into_iter().chain(sizes) {
        let split = panels(k, col_end, x_rows, p);
        // One pass has no partial sums to keep: its rows are never grouped.
        let groups = if split.len() < 2 { 1 } else { groups(rows, k, p.group).len() };
        if !seen.iter().any(|(s, g)| *s == split && *g == groups) {
            seen.push((split, groups));
            candidates.push(p);
        }
    }
    (candidates, seen)
}

/// The timing of a product's candidate panel sizes (see [`tuned`]).
#[derive(Debug)]
struct Trial {
    /// The fastest time of each candidate so far.
    best: Vec<f64>,
    /// Products timed.
    runs: usize,
    /// The candidate kept, once every one has had its [`TRIALS`].
    chosen: Option<usize>,
}

impl Trial {
    fn new(candidates: usize) -> Self {
        Trial { best: vec![f64::INFINITY; candidates], runs: 0, chosen: None }
    }

    /// The candidate for the next product: each in turn, then the one kept.
    fn next(&self) -> usize {
        self.chosen.unwrap_or(self.runs % self.best.len())
    }

    /// Records that candidate `i` took `seconds`; returns the candidate
    /// kept when this was the last trial (the fastest; the first of equals).
    fn record(&mut self, i: usize, seconds: f64) -> Option<usize> {
        if self.chosen.is_some() {
            return None;
        }
        self.best[i] = self.best[i].min(seconds);
        self.runs += 1;
        if self.runs < TRIALS * self.best.len() {
            return None;
        }
        let fastest = (0..self.best.len()).fold(0, |b, c| if self.best[c] < self.best[b] { c } else { b });
        self.chosen = Some(fastest);
        self.chosen
    }
}

/// Rows of a block, the unit of parallel work.
const ROWS: usize = 64;

/// The groups of rows that a product in panels runs all its panels over,
/// one group after another: consecutive rows whose `k` output floats take
/// at most `bytes` (a multiple of [`ROWS`] rows, at least one block;
/// `usize::MAX`: all rows in one group).
///
/// A pass over a panel loads and stores the partial sums of every row
/// with a non-zero in the panel: on 20ng in 24 panels of 2 MiB, 1.6 GB a
/// 200-wide product, 49 MB of output swept 24 times from memory. Over a
/// group of rows whose output the cache can keep, the sweeps hit the
/// cache, at the cost of gathering the panel's rows of `x` once a group
/// instead of once. Each row's floats are the same chain of multiply-adds
/// in column order whatever the groups: the same bits (tested). 20ng
/// (the Intel Xeon host, 2026-12-07 18:44, `--epochs 16`, alternating,
/// load 1.8-2.2, seconds an epoch): all rows 0.771-0.808, groups of 1 MiB
/// 0.822-0.845, 2 MiB 0.747-0.766, 4 MiB 0.717-0.749, 8 MiB 0.727-0.740,
/// 16 MiB 0.721-0.758. The panels tried are over groups of
/// [`GROUP_BYTES`] (see `candidates`).
fn groups(n: usize, k: usize, bytes: usize) -> Vec<std::ops::Range<usize>> {
    let rows = (bytes / (k.max(1) * 4) / ROWS * ROWS).max(ROWS);
    (0..n).step_by(rows).map(|r| r..(r + rows).min(n)).collect()
}

/// A cursor per row (see [`Csr::block`]), each 0.
fn cursors(n: usize) -> Vec<AtomicU32> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

/// Which inner loop runs: register tiles with AVX-512 or AVX2 (and FMA)
/// where the CPU has them, else an axpy per non-zero (with AVX2+FMA when
/// the CPU has them). `TEXTGCN_SPMM_KERNEL` (`avx512`, `avx2`,
/// `axpy-avx2`, `axpy`) overrides the choice, for measurements; a kernel
/// this CPU cannot run, or another name, leaves the best one. The SIMD variants carry the proof that
/// the CPU has the features (pulp's tokens), so they cannot be chosen
/// wrongly.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    /// 16-wide, tiles of up to 208 floats.
    #[cfg(target_arch = "x86_64")]
    Avx512(V4),
    /// 8-wide, tiles of up to 104 floats.
    #[cfg(target_arch = "x86_64")]
    Avx2(V3),
    /// One axpy per non-zero, compiled for AVX2+FMA.
    #[cfg(target_arch = "x86_64")]
    AxpyAvx2(V3),
    /// One portable axpy per non-zero.
    Axpy,
}

impl PartialEq for Kernel {
    /// The same kernel (the tokens carry no state).
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl Eq for Kernel {}

impl Kernel {
    /// The best kernel for this CPU (or the one the environment asks for).
    pub fn pick() -> Kernel {
        static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *K.get_or_init(|| {
            let asked = std::env::var("TEXTGCN_SPMM_KERNEL").unwrap_or_default();
            let available = Kernel::available();
            let by_name = |name: &str| available.iter().copied().find(|k| k.name() == name);
            by_name(&asked).unwrap_or(available[0])
        })
    }

    /// Every kernel this CPU can run, best first (the portable one last).
    pub fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = V4::try_new() {
                all.push(Kernel::Avx512(simd));
            }
            if let Some(simd) = V3::try_new() {
                all.extend([Kernel::Avx2(simd), Kernel::AxpyAvx2(simd)]);
            }
        }
        all.push(Kernel::Axpy);
        all
    }

    /// The kernel's name (`avx512`, `avx2`, `axpy-avx2`, `axpy`), as
    /// `TEXTGCN_SPMM_KERNEL` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::AxpyAvx2(_) => "axpy-avx2",
            Kernel::Axpy => "axpy",
        }
    }
}

/// A run of consecutive rows, processed by one thread.
#[derive(Clone, Copy)]
pub(crate) struct Block<'a, C> {
    /// Each row's non-zeros to multiply, as a range of `cols` and `vals`:
    /// those of the pass's columns (see [`Csr::mul_dense_columns_below`]
    /// and the panels).
    bounds: &'a [(usize, usize)],
    cols: &'a [C],
    vals: &'a [f32],
    /// Whether the output rows hold partial sums to add to (the panels
    /// after the first), or are overwritten.
    accumulate: bool,
}

impl<C: Column> Block<'_, C> {
    /// Row `r`'s columns and values (without the left-out columns).
    #[inline(always)]
    fn row(&self, r: usize) -> (&[C], &[f32]) {
        let (lo, hi) = self.bounds[r];
        (&self.cols[lo..hi], &self.vals[lo..hi])
    }

    /// Floats `t..t + w` of each of the block's rows, by
    /// [`Block::tile`].
    #[inline(always)]
    pub(crate) fn tile_rows<const T: usize>(&self, x: &[f32], k: usize, out: &mut [f32], t: usize, w: usize) {
        for (r, orow) in out.chunks_exact_mut(k).enumerate() {
            self.tile::<T>(r, x, k, orow, t, w);
        }
    }

    /// Floats `t..t + w` of the block's row `r` (`orow`) with a tile of
    /// `T >= w` accumulators that the compiler keeps in registers, so a
    /// non-zero costs loads of `x` and FMAs only; the lanes past `w` are
    /// computed and dropped (see the module's documentation).
    #[inline(always)]
    pub(crate) fn tile<const T: usize>(&self, r: usize, x: &[f32], k: usize, orow: &mut [f32], t: usize, w: usize) {
        debug_assert!(w <= T && T - w < 8);
        let (cols, vals) = self.row(r);
        // The non-zeros whose whole tile lies inside `x`: all of them when
        // the tile is the pass's width, else all but the last columns.
        let whole = if T == w { cols.len() } else { cols.partition_point(|&c| c.index() * k + t + T <= x.len()) };
        let mut acc = [0f32; T];
        if self.accumulate {
            if cols.is_empty() {
                return;
            }
            acc[..w].copy_from_slice(&orow[t..t + w]);
        }
        for (e, (&c, &v)) in cols[..whole].iter().zip(&vals[..whole]).enumerate() {
            if let Some(&ahead) = cols.get(e + PREFETCH_AHEAD) {
                let at = ahead.index() * k + t;
                for line in (0..T).step_by(16) {
                    prefetch(x, at + line);
                }
                prefetch(x, at + T - 1);
            }
            let xs: &[f32; T] = x[c.index() * k + t..][..T].try_into().expect("a whole tile");
            for j in 0..T {
                acc[j] = v.mul_add(xs[j], acc[j]);
            }
        }
        for (&c, &v) in cols[whole..].iter().zip(&vals[whole..]) {
            for (a, xv) in acc[..w].iter_mut().zip(&x[c.index() * k + t..][..w]) {
                *a = v.mul_add(*xv, *a);
            }
        }
        orow[t..t + w].copy_from_slice(&acc[..w]);
    }

    /// Computes the block's rows of `Â · x` into `out` with `axpy`
    /// (`y += a · x`) for each non-zero.
    #[inline(always)]
    pub(crate) fn run(&self, x: &[f32], k: usize, out: &mut [f32], axpy: impl Fn(f32, &[f32], &mut [f32])) {
        for (r, orow) in out.chunks_exact_mut(k).enumerate() {
            if !self.accumulate {
                orow.fill(0.0);
            }
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                axpy(v, &x[c.index() * k..][..k], orow);
            }
        }
    }
}

/// `y += a · x` with fused multiply-adds (only fast where the build has
/// FMA: under pulp's `vectorize`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn axpy_fused(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = a.mul_add(*xv, *yv);
    }
}

/// Portable `y += a · x`.
fn axpy_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random sparse `n × n` matrix whose last row and column are
    /// filled (the tiles' exact-width tail runs on them).
    fn matrix(n: usize) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
        let mut row_ptr = vec![0i64];
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for r in 0..n {
            for c in 0..n {
                if (r * 7 + c * 3) % 5 == 0 || r == n - 1 || c == n - 1 {
                    cols.push(c as i64);
                    vals.push(((r + 2 * c) % 11) as f32 * 0.25 - 1.0);
                }
            }
            row_ptr.push(cols.len() as i64);
        }
        (row_ptr, cols, vals)
    }

    #[test]
    fn matches_a_dense_product() {
        let n = 37;
        let (row_ptr, cols, vals) = matrix(n);
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals, mapped: false };
        let kernels = Kernel::available();
        assert!(kernels.contains(&Kernel::pick()));
        // Widths below, at and above the tiles (8, 104, 208), ragged ones,
        // and several passes.
        for k in [1, 7, 8, 20, 23, 32, 40, 45, 48, 64, 67, 100, 104, 105, 200, 208, 209, 300, 417] {
            let x: Vec<f32> = (0..n * k).map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8).collect();
            let mut fused: Option<Vec<f32>> = None;
            for &kernel in &kernels {
                let mut out = vec![f32::NAN; n * k];
                csr.mul_dense_with(kernel, &x, k, &mut out);
                for r in 0..n {
                    for j in 0..k {
                        let mut want = 0f64;
                        for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
                            want += vals[e] as f64 * x[cols[e] as usize * k + j] as f64;
                        }
                        assert!((out[r * k + j] as f64 - want).abs() < 1e-4, "{kernel:?} k={k} ({r},{j})");
                    }
                }
                // Every FMA kernel gives the same bits.
                if kernel != Kernel::Axpy {
                    let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    match &fused {
                        None => fused = Some(out),
                        Some(first) => assert_eq!(bits, first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{kernel:?} k={k}: other bits than {:?}", kernels[0]),
                    }
                }
            }
        }
    }

    /// The diagonal is each row's `(i, i)` entry, `0` where there is none,
    /// the same with `u32` columns.
    #[test]
    fn diagonal_entries() {
        let n = 23;
        let (row_ptr, cols, vals) = matrix(n);
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals, mapped: false };
        let want: Vec<f32> = (0..n)
            .map(|i| (row_ptr[i] as usize..row_ptr[i + 1] as usize).find(|&e| cols[e] == i as i64).map_or(0.0, |e| vals[e]))
            .collect();
        assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0), "the matrix has rows with and without a diagonal entry");
        assert_eq!(csr.diagonal(0..n), want);
        assert_eq!(csr.diagonal(5..9), want[5..9]);
        let cols32: Vec<u32> = cols.iter().map(|&c| c as u32).collect();
        assert_eq!(Csr { row_ptr: &row_ptr, cols: &cols32[..], vals: &vals, mapped: false }.diagonal(0..n), want);
    }

    /// The passes cover each float once, in order, as few as the largest
    /// tile allows, more only where that avoids a scalar tile.
    #[test]
    fn passes_avoid_the_scalar_tiles() {
        for (max, slow) in [(208, SCALAR_TILES_AVX512), (104, SCALAR_TILES_AVX2)] {
            for k in 1..=700 {
                let p: Vec<(usize, usize)> = fast_passes(k, max, slow).collect();
                let mut next = 0;
                for &(t, w) in &p {
                    assert!(t == next && w >= 1 && w <= max, "k={k}: {p:?}");
                    assert!(!slow.contains(&w.next_multiple_of(8)), "k={k}: {p:?} has a scalar tile");
                    next = t + w;
                }
                assert_eq!(next, k, "k={k}: {p:?}");
                let plain = passes(k, max).count();
                if passes(k, max).all(|(_, w)| !slow.contains(&w.next_multiple_of(8))) {
                    assert_eq!(p.len(), plain, "k={k}: more passes than needed");
                }
            }
        }
        // The widths measured slow are split in two.
        assert_eq!(fast_passes(48, 208, SCALAR_TILES_AVX512).collect::<Vec<_>>(), [(0, 24), (24, 24)]);
        assert_eq!(fast_passes(40, 104, SCALAR_TILES_AVX2).collect::<Vec<_>>(), [(0, 20), (20, 20)]);
        assert_eq!(fast_passes(200, 208, SCALAR_TILES_AVX512).collect::<Vec<_>>(), [(0, 200)]);
    }

    /// Leaving out the columns whose rows of `x` are zero gives the same
    /// bits as the whole product, from a shorter `x`.
    #[test]
    fn columns_below_a_bound() {
        let n = 29;
        let (row_ptr, cols, vals) = matrix(n);
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals, mapped: false };
        for kernel in Kernel::available() {
            for (k, bound) in [(20, 11), (200, 11), (3, 0), (20, n)] {
                let mut x: Vec<f32> = (0..n * k).map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8).collect();
                x[bound * k..].fill(0.0);
                let mut whole = vec![0f32; n * k];
                csr.mul_dense_with(kernel, &x, k, &mut whole);
                let mut part = vec![f32::NAN; n * k];
                csr.product(kernel, Some(bound), &x[..bound * k], k, &mut part);
                assert_eq!(part.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{kernel:?} k={k} below {bound}");
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// A mapped matrix is split into panels only while the page cache can
    /// keep it (three quarters of the room at most); a matrix in memory,
    /// or sizes fixed by `TEXTGCN_SPMM_PANEL_BYTES`, whatever the memory.
    #[test]
    fn panels_only_while_the_page_cache_keeps_the_graph() {
        let now = Panels { bytes: PANEL_BYTES, one_pass: ONE_PASS_BYTES, max: MAX_PANELS, group: usize::MAX, fixed: false };
        assert_eq!(Panels::choose(now, 750, Some(1000)), now);
        assert_eq!(Panels::choose(now, 751, Some(1000)), Panels::ONE_PASS);
        assert_eq!(Panels::choose(now, 1 << 40, None), now);
        assert_eq!(Panels::choose(now, 1, Some(0)), Panels::ONE_PASS);
        // One pass makes every product one range, whatever `x`.
        assert_eq!(panels(200, None, 3_000_000, Panels::ONE_PASS), [(0, usize::MAX)]);
        assert_eq!(panels(200, Some(70_000), 3_000_000, Panels::ONE_PASS), [(0, 70_000)]);
        // A matrix in memory keeps the usual panels (never looked up), and
        // so does a mapped one whose product is one pass anyway.
        let (row_ptr, cols, vals) = matrix(5);
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals, mapped: false };
        assert_eq!(Panels::for_csr(&csr, 200, None, 3_000_000), Panels::current());
        assert_eq!(csr.bytes(), (row_ptr.len() * 8 + cols.len() * 8 + vals.len() * 4) as u64);
        let mapped = Csr { mapped: true, ..csr };
        assert_eq!(Panels::for_csr(&mapped, 200, None, 5), Panels::current());
        // A small mapped one keeps them where the machine has room.
        if crate::metrics::memory_room().is_some_and(|r| r > 4096) {
            assert_eq!(Panels::for_csr(&mapped, 200, None, 3_000_000), Panels::current());
        }
    }

    /// Every candidate is timed twice, in turns; then the fastest (by its
    /// best time; the first of equals) is kept and later times change
    /// nothing. Which sizes are candidates: those that split the product
    /// differently.
    #[test]
    fn the_fastest_panels_are_kept_after_the_trials() {
        let mut t = Trial::new(3);
        let mut order = Vec::new();
        for s in [0.5, 0.3, 0.4, 0.6, 0.35, 0.2] {
            let i = t.next();
            order.push(i);
            assert_eq!(t.record(i, s), if order.len() == 6 { Some(2) } else { None });
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        assert_eq!(t.best, [0.5, 0.3, 0.2]);
        assert_eq!((t.next(), t.record(2, 9.0), t.next(), t.record(0, 0.01), t.next()), (2, None, 2, None, 2));
        let mut tie = Trial::new(2);
        for s in [0.4, 0.4, 0.4, 0.4] {
            let i = tie.next();
            tie.record(i, s);
        }
        assert_eq!(tie.next(), 0);
        // 20ng's hidden products: 6, 12, 24 and 48 panels; the generated
        // 100k corpus 12, 24 and 48 (1 MiB panels would be more than 48:
        // the same split as 2 MiB's, tried once). Where `x` is within the
        // one-pass limit, one pass and the panels that split it: R8's
        // hidden products (12.3 MB of `x`) one pass, 2, 3, 6 or 12
        // panels; 20ng's 20-wide ones (4.9 MB) one pass, 2, 3 or 5; a 1.6
        // MB `x` one pass or 2; an `x` within the smallest panel one pass
        // only, so nothing to try.
        // Each split in panels over groups of 8 MiB of output: 10,432 rows
        // of 200 floats (6 groups on 20ng, 32 on the 100k corpus, 2 on
        // R8), 104,832 rows of 20 (one group on 20ng).
        let now = Panels::current();
        let sizes = |k, rows| candidates(rows, k, None, rows, now).1.iter().map(|(split, groups)| (split.len(), *groups)).collect::<Vec<_>>();
        assert_eq!(sizes(200, 61_603), [(6, 6), (12, 6), (24, 6), (48, 6)]);
        assert_eq!(sizes(200, 326_597), [(12, 32), (24, 32), (48, 32)]);
        assert_eq!(sizes(200, 15_362), [(1, 1), (2, 2), (3, 2), (6, 2), (12, 2)]);
        assert_eq!(sizes(20, 61_603), [(1, 1), (2, 1), (3, 1), (5, 1)]);
        assert_eq!(sizes(200, 2_000), [(1, 1), (2, 1)]);
        assert_eq!(sizes(200, 1_000), [(1, 1)]);
        assert_eq!(candidates(61_603, 200, None, 61_603, now).0[0], Panels { group: GROUP_BYTES, ..now });
        assert_eq!(candidates(15_362, 200, None, 15_362, now).0[0], now);
        assert_eq!(groups(61_603, 200, GROUP_BYTES).iter().map(|g| g.len()).collect::<Vec<_>>(), [10_432, 10_432, 10_432, 10_432, 10_432, 9_443]);
    }

    /// The panels cover the columns once, in order, each within the bytes
    /// (or of one column), the last one open-ended.
    #[test]
    fn panels_cover_the_columns_in_order() {
        let now = Panels { bytes: PANEL_BYTES, one_pass: ONE_PASS_BYTES, max: MAX_PANELS, group: usize::MAX, fixed: false };
        // 20ng's hidden products in 6 panels; its 20-wide ones, R8's,
        // ohsumed's and mr's in one pass.
        assert_eq!(panels(200, None, 61_603, now).len(), 6);
        assert_eq!(panels(20, None, 61_603, now), [(0, usize::MAX)]);
        for nodes in [15_362, 21_557, 29_426] {
            assert_eq!(panels(200, None, nodes, now), [(0, usize::MAX)]);
        }
        assert_eq!(panels(4, Some(10), 50, Panels::of(4 * 4 * 3)), [(0, 3), (3, 6), (6, 9), (9, 10)]);
        assert_eq!(panels(4, None, 6, Panels::of(4 * 4 * 3)), [(0, 3), (3, usize::MAX)]);
        assert_eq!(panels(300, None, 5, Panels::of(1)), [(0, 1), (1, 2), (2, 3), (3, 4), (4, usize::MAX)]);
        // The generated 100k corpus: 12 panels of 27,217 columns.
        let wide = panels(200, None, 326_597, now);
        assert_eq!(wide.len(), MAX_PANELS);
        assert_eq!(wide[1], (27_217, 54_434));
        assert_eq!(panels(1, None, 100, Panels::of(4)).len(), MAX_PANELS);
        assert_eq!(panels(8, None, 0, Panels::of(1)), [(0, usize::MAX)]);
    }

    /// A product in panels of columns has the bits of the one-pass
    /// product, for every kernel, panel width and product width, with and
    /// without a column bound, over all rows at once or in groups of
    /// rows; and so has the product that hands its blocks on; and each
    /// of them the same bits with `u32` columns as with `i64` ones.
    #[test]
    fn panels_give_the_bits_of_one_pass() {
        // One block of rows, and several (each block keeps where each of
        // its rows' next panel begins).
        for n in [37, 3 * ROWS + 5] {
            panels_of(n);
        }
    }

    fn panels_of(n: usize) {
        let (row_ptr, cols, vals) = matrix(n);
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals, mapped: false };
        let cols32: Vec<u32> = cols.iter().map(|&c| u32::try_from(c).unwrap()).collect();
        let narrow = Csr { row_ptr: &row_ptr, cols: &cols32[..], vals: &vals, mapped: false };
        for kernel in Kernel::available() {
            for k in [1, 8, 20, 45, 200, 209] {
                let x: Vec<f32> = (0..n * k).map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8).collect();
                let mut one = vec![0f32; n * k];
                csr.product_in_panels(kernel, None, &x, k, &mut one, Panels::ONE_PASS);
                for (panel, group) in [1, 2, 5, 36, 37, n].into_iter().flat_map(|p| [(p, usize::MAX), (p, ROWS * k * 4), (p, 2 * ROWS * k * 4 + 1)]) {
                    let bytes = Panels { group, ..Panels::of(panel * k * 4) };
                    assert_eq!(panels(k, None, n, bytes).len(), n.div_ceil(panel.max(n.div_ceil(MAX_PANELS))));
                    assert_eq!(groups(n, k, group).len(), if group == usize::MAX { 1 } else { n.div_ceil(group / (k * 4) / ROWS * ROWS) });
                    let mut out = vec![f32::NAN; n * k];
                    csr.product_in_panels(kernel, None, &x, k, &mut out, bytes);
                    assert_eq!(bits(&out), bits(&one), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes");
                    let mut out = vec![f32::NAN; n * k];
                    narrow.product_in_panels(kernel, None, &x, k, &mut out, bytes);
                    assert_eq!(bits(&out), bits(&one), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes, u32 columns");
                    let mut outs = [vec![f32::NAN; n * k], vec![0f32; n * k], vec![0f32; n * k]];
                    let [a, b, c] = &mut outs;
                    csr.mul_dense_then_in_panels(kernel, &x, k, [a, b, c], |g, [a, _, _]| a.copy_from_slice(g), bytes);
                    assert_eq!(bits(&outs[0]), bits(&one), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes, handed on");
                    let mut outs = [vec![f32::NAN; n * k], vec![0f32; n * k], vec![0f32; n * k]];
                    let [a, b, c] = &mut outs;
                    narrow.mul_dense_then_in_panels(kernel, &x, k, [a, b, c], |g, [a, _, _]| a.copy_from_slice(g), bytes);
                    assert_eq!(bits(&outs[0]), bits(&one), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes, handed on, u32 columns");
                    // Columns below a bound, from the bound's rows of x.
                    let bound = 11;
                    let mut below = vec![0f32; n * k];
                    csr.product_in_panels(kernel, Some(bound), &x[..bound * k], k, &mut below, Panels::ONE_PASS);
                    let mut out = vec![f32::NAN; n * k];
                    csr.product_in_panels(kernel, Some(bound), &x[..bound * k], k, &mut out, bytes);
                    assert_eq!(bits(&out), bits(&below), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes, below {bound}");
                    let mut out = vec![f32::NAN; n * k];
                    narrow.product_in_panels(kernel, Some(bound), &x[..bound * k], k, &mut out, bytes);
                    assert_eq!(bits(&out), bits(&below), "{kernel:?} k={k}, panels of {panel}, groups of {group} bytes, below {bound}, u32 columns");
                }
            }
        }
    }
}

//! The TextGCN graph: PMI word-word edges, TF-IDF doc-word edges, self
//! loops, and the normalisation `Â = D^-1/2 (A + I) D^-1/2`.
//!
//! Nodes are the documents in corpus order (`0..D`), then the words in
//! vocabulary order (`D..D+V`). The output is sorted row-major and
//! coalesced: `edge_index` holds all rows, then all columns.
//!
//! # How co-occurrence is counted fast
//! With the reference's semantics (every position pair `p < q` of a window
//! counts once per window), a pair of positions `(p, q)` with `q - p < W`
//! contributes the number of windows that contain both, computed in O(1).
//! So a document of length `L` costs O(L·W), not O(L·W²). Rows are built
//! word by word over the word's occurrences into a dense accumulator with a
//! bitmap of touched columns, in parallel over words: no hash map, no sort,
//! and each row comes out sorted.
//!
//! # Memory
//! Rows are computed in batches of blocks whose size is bounded by an
//! estimate of their edges, and handed in node order to a [`RowSpool`],
//! which keeps them in memory up to a budget and spills the rest to
//! temporary files. The outputs are then streamed from the spool
//! ([`Graph::write_edge_rows`], [`Graph::write_weights_and_columns`]: one
//! pass over the rows for both files), so no output column is ever held
//! whole: memory is bounded by the tokens, the
//! vocabulary, the workers and the budget, not by the number of edges.

use std::io;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::config::Cooccurrence;

mod spool;

use spool::{RowSpool, Rows};

/// Counts that describe a built graph.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GraphStats {
    /// Documents.
    pub num_docs: usize,
    /// Words.
    pub num_words: usize,
    /// Nodes (documents + words).
    pub num_nodes: usize,
    /// Non-zeros of `A + I`.
    pub num_edges: usize,
    /// Sliding windows (`#W`).
    pub windows: u64,
    /// Unordered word pairs with PMI > 0.
    pub word_pairs: usize,
    /// Document-word pairs with non-zero TF-IDF.
    pub doc_word_pairs: usize,
}

/// Where a build may keep its rows (up to `budget` bytes in memory, the
/// rest in temporary files in `spill_dir`), and whom it tells how far it is.
#[derive(Clone, Copy)]
pub struct RowMemory<'a> {
    /// Bytes of computed rows held in memory before spilling.
    pub budget: usize,
    /// Bytes for the inverted index of the words whose rows are being
    /// computed (8 per occurrence): the word rows are computed in passes
    /// over ranges of words whose occurrences fit it (at least one word a
    /// pass), each pass scanning the token ids once.
    pub index_budget: usize,
    /// Directory for the spill files (unnamed, removed on drop or death).
    pub spill_dir: &'a Path,
    /// Called after each batch of rows with ("rows", rows done, all rows).
    pub progress: &'a (dyn Fn(&str, u64, u64) + Sync),
}

/// How many edges ahead the normalisation prefetches a column's degree.
const PREFETCH_AHEAD_COLUMNS: usize = 16;

/// Values handed to a writer at a time when rows are expanded or converted.
const WRITE_CHUNK: usize = 1 << 18;

/// A built graph: the rows of `A + I` (sorted, coalesced, in memory or
/// spilled) and the degrees. Its outputs are streamed in small pieces:
/// [`Graph::row_ptr`], then `edge_index`'s row half
/// ([`Graph::write_edge_rows`]), then `edge_attr` and `edge_index`'s column
/// half together ([`Graph::write_weights_and_columns`]).
pub struct Graph {
    rows: RowSpool,
    dinv: Vec<f64>,
    /// Edges per piece of a block whose weights one worker normalises.
    piece_edges: usize,
    /// Counts.
    pub stats: GraphStats,
}

impl Graph {
    /// `N + 1` CSR row offsets.
    pub fn row_ptr(&self) -> Vec<i64> {
        let mut rp = Vec::with_capacity(self.stats.num_nodes + 1);
        let mut at = 0i64;
        rp.push(at);
        for &len in &self.rows.lens {
            at += len as i64;
            rp.push(at);
        }
        rp
    }

    /// Bytes of rows that did not fit the memory budget and went to spill
    /// files (0 when none).
    pub fn spilled_bytes(&self) -> u64 {
        self.rows.spilled_bytes()
    }

    /// Pushes the row half of `edge_index` (every edge's row, in edge
    /// order) to `push`: from the row lengths alone, reading no rows.
    pub fn write_edge_rows(&self, mut push: impl FnMut(&[i64]) -> io::Result<()>) -> io::Result<()> {
        let mut out: Vec<i64> = Vec::with_capacity(WRITE_CHUNK);
        for (r, &len) in self.rows.lens.iter().enumerate() {
            let mut left = len as usize;
            while left > 0 {
                // A run of the row's number, filled at once.
                let take = left.min(WRITE_CHUNK - out.len());
                out.resize(out.len() + take, r as i64);
                left -= take;
                if out.len() == WRITE_CHUNK {
                    push(&out)?;
                    out.clear();
                }
            }
        }
        push(&out)
    }

    /// Makes the next [`Graph::write_weights_and_columns`] free the disk
    /// space of the spilled rows as it reads them; they cannot be read a
    /// second time.
    pub fn free_disk_as_written(&mut self) {
        self.rows.free_disk_as_read();
    }

    /// One pass over the rows (spilled rows are read back once): pushes
    /// the `E` float32 weights of `Â = D^-1/2 (A + I) D^-1/2` to `attr` and
    /// the `E` columns (the column half of `edge_index`) to `cols`, both in
    /// edge order, a block of rows at a time (each block's weights computed
    /// in parallel over pieces of it).
    pub fn write_weights_and_columns(&self, mut attr: impl FnMut(&[f32]) -> io::Result<()>, mut cols: impl FnMut(&[i64]) -> io::Result<()>) -> io::Result<()> {
        let dinv = &self.dinv;
        let mut row = 0usize;
        let (mut w_out, mut c_out): (Vec<f32>, Vec<i64>) = (Vec::new(), Vec::new());
        let mut starts: Vec<usize> = Vec::new();
        self.rows.for_each_block(true, |b| {
            // Where each of the block's rows begins, to find the row of
            // any piece's first edge.
            starts.clear();
            starts.push(0);
            for &len in b.lens {
                starts.push(starts[starts.len() - 1] + len as usize);
            }
            let e = b.cols.len();
            w_out.resize(e, 0.0);
            c_out.resize(e, 0);
            let piece = self.piece_edges;
            w_out.par_chunks_mut(piece).zip(c_out.par_chunks_mut(piece)).enumerate().for_each(|(k, (wp, cp))| {
                let first = k * piece;
                // The row holding edge `first`: the last row starting at or
                // before it (rows of length 0 start where the next does).
                let mut r = starts.partition_point(|&s| s <= first) - 1;
                for (m, (wo, co)) in wp.iter_mut().zip(cp.iter_mut()).enumerate() {
                    let at = first + m;
                    while starts[r + 1] <= at {
                        r += 1;
                    }
                    let c = b.cols[at];
                    // The degrees of a large graph do not fit in cache,
                    // and a row's columns are known ahead.
                    if let Some(&ahead) = b.cols.get(at + PREFETCH_AHEAD_COLUMNS) {
                        crate::prefetch::prefetch(dinv, ahead as usize);
                    }
                    *wo = ((b.w[at] * dinv[row + r]) * dinv[c as usize]) as f32;
                    *co = c as i64;
                }
            });
            row += b.lens.len();
            attr(&w_out)?;
            cols(&c_out)
        })
    }
}

/// The runs of equal values of `xs`: each value and how many times it
/// repeats.
fn runs(xs: &[u32]) -> impl Iterator<Item = (u32, usize)> + '_ {
    xs.chunk_by(|a, b| a == b).map(|run| (run[0], run.len()))
}

/// Number of windows of a document of length `len` (an empty or short
/// document is one window, as in the reference).
pub(crate) fn windows_of(len: usize, w: usize) -> usize {
    if len <= w { 1 } else { len - w + 1 }
}

/// The windows of a document of length `l` holding both positions `a < b`
/// (`b - a < w`): `min(a, L − W) − max(0, b − W + 1) + 1`, or 1 when the
/// document is one window.
#[inline(always)]
pub(crate) fn pair_windows(a: usize, b: usize, l: usize, w: usize) -> u32 {
    if l <= w { 1 } else { (a.min(l - w) + 1 - (b + 1).saturating_sub(w)) as u32 }
}

/// The IDF of a word in `df` of `nd` documents: `ln(N / df)`.
#[inline(always)]
pub(crate) fn idf(nd: usize, df: u64) -> f64 {
    (nd as f64 / df as f64).ln()
}

/// The weight of a document-word edge: the word's count in the document
/// times its IDF (an edge only when not 0).
#[inline(always)]
pub(crate) fn tfidf(n: u64, idf: f64) -> f64 {
    n as f64 * idf
}

/// The PMI of words `i` and `j` that co-occur `cnt` times, in `fi` and `fj`
/// of the `nw` windows, when it is positive (an edge), else `None`.
///
/// PMI > 0 needs `cnt·#W > #W(i)·#W(j)`; when the exact integers say no,
/// the float formula cannot say yes (the gap, at least `1/(#W(i)·#W(j))`,
/// is far above its rounding error), so the log is skipped.
#[inline(always)]
pub(crate) fn positive_pmi(cnt: u64, fi: u64, fj: u64, nw: u64) -> Option<f64> {
    if (cnt as u128) * (nw as u128) < (fi as u128) * (fj as u128) {
        return None;
    }
    let (nw_f, nw2) = (nw as f64, (nw as f64) * (nw as f64));
    let pmi = ((cnt as f64 / nw_f) / (fi as f64 * fj as f64 / nw2)).ln();
    (pmi > 0.0).then_some(pmi)
}

/// Builds the normalised graph from id-encoded documents, keeping at most
/// `memory.budget` bytes of computed rows in memory (the rest is spilled).
pub fn build(offsets: &[usize], ids: &[u32], num_words: usize, window: usize, mode: Cooccurrence, memory: RowMemory<'_>) -> io::Result<Graph> {
    build_impl(offsets, ids, num_words, window, mode, memory, Tuning::default())
}

/// Knobs that change how a build runs but never what it outputs (tests
/// turn them to reach every path on small corpora).
#[derive(Debug, Clone, Copy, Default)]
struct Tuning {
    /// Rows of words with at least this many occurrences use 64-bit
    /// co-occurrence counters, even where 32 bits suffice (`Some(0)`: all).
    wide_from: Option<usize>,
    /// Edges per block of work instead of the budget-derived size.
    block_edges: Option<usize>,
    /// Occurrences per range of words instead of the budget-derived size.
    range_occurrences: Option<usize>,
    /// Edges per piece of normalisation work instead of [`WRITE_CHUNK`].
    piece_edges: Option<usize>,
    /// Whether the word rows prefetch their counters, instead of deciding
    /// by the vocabulary's size ([`PREFETCH_COUNTERS_FROM`]).
    prefetch_counters: Option<bool>,
}

/// Bytes a build holds besides its rows and the inverted index of a range
/// of words ([`RowMemory::index_budget`]), for `num_docs` documents over
/// `num_words` words with `threads` workers: per-word tables (occurrence
/// counts, window frequencies, IDF, range offsets), per-node tables (row
/// lengths, degrees) and each worker's accumulators (the larger of the
/// statistics pass's and the rows'). The token ids themselves are the
/// caller's.
pub fn working_bytes(num_docs: usize, num_words: usize, threads: usize) -> usize {
    let nodes = num_docs + num_words;
    num_docs * 8 + num_words * (4 + 8 + 8 + 8 + 8) + nodes * (4 + 8 + 8) + threads * num_words * 24
}

/// Bytes of the inverted index per occurrence (a position and a document).
pub const INDEX_BYTES_PER_OCCURRENCE: usize = 8;

/// The most passes over the token ids a build should make for its word
/// rows: a caller gives the index at least `1 / MAX_PASSES` of what the
/// whole index takes (a pass over 200 M tokens takes about half a second).
pub const MAX_PASSES: usize = 16;

/// Rows of at most about this many (estimated) edges make one block of
/// work: small enough that the three batches in flight (one computed, one
/// being handed over, one queued for spilling: [`batch_blocks`] each, 12
/// bytes an edge) take at most [`IN_FLIGHT_SHARE`] of the budget, and
/// that every worker gets several blocks, large enough that a block's
/// overhead does not show.
fn block_edges(budget: usize, total_estimate: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (budget / IN_FLIGHT_SHARE / 12 / (3 * batch_blocks())).min(total_estimate / (8 * threads)).clamp(1 << 12, 1 << 22)
}

/// Blocks computed at once: two a worker.
fn batch_blocks() -> usize {
    2 * rayon::current_num_threads().max(1)
}

/// The rows being computed take at most `1 / IN_FLIGHT_SHARE` of the rows'
/// budget; the spool holds the rest.
const IN_FLIGHT_SHARE: usize = 8;

/// Splits items `0..n` into consecutive ranges whose estimated edges stay
/// under `target` (a single larger item is a range of its own).
pub(crate) fn blocks_by_estimate(n: usize, target: usize, estimate: impl Fn(usize) -> usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0usize);
    for i in 0..n {
        let e = estimate(i);
        if i > start && sum + e > target {
            out.push(start..i);
            start = i;
            sum = 0;
        }
        sum += e;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// Computes `blocks` in parallel, a batch at a time, and hands each to
/// `spool` in order: a batch is handed over (and spilled, where it does
/// not fit) while the next is computed, so at most two batches of rows
/// are in flight.
fn spool_in_batches<S: Send>(
    spool: &mut RowSpool,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
    total_rows: usize,
    blocks: &[std::ops::Range<usize>],
    scratch: &Mutex<Vec<S>>,
    new_scratch: impl Fn() -> S + Sync,
    compute: impl Fn(&mut S, std::ops::Range<usize>) -> Rows + Sync,
) -> io::Result<()> {
    let batch = batch_blocks();
    let compute_batch = |group: &[std::ops::Range<usize>]| -> Vec<Rows> {
        group
            .par_iter()
            .map(|range| {
                let mut s = scratch.lock().expect("not poisoned").pop().unwrap_or_else(&new_scratch);
                let rows = compute(&mut s, range.clone());
                scratch.lock().expect("not poisoned").push(s);
                rows
            })
            .collect()
    };
    let hand_over = |spool: &mut RowSpool, rows: Vec<Rows>| -> io::Result<()> {
        for r in rows {
            spool.push(r)?;
        }
        progress("rows", spool.lens.len() as u64, total_rows as u64);
        Ok(())
    };
    let mut pending: Option<Vec<Rows>> = None;
    for group in blocks.chunks(batch) {
        let rows = match pending.take() {
            Some(done) => {
                let (rows, handed) = rayon::join(|| compute_batch(group), || hand_over(spool, done));
                handed?;
                rows
            }
            None => compute_batch(group),
        };
        pending = Some(rows);
    }
    match pending {
        Some(done) => hand_over(spool, done),
        None => Ok(()),
    }
}

/// Per-word statistics from one pass over the documents: occurrences,
/// documents holding the word, and windows holding it (`#W(i)`).
struct WordStats {
    count: Vec<u32>,
    df: Vec<u32>,
    wfreq: Vec<u64>,
}

/// Counts [`WordStats`] document by document, in parallel over runs of
/// documents (each worker with its own tables, summed at the end). A word
/// lies in the windows `[max(0, p-W+1), min(p, L-W)]` of its occurrence at
/// `p`; occurrences come in ascending order, so the union of those ranges
/// grows by what lies above the previous one's end.
fn word_stats(offsets: &[usize], ids: &[u32], nv: usize, window: usize) -> WordStats {
    let nd = offsets.len() - 1;
    let threads = rayon::current_num_threads().max(1);
    let runs = blocks_by_estimate(nd, ids.len().div_ceil(threads).max(1), |d| offsets[d + 1] - offsets[d] + 1);
    let parts: Vec<WordStats> = runs
        .into_par_iter()
        .map(|docs| {
            let mut st = WordStats { count: vec![0; nv], df: vec![0; nv], wfreq: vec![0; nv] };
            // The document a word was last seen in, and its last window.
            let mut seen_in = vec![u32::MAX; nv];
            let mut last_hi = vec![0u32; nv];
            for d in docs {
                let toks = &ids[offsets[d]..offsets[d + 1]];
                let l = toks.len();
                for (p, &t) in toks.iter().enumerate() {
                    let t = t as usize;
                    st.count[t] += 1;
                    let first = seen_in[t] != d as u32;
                    if first {
                        seen_in[t] = d as u32;
                        st.df[t] += 1;
                    }
                    if l <= window {
                        st.wfreq[t] += first as u64;
                        continue;
                    }
                    let hi = p.min(l - window);
                    let mut lo = p.saturating_sub(window - 1);
                    if !first {
                        lo = lo.max(last_hi[t] as usize + 1);
                    }
                    if lo <= hi {
                        st.wfreq[t] += (hi - lo + 1) as u64;
                    }
                    last_hi[t] = hi as u32;
                }
            }
            st
        })
        .collect();
    let mut all = WordStats { count: vec![0; nv], df: vec![0; nv], wfreq: vec![0; nv] };
    for part in parts {
        for i in 0..nv {
            all.count[i] += part.count[i];
            all.df[i] += part.df[i];
            all.wfreq[i] += part.wfreq[i];
        }
    }
    all
}

/// The inverted index of a range of words: their occurrences (global token
/// positions, ascending, so grouped by document) and each occurrence's
/// document.
struct RangeIndex {
    /// First word of the range.
    first: usize,
    /// `starts[i - first]..starts[i - first + 1]` are word `i`'s entries.
    starts: Vec<usize>,
    occ: Vec<u32>,
    doc: Vec<u32>,
}

impl RangeIndex {
    /// Scans the token ids once for the occurrences of words `range`.
    fn build(offsets: &[usize], ids: &[u32], count: &[u32], range: std::ops::Range<usize>) -> Self {
        let first = range.start;
        let mut starts = Vec::with_capacity(range.len() + 1);
        starts.push(0usize);
        for &c in &count[range.clone()] {
            starts.push(starts[starts.len() - 1] + c as usize);
        }
        let n = starts[starts.len() - 1];
        let mut fill = starts[..range.len()].to_vec();
        let (mut occ, mut doc) = (vec![0u32; n], vec![0u32; n]);
        let (lo, len) = (first as u32, range.len() as u32);
        for d in 0..offsets.len() - 1 {
            for (g, &id) in ids.iter().enumerate().take(offsets[d + 1]).skip(offsets[d]) {
                let k = id.wrapping_sub(lo);
                if k < len {
                    let at = &mut fill[k as usize];
                    occ[*at] = g as u32;
                    doc[*at] = d as u32;
                    *at += 1;
                }
            }
        }
        RangeIndex { first, starts, occ, doc }
    }

    /// Word `i`'s occurrences and their documents.
    fn of(&self, i: usize) -> (&[u32], &[u32]) {
        let (a, b) = (self.starts[i - self.first], self.starts[i - self.first + 1]);
        (&self.occ[a..b], &self.doc[a..b])
    }
}

/// Splits words `0..n` into consecutive ranges of at most `cap`
/// occurrences (a word with more is a range of its own).
fn word_ranges(count: &[u32], cap: usize) -> Vec<std::ops::Range<usize>> {
    blocks_by_estimate(count.len(), cap.max(1), |i| count[i] as usize)
}

/// [`build`] with [`Tuning`].
fn build_impl(offsets: &[usize], ids: &[u32], num_words: usize, window: usize, mode: Cooccurrence, memory: RowMemory<'_>, tuning: Tuning) -> io::Result<Graph> {
    assert!(window >= 1);
    let nd = offsets.len() - 1;
    let nv = num_words;
    let doc_len = |d: usize| offsets[d + 1] - offsets[d];
    // A window at least as long as the longest document holds each
    // document whole, whatever its size: clamping it there changes no count
    // (every document takes the one-window path either way) and keeps
    // `W`-sized tables and sums small for a window like 2^63.
    let window = window.min((0..nd).map(doc_len).max().unwrap_or(1).max(1));
    // Each step is a debug span: `-vv` logs its time when it ends.
    let step = tracing::debug_span!("graph::build", op = "word statistics").entered();
    // #W and #W(i): windows containing word i, counted once per window.
    let num_windows: u64 = (0..nd).map(|d| windows_of(doc_len(d), window) as u64).sum();
    let WordStats { count, df, wfreq } = word_stats(offsets, ids, nv, window);
    // IDF over all documents: ln(N / df).
    let idf: Vec<f64> = df.iter().map(|&df| idf(nd, df as u64)).collect();
    drop(df);
    drop(step);
    let step = tracing::debug_span!("graph::build", op = "document rows").entered();

    let mut spool = RowSpool::new(memory.budget - memory.budget / IN_FLIGHT_SHARE, batch_blocks(), memory.spill_dir);
    let target = |total: usize| tuning.block_edges.unwrap_or_else(|| block_edges(memory.budget, total));

    // Document rows: self loop, then words by id (at most one edge per
    // token, plus the loop).
    let doc_blocks = blocks_by_estimate(nd, target(ids.len() + nd), |d| doc_len(d) + 1);
    let no_scratch = Mutex::new(Vec::<Vec<u32>>::new());
    spool_in_batches(&mut spool, memory.progress, nd + nv, &doc_blocks, &no_scratch, Vec::new, |sorted, docs| {
        let mut r = Rows::default();
        for d in docs {
            let start = r.cols.len();
            r.cols.push(d as u32);
            r.w.push(1.0);
            sorted.clear();
            sorted.extend_from_slice(&ids[offsets[d]..offsets[d + 1]]);
            sorted.sort_unstable();
            for (t, n) in runs(sorted) {
                let weight = tfidf(n as u64, idf[t as usize]);
                if weight != 0.0 {
                    r.cols.push((nd + t as usize) as u32);
                    r.w.push(weight);
                }
            }
            r.end_row(start);
        }
        r
    })?;
    let doc_edges = spool.num_edges();

    drop(step);
    let _step = tracing::debug_span!("graph::build", op = "word rows (co-occurrence, PMI)").entered();
    // Word rows: documents (TF-IDF), then words (PMI) with the self loop.
    // A row's counts sum to at most |occ(i)|·W² (each occurrence lies in at
    // most W windows of at most W positions), so 32-bit counters suffice
    // for the row of a word with fewer than 2^32 / W² occurrences; the
    // rows of more frequent words use 64-bit counters. The 32-bit
    // accumulator keeps `#W(j)` beside each counter, which needs
    // `#W < 2^32`; otherwise every row is a 64-bit one.
    let narrow_below = if num_windows > u32::MAX as u64 { 0 } else { (u32::MAX as u64 / (window as u64).saturating_mul(window as u64)) as usize + 1 };
    let wide_from = tuning.wide_from.map_or(narrow_below, |t| t.min(narrow_below));
    // A word row holds at most one edge per occurrence (documents), one
    // per distinct neighbour within the window, and the loop.
    let word_estimate = |i: usize| {
        let n = count[i] as usize;
        n + n.saturating_mul(2 * (window - 1)).min(nv) + 1
    };
    let total = (0..nv).map(word_estimate).fold(0usize, usize::saturating_add);
    // Ranges of words whose inverted index fits its budget, one pass over
    // the token ids each (one range when the whole index fits).
    let cap = tuning.range_occurrences.unwrap_or(memory.index_budget / INDEX_BYTES_PER_OCCURRENCE);
    let ranges = word_ranges(&count, cap);
    if ranges.len() > 1 {
        tracing::info!("graph: word rows in {} passes over the token ids (inverted index limited to {:.1} MiB)", ranges.len(), memory.index_budget as f64 / 1048576.0);
    }
    let prefetch_counters = tuning.prefetch_counters.unwrap_or(nv >= PREFETCH_COUNTERS_FROM);
    let mut word_pairs = 0;
    for range in ranges {
        let index = RangeIndex::build(offsets, ids, &count, range.clone());
        let ctx = RowCtx { nd, ids, offsets, index: &index, idf: &idf, wfreq: &wfreq, num_windows, window, mode, wide_from, prefetch_counters };
        let blocks: Vec<_> = blocks_by_estimate(range.len(), target(total), |k| word_estimate(range.start + k)).into_iter().map(|b| b.start + range.start..b.end + range.start).collect();
        word_pairs += word_rows(&ctx, &blocks, &mut spool, memory.progress)?;
    }

    spool.seal()?;
    // Degrees of A + I (rows in order: documents, then words).
    let dinv: Vec<f64> = spool.sums.iter().map(|s| s.powf(-0.5)).collect();
    let num_edges = spool.num_edges();
    let doc_word_pairs = doc_edges - nd;
    Ok(Graph {
        rows: spool,
        dinv,
        piece_edges: tuning.piece_edges.unwrap_or(WRITE_CHUNK).max(1),
        stats: GraphStats { num_docs: nd, num_words: nv, num_nodes: nd + nv, num_edges, windows: num_windows, word_pairs: word_pairs / 2, doc_word_pairs },
    })
}

/// Builds a [`Graph`] from the edges of `A` that another engine computed:
/// every edge but the self loops, in row-major order (rows ascending,
/// columns ascending within a row, each pair once), pushed in batches of
/// any size. The self loops are put in their places, the rows pass
/// through the same [`RowSpool`] as the native build's (the same degrees,
/// summed in column order, the same spilling), so the published graph is
/// the same bytes as [`build`]'s for the same counts.
#[cfg_attr(not(feature = "datafusion"), allow(dead_code))]
pub(crate) struct Assembler<'a> {
    nd: usize,
    nodes: usize,
    spool: RowSpool,
    block: Rows,
    /// The row being filled, where it began in `block`, whether its self
    /// loop is in, and the last column pushed to it.
    row: usize,
    start: usize,
    self_done: bool,
    last_col: Option<u32>,
    block_edges: usize,
    doc_word_pairs: usize,
    pmi_entries: usize,
    progress: &'a (dyn Fn(&str, u64, u64) + Sync),
}

#[cfg_attr(not(feature = "datafusion"), allow(dead_code))]
impl<'a> Assembler<'a> {
    /// An assembler for `nd` documents and `nv` words, holding at most
    /// `memory.budget` bytes of rows before spilling.
    pub(crate) fn new(nd: usize, nv: usize, memory: RowMemory<'a>) -> Self {
        let block_edges = block_edges(memory.budget, usize::MAX);
        Assembler {
            nd,
            nodes: nd + nv,
            spool: RowSpool::new(memory.budget - memory.budget / IN_FLIGHT_SHARE, batch_blocks(), memory.spill_dir),
            block: Rows::default(),
            row: 0,
            start: 0,
            self_done: false,
            last_col: None,
            block_edges,
            doc_word_pairs: 0,
            pmi_entries: 0,
            progress: memory.progress,
        }
    }

    /// Ends the current row (with its self loop if no column above it came)
    /// and starts the next; hands the block over when it is full.
    fn next_row(&mut self) -> io::Result<()> {
        if !self.self_done {
            self.block.cols.push(self.row as u32);
            self.block.w.push(1.0);
        }
        self.block.end_row(self.start);
        self.row += 1;
        (self.start, self.self_done, self.last_col) = (self.block.cols.len(), false, None);
        if self.block.cols.len() >= self.block_edges {
            self.spool.push(std::mem::take(&mut self.block))?;
            self.start = 0;
            (self.progress)("rows", self.row as u64, self.nodes as u64);
        }
        Ok(())
    }

    /// Appends edges `(rows[k], cols[k], w[k])`, which continue the
    /// row-major order of what came before.
    pub(crate) fn push(&mut self, rows: &[u64], cols: &[u64], w: &[f64]) -> io::Result<()> {
        let nodes = self.nodes;
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, format!("the engine's edges are not a graph of {nodes} nodes: {what}"));
        for ((&r, &c), &x) in rows.iter().zip(cols).zip(w) {
            let (r, c) = (r as usize, c as usize);
            if r >= self.nodes || c >= self.nodes || r < self.row || c == r {
                return Err(bad(format!("edge ({r}, {c}) after row {}", self.row)));
            }
            while self.row < r {
                self.next_row()?;
            }
            if let Some(l) = self.last_col.filter(|&l| c <= l as usize) {
                return Err(bad(format!("edge ({r}, {c}) after column {l} of that row")));
            }
            if !self.self_done && c > r {
                self.block.cols.push(r as u32);
                self.block.w.push(1.0);
                self.self_done = true;
            }
            self.block.cols.push(c as u32);
            self.block.w.push(x);
            self.last_col = Some(c as u32);
            match (r < self.nd, c < self.nd) {
                (true, false) => self.doc_word_pairs += 1,
                (false, false) => self.pmi_entries += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends the last rows and gives the graph, whose corpus has
    /// `num_windows` windows.
    pub(crate) fn finish(mut self, num_windows: u64) -> io::Result<Graph> {
        while self.row < self.nodes {
            self.next_row()?;
        }
        if !self.block.lens.is_empty() {
            self.spool.push(std::mem::take(&mut self.block))?;
        }
        self.spool.seal()?;
        (self.progress)("rows", self.nodes as u64, self.nodes as u64);
        let dinv: Vec<f64> = self.spool.sums.iter().map(|s| s.powf(-0.5)).collect();
        let num_edges = self.spool.num_edges();
        let stats = GraphStats {
            num_docs: self.nd,
            num_words: self.nodes - self.nd,
            num_nodes: self.nodes,
            num_edges,
            windows: num_windows,
            word_pairs: self.pmi_entries / 2,
            doc_word_pairs: self.doc_word_pairs,
        };
        Ok(Graph { rows: self.spool, dinv, piece_edges: WRITE_CHUNK, stats })
    }
}

/// What the word rows are computed from.
struct RowCtx<'a> {
    nd: usize,
    ids: &'a [u32],
    offsets: &'a [usize],
    index: &'a RangeIndex,
    idf: &'a [f64],
    wfreq: &'a [u64],
    num_windows: u64,
    window: usize,
    mode: Cooccurrence,
    /// Rows of words with at least this many occurrences count in 64 bits.
    wide_from: usize,
    /// Whether to prefetch the counters an occurrence a few ahead will add
    /// to ([`COUNTERS_AHEAD`]).
    prefetch_counters: bool,
}

/// A worker's dense co-occurrence accumulator: one counter per column.
trait Accumulator {
    /// Adds `t` to column `j`'s count.
    fn add(&mut self, j: usize, t: u32);
    /// Column `j`'s count and `#W(j)`; clears the count.
    fn take(&mut self, j: usize, wfreq: &[u64]) -> (u64, u64);
    /// Hints that column `j`'s counter will be added to soon.
    fn prefetch(&self, j: usize);
}

/// 32-bit counters, each with `#W(j)` beside it, so that reading a count
/// back for the PMI test brings `#W(j)` in the same cache line (a column
/// far down the vocabulary would otherwise miss twice: once in the
/// counts, once in `#W`). For rows whose counts cannot overflow 32 bits,
/// when `#W < 2^32`.
struct Narrow(Vec<[u32; 2]>);

impl Narrow {
    fn new(wfreq: &[u64]) -> Self {
        Narrow(wfreq.iter().map(|&f| [0, f as u32]).collect())
    }
}

impl Accumulator for Narrow {
    #[inline(always)]
    fn add(&mut self, j: usize, t: u32) {
        self.0[j][0] += t;
    }
    #[inline(always)]
    fn take(&mut self, j: usize, _wfreq: &[u64]) -> (u64, u64) {
        let [count, wfreq] = self.0[j];
        self.0[j][0] = 0;
        (count as u64, wfreq as u64)
    }
    #[inline(always)]
    fn prefetch(&self, j: usize) {
        crate::prefetch::prefetch(&self.0, j);
    }
}

/// 64-bit counters, for the rows of very frequent words (which touch
/// almost every column, so `#W` is read in order from the shared table).
struct Wide(Vec<u64>);

impl Accumulator for Wide {
    #[inline(always)]
    fn add(&mut self, j: usize, t: u32) {
        self.0[j] += t as u64;
    }
    #[inline(always)]
    fn take(&mut self, j: usize, wfreq: &[u64]) -> (u64, u64) {
        (std::mem::take(&mut self.0[j]), wfreq[j])
    }
    #[inline(always)]
    fn prefetch(&self, j: usize) {
        crate::prefetch::prefetch(&self.0, j);
    }
}

/// A worker's accumulators (each made when its first row needs it), set
/// of touched columns and window stamps; all cleared again after every
/// row.
struct Scratch {
    narrow: Option<Narrow>,
    wide: Option<Wide>,
    bits: Touched,
    /// One stamp a column in the windows mode, none with position pairs.
    stamp: Vec<u32>,
}

/// The columns a row touched, as a bitmap with a summary bitmap over its
/// words, so that reading them back in order costs the touched words plus
/// `V / 4096` summary words, not a scan of all `V / 64` words per row
/// (which made the word rows quadratic in the vocabulary).
struct Touched {
    bits: Vec<u64>,
    top: Vec<u64>,
}

impl Touched {
    fn new(n: usize) -> Self {
        let words = n.div_ceil(64);
        Touched { bits: vec![0; words], top: vec![0; words.div_ceil(64)] }
    }

    #[inline(always)]
    fn set(&mut self, j: usize) {
        self.bits[j >> 6] |= 1 << (j & 63);
        self.top[j >> 12] |= 1 << ((j >> 6) & 63);
    }

    /// Calls `f` on every touched column in ascending order and clears them.
    #[inline]
    fn drain(&mut self, mut f: impl FnMut(usize)) {
        for (ti, top) in self.top.iter_mut().enumerate() {
            let mut t = std::mem::take(top);
            while t != 0 {
                let wi = ti * 64 + t.trailing_zeros() as usize;
                t &= t - 1;
                let mut b = std::mem::take(&mut self.bits[wi]);
                while b != 0 {
                    f(wi * 64 + b.trailing_zeros() as usize);
                    b &= b - 1;
                }
            }
        }
    }
}

/// Builds the word rows in parallel over `blocks` of words, each worker with
/// its [`Scratch`], pushing them to `spool` in order; returns the number of
/// (directed) PMI entries.
fn word_rows(c: &RowCtx, blocks: &[std::ops::Range<usize>], spool: &mut RowSpool, progress: &(dyn Fn(&str, u64, u64) + Sync)) -> io::Result<usize> {
    let (nd, w) = (c.nd, c.window);
    let nv = c.wfreq.len();
    // `tri[k]`: windows shared by positions `p` and `p - W + 1 + k`, away
    // from the document ends.
    let tri: Vec<u32> = (0..2 * w - 1).map(|k| (w - k.abs_diff(w - 1)) as u32).collect();
    let pairs = std::sync::atomic::AtomicUsize::new(0);
    let scratch = Mutex::new(Vec::new());
    // Only the windows mode reads stamps; position pairs neither hold
    // nor clear them (clearing one is a cache miss an edge once the
    // vocabulary outgrows the cache: the word rows of 400,000 generated
    // documents, six builds each, median 29.7 s with, 26.1 s without).
    let stamps = if c.mode == Cooccurrence::Windows { nv } else { 0 };
    let new_scratch = || Scratch { narrow: None, wide: None, bits: Touched::new(nv), stamp: vec![u32::MAX; stamps] };
    spool_in_batches(spool, progress, nd + nv, blocks, &scratch, new_scratch, |s, words| {
        let mut r = Rows::default();
        let mut block_pairs = 0usize;
        for i in words {
            block_pairs += if c.index.of(i).0.len() >= c.wide_from {
                let acc = s.wide.get_or_insert_with(|| Wide(vec![0; nv]));
                word_row(c, i, &tri, acc, &mut s.bits, &mut s.stamp, &mut r)
            } else {
                let acc = s.narrow.get_or_insert_with(|| Narrow::new(c.wfreq));
                word_row(c, i, &tri, acc, &mut s.bits, &mut s.stamp, &mut r)
            };
        }
        pairs.fetch_add(block_pairs, std::sync::atomic::Ordering::Relaxed);
        r
    })?;
    Ok(pairs.into_inner())
}

/// Appends word `i`'s row to `r`: its documents (TF-IDF), then its PMI
/// neighbours and the self loop, ascending; returns its PMI entries.
#[inline(always)]
fn word_row<A: Accumulator>(c: &RowCtx, i: usize, tri: &[u32], acc: &mut A, bits: &mut Touched, stamp: &mut [u32], r: &mut Rows) -> usize {
    let (nd, w) = (c.nd, c.window);
    let nw = c.num_windows;
    let start = r.cols.len();
    let (occs, docs) = c.index.of(i);
    // Document part (the occurrences come grouped by document).
    for (d, n) in runs(docs) {
        let weight = tfidf(n as u64, c.idf[i]);
        if weight != 0.0 {
            r.cols.push(d);
            r.w.push(weight);
        }
    }
    // Co-occurrence counts into the accumulator.
    match c.mode {
        Cooccurrence::PositionPairs if c.prefetch_counters => count_position_pairs::<A, true>(occs, docs, c.ids, c.offsets, w, tri, acc, bits),
        Cooccurrence::PositionPairs => count_position_pairs::<A, false>(occs, docs, c.ids, c.offsets, w, tri, acc, bits),
        Cooccurrence::Windows => count_windows(i, occs, docs, c.ids, c.offsets, w, acc, bits, stamp),
    }
    // Word part, ascending, with the self loop in place of the pair
    // (i, i), which is never a PMI edge.
    let fi = c.wfreq[i];
    let mut self_done = false;
    let mut pairs = 0;
    let windows = c.mode == Cooccurrence::Windows;
    bits.drain(|j| {
        let (cnt, fj) = acc.take(j, c.wfreq);
        if windows {
            stamp[j] = u32::MAX;
        }
        if !self_done && j >= i {
            r.cols.push((nd + i) as u32);
            r.w.push(1.0);
            self_done = true;
        }
        if j == i {
            return;
        }
        if let Some(pmi) = positive_pmi(cnt, fi, fj, nw) {
            r.cols.push((nd + j) as u32);
            r.w.push(pmi);
            pairs += 1;
        }
    });
    if !self_done {
        r.cols.push((nd + i) as u32);
        r.w.push(1.0);
    }
    r.end_row(start);
    pairs
}

/// How many occurrences ahead the word rows prefetch the token window
/// (and the document offsets) they will read: a window takes ~100 ns of
/// work, a miss to memory about as long.
const PREFETCH_AHEAD: usize = 4;

/// How many occurrences ahead the word rows prefetch the counters of the
/// window they will add to (its token ids requested
/// `PREFETCH_AHEAD - COUNTERS_AHEAD` occurrences before), when the
/// counters outgrow the cache.
const COUNTERS_AHEAD: usize = 2;

/// Vocabularies of at least this many words have their counters
/// prefetched: a worker's counters (8 bytes a word) then exceed 1 MiB, the
/// L2 cache of the AMD hosts' cores (2 MiB on the Intel ones), and the
/// rarer columns' counters miss. Below, prefetching gains nothing (the
/// 100,000-document generated corpus, 226 k words, on the Intel host:
/// word rows 3.42-3.66 s with, 3.47-3.68 s without) and costs
/// instructions.
const PREFETCH_COUNTERS_FROM: usize = 1 << 17;

/// Reference semantics: for each occurrence `p` of word `i` and each other
/// position `q` within `W - 1`, add the number of windows holding both.
///
/// Positions far enough from both document ends (`W-1 <= p <= L-W`) see
/// the full neighbourhood, where the count is `W - |q - p|`: those take a
/// branch-free loop over the precomputed `tri` table. Occurrences of `i`
/// itself are counted too and cleared by the caller (`acc[i]` is never an
/// edge), which keeps the loop free of a comparison per position. With
/// `COUNTERS`, the counters of the window [`COUNTERS_AHEAD`] occurrences
/// ahead are prefetched as well.
#[allow(clippy::too_many_arguments)]
fn count_position_pairs<A: Accumulator, const COUNTERS: bool>(occs: &[u32], docs: &[u32], ids: &[u32], offsets: &[usize], w: usize, tri: &[u32], acc: &mut A, bits: &mut Touched) {
    for (k, (&g, &d)) in occs.iter().zip(docs).enumerate() {
        if let (Some(&ga), Some(&da)) = (occs.get(k + PREFETCH_AHEAD), docs.get(k + PREFETCH_AHEAD)) {
            let ga = ga as usize;
            crate::prefetch::prefetch(ids, ga.saturating_sub(w - 1));
            crate::prefetch::prefetch(ids, ga);
            crate::prefetch::prefetch(ids, ga + w - 1);
            crate::prefetch::prefetch(offsets, da as usize);
        }
        if COUNTERS
            && let (Some(&gb), Some(&db)) = (occs.get(k + COUNTERS_AHEAD), docs.get(k + COUNTERS_AHEAD))
        {
            let (gb, db) = (gb as usize, db as usize);
            let near = &ids[gb.saturating_sub(w - 1).max(offsets[db])..(gb + w).min(offsets[db + 1])];
            for &j in near {
                acc.prefetch(j as usize);
            }
        }
        let d = d as usize;
        let base = offsets[d];
        let l = offsets[d + 1] - base;
        let p = g as usize - base;
        let toks = &ids[base..base + l];
        if l > w && p + 1 >= w && p + w <= l {
            let near = &toks[p + 1 - w..p + w];
            for (&jt, &t) in near.iter().zip(tri) {
                let j = jt as usize;
                bits.set(j);
                acc.add(j, t);
            }
            continue;
        }
        let qlo = p.saturating_sub(w - 1);
        let qhi = (p + w - 1).min(l - 1);
        for (q, &jt) in toks.iter().enumerate().take(qhi + 1).skip(qlo) {
            let j = jt as usize;
            let shared = pair_windows(p.min(q), p.max(q), l, w);
            bits.set(j);
            acc.add(j, shared);
        }
    }
}

/// The paper's semantics: each window holding both words counts once.
#[allow(clippy::too_many_arguments)]
fn count_windows<A: Accumulator>(i: usize, occs: &[u32], docs: &[u32], ids: &[u32], offsets: &[usize], w: usize, acc: &mut A, bits: &mut Touched, stamp: &mut [u32]) {
    let mut k = 0;
    let mut window_id = 0u32; // unique per (row, window) within this row
    while k < occs.len() {
        let d = docs[k] as usize;
        let base = offsets[d];
        let l = offsets[d + 1] - base;
        let toks = &ids[base..base + l];
        let mut m = k;
        while m < occs.len() && docs[m] as usize == d {
            m += 1;
        }
        // Windows (start positions) containing any occurrence of i.
        let mut next_start = 0usize;
        for &g in &occs[k..m] {
            let p = g as usize - base;
            let (lo, hi) = if l <= w { (0, 0) } else { (p.saturating_sub(w - 1), p.min(l - w)) };
            for s in lo.max(next_start)..=hi {
                window_id += 1;
                let end = if l <= w { l } else { s + w };
                for &jt in &toks[s..end] {
                    let j = jt as usize;
                    if j != i && stamp[j] != window_id {
                        stamp[j] = window_id;
                        bits.set(j);
                        acc.add(j, 1);
                    }
                }
            }
            next_start = next_start.max(hi + 1);
        }
        k = m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A direct transcription of the reference's loops (windows, pair
    /// counts, PMI, TF-IDF, max-symmetrisation, normalisation) on a toy
    /// corpus, compared with the fast builder.
    fn oracle(docs: &[Vec<u32>], nv: usize, w: usize, mode: Cooccurrence) -> HashMap<(usize, usize), f64> {
        let nd = docs.len();
        let mut windows: Vec<&[u32]> = Vec::new();
        for d in docs {
            if d.len() <= w {
                windows.push(d);
            } else {
                for j in 0..d.len() - w + 1 {
                    windows.push(&d[j..j + w]);
                }
            }
        }
        let mut wf = vec![0u64; nv];
        for win in &windows {
            let mut seen = std::collections::HashSet::new();
            for &t in *win {
                if seen.insert(t) {
                    wf[t as usize] += 1;
                }
            }
        }
        let mut pc: HashMap<(usize, usize), u64> = HashMap::new();
        for win in &windows {
            match mode {
                Cooccurrence::PositionPairs => {
                    for a in 1..win.len() {
                        for b in 0..a {
                            let (i, j) = (win[a] as usize, win[b] as usize);
                            if i != j {
                                *pc.entry((i, j)).or_default() += 1;
                                *pc.entry((j, i)).or_default() += 1;
                            }
                        }
                    }
                }
                Cooccurrence::Windows => {
                    let set: std::collections::BTreeSet<u32> = win.iter().copied().collect();
                    for &i in &set {
                        for &j in &set {
                            if i != j {
                                *pc.entry((i as usize, j as usize)).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
        let nw = windows.len() as f64;
        let mut a: HashMap<(usize, usize), f64> = HashMap::new();
        for (&(i, j), &c) in &pc {
            let pmi = ((c as f64 / nw) / (wf[i] as f64 * wf[j] as f64 / (nw * nw))).ln();
            if pmi > 0.0 {
                a.insert((nd + i, nd + j), pmi);
            }
        }
        let mut df = vec![0u64; nv];
        for d in docs {
            let set: std::collections::BTreeSet<u32> = d.iter().copied().collect();
            for t in set {
                df[t as usize] += 1;
            }
        }
        for (di, d) in docs.iter().enumerate() {
            let mut cnt: HashMap<u32, u64> = HashMap::new();
            for &t in d {
                *cnt.entry(t).or_default() += 1;
            }
            for (t, c) in cnt {
                let wgt = c as f64 * (nd as f64 / df[t as usize] as f64).ln();
                if wgt != 0.0 {
                    a.insert((di, nd + t as usize), wgt);
                    a.insert((nd + t as usize, di), wgt);
                }
            }
        }
        for n in 0..nd + nv {
            a.insert((n, n), 1.0);
        }
        let mut deg = vec![0f64; nd + nv];
        for (&(r, _), &v) in &a {
            deg[r] += v;
        }
        a.into_iter().map(|((r, c), v)| ((r, c), v * deg[r].powf(-0.5) * deg[c].powf(-0.5))).collect()
    }

    /// The three outputs of a graph, collected.
    fn outputs(g: &Graph) -> (Vec<i64>, Vec<f32>, Vec<i64>) {
        let (mut attr, mut idx, mut cols) = (Vec::new(), Vec::new(), Vec::new());
        g.write_edge_rows(|v| {
            idx.extend_from_slice(v);
            Ok(())
        })
        .unwrap();
        g.write_weights_and_columns(
            |v| {
                attr.extend_from_slice(v);
                Ok(())
            },
            |v| {
                cols.extend_from_slice(v);
                Ok(())
            },
        )
        .unwrap();
        idx.extend_from_slice(&cols);
        (g.row_ptr(), attr, idx)
    }

    /// The edges of `A` but the self loops, row-major, with their weights.
    fn edges_of(g: &Graph) -> Vec<(u64, u64, f64)> {
        let (mut out, mut row) = (Vec::new(), 0u64);
        g.rows
            .for_each_block(true, |b| {
                let mut at = 0;
                for &len in b.lens {
                    for k in at..at + len as usize {
                        if b.cols[k] as u64 != row {
                            out.push((row, b.cols[k] as u64, b.w[k]));
                        }
                    }
                    at += len as usize;
                    row += 1;
                }
                Ok(())
            })
            .unwrap();
        out
    }

    /// `edges` through an [`Assembler`], `batch` edges a push.
    fn assemble(edges: &[(u64, u64, f64)], nd: usize, nv: usize, windows: u64, batch: usize, dir: &std::path::Path) -> Graph {
        let mut asm = Assembler::new(nd, nv, RowMemory { budget: 64, index_budget: 0, spill_dir: dir, progress: &|_, _, _| {} });
        for chunk in edges.chunks(batch.min(edges.len()).max(1)) {
            let (r, c, w): (Vec<u64>, Vec<u64>, Vec<f64>) = chunk.iter().fold((Vec::new(), Vec::new(), Vec::new()), |mut v, e| {
                v.0.push(e.0);
                v.1.push(e.1);
                v.2.push(e.2);
                v
            });
            asm.push(&r, &c, &w).unwrap();
        }
        asm.finish(windows).unwrap()
    }

    #[test]
    fn the_assembler_refuses_edges_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let new = || Assembler::new(2, 3, RowMemory { budget: 1 << 20, index_budget: 0, spill_dir: dir.path(), progress: &|_, _, _| {} });
        let cases: [(&[u64], &[u64], &str); 5] = [
            (&[1, 0], &[3, 3], "edge (0, 3) after row 1"),
            (&[0, 0], &[3, 2], "edge (0, 2) after column 3 of that row"),
            (&[0, 0], &[3, 3], "edge (0, 3) after column 3 of that row"),
            (&[2], &[2], "edge (2, 2) after row 0"),
            (&[0], &[5], "edge (0, 5) after row 0"),
        ];
        for (rows, cols, want) in cases {
            let mut asm = new();
            let e = asm.push(rows, cols, &vec![1.0; rows.len()]).err().unwrap_or_else(|| panic!("{rows:?} {cols:?} accepted"));
            assert_eq!(e.to_string(), format!("the engine's edges are not a graph of 5 nodes: {want}"));
        }
        // No edges at all: every node is its self loop.
        let g = new().finish(1).unwrap();
        assert_eq!((g.row_ptr(), g.stats.num_edges), (vec![0, 1, 2, 3, 4, 5], 5));
    }

    fn flatten(docs: &[Vec<u32>]) -> (Vec<usize>, Vec<u32>) {
        let mut offsets = vec![0];
        let mut ids = Vec::new();
        for d in docs {
            ids.extend_from_slice(d);
            offsets.push(ids.len());
        }
        (offsets, ids)
    }

    /// Builds in memory (no spilling).
    fn build_in_memory(offsets: &[usize], ids: &[u32], nv: usize, w: usize, mode: Cooccurrence, tuning: Tuning) -> Graph {
        let dir = std::env::temp_dir();
        build_impl(offsets, ids, nv, w, mode, RowMemory { budget: usize::MAX, index_budget: usize::MAX, spill_dir: &dir, progress: &|_, _, _| {} }, tuning).unwrap()
    }

    fn check(docs: Vec<Vec<u32>>, nv: usize, w: usize, mode: Cooccurrence) {
        let (offsets, ids) = flatten(&docs);
        let g = build_in_memory(&offsets, &ids, nv, w, mode, Tuning::default());
        assert_eq!(g.spilled_bytes(), 0);
        let want = oracle(&docs, nv, w, mode);
        let e = g.stats.num_edges;
        assert_eq!(e, want.len(), "edge count, window {w}, {mode:?}");
        let (row_ptr, attr, idx) = outputs(&g);
        let g0_stats = g.stats.clone();
        // 64-bit counters (for every row, or for the rows of the words
        // seen at least 3 times), blocks of every size, and rows spilled
        // to disk from the first block on, all give the same graph.
        for wide_from in [0, 3] {
            let wide = build_in_memory(&offsets, &ids, nv, w, mode, Tuning { wide_from: Some(wide_from), ..Tuning::default() });
            assert_eq!(outputs(&wide), (row_ptr.clone(), attr.clone(), idx.clone()), "64-bit counters from {wide_from} occurrences");
        }
        // Counters prefetched (these vocabularies are below the size that
        // turns it on) or not: the same graph.
        let prefetched = build_in_memory(&offsets, &ids, nv, w, mode, Tuning { prefetch_counters: Some(true), ..Tuning::default() });
        assert_eq!(outputs(&prefetched), (row_ptr.clone(), attr.clone(), idx.clone()), "counters prefetched");
        let spill_dir = tempfile::tempdir().unwrap();
        for (budget, block_edges, range) in [(0, 1, Some(1)), (0, 7, Some(5)), (100, 3, None), (usize::MAX, 1, Some(17))] {
            // Progress reaches every row, never goes back, and ends at all.
            let seen = Mutex::new(Vec::new());
            let progress = |phase: &str, done: u64, total: u64| seen.lock().unwrap().push((phase.to_owned(), done, total));
            let memory = RowMemory { budget, index_budget: usize::MAX, spill_dir: spill_dir.path(), progress: &progress };
            let g = build_impl(&offsets, &ids, nv, w, mode, memory, Tuning { wide_from: None, block_edges: Some(block_edges), range_occurrences: range, piece_edges: Some(block_edges.div_ceil(2)), prefetch_counters: Some(budget == 0) }).unwrap();
            let seen = seen.into_inner().unwrap();
            assert!(seen.windows(2).all(|p| p[0].1 <= p[1].1) && seen.iter().all(|(ph, _, t)| ph == "rows" && *t == (docs.len() + nv) as u64), "{seen:?}");
            assert_eq!(seen.last().map(|l| l.1), Some((docs.len() + nv) as u64));
            assert_eq!(g.spilled_bytes() > 0, budget < usize::MAX, "budget {budget}");
            assert_eq!(outputs(&g), (row_ptr.clone(), attr.clone(), idx.clone()), "budget {budget}, blocks of {block_edges} edges, ranges of {range:?} occurrences");
            assert_eq!(g.stats, g0_stats);
        }
        // Another engine's edges (all but the self loops, in row-major
        // order, in batches of any size) assemble into the same graph, and
        // the DataFusion engine computes those edges.
        let g = build_in_memory(&offsets, &ids, nv, w, mode, Tuning::default());
        for batch in [1, 5, usize::MAX] {
            let assembled = assemble(&edges_of(&g), docs.len(), nv, g.stats.windows, batch, spill_dir.path());
            assert_eq!(outputs(&assembled), (row_ptr.clone(), attr.clone(), idx.clone()), "assembled in batches of {batch}");
            assert_eq!(assembled.stats, g0_stats);
        }
        #[cfg(feature = "datafusion")]
        for budget in [0, usize::MAX] {
            let memory = RowMemory { budget, index_budget: 0, spill_dir: spill_dir.path(), progress: &|_, _, _| {} };
            let site = crate::engine::df::Site::Local { pool_bytes: 64 << 20, spill_dir: spill_dir.path() };
            let on_df = crate::engine::df::build(&offsets, &ids, nv, w, mode, site, memory).unwrap();
            assert_eq!(outputs(&on_df), (row_ptr.clone(), attr.clone(), idx.clone()), "DataFusion, window {w}, {mode:?}, row budget {budget}");
            assert_eq!(on_df.stats, g0_stats);
        }
        // Spill files are unnamed: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(spill_dir.path()).unwrap().count(), 0);
        assert_eq!(idx.len(), 2 * e);
        let (rows, cols) = idx.split_at(e);
        for (r, pair) in row_ptr.windows(2).enumerate() {
            assert!(rows[pair[0] as usize..pair[1] as usize].iter().all(|&x| x == r as i64), "row_ptr disagrees with rows");
        }
        assert_eq!(row_ptr[row_ptr.len() - 1] as usize, e);
        for k in 0..e {
            if k > 0 {
                assert!((rows[k - 1], cols[k - 1]) < (rows[k], cols[k]), "not sorted/coalesced at {k}");
            }
            let v = want[&(rows[k] as usize, cols[k] as usize)];
            assert!((attr[k] as f64 - v).abs() <= 1e-6 * v.abs(), "({},{}): {} vs {v}", rows[k], cols[k], attr[k]);
        }
    }

    #[test]
    fn matches_reference_loops_on_random_corpora() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for trial in 0..40 {
            let nv = rng.random_range(2..12);
            let nd = rng.random_range(2..9);
            let docs: Vec<Vec<u32>> = (0..nd).map(|_| (0..rng.random_range(0..30)).map(|_| rng.random_range(0..nv as u32)).collect()).collect();
            // Every word must occur somewhere (a vocabulary property).
            let mut docs = docs;
            docs.push((0..nv as u32).collect());
            let w = [1, 2, 3, 5, 20][trial % 5];
            check(docs.clone(), nv, w, Cooccurrence::PositionPairs);
            check(docs, nv, w, Cooccurrence::Windows);
        }
    }

    #[test]
    fn a_window_longer_than_every_document_is_the_longest_document() {
        // Corpus of documents of at most 40 tokens: any window >= 40 is the
        // same graph, up to windows that overflow any table (2^32 + 1 and
        // 2^63 - 1 allocated 34 GB or overflowed before the clamp).
        let docs: Vec<Vec<u32>> = vec![(0..40).map(|k| k % 7).collect(), vec![1, 2, 3], (0..7).collect(), vec![]];
        let (offsets, ids) = flatten(&docs);
        for mode in [Cooccurrence::PositionPairs, Cooccurrence::Windows] {
            let (row_ptr, attr, _) = outputs(&build_in_memory(&offsets, &ids, 7, 40, mode, Tuning::default()));
            for w in [41, 1000, (1usize << 32) + 1, i64::MAX as usize, usize::MAX] {
                let (rp, at, _) = outputs(&build_in_memory(&offsets, &ids, 7, w, mode, Tuning::default()));
                assert_eq!((rp, at), (row_ptr.clone(), attr.clone()), "window {w}, {mode:?}");
            }
            check(docs.clone(), 7, 1 << 40, mode);
        }
    }

    #[test]
    fn blocks_follow_the_estimate() {
        let est = [5, 1, 1, 9, 2, 2, 2, 30, 1];
        let blocks = blocks_by_estimate(est.len(), 6, |i| est[i]);
        assert_eq!(blocks, vec![0..2, 2..3, 3..4, 4..7, 7..8, 8..9]);
        assert_eq!(blocks_by_estimate(0, 6, |_| 1), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(blocks_by_estimate(3, 100, |_| 1), vec![0..3]);
    }
}

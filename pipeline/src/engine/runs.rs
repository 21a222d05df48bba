//! Sorted runs of edges, held on disk by the client and merged there.
//!
//! A Ballista cluster sorts the edges partition by partition; merging the
//! partitions into one order on the cluster is one task that reads every
//! partition at once, and Ballista 55.0 buffers each partition it fetches
//! from another executor whole in memory (`fetch_partition_buffered`): the
//! 100k-document corpus's merge took its executor past 1 GB. So the
//! cluster returns the sorted partitions one after another, and this
//! process writes them as they come into an unnamed temporary file,
//! noting where each sorted run begins (wherever a key is not above the
//! one before it), then merges the runs into row-major order, reading
//! each run through a small buffer. What is held: one buffer a run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes an edge takes in the file: its key (`row << 32 | col`) and the
/// bits of its weight, both little-endian.
const RECORD: usize = 16;

/// Bytes of a run read at a time while merging.
const READ_BUFFER: usize = 256 << 10;

/// Edges handed to the consumer at a time.
const OUT_BATCH: usize = 1 << 16;

/// Edges written so far, cut into sorted runs.
pub(crate) struct Runs {
    out: BufWriter<File>,
    /// Where each run begins (in edges); the last one ends at `edges`.
    starts: Vec<u64>,
    edges: u64,
    last: Option<u64>,
}

impl Runs {
    /// An empty file of runs in `dir` (unnamed: gone when dropped, or when
    /// the process dies).
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        let file = tempfile::tempfile_in(dir).map_err(|e| io::Error::new(e.kind(), format!("creating a file for the cluster's sorted edges in {}: {e}", dir.display())))?;
        Ok(Runs { out: BufWriter::with_capacity(1 << 20, file), starts: Vec::new(), edges: 0, last: None })
    }

    /// Appends edges with these keys and weights; a key not above the one
    /// before it starts a new run.
    pub(crate) fn push(&mut self, keys: &[u64], w: &[f64]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(keys.len() * RECORD);
        for (&k, &x) in keys.iter().zip(w) {
            if self.last.is_none_or(|l| k <= l) {
                self.starts.push(self.edges);
            }
            self.last = Some(k);
            self.edges += 1;
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        self.out.write_all(&bytes)
    }

    /// Edges pushed so far.
    pub(crate) fn edges(&self) -> u64 {
        self.edges
    }

    /// Runs found so far.
    pub(crate) fn runs(&self) -> usize {
        self.starts.len()
    }

    /// Hands every edge to `f` in key order, in batches of keys and
    /// weights (equal keys in the order they were pushed).
    pub(crate) fn merge(self, mut f: impl FnMut(&[u64], &[f64]) -> io::Result<()>) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        let ends = self.starts.iter().skip(1).copied().chain(std::iter::once(self.edges));
        let mut cursors: Vec<Cursor> = self.starts.iter().zip(ends).map(|(&a, b)| Cursor { next: a, end: b, buf: Vec::new(), at: 0 }).collect();
        // The heap holds each unfinished run's current key; ties go to the
        // earlier run.
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for (r, c) in cursors.iter_mut().enumerate() {
            if let Some((k, _)) = c.peek(&file)? {
                heap.push(Reverse((k, r)));
            }
        }
        let (mut keys, mut w) = (Vec::with_capacity(OUT_BATCH), Vec::with_capacity(OUT_BATCH));
        while let Some(mut top) = heap.peek_mut() {
            let Reverse((k, r)) = *top;
            let c = &mut cursors[r];
            let (_, x) = c.peek(&file)?.expect("a run in the heap has an edge");
            keys.push(k);
            w.push(x);
            c.advance();
            // The run's next key takes its place at the top (one sift
            // down), or the run leaves the heap.
            match c.peek(&file)? {
                Some((next, _)) => *top = Reverse((next, r)),
                None => {
                    PeekMut::pop(top);
                }
            }
            if keys.len() == OUT_BATCH {
                f(&keys, &w)?;
                keys.clear();
                w.clear();
            }
        }
        if !keys.is_empty() {
            f(&keys, &w)?;
        }
        Ok(())
    }
}

/// A run being read: its next edge and end (in edges), and the buffered
/// records from the next one on.
struct Cursor {
    next: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Cursor {
    /// The next edge's key and weight, `None` at the run's end.
    fn peek(&mut self, file: &File) -> io::Result<Option<(u64, f64)>> {
        if self.next == self.end {
            self.buf = Vec::new();
            return Ok(None);
        }
        if self.at == self.buf.len() {
            let n = ((self.end - self.next) as usize * RECORD).min(READ_BUFFER);
            self.buf.resize(n, 0);
            file.read_exact_at(&mut self.buf, self.next * RECORD as u64)?;
            self.at = 0;
        }
        let r = &self.buf[self.at..self.at + RECORD];
        let k = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
        let x = f64::from_bits(u64::from_le_bytes(r[8..].try_into().expect("8 bytes")));
        Ok(Some((k, x)))
    }

    /// Moves past the edge [`Cursor::peek`] gave.
    fn advance(&mut self) {
        self.next += 1;
        self.at += RECORD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges `batches` (pushed in order) and gives the keys and weights.
    fn merged(batches: &[&[u64]]) -> (Vec<u64>, Vec<f64>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Runs::new(dir.path()).unwrap();
        for b in batches {
            let w: Vec<f64> = b.iter().map(|&k| k as f64 * 0.5).collect();
            runs.push(b, &w).unwrap();
        }
        let n = runs.runs();
        let (mut keys, mut w) = (Vec::new(), Vec::new());
        runs.merge(|k, x| {
            keys.extend_from_slice(k);
            w.extend_from_slice(x);
            Ok(())
        })
        .unwrap();
        (keys, w, n)
    }

    #[test]
    fn runs_split_where_keys_descend_and_merge_in_order() {
        // Three runs: [1 5 9], [2 3 | batch boundary | 10], [0 4].
        let (keys, w, runs) = merged(&[&[1, 5, 9, 2, 3], &[10, 0, 4]]);
        assert_eq!(runs, 3);
        assert_eq!(keys, vec![0, 1, 2, 3, 4, 5, 9, 10]);
        assert_eq!(w, keys.iter().map(|&k| k as f64 * 0.5).collect::<Vec<_>>());
    }

    #[test]
    fn an_equal_key_starts_a_run_and_both_are_kept() {
        let (keys, _, runs) = merged(&[&[3, 3, 7]]);
        assert_eq!(runs, 2);
        assert_eq!(keys, vec![3, 3, 7]);
    }

    #[test]
    fn nothing_pushed_merges_to_nothing() {
        let (keys, _, runs) = merged(&[]);
        assert_eq!((keys.len(), runs), (0, 0));
    }

    #[test]
    fn runs_longer_than_a_read_buffer_merge_in_order() {
        // Two interleaved runs of 3 read buffers each, and more than one
        // output batch in all.
        let n = (3 * READ_BUFFER / RECORD) as u64;
        let even: Vec<u64> = (0..n).map(|i| 2 * i).collect();
        let odd: Vec<u64> = (0..n).map(|i| 2 * i + 1).collect();
        let (keys, _, runs) = merged(&[&even, &odd]);
        assert_eq!(runs, 2);
        assert_eq!(keys, (0..2 * n).collect::<Vec<_>>());
    }
}

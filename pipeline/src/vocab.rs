//! The vocabulary filter and the id-encoded documents.

use std::collections::HashSet;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// The vocabulary: ids are positions, sorted by descending corpus frequency,
/// then by the word's bytes ascending (a documented, hash-order-free key).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vocab {
    /// Words by id.
    pub words: Vec<String>,
    /// Corpus frequency (occurrences over all documents) by id.
    pub freq: Vec<u64>,
    /// Document frequency by id.
    pub df: Vec<u64>,
}

/// Documents as word ids after filtering: document `d` is
/// `ids[offsets[d]..offsets[d + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocTokens {
    /// `D + 1` offsets into `ids`.
    pub offsets: Vec<usize>,
    /// Word ids, document after document.
    pub ids: Vec<u32>,
}

impl DocTokens {
    /// Number of documents.
    pub fn num_docs(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Word ids of document `d`.
    pub fn doc(&self, d: usize) -> &[u32] {
        &self.ids[self.offsets[d]..self.offsets[d + 1]]
    }
}

/// Vocabulary filter settings.
#[derive(Debug, Clone)]
pub struct VocabParams<'a> {
    /// Minimum corpus frequency.
    pub min_freq: u64,
    /// Words to drop.
    pub stopwords: &'a HashSet<String>,
    /// Keep at most this many words.
    pub max_size: Option<usize>,
}

/// Distinct words, each stored once in an arena, with a hash index: the
/// vocabulary of a corpus whose text is not in memory. About 30 bytes a
/// word with its count (the bytes, an end offset, an index slot, the
/// count), instead of ~80 for a map of owned strings.
#[derive(Default)]
struct WordTable {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    index: hashbrown::HashTable<u32>,
}

impl WordTable {
    fn hash(w: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(w)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn word(&self, i: u32) -> &[u8] {
        let i = i as usize;
        &self.bytes[if i == 0 { 0 } else { self.ends[i - 1] }..self.ends[i]]
    }

    /// The id of `w` (whose [`WordTable::hash`] is `h`), added (as the
    /// next id) if it is new.
    fn id_or_insert_hashed(&mut self, w: &str, h: u64) -> u32 {
        let WordTable { bytes, ends, index } = self;
        let word = |i: u32| {
            let i = i as usize;
            &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]]
        };
        if let Some(&i) = index.find(h, |&i| word(i) == w.as_bytes()) {
            return i;
        }
        let id = u32::try_from(ends.len()).expect("fewer than 2^32 distinct words");
        bytes.extend_from_slice(w.as_bytes());
        ends.push(bytes.len());
        let (bytes, ends) = (&*bytes, &*ends);
        index.insert_unique(h, id, |&i| {
            let i = i as usize;
            Self::hash(&bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
        });
        id
    }
}

/// Tokens of documents split on single spaces (empty tokens skipped).
fn tokens(d: &str) -> impl Iterator<Item = &str> {
    d.split(' ').filter(|t| !t.is_empty())
}

/// Shards of the distinct words: merging a batch's counts runs in
/// parallel over them. A constant, so that nothing depends on the thread
/// count.
const SHARDS: usize = 64;

/// One shard of the distinct words and their counts.
#[derive(Default)]
struct Shard {
    words: WordTable,
    freq: Vec<u64>,
}

/// Counts the words of cleaned documents (tokens separated by single
/// spaces), a batch at a time, in parallel within a batch: the distinct
/// words and their counts, and each token as a provisional id (4 bytes a
/// token), never the text. [`Counter::finish`] turns them into the
/// vocabulary and the id-encoded documents.
pub struct Counter {
    shards: Vec<Shard>,
    /// Provisional id of every token, in corpus order (`local · SHARDS + shard`).
    prov: Vec<u32>,
    /// Tokens per document.
    lens: Vec<u32>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { shards: (0..SHARDS).map(|_| Shard::default()).collect(), prov: Vec::new(), lens: Vec::new() }
    }
}

/// A run of documents counted on its own: chunk-local ids in order of
/// first appearance, their words, counts and hashes, and the tokens.
struct Run<'a> {
    words: Vec<&'a str>,
    hashes: Vec<u64>,
    freq: Vec<u64>,
    ids: Vec<u32>,
    lens: Vec<u32>,
}

fn count_run<S: AsRef<str>>(docs: &[S]) -> Run<'_> {
    let mut local: FxHashMap<&str, u32> = FxHashMap::default();
    let mut r = Run { words: Vec::new(), hashes: Vec::new(), freq: Vec::new(), ids: Vec::new(), lens: Vec::with_capacity(docs.len()) };
    for d in docs {
        let before = r.ids.len();
        for t in tokens(d.as_ref()) {
            let id = *local.entry(t).or_insert_with(|| {
                r.words.push(t);
                r.hashes.push(WordTable::hash(t.as_bytes()));
                r.freq.push(0);
                (r.words.len() - 1) as u32
            });
            r.freq[id as usize] += 1;
            r.ids.push(id);
        }
        r.lens.push((r.ids.len() - before) as u32);
    }
    r
}

impl Counter {
    /// Counts the tokens of `docs`.
    pub fn add<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        let runs: Vec<Run> = docs.par_chunks(chunk).map(count_run).collect();
        // Merge the runs' words shard by shard, in parallel: each shard
        // takes its words from every run, in run order.
        // (Bits the table uses neither for its buckets nor for its tags.)
        let shard_of = |h: u64| (h >> 40) as usize % SHARDS;
        let globals: Vec<Vec<(usize, usize, u32)>> = self
            .shards
            .par_iter_mut()
            .enumerate()
            .map(|(s, shard)| {
                let mut out = Vec::new();
                for (ri, r) in runs.iter().enumerate() {
                    for (li, (&w, &h)) in r.words.iter().zip(&r.hashes).enumerate() {
                        if shard_of(h) == s {
                            let id = shard.words.id_or_insert_hashed(w, h) as usize;
                            if id == shard.freq.len() {
                                shard.freq.push(0);
                            }
                            shard.freq[id] += r.freq[li];
                            out.push((ri, li, u32::try_from(id * SHARDS + s).expect("fewer than 2^32 distinct words")));
                        }
                    }
                }
                out
            })
            .collect();
        let mut to_global: Vec<Vec<u32>> = runs.iter().map(|r| vec![0; r.words.len()]).collect();
        for (ri, li, g) in globals.into_iter().flatten() {
            to_global[ri][li] = g;
        }
        let start = self.prov.len();
        self.prov.resize(start + runs.iter().map(|r| r.ids.len()).sum::<usize>(), 0);
        let mut rest = &mut self.prov[start..];
        let mut parts = Vec::with_capacity(runs.len());
        for r in &runs {
            let (head, tail) = rest.split_at_mut(r.ids.len());
            parts.push(head);
            rest = tail;
        }
        parts.into_par_iter().zip(&runs).zip(&to_global).for_each(|((out, r), g)| {
            for (o, &l) in out.iter_mut().zip(&r.ids) {
                *o = g[l as usize];
            }
        });
        for r in &runs {
            self.lens.extend_from_slice(&r.lens);
        }
    }

    /// Tokens counted so far.
    pub fn tokens(&self) -> usize {
        self.prov.len()
    }

    /// Distinct words counted so far.
    pub fn distinct(&self) -> usize {
        self.shards.iter().map(|s| s.words.len()).sum()
    }

    /// The vocabulary and the documents as its ids. Kept words: counted at
    /// least `min_freq` times and not a stop word, sorted by (frequency
    /// descending, word bytes ascending), at most `max_size`.
    pub fn finish(self, p: &VocabParams) -> (Vocab, DocTokens) {
        let Counter { shards, mut prov, lens } = self;
        let word = |g: u32| shards[g as usize % SHARDS].words.word(g / SHARDS as u32);
        let freq = |g: u32| shards[g as usize % SHARDS].freq[g as usize / SHARDS];
        let text = |g: u32| std::str::from_utf8(word(g)).expect("counted from strings");
        let mut kept: Vec<u32> = Vec::new();
        for (s, shard) in shards.iter().enumerate() {
            kept.extend((0..shard.words.len()).map(|i| (i * SHARDS + s) as u32).filter(|&g| freq(g) >= p.min_freq && !p.stopwords.contains(text(g))));
        }
        kept.sort_unstable_by(|&a, &b| freq(b).cmp(&freq(a)).then_with(|| word(a).cmp(word(b))));
        if let Some(m) = p.max_size {
            kept.truncate(m);
        }
        let span = shards.iter().map(|s| s.words.len()).max().unwrap_or(0) * SHARDS;
        let mut final_id = vec![DROPPED; span];
        for (f, &g) in kept.iter().enumerate() {
            final_id[g as usize] = f as u32;
        }
        let nk = kept.len();
        let mut vocab = Vocab { words: kept.iter().map(|&g| text(g).to_owned()).collect(), freq: kept.iter().map(|&g| freq(g)).collect(), df: vec![0; nk] };
        drop(shards);
        // Provisional ids to final ones, in place, then the dropped ones
        // squeezed out document by document; document frequencies on the
        // way (runs of documents in parallel, each with its own counts).
        prov.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|g| *g = final_id[*g as usize]));
        drop(final_id);
        let mut offsets = Vec::with_capacity(lens.len() + 1);
        offsets.push(0usize);
        let (mut read, mut write) = (0usize, 0usize);
        for &len in &lens {
            for k in read..read + len as usize {
                let id = prov[k];
                if id != DROPPED {
                    prov[write] = id;
                    write += 1;
                }
            }
            read += len as usize;
            offsets.push(write);
        }
        prov.truncate(write);
        prov.shrink_to_fit();
        let ids = prov;
        let nd = lens.len();
        let threads = rayon::current_num_threads().max(1);
        let dfs: Vec<Vec<u64>> = (0..threads)
            .into_par_iter()
            .map(|t| {
                let mut df = vec![0u64; nk];
                let mut last = vec![u32::MAX; nk];
                for d in nd * t / threads..nd * (t + 1) / threads {
                    for &id in &ids[offsets[d]..offsets[d + 1]] {
                        if last[id as usize] != d as u32 {
                            last[id as usize] = d as u32;
                            df[id as usize] += 1;
                        }
                    }
                }
                df
            })
            .collect();
        for df in dfs {
            for (a, b) in vocab.df.iter_mut().zip(df) {
                *a += b;
            }
        }
        (vocab, DocTokens { offsets, ids })
    }
}

/// The id of a word that the vocabulary does not keep.
const DROPPED: u32 = u32::MAX;

/// Builds the vocabulary from cleaned documents (tokens separated by single
/// spaces) and encodes them. Frequencies count every occurrence in every
/// document, stop words included, as the reference does.
///
/// Runs of documents are counted in parallel, each with its own hash map;
/// the runs' words are then merged. Final ids depend only on the counts
/// (see [`Vocab`]), so the result does not depend on the number of threads.
/// (The vocab stage feeds the same [`Counter`] the tokens table a batch at
/// a time.)
pub fn build<S: AsRef<str> + Sync>(docs: &[S], p: &VocabParams) -> (Vocab, DocTokens) {
    let mut counter = Counter::default();
    counter.add(docs);
    counter.finish(p)
}

/// The cleaned corpus in the reference's `.clean.txt` form: documents'
/// words joined by single spaces, documents joined by `\n`, no final newline.
pub fn clean_text(vocab: &Vocab, toks: &DocTokens) -> String {
    let mut out = String::new();
    for d in 0..toks.num_docs() {
        if d > 0 {
            out.push('\n');
        }
        for (k, &id) in toks.doc(d).iter().enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(&vocab.words[id as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_deterministic_ids() {
        let stop: HashSet<String> = ["the".to_owned()].into();
        let docs = ["the cat sat", "the cat ran", "a dog sat cat"];
        let (v, t) = build(&docs, &VocabParams { min_freq: 2, stopwords: &stop, max_size: None });
        assert_eq!(v.words, ["cat", "sat"]);
        assert_eq!(v.freq, [3, 2]);
        assert_eq!(v.df, [3, 2]);
        assert_eq!(t.offsets, [0, 2, 3, 5]);
        assert_eq!(t.ids, [0, 1, 0, 1, 0]);
        assert_eq!(clean_text(&v, &t), "cat sat\ncat\nsat cat");
        let (v, _) = build(&docs, &VocabParams { min_freq: 1, stopwords: &stop, max_size: Some(3) });
        assert_eq!(v.words, ["cat", "sat", "a"]);
    }

    #[test]
    fn same_result_for_any_number_of_threads() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let docs: Vec<String> = (0..200)
            .map(|_| (0..rng.random_range(0..40)).map(|_| format!("w{}", rng.random_range(0..60u32).pow(2) % 97)).collect::<Vec<_>>().join(" "))
            .collect();
        let stop: HashSet<String> = ["w4".to_owned()].into();
        let p = VocabParams { min_freq: 3, stopwords: &stop, max_size: None };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| build(&docs, &p));
        for n in [2, 3, 7] {
            let many = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(|| build(&docs, &p));
            assert_eq!(many, one, "{n} threads");
        }
        // Frequencies are what a direct count gives, and the kept words are
        // exactly those counted at least `min_freq` times.
        let mut direct: std::collections::HashMap<&str, u64> = Default::default();
        for t in docs.iter().flat_map(|d| d.split(' ')).filter(|t| !t.is_empty()) {
            *direct.entry(t).or_default() += 1;
        }
        for (w, f) in one.0.words.iter().zip(&one.0.freq) {
            assert_eq!(direct[w.as_str()], *f, "{w}");
        }
        let want = direct.iter().filter(|(w, f)| **f >= 3 && **w != "w4").count();
        assert_eq!(one.0.words.len(), want);
        assert_eq!(one.1.ids.len() as u64, one.0.freq.iter().sum::<u64>());
    }
}

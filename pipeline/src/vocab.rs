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

    fn get(&self, w: &str) -> Option<u32> {
        self.index.find(Self::hash(w.as_bytes()), |&i| self.word(i) == w.as_bytes()).copied()
    }

    /// The id of `w`, added (as the next id) if it is new.
    fn id_or_insert(&mut self, w: &str) -> u32 {
        let h = Self::hash(w.as_bytes());
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

/// Counts words over batches of cleaned documents (tokens separated by
/// single spaces), in parallel within a batch, keeping only the distinct
/// words and their counts: the first pass of a streamed vocabulary.
#[derive(Default)]
pub struct Counter {
    words: WordTable,
    freq: Vec<u64>,
}

impl Counter {
    /// Counts the tokens of `docs`.
    pub fn add<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        // Each run of documents counts into its own map; the maps are then
        // merged in order (the final ids depend only on the counts).
        let counted: Vec<FxHashMap<&str, u64>> = docs
            .par_chunks(chunk)
            .map(|run| {
                let mut m: FxHashMap<&str, u64> = FxHashMap::default();
                for t in run.iter().flat_map(|d| tokens(d.as_ref())) {
                    *m.entry(t).or_default() += 1;
                }
                m
            })
            .collect();
        for m in counted {
            for (w, f) in m {
                let id = self.words.id_or_insert(w) as usize;
                if id == self.freq.len() {
                    self.freq.push(0);
                }
                self.freq[id] += f;
            }
        }
    }

    /// Distinct words counted so far.
    pub fn distinct(&self) -> usize {
        self.words.len()
    }

    /// The vocabulary (its `df` still zero: [`Encoder::encode`] counts it)
    /// and the encoder of the second pass. Kept words: counted at least
    /// `min_freq` times and not a stop word, sorted by (frequency
    /// descending, word bytes ascending), at most `max_size`.
    pub fn finish(self, p: &VocabParams) -> (Vocab, Encoder) {
        let Counter { words, freq } = self;
        let text = |i: u32| std::str::from_utf8(words.word(i)).expect("counted from strings");
        let mut kept: Vec<u32> = (0..words.len() as u32).filter(|&i| freq[i as usize] >= p.min_freq && !p.stopwords.contains(text(i))).collect();
        kept.sort_unstable_by(|&a, &b| freq[b as usize].cmp(&freq[a as usize]).then_with(|| words.word(a).cmp(words.word(b))));
        if let Some(m) = p.max_size {
            kept.truncate(m);
        }
        let mut final_id = vec![DROPPED; words.len()];
        for (f, &pi) in kept.iter().enumerate() {
            final_id[pi as usize] = f as u32;
        }
        let vocab = Vocab { words: kept.iter().map(|&i| text(i).to_owned()).collect(), freq: kept.iter().map(|&i| freq[i as usize]).collect(), df: vec![0; kept.len()] };
        (vocab, Encoder { words, final_id })
    }
}

/// The id of a word that the vocabulary does not keep.
const DROPPED: u32 = u32::MAX;

/// Turns cleaned documents into vocabulary ids (the second pass).
pub struct Encoder {
    words: WordTable,
    final_id: Vec<u32>,
}

impl Encoder {
    /// Encodes `docs` (in parallel within the batch): appends each
    /// document's kept ids to `ids` and its length to `lens`, and adds the
    /// documents each word occurs in to `df`.
    pub fn encode<S: AsRef<str> + Sync>(&self, docs: &[S], ids: &mut Vec<u32>, lens: &mut Vec<usize>, df: &mut [u64]) {
        let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        let runs: Vec<(Vec<u32>, Vec<usize>, Vec<(u32, u64)>)> = docs
            .par_chunks(chunk)
            .map(|run| {
                // word -> (final id, last document, documents)
                let mut local: FxHashMap<&str, (u32, u32, u64)> = FxHashMap::default();
                let (mut rids, mut rlens) = (Vec::new(), Vec::with_capacity(run.len()));
                for (di, d) in run.iter().enumerate() {
                    let before = rids.len();
                    for t in tokens(d.as_ref()) {
                        let e = local.entry(t).or_insert_with(|| (self.words.get(t).map_or(DROPPED, |p| self.final_id[p as usize]), u32::MAX, 0));
                        if e.0 != DROPPED {
                            rids.push(e.0);
                            if e.1 != di as u32 {
                                e.1 = di as u32;
                                e.2 += 1;
                            }
                        }
                    }
                    rlens.push(rids.len() - before);
                }
                let rdf = local.into_values().filter(|e| e.0 != DROPPED).map(|e| (e.0, e.2)).collect();
                (rids, rlens, rdf)
            })
            .collect();
        for (rids, rlens, rdf) in runs {
            ids.extend_from_slice(&rids);
            lens.extend_from_slice(&rlens);
            for (id, n) in rdf {
                df[id as usize] += n;
            }
        }
    }
}

/// Builds the vocabulary from cleaned documents (tokens separated by single
/// spaces) and encodes them. Frequencies count every occurrence in every
/// document, stop words included, as the reference does.
///
/// Runs of documents are counted in parallel, each with its own hash map;
/// the runs' words are then merged. Final ids depend only on the counts
/// (see [`Vocab`]), so the result does not depend on the number of threads.
/// (The vocab stage runs the same two passes, [`Counter`] and [`Encoder`],
/// over the tokens table a batch at a time.)
pub fn build<S: AsRef<str> + Sync>(docs: &[S], p: &VocabParams) -> (Vocab, DocTokens) {
    let mut counter = Counter::default();
    counter.add(docs);
    let (mut vocab, encoder) = counter.finish(p);
    let (mut ids, mut lens) = (Vec::new(), Vec::new());
    encoder.encode(docs, &mut ids, &mut lens, &mut vocab.df);
    let mut offsets = Vec::with_capacity(lens.len() + 1);
    offsets.push(0);
    for len in lens {
        offsets.push(offsets[offsets.len() - 1] + len);
    }
    (vocab, DocTokens { offsets, ids })
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

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

/// Token counts of a run of documents, under provisional (chunk-local) ids
/// in order of first appearance.
struct ChunkCounts<'a> {
    words: Vec<&'a str>,
    freq: Vec<u64>,
    ids: Vec<u32>,
    /// Token counts per document.
    lens: Vec<usize>,
}

fn count_chunk<'a, S: AsRef<str>>(docs: &'a [S]) -> ChunkCounts<'a> {
    let mut prov: FxHashMap<&str, u32> = FxHashMap::default();
    let mut c = ChunkCounts { words: Vec::new(), freq: Vec::new(), ids: Vec::new(), lens: Vec::with_capacity(docs.len()) };
    for d in docs {
        let before = c.ids.len();
        for t in d.as_ref().split(' ').filter(|t| !t.is_empty()) {
            let id = *prov.entry(t).or_insert_with(|| {
                c.words.push(t);
                c.freq.push(0);
                (c.words.len() - 1) as u32
            });
            c.freq[id as usize] += 1;
            c.ids.push(id);
        }
        c.lens.push(c.ids.len() - before);
    }
    c
}

/// Builds the vocabulary from cleaned documents (tokens separated by single
/// spaces) and encodes them. Frequencies count every occurrence in every
/// document, stop words included, as the reference does.
///
/// Runs of documents are counted in parallel, each with its own hash map;
/// the runs' words are then merged. Final ids depend only on the counts
/// (see [`Vocab`]), so the result does not depend on the number of threads.
pub fn build<S: AsRef<str> + Sync>(docs: &[S], p: &VocabParams) -> (Vocab, DocTokens) {
    let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
    let chunks: Vec<ChunkCounts> = docs.par_chunks(chunk).map(count_chunk).collect();
    // Merge: global provisional ids in order of first appearance.
    let mut prov: FxHashMap<&str, u32> = FxHashMap::default();
    let mut words: Vec<&str> = Vec::new();
    let mut freq: Vec<u64> = Vec::new();
    let to_global: Vec<Vec<u32>> = chunks
        .iter()
        .map(|c| {
            c.words
                .iter()
                .zip(&c.freq)
                .map(|(&w, &f)| {
                    let g = *prov.entry(w).or_insert_with(|| {
                        words.push(w);
                        freq.push(0);
                        (words.len() - 1) as u32
                    });
                    freq[g as usize] += f;
                    g
                })
                .collect()
        })
        .collect();
    drop(prov);
    // Keep, sort by (frequency desc, word bytes asc), map provisional -> final.
    let mut kept: Vec<u32> = (0..words.len() as u32).filter(|&i| freq[i as usize] >= p.min_freq && !p.stopwords.contains(words[i as usize])).collect();
    kept.sort_unstable_by(|&a, &b| freq[b as usize].cmp(&freq[a as usize]).then_with(|| words[a as usize].as_bytes().cmp(words[b as usize].as_bytes())));
    if let Some(m) = p.max_size {
        kept.truncate(m);
    }
    const DROPPED: u32 = u32::MAX;
    let mut final_id = vec![DROPPED; words.len()];
    for (f, &pi) in kept.iter().enumerate() {
        final_id[pi as usize] = f as u32;
    }
    // Encode each run in parallel, with its document frequencies.
    let nk = kept.len();
    let encoded: Vec<(Vec<u32>, Vec<usize>, Vec<u64>)> = chunks
        .par_iter()
        .zip(&to_global)
        .map(|(c, g)| {
            let local_final: Vec<u32> = g.iter().map(|&x| final_id[x as usize]).collect();
            let mut ids = Vec::with_capacity(c.ids.len());
            let mut lens = Vec::with_capacity(c.lens.len());
            let mut df = vec![0u64; nk];
            let mut last_doc = vec![u32::MAX; nk];
            let mut k = 0;
            for (di, &len) in c.lens.iter().enumerate() {
                let before = ids.len();
                for &pi in &c.ids[k..k + len] {
                    let id = local_final[pi as usize];
                    if id != DROPPED {
                        ids.push(id);
                        if last_doc[id as usize] != di as u32 {
                            last_doc[id as usize] = di as u32;
                            df[id as usize] += 1;
                        }
                    }
                }
                k += len;
                lens.push(ids.len() - before);
            }
            (ids, lens, df)
        })
        .collect();
    let total: usize = encoded.iter().map(|e| e.0.len()).sum();
    let mut toks = DocTokens { offsets: Vec::with_capacity(docs.len() + 1), ids: Vec::with_capacity(total) };
    toks.offsets.push(0);
    let mut df = vec![0u64; nk];
    for (ids, lens, cdf) in encoded {
        toks.ids.extend_from_slice(&ids);
        for len in lens {
            toks.offsets.push(toks.offsets[toks.offsets.len() - 1] + len);
        }
        for (a, b) in df.iter_mut().zip(cdf) {
            *a += b;
        }
    }
    let vocab = Vocab { words: kept.iter().map(|&i| words[i as usize].to_owned()).collect(), freq: kept.iter().map(|&i| freq[i as usize]).collect(), df };
    (vocab, toks)
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

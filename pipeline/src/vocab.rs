//! The vocabulary filter and the id-encoded documents.

use std::collections::HashSet;

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

/// Builds the vocabulary from cleaned documents (tokens separated by single
/// spaces) and encodes them. Frequencies count every occurrence in every
/// document, stop words included, as the reference does.
pub fn build<S: AsRef<str>>(docs: &[S], p: &VocabParams) -> (Vocab, DocTokens) {
    // One hashing pass: provisional ids in order of first appearance, with
    // counts; every token is stored by provisional id.
    let mut prov: FxHashMap<&str, u32> = FxHashMap::default();
    let mut words: Vec<&str> = Vec::new();
    let mut freq: Vec<u64> = Vec::new();
    let mut ids: Vec<u32> = Vec::new();
    let mut offsets = Vec::with_capacity(docs.len() + 1);
    offsets.push(0usize);
    for d in docs {
        for t in d.as_ref().split(' ').filter(|t| !t.is_empty()) {
            let id = *prov.entry(t).or_insert_with(|| {
                words.push(t);
                freq.push(0);
                (words.len() - 1) as u32
            });
            freq[id as usize] += 1;
            ids.push(id);
        }
        offsets.push(ids.len());
    }
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
    let mut toks = DocTokens { offsets: Vec::with_capacity(docs.len() + 1), ids: Vec::with_capacity(ids.len()) };
    toks.offsets.push(0);
    let mut df = vec![0u64; kept.len()];
    let mut last_doc = vec![u32::MAX; kept.len()];
    for di in 0..docs.len() {
        for &pi in &ids[offsets[di]..offsets[di + 1]] {
            let id = final_id[pi as usize];
            if id != DROPPED {
                toks.ids.push(id);
                if last_doc[id as usize] != di as u32 {
                    last_doc[id as usize] = di as u32;
                    df[id as usize] += 1;
                }
            }
        }
        toks.offsets.push(toks.ids.len());
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
}

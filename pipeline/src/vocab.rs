//! The vocabulary filter and the id-encoded documents.

use std::collections::HashSet;

use rayon::prelude::*;

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

/// A word's first 8 bytes, little-endian and zero-padded, and its hash.
/// Words of at most 8 bytes (most tokens) are compared by this key and
/// their length alone, without reading their bytes again.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    prefix: u64,
    len: u32,
}

/// One 64-bit multiply folded to 64 bits: mixes every input bit into the
/// high bits (the table's tags) and the low bits (its buckets).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let m = (a as u128) * (b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The 8 bytes at `w[at..]`, zero-padded past the end of `w`.
#[inline(always)]
fn load8(w: &[u8], at: usize) -> u64 {
    match w.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => {
            let mut b = [0u8; 8];
            let rest = &w[at.min(w.len())..];
            b[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(b)
        }
    }
}

/// The key and hash of word `w`, whose first 8 bytes (zero-padded) are
/// `prefix`.
#[inline(always)]
fn key_and_hash(w: &[u8], prefix: u64) -> (Key, u64) {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0xd6e8_feb8_6659_fd93;
    let mut h = fold(prefix ^ K1, (w.len() as u64) ^ K0);
    let mut at = 8;
    while at < w.len() {
        h = fold(h ^ load8(w, at), K1);
        at += 8;
    }
    (Key { prefix, len: w.len() as u32 }, h)
}

/// The key and hash of a word alone (not inside a longer text).
fn key_of(w: &[u8]) -> (Key, u64) {
    key_and_hash(w, load8(w, 0))
}

/// An entry of a [`WordTable`]'s index: at least a word's id.
trait Entry: Copy {
    fn new(key: Key, id: u32) -> Self;
    fn id(&self) -> u32;
    /// Whether this entry is word `w` (key `k`), its bytes in `arena`.
    fn is(&self, w: &[u8], k: &Key, arena: (&[u8], &[usize])) -> bool;
}

/// An entry holding the word's key beside its id (16 bytes): a word of up
/// to 8 bytes is compared without reading the arena (the one table, which
/// is not in cache as a whole).
#[derive(Clone, Copy)]
struct Slot {
    key: Key,
    id: u32,
}

impl Entry for Slot {
    #[inline(always)]
    fn new(key: Key, id: u32) -> Self {
        Slot { key, id }
    }
    #[inline(always)]
    fn id(&self) -> u32 {
        self.id
    }
    #[inline(always)]
    fn is(&self, w: &[u8], k: &Key, (bytes, ends): (&[u8], &[usize])) -> bool {
        self.key == *k && (w.len() <= 8 || word_in(bytes, ends, self.id)[8..] == w[8..])
    }
}

/// An entry of the id alone (4 bytes), compared with the arena: for the
/// shards, whose tables stay in cache while they count and hold most of a
/// large corpus's words (16.4 M at a million generated documents, where 16
/// bytes an entry took the peak of the stages before the graph from 1.89
/// to 2.37 GiB; 4 bytes: 1.83 GiB).
impl Entry for u32 {
    #[inline(always)]
    fn new(_: Key, id: u32) -> Self {
        id
    }
    #[inline(always)]
    fn id(&self) -> u32 {
        *self
    }
    #[inline(always)]
    fn is(&self, w: &[u8], _: &Key, (bytes, ends): (&[u8], &[usize])) -> bool {
        word_in(bytes, ends, *self) == w
    }
}

/// Distinct words, each stored once in an arena, with a hash index: the
/// vocabulary of a corpus whose text is not in memory. About 23 bytes a
/// word and its entry (the bytes, an end offset, the index's entry).
struct WordTable<E> {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    index: hashbrown::HashTable<E>,
}

impl<E> Default for WordTable<E> {
    fn default() -> Self {
        WordTable { bytes: Vec::new(), ends: Vec::new(), index: hashbrown::HashTable::new() }
    }
}

impl<E: Entry> WordTable<E> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn word(&self, i: u32) -> &[u8] {
        word_in(&self.bytes, &self.ends, i)
    }

    /// The id of `w` (key `k`, hash `h`), if it is in the table.
    #[inline(always)]
    fn find(&self, w: &[u8], k: Key, h: u64) -> Option<u32> {
        let arena = (&self.bytes[..], &self.ends[..]);
        self.index.find(h, |e| e.is(w, &k, arena)).map(Entry::id)
    }

    /// The id of `w` (key `k`, hash `h`), added (as the next id) if it is
    /// new.
    fn id_or_insert(&mut self, w: &[u8], k: Key, h: u64) -> u32 {
        if let Some(i) = self.find(w, k, h) {
            return i;
        }
        let WordTable { bytes, ends, index } = self;
        let id = u32::try_from(ends.len()).expect("fewer than 2^32 distinct words");
        bytes.extend_from_slice(w);
        ends.push(bytes.len());
        let (bytes, ends) = (&*bytes, &*ends);
        index.insert_unique(h, E::new(k, id), |e| key_of(word_in(bytes, ends, e.id())).1);
        id
    }
}

/// Word `i` of an arena of words ending at `ends`.
#[inline(always)]
fn word_in<'a>(bytes: &'a [u8], ends: &[usize], i: u32) -> &'a [u8] {
    let i = i as usize;
    &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]]
}

/// Shards of the distinct words, by bits of a word's hash that the shard's
/// table uses neither for its buckets nor for its tags. A constant, so
/// that nothing depends on the thread count.
const SHARDS: usize = 256;

#[inline(always)]
fn shard_of(h: u64) -> usize {
    (h >> 40) as usize % SHARDS
}

/// The counter shards its words once it holds more than this many: a
/// table of all words then outgrows the cache (3.3 M distinct words in
/// 100,000 generated documents, most of them rare: a cache miss a token).
const SHARD_FROM: usize = 1 << 18;

/// Sharded, at most this much text is split into tokens at a time (a
/// token's record takes 32 bytes, about five times the text it stands for).
const GROUP_BYTES: usize = 8 << 20;

/// Marks a run's provisional id as one of its own new words (an index into
/// [`DirectRun::words`]) rather than an id of the counter's table.
const LOCAL: u32 = 1 << 31;

/// One shard of the distinct words and their counts.
#[derive(Default)]
struct Shard {
    words: WordTable<u32>,
    freq: Vec<u64>,
}

/// Counts the words of cleaned documents (tokens separated by single
/// spaces), a batch at a time, in parallel within a batch: the distinct
/// words, and each token as a provisional id (4 bytes a token), never the
/// text. [`Counter::finish`] turns them into the vocabulary and the
/// id-encoded documents.
///
/// Two layouts, the same result. While the vocabulary is small (up to
/// [`SHARD_FROM`] words, every benchmark corpus), one table that runs of
/// documents look their tokens up in, in parallel; only their new words
/// are added after, and frequencies are counted from the ids at the end.
/// Beyond, [`SHARDS`] tables with their counts: a batch's tokens are first
/// sent to their shard's list, then each shard counts its own (its table
/// stays in cache while it does), and the ids are gathered back in order.
pub struct Counter {
    /// The one table, until the words are sharded.
    table: Option<WordTable<Slot>>,
    /// The shards, once the words are (then a provisional id is `local ·
    /// SHARDS + shard`).
    shards: Vec<Shard>,
    /// Provisional id of every token, in corpus order.
    prov: Vec<u32>,
    /// Tokens per document.
    lens: Vec<u32>,
    /// [`SHARD_FROM`] and [`GROUP_BYTES`], but for tests.
    shard_from: usize,
    group_bytes: usize,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { table: Some(WordTable::default()), shards: Vec::new(), prov: Vec::new(), lens: Vec::new(), shard_from: SHARD_FROM, group_bytes: GROUP_BYTES }
    }
}

/// A run of documents counted against the one table as it was when the
/// batch began: a token is its table id, or `LOCAL | k` for the run's
/// `k`-th new word.
struct DirectRun<'a> {
    words: Vec<&'a [u8]>,
    keys: Vec<(Key, u64)>,
    index: hashbrown::HashTable<Slot>,
    ids: Vec<u32>,
    lens: Vec<u32>,
}

/// The tokens of `d` with their keys and hashes, and where they start.
#[inline(always)]
fn for_each_token<'a>(d: &'a [u8], mut f: impl FnMut(&'a [u8], usize, Key, u64)) {
    let mut at = 0;
    for t in d.split(|&b| b == b' ') {
        let start = at;
        at += t.len() + 1;
        if t.is_empty() {
            continue;
        }
        let len = t.len();
        let prefix = load8(d, start) & if len >= 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        let (k, h) = key_and_hash(t, prefix);
        f(t, start, k, h);
    }
}

fn count_direct<'a, S: AsRef<str>>(table: &WordTable<Slot>, docs: &'a [S]) -> DirectRun<'a> {
    let mut r = DirectRun { words: Vec::new(), keys: Vec::new(), index: hashbrown::HashTable::new(), ids: Vec::new(), lens: Vec::with_capacity(docs.len()) };
    for d in docs {
        let before = r.ids.len();
        for_each_token(d.as_ref().as_bytes(), |t, _, k, h| {
            let id = match table.find(t, k, h) {
                Some(id) => id,
                None => {
                    let DirectRun { words, keys, index, .. } = &mut r;
                    let local = match index.find(h, |s| s.key == k && (t.len() <= 8 || words[s.id as usize][8..] == t[8..])) {
                        Some(s) => s.id,
                        None => {
                            let id = words.len() as u32;
                            words.push(t);
                            keys.push((k, h));
                            index.insert_unique(h, Slot { key: k, id }, |s| keys[s.id as usize].1);
                            id
                        }
                    };
                    LOCAL | local
                }
            };
            r.ids.push(id);
        });
        r.lens.push((r.ids.len() - before) as u32);
    }
    r
}

/// A token on its way to its shard: its key and hash, and where its bytes
/// are (read again only for words longer than 8 bytes).
#[derive(Clone, Copy)]
struct Tok {
    h: u64,
    key: Key,
    doc: u32,
    start: u32,
}

/// A run of documents split into tokens: each token's record in its
/// shard's list, and each token's shard in corpus order.
struct ShardedRun {
    by_shard: Vec<Vec<Tok>>,
    shard: Vec<u8>,
    lens: Vec<u32>,
}

fn split_run<S: AsRef<str>>(docs: &[S]) -> ShardedRun {
    let mut r = ShardedRun { by_shard: vec![Vec::new(); SHARDS], shard: Vec::new(), lens: Vec::with_capacity(docs.len()) };
    for (doc, d) in docs.iter().enumerate() {
        let before = r.shard.len();
        for_each_token(d.as_ref().as_bytes(), |_, start, key, h| {
            let s = shard_of(h);
            r.by_shard[s].push(Tok { h, key, doc: doc as u32, start: start as u32 });
            r.shard.push(s as u8);
        });
        r.lens.push((r.shard.len() - before) as u32);
    }
    r
}

/// How often each of `n` ids occurs in `ids`: a contiguous part per
/// thread, each with its own counts, summed (`n` is at most a little over
/// [`SHARD_FROM`] here).
fn count_ids(ids: &[u32], n: usize) -> Vec<u64> {
    let threads = rayon::current_num_threads().max(1);
    let parts: Vec<Vec<u64>> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let mut f = vec![0u64; n];
            for &g in &ids[ids.len() * t / threads..ids.len() * (t + 1) / threads] {
                f[g as usize] += 1;
            }
            f
        })
        .collect();
    let mut freq = vec![0u64; n];
    for part in parts {
        for (a, b) in freq.iter_mut().zip(part) {
            *a += b;
        }
    }
    freq
}

/// `prov[start..]` as the runs' parts, in order, `len(r)` ids each.
fn parts_of<'a, R>(prov: &'a mut [u32], runs: &[R], len: impl Fn(&R) -> usize) -> Vec<&'a mut [u32]> {
    let mut rest = prov;
    let mut parts = Vec::with_capacity(runs.len());
    for r in runs {
        let (head, tail) = rest.split_at_mut(len(r));
        parts.push(head);
        rest = tail;
    }
    parts
}

impl Counter {
    /// Counts the tokens of `docs`.
    pub fn add<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        if self.table.is_some() {
            self.add_direct(docs);
            if self.table.as_ref().is_some_and(|t| t.len() > self.shard_from) {
                self.shard();
            }
            return;
        }
        // Groups of documents of at most `group_bytes` of text (a longer
        // document is a group of its own).
        let mut first = 0;
        while first < docs.len() {
            let mut end = first + 1;
            let mut bytes = docs[first].as_ref().len();
            while end < docs.len() && bytes + docs[end].as_ref().len() <= self.group_bytes {
                bytes += docs[end].as_ref().len();
                end += 1;
            }
            self.add_sharded(&docs[first..end]);
            first = end;
        }
    }

    /// Counts `docs` against the one table: runs of documents in parallel,
    /// then their new words added in run order (a word new to two runs
    /// gets the first's id), then their ids put in place in parallel.
    fn add_direct<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        let table = self.table.as_mut().expect("direct layout");
        let runs: Vec<DirectRun> = {
            let table = &*table;
            docs.par_chunks(chunk).map(|c| count_direct(table, c)).collect()
        };
        let to_table: Vec<Vec<u32>> = runs.iter().map(|r| r.words.iter().zip(&r.keys).map(|(w, &(k, h))| table.id_or_insert(w, k, h)).collect()).collect();
        let start = self.prov.len();
        self.prov.resize(start + runs.iter().map(|r| r.ids.len()).sum::<usize>(), 0);
        let parts = parts_of(&mut self.prov[start..], &runs, |r| r.ids.len());
        parts.into_par_iter().zip(&runs).zip(&to_table).for_each(|((out, r), g)| {
            for (o, &id) in out.iter_mut().zip(&r.ids) {
                *o = if id & LOCAL != 0 { g[(id & !LOCAL) as usize] } else { id };
            }
        });
        for r in &runs {
            self.lens.extend_from_slice(&r.lens);
        }
    }

    /// From the one table to shards: each word to its shard with its count
    /// so far, and the provisional ids renumbered.
    fn shard(&mut self) {
        let table = self.table.take().expect("direct layout");
        let freq = count_ids(&self.prov, table.len());
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        let new_id: Vec<u32> = (0..table.len() as u32)
            .map(|g| {
                let w = table.word(g);
                let (k, h) = key_of(w);
                let s = shard_of(h);
                let shard = &mut shards[s];
                let id = shard.words.id_or_insert(w, k, h) as usize;
                shard.freq.push(freq[g as usize]);
                u32::try_from(id * SHARDS + s).expect("fewer than 2^32 distinct words")
            })
            .collect();
        drop((table, freq));
        self.prov.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|g| *g = new_id[*g as usize]));
        self.shards = shards;
    }

    /// Counts a group of documents into the shards in three passes: runs of
    /// documents split into tokens in parallel, each token's record sent to
    /// its shard; the shards count their tokens in parallel (runs in order,
    /// each run's tokens in order); the runs' provisional ids gathered in
    /// token order in parallel.
    fn add_sharded<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        assert!(docs.len() < u32::MAX as usize && docs.iter().all(|d| d.as_ref().len() < u32::MAX as usize), "a group of documents is indexed in 32 bits");
        let chunk = docs.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        let runs: Vec<ShardedRun> = docs.par_chunks(chunk).map(split_run).collect();
        // ids[s][r]: the provisional ids of run r's tokens of shard s, in order.
        let ids: Vec<Vec<Vec<u32>>> = self
            .shards
            .par_iter_mut()
            .enumerate()
            .map(|(s, shard)| {
                runs.iter()
                    .enumerate()
                    .map(|(ri, r)| {
                        let run_docs = &docs[ri * chunk..];
                        r.by_shard[s]
                            .iter()
                            .map(|t| {
                                let len = t.key.len as usize;
                                let w = &run_docs[t.doc as usize].as_ref().as_bytes()[t.start as usize..t.start as usize + len];
                                let id = shard.words.id_or_insert(w, t.key, t.h) as usize;
                                if id == shard.freq.len() {
                                    shard.freq.push(0);
                                }
                                shard.freq[id] += 1;
                                u32::try_from(id * SHARDS + s).expect("fewer than 2^32 distinct words")
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let start = self.prov.len();
        self.prov.resize(start + runs.iter().map(|r| r.shard.len()).sum::<usize>(), 0);
        let parts = parts_of(&mut self.prov[start..], &runs, |r| r.shard.len());
        parts.into_par_iter().zip(&runs).enumerate().for_each(|(ri, (out, r))| {
            let mut next = [0usize; SHARDS];
            for (o, &s) in out.iter_mut().zip(&r.shard) {
                let s = s as usize;
                *o = ids[s][ri][next[s]];
                next[s] += 1;
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
        match &self.table {
            Some(t) => t.len(),
            None => self.shards.iter().map(|s| s.words.len()).sum(),
        }
    }

    /// The vocabulary and the documents as its ids. Kept words: counted at
    /// least `min_freq` times and not a stop word, sorted by (frequency
    /// descending, word bytes ascending), at most `max_size`.
    pub fn finish(self, p: &VocabParams) -> (Vocab, DocTokens) {
        let Counter { table, shards, prov, lens, .. } = self;
        // The kept words' provisional ids, sorted, and the vocabulary; the
        // tables go before the ids are encoded.
        let (vocab, kept, span) = match table {
            Some(table) => {
                let freq = count_ids(&prov, table.len());
                let (v, k) = choose(p, 0..table.len() as u32, |g| table.word(g), |g| freq[g as usize]);
                (v, k, table.len())
            }
            None => {
                let all = shards.iter().enumerate().flat_map(|(s, shard)| (0..shard.words.len()).map(move |i| (i * SHARDS + s) as u32));
                let (v, k) = choose(p, all, |g| shards[g as usize % SHARDS].words.word(g / SHARDS as u32), |g| shards[g as usize % SHARDS].freq[g as usize / SHARDS]);
                (v, k, shards.iter().map(|s| s.words.len()).max().unwrap_or(0) * SHARDS)
            }
        };
        drop(shards);
        encode(vocab, &kept, span, prov, lens)
    }
}

/// The kept words of `all` (provisional ids), sorted, and the vocabulary
/// (document frequencies still 0).
fn choose<'a>(p: &VocabParams, all: impl Iterator<Item = u32>, word: impl Fn(u32) -> &'a [u8], freq: impl Fn(u32) -> u64) -> (Vocab, Vec<u32>) {
    let text = |g: u32| std::str::from_utf8(word(g)).expect("counted from strings");
    let mut kept: Vec<u32> = all.filter(|&g| freq(g) >= p.min_freq && !p.stopwords.contains(text(g))).collect();
    kept.sort_unstable_by(|&a, &b| freq(b).cmp(&freq(a)).then_with(|| word(a).cmp(word(b))));
    if let Some(m) = p.max_size {
        kept.truncate(m);
    }
    let vocab = Vocab { words: kept.iter().map(|&g| text(g).to_owned()).collect(), freq: kept.iter().map(|&g| freq(g)).collect(), df: vec![0; kept.len()] };
    (vocab, kept)
}

/// The documents as the ids of the `kept` words (provisional ids below
/// `span`), and the vocabulary's document frequencies.
fn encode(mut vocab: Vocab, kept: &[u32], span: usize, mut prov: Vec<u32>, lens: Vec<u32>) -> (Vocab, DocTokens) {
    let mut final_id = vec![DROPPED; span];
    for (f, &g) in kept.iter().enumerate() {
        final_id[g as usize] = f as u32;
    }
    let nk = kept.len();
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
    fn long_and_look_alike_words_are_told_apart_across_batches() {
        use rand::{Rng, SeedableRng};
        // Words that share their first 8 bytes, differ in length only by
        // a trailing NUL, or end a document (the 8-byte key read there
        // is padded): each must be counted apart, whether it is new to the
        // batch or already in the table from an earlier one.
        let stems = ["a", "ab", "ab\0", "abcdefgh", "abcdefgh\0", "abcdefghi", "abcdefghij", "abcdefgx", "abcdefghijklmnopq", "abcdefghijklmnopr", "abcdefghijklmnopqrstuvwxyz0123"];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let docs: Vec<String> = (0..500)
            .map(|_| {
                (0..rng.random_range(0..30))
                    .map(|_| {
                        let s = stems[rng.random_range(0..stems.len())];
                        if rng.random_bool(0.3) { format!("{s}{}", rng.random_range(0..40u32)) } else { s.to_owned() }
                    })
                    .collect::<Vec<_>>()
                    .join(if rng.random_bool(0.1) { "  " } else { " " })
            })
            .collect();
        let stop = HashSet::new();
        let p = VocabParams { min_freq: 1, stopwords: &stop, max_size: None };
        let whole = build(&docs, &p);
        // Both layouts (one table; shards, from the start or once 30
        // words are counted), groups of any size, batches and threads.
        let layouts = [(usize::MAX, GROUP_BYTES), (0, GROUP_BYTES), (0, 1), (0, 200), (30, 1000)];
        for (batch, (shard_from, group_bytes)) in [1, 7, 64, 499].into_iter().flat_map(|b| layouts.map(|l| (b, l))) {
            for threads in [1, 2, 5] {
                let batched = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                    let mut c = Counter { shard_from, group_bytes, ..Counter::default() };
                    for b in docs.chunks(batch) {
                        c.add(b);
                    }
                    c.finish(&p)
                });
                assert!(batched == whole, "batches of {batch}, sharded from {shard_from} words, groups of {group_bytes} bytes, {threads} threads");
            }
        }
        let mut direct: std::collections::HashMap<&str, u64> = Default::default();
        for t in docs.iter().flat_map(|d| d.split(' ')).filter(|t| !t.is_empty()) {
            *direct.entry(t).or_default() += 1;
        }
        assert_eq!(whole.0.words.len(), direct.len());
        for (w, f) in whole.0.words.iter().zip(&whole.0.freq) {
            assert_eq!(direct[w.as_str()], *f, "{w:?}");
        }
        // Every token is its own word again.
        let again: Vec<&str> = whole.1.ids.iter().map(|&i| whole.0.words[i as usize].as_str()).collect();
        let tokens: Vec<&str> = docs.iter().flat_map(|d| d.split(' ')).filter(|t| !t.is_empty()).collect();
        assert_eq!(again, tokens);
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

//! `textgcn generate`: a synthetic corpus of any size, for scale work.
//!
//! Every token is drawn from a Zipf law over word ranks, so the vocabulary
//! grows with the corpus as in text (Heaps' law: distinct words grow like
//! a power below one of the tokens). A share of each document's tokens
//! (`topic_share`) comes from its class's own words, drawn from a Zipf law
//! of their own, so the classes can be learned; the rest from the common
//! words. Lengths are log-normal around `mean_length`; each document is a
//! test document with probability `test_fraction`.
//!
//! Deterministic: document `d` is drawn from its own generator seeded with
//! `(seed, d)`, so the files are the same bytes for the same settings,
//! whatever the number of threads.
//!
//! Written in the TextGCN layout, with a config that builds it:
//! `<out>/<name>.txt` (one document per line), `<out>/<name>.meta.txt`
//! (`doc<d>\t<train|test>\tc<class>`) and `<out>/<name>.toml`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use rayon::prelude::*;

use textgcn_cli::ui::{self, Verbosity};

/// What to generate (the flags of `textgcn generate`).
#[derive(Debug, Clone, clap::Args)]
pub struct Spec {
    /// Number of documents.
    #[arg(long)]
    pub docs: usize,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Base name of the files and of the config (default: synthetic-<docs>).
    #[arg(long)]
    pub name: Option<String>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of classes.
    #[arg(long, default_value_t = 20)]
    pub classes: usize,
    /// Mean document length in tokens (log-normal, sigma 0.5).
    #[arg(long, default_value_t = 200.0)]
    pub mean_length: f64,
    /// Exponent of the Zipf laws (above 1: a few very common words).
    #[arg(long, default_value_t = 1.07)]
    pub zipf: f64,
    /// Share of a document's tokens drawn from its class's own words.
    #[arg(long, default_value_t = 0.25)]
    pub topic_share: f64,
    /// Probability that a document is a test document.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    pub test_fraction: f64,
    /// Most labels a document has (default 1: one class each). Above 1,
    /// each document has 1 to this many distinct classes (uniform), its
    /// class words drawn from each of them alike, and the meta file's label
    /// field lists them joined by ',' (the config trains multi-label).
    #[arg(long, default_value_t = 1)]
    pub labels_per_doc: usize,
}

/// Ranks the Zipf laws draw from: large enough that the vocabulary keeps
/// growing at a million documents.
const COMMON_RANKS: f64 = 20_000_000.0;
const TOPIC_RANKS: f64 = 2_000_000.0;
/// Log-normal shape of the document lengths.
const LENGTH_SIGMA: f64 = 0.5;
/// Documents generated per parallel batch (written in order).
const BATCH: usize = 4096;

/// What was written.
#[derive(Debug, serde::Serialize)]
pub struct Generated {
    /// The corpus file.
    pub corpus: PathBuf,
    /// The meta file.
    pub meta: PathBuf,
    /// The config that builds the corpus.
    pub config: PathBuf,
    /// Documents written.
    pub docs: usize,
    /// Tokens written.
    pub tokens: u64,
}

impl Spec {
    fn check(&self) -> Result<()> {
        if self.docs == 0 {
            bail!("--docs must be at least 1");
        }
        if self.classes == 0 || self.classes > 1_000_000 {
            bail!("--classes must be between 1 and 1000000, not {}", self.classes);
        }
        if !(self.mean_length >= 1.0 && self.mean_length.is_finite()) {
            bail!("--mean-length must be at least 1, not {}", self.mean_length);
        }
        if !(self.zipf > 0.0 && self.zipf.is_finite()) {
            bail!("--zipf must be a positive exponent, not {}", self.zipf);
        }
        if self.labels_per_doc == 0 || self.labels_per_doc > self.classes {
            bail!("--labels-per-doc must be between 1 and --classes ({}), not {}", self.classes, self.labels_per_doc);
        }
        for (flag, v) in [("--topic-share", self.topic_share), ("--test-fraction", self.test_fraction)] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{flag} must be between 0 and 1, not {v}");
            }
        }
        if let Some(n) = &self.name
            && (n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || n.starts_with('.'))
        {
            bail!("--name {n:?} must be letters, digits, '-', '_' or '.'");
        }
        Ok(())
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("synthetic-{}", self.docs))
    }
}

/// A word as letters: the rank written with consonant-vowel syllables, and
/// a `q`, which no English stop word has, so that no generated word is
/// dropped as one. Class words add their class's syllables after the `q`.
fn word(rank: u64, class: Option<usize>, out: &mut String) {
    const C: &[u8] = b"bdfghklmnprstvz";
    const V: &[u8] = b"aeiou";
    let syllables = |mut n: u64, out: &mut String| {
        loop {
            let s = (n % 75) as usize;
            out.push(C[s / 5] as char);
            out.push(V[s % 5] as char);
            n /= 75;
            if n == 0 {
                break;
            }
        }
    };
    syllables(rank, out);
    out.push('q');
    if let Some(c) = class {
        syllables(c as u64, out);
    }
}

/// One document: its classes (ascending), whether it is a test document,
/// and its text.
fn document(spec: &Spec, d: usize, common: &Zipf<f64>, topic: &Zipf<f64>, length: &LogNormal<f64>) -> (Vec<usize>, bool, String, u64) {
    // An independent stream per document: the same bytes whatever the
    // batch or thread a document lands in.
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(d as u64);
    let mut classes = vec![rng.random_range(0..spec.classes)];
    // Only label sets draw more (one class each: the stream as it was).
    if spec.labels_per_doc > 1 {
        let n = rng.random_range(1..=spec.labels_per_doc);
        while classes.len() < n {
            let c = rng.random_range(0..spec.classes);
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
        classes.sort_unstable();
    }
    let test = rng.random_bool(spec.test_fraction);
    let len = (length.sample(&mut rng).round() as u64).max(1);
    let mut text = String::with_capacity(len as usize * 8);
    for k in 0..len {
        if k > 0 {
            text.push(' ');
        }
        if rng.random_bool(spec.topic_share) {
            let class = if classes.len() == 1 { classes[0] } else { classes[rng.random_range(0..classes.len())] };
            word(topic.sample(&mut rng) as u64 - 1, Some(class), &mut text);
        } else {
            word(common.sample(&mut rng) as u64 - 1, None, &mut text);
        }
    }
    (classes, test, text, len)
}

/// Writes the corpus, its meta file and its config into `spec.out`, each
/// atomically (a file is complete or absent).
pub fn generate(spec: &Spec, v: Verbosity) -> Result<Generated> {
    spec.check()?;
    let name = spec.name();
    std::fs::create_dir_all(&spec.out).with_context(|| format!("creating {}", spec.out.display()))?;
    let corpus = spec.out.join(format!("{name}.txt"));
    let meta = spec.out.join(format!("{name}.meta.txt"));
    let config = spec.out.join(format!("{name}.toml"));
    let common = Zipf::new(COMMON_RANKS, spec.zipf).context("the common words' Zipf law")?;
    let topic = Zipf::new(TOPIC_RANKS, spec.zipf).context("the class words' Zipf law")?;
    let mu = spec.mean_length.ln() - LENGTH_SIGMA * LENGTH_SIGMA / 2.0;
    let length = LogNormal::new(mu, LENGTH_SIGMA).context("the length distribution")?;
    let pb = ui::bar(v, spec.docs as u64, format!("generate {name}"));
    let mut tokens = 0u64;
    let mut meta_lines = String::new();
    textgcn_cli::write_atomic_with(&corpus, |tmp| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?);
        for start in (0..spec.docs).step_by(BATCH) {
            let batch: Vec<_> = (start..(start + BATCH).min(spec.docs)).into_par_iter().map(|d| document(spec, d, &common, &topic, &length)).collect();
            for (k, (classes, test, text, len)) in batch.into_iter().enumerate() {
                writeln!(out, "{text}").with_context(|| format!("writing {}", tmp.display()))?;
                let labels: Vec<String> = classes.iter().map(|c| format!("c{c}")).collect();
                meta_lines.push_str(&format!("doc{}\t{}\t{}\n", start + k, if test { "test" } else { "train" }, labels.join(",")));
                tokens += len;
            }
            pb.set_position((start + BATCH).min(spec.docs) as u64);
        }
        out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    })?;
    pb.finish_and_clear();
    textgcn_cli::write_atomic(&meta, meta_lines.as_bytes())?;
    let multi = if spec.labels_per_doc > 1 { format!(" --labels-per-doc {}", spec.labels_per_doc) } else { String::new() };
    let mut toml = format!(
        "# Generated by `textgcn generate --docs {docs} --seed {seed} --classes {classes} --mean-length {len} --zipf {zipf} --topic-share {share} --test-fraction {test}{multi}`.\n\
         name = \"{name}\"\ndata_dir = \".\"\n\n[ingest]\nformat = \"textgcn\"\ncorpus = \"{name}.txt\"\nmeta = \"{name}.meta.txt\"\nencoding = \"utf-8\"\n",
        docs = spec.docs,
        seed = spec.seed,
        classes = spec.classes,
        len = spec.mean_length,
        zipf = spec.zipf,
        share = spec.topic_share,
        test = spec.test_fraction,
    );
    if spec.labels_per_doc > 1 {
        toml.push_str("\n[train]\nmulti_label = true\nlabel_separator = \",\"\n");
    }
    textgcn_cli::write_atomic(&config, toml.as_bytes())?;
    Ok(Generated { corpus, meta, config, docs: spec.docs, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(dir: &Path, docs: usize, seed: u64) -> Spec {
        Spec { docs, out: dir.to_path_buf(), name: Some("t".into()), seed, classes: 4, mean_length: 30.0, zipf: 1.07, topic_share: 0.25, test_fraction: 1.0 / 3.0, labels_per_doc: 1 }
    }

    #[test]
    fn the_same_settings_give_the_same_bytes_and_the_seed_matters() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ga = generate(&spec(a.path(), 5000, 7), Verbosity::Quiet).unwrap();
        // One thread instead of all: the same bytes.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let gb = pool.install(|| generate(&spec(b.path(), 5000, 7), Verbosity::Quiet)).unwrap();
        for (x, y) in [(&ga.corpus, &gb.corpus), (&ga.meta, &gb.meta), (&ga.config, &gb.config)] {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap(), "{}", x.display());
        }
        assert_eq!(ga.tokens, gb.tokens);
        let c = tempfile::tempdir().unwrap();
        let gc = generate(&spec(c.path(), 5000, 8), Verbosity::Quiet).unwrap();
        assert_ne!(std::fs::read(&ga.corpus).unwrap(), std::fs::read(&gc.corpus).unwrap());
    }

    #[test]
    fn corpora_follow_zipf_and_heaps_and_classes_have_their_words() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&spec(dir.path(), 20_000, 1), Verbosity::Quiet).unwrap();
        let text = std::fs::read_to_string(&g.corpus).unwrap();
        let meta = std::fs::read_to_string(&g.meta).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        assert_eq!(meta.lines().count(), 20_000);
        // Lengths: mean near 30, one third test.
        let tokens: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
        let total: usize = tokens.iter().map(Vec::len).sum();
        assert_eq!(total as u64, g.tokens);
        let mean = total as f64 / 20_000.0;
        assert!((27.0..33.0).contains(&mean), "mean length {mean}");
        let test = meta.lines().filter(|l| l.split('\t').nth(1) == Some("test")).count();
        assert!((6_300..7_000).contains(&test), "{test} test documents");
        // Heaps: distinct words grow, but slower than the tokens.
        let distinct = |n: usize| tokens[..n].iter().flatten().collect::<std::collections::HashSet<_>>().len();
        let (v1, v2) = (distinct(5_000), distinct(20_000));
        assert!(v2 > v1 && (v2 as f64) < 4.0 * v1 as f64 * 0.9, "distinct words {v1} then {v2}");
        // Zipf: the most common word is about twice as frequent as the second.
        let mut freq: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for t in tokens.iter().flatten() {
            *freq.entry(t).or_default() += 1;
        }
        let mut counts: Vec<usize> = freq.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.4).contains(&ratio), "rank 1 / rank 2 = {ratio}");
        // Every word holds a q (so none is an English stop word); class
        // words name their class, and only documents of that class hold them.
        assert!(freq.keys().all(|w| w.contains('q')));
        for (line, m) in lines.iter().zip(meta.lines()) {
            let class: usize = m.rsplit('\t').next().unwrap()[1..].parse().unwrap();
            let mut suffix = String::new();
            word(0, Some(class), &mut suffix);
            let suffix = &suffix[suffix.find('q').unwrap()..];
            for t in line.split(' ').filter(|t| !t.ends_with('q')) {
                assert!(t.ends_with(suffix), "{t} in a document of class {class}");
            }
        }
    }

    #[test]
    fn label_sets_name_distinct_classes_whose_words_the_document_holds() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&Spec { labels_per_doc: 3, ..spec(dir.path(), 3000, 2) }, Verbosity::Quiet).unwrap();
        let text = std::fs::read_to_string(&g.corpus).unwrap();
        let meta = std::fs::read_to_string(&g.meta).unwrap();
        let mut sizes = [0usize; 4];
        let suffix = |c: usize| {
            let mut w = String::new();
            word(0, Some(c), &mut w);
            w[w.find('q').unwrap()..].to_owned()
        };
        for (line, m) in text.lines().zip(meta.lines()) {
            let classes: Vec<usize> = m.rsplit('\t').next().unwrap().split(',').map(|c| c[1..].parse().unwrap()).collect();
            assert!(classes.windows(2).all(|w| w[0] < w[1]), "{m}: distinct, ascending");
            sizes[classes.len()] += 1;
            for t in line.split(' ').filter(|t| !t.ends_with('q')) {
                assert!(classes.iter().any(|&c| t.ends_with(&suffix(c))), "{t} in a document of classes {classes:?}");
            }
        }
        // 1, 2 and 3 labels about equally often.
        assert_eq!(sizes[0], 0);
        assert!(sizes[1..].iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
        let toml = std::fs::read_to_string(&g.config).unwrap();
        assert!(toml.contains("--labels-per-doc 3") && toml.contains("[train]\nmulti_label = true\n"), "{toml}");
        let mut s = spec(dir.path(), 10, 1);
        s.labels_per_doc = 5;
        assert!(generate(&s, Verbosity::Quiet).unwrap_err().to_string().contains("--labels-per-doc"));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), 0, 1);
        assert!(generate(&s, Verbosity::Quiet).unwrap_err().to_string().contains("--docs"));
        s.docs = 10;
        s.test_fraction = 1.5;
        assert!(generate(&s, Verbosity::Quiet).unwrap_err().to_string().contains("--test-fraction"));
        s.test_fraction = 0.5;
        s.name = Some("../x".into());
        assert!(generate(&s, Verbosity::Quiet).unwrap_err().to_string().contains("--name"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

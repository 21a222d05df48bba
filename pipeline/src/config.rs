//! Run configuration: one TOML file per dataset, one section per stage.
//!
//! Parsing follows ripgrep's low/high split: serde reads the file into
//! [`Config`] with unknown keys denied, then [`Config::validate`] checks
//! ranges. Both happen before any stage runs, and every error names the file,
//! line and key path (with the nearest valid key for a typo).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A whole run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dataset name; also the name of the store ref that points at the build.
    pub name: String,
    /// Data directory that corpus paths are relative to. Overrides
    /// `TEXTGCN_DATA_DIR` when set; relative to the config file's directory.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Reading the corpus.
    pub ingest: IngestConfig,
    /// Cleaning and tokenizing.
    #[serde(default)]
    pub tokenize: TokenizeConfig,
    /// Vocabulary filter.
    #[serde(default)]
    pub vocab: VocabConfig,
    /// Graph construction.
    #[serde(default)]
    pub graph: GraphConfig,
    /// Train/validation/test splits.
    #[serde(default)]
    pub splits: SplitsConfig,
    /// Training (read by the trainer; validated here so typos fail early).
    #[serde(default)]
    pub train: TrainConfig,
    /// How a build runs (memory); changes no output, so never fingerprinted.
    #[serde(default)]
    pub build: BuildConfig,
}

/// `[build]`: how a build runs. Nothing here changes an output, so none of
/// it is part of a fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// Memory a build may use, e.g. `"4GiB"` or a number of bytes; what the
    /// graph's rows would take beyond it goes to spill files in the store.
    /// Default (none): half of the machine's memory (or of the cgroup's
    /// limit, when lower). `textgcn build --memory-limit` overrides it.
    #[serde(default)]
    pub memory_limit: Option<bytesize::ByteSize>,
    /// What computes the graph stage's counts (`textgcn build --engine`
    /// overrides it). Every engine publishes the same bytes, so this is not
    /// fingerprinted: a stage built by one engine is fresh for the others.
    #[serde(default)]
    pub engine: Engine,
    /// The Ballista scheduler the `ballista` engine submits to, e.g.
    /// `"df://10.0.0.5:50050"` (`textgcn build --cluster` overrides it).
    /// Its executors must see the store at the same path. Other engines
    /// ignore it.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// `build.engine`: what counts the graph's words, documents and pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// This crate's own code: the fast path for anything that fits one
    /// machine.
    #[default]
    Native,
    /// Apache DataFusion in this process: the counts as a query plan over a
    /// bounded memory pool that spills to the store's `tmp/` (needs the
    /// crate feature `datafusion`).
    Datafusion,
    /// The same plan on an Apache Ballista cluster (`build.cluster`): the
    /// executors of `textgcn-ballista` count, this process assembles (needs
    /// the crate feature `ballista`).
    Ballista,
}

impl Engine {
    /// The engine's name as the config, the flag and the provenance spell it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Datafusion => "datafusion",
            Engine::Ballista => "ballista",
        }
    }

    /// Whether this binary can run the engine (DataFusion and Ballista are
    /// crate features).
    pub fn available(self) -> bool {
        match self {
            Engine::Native => true,
            Engine::Datafusion => cfg!(feature = "datafusion"),
            Engine::Ballista => cfg!(feature = "ballista"),
        }
    }

    /// Why a binary built without the engine's feature refuses it.
    pub fn missing(self) -> String {
        let name = self.name();
        format!("\"{name}\" needs a textgcn built with the crate feature `{name}` (cargo build --release --features textgcn-pipeline/{name}, as `make test` does)")
    }
}

/// Checks a Ballista scheduler address (`df://host:port`); the message says
/// what is wrong, the caller says where.
pub fn check_cluster(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("df://").ok_or_else(|| format!("{url:?} is no Ballista scheduler address: give df://HOST:PORT, e.g. df://127.0.0.1:50050"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("{url:?} names no port: give df://HOST:PORT"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("{url:?} names no host: give df://HOST:PORT"));
    }
    port.parse::<u16>().map_err(|_| format!("{url:?}: the port {port:?} is not a number from 1 to 65535"))?;
    Ok(())
}

/// The smallest memory limit accepted (config key or flag).
pub const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// Checks a memory limit against [`MIN_MEMORY_LIMIT`]; the message says
/// what is wrong, the caller says where.
pub fn check_memory_limit(limit: bytesize::ByteSize) -> Result<(), String> {
    if limit.as_u64() < MIN_MEMORY_LIMIT {
        return Err(format!("{limit} is below 1 MiB; give a size such as \"2GiB\""));
    }
    Ok(())
}

impl BuildConfig {
    /// The memory limit in bytes: the configured one, else half of the
    /// memory this process may use.
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_limit.map_or_else(|| available_memory() / 2, |m| m.as_u64())
    }
}

/// The memory this process may use: the machine's (`MemTotal`), or its
/// cgroup's limit when that is lower (cgroup v2 `memory.max` or v1
/// `memory.limit_in_bytes`, of the cgroup `/proc/self/cgroup` names); 8 GiB
/// when neither can be read.
pub fn available_memory() -> u64 {
    let total = meminfo_bytes("MemTotal:");
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| cgroup_limit(&c, Path::new("/sys/fs/cgroup")));
    match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(t), None) => t,
        (None, Some(c)) => c,
        (None, None) => 8 << 30,
    }
}

/// A field of `/proc/meminfo` (`"MemTotal:"`, `"MemAvailable:"`), bytes;
/// `None` where the file cannot be read or has no such field.
pub fn meminfo_bytes(key: &str) -> Option<u64> {
    meminfo_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// The field `key` (with its colon) of `/proc/meminfo`'s text, in bytes
/// (the file gives kB).
fn meminfo_field(text: &str, key: &str) -> Option<u64> {
    let kb = text.lines().find_map(|l| l.strip_prefix(key))?.trim().strip_suffix("kB")?;
    kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Corpus file format. The same enum is the config's `ingest.format` and
/// `textgcn-train predict --format` (where the one-document-per-line
/// layout is called `text`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The original TextGCN layout: a corpus file (one document per line)
    /// and a meta file (`name<TAB>split<TAB>label`).
    #[value(name = "text", alias = "txt", alias = "textgcn")]
    Textgcn,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row (quoted like CSV).
    Tsv,
    /// A Parquet file (string, dictionary, integer or boolean columns).
    Parquet,
    /// Newline-delimited JSON, one object per document.
    #[value(alias = "jsonl")]
    Ndjson,
}

/// Text encoding of the corpus file (`ingest.encoding`, and
/// `--encoding` of `textgcn-train predict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Encoding {
    /// Strict UTF-8: an invalid byte is an error naming file, line and offset.
    #[serde(rename = "utf-8")]
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// Latin-1: every byte is a character; never fails (the reference).
    #[serde(rename = "latin-1")]
    #[value(name = "latin-1", alias = "latin1")]
    Latin1,
    /// UTF-8 with invalid bytes replaced by U+FFFD; replacements are counted.
    #[serde(rename = "utf-8-lossy")]
    #[value(name = "utf-8-lossy")]
    Utf8Lossy,
}

/// Where training runs (`train.device`, and `textgcn-train --device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU (the native kernels).
    Cpu,
    /// The first CUDA device; an error when libtorch sees none.
    Cuda,
    /// CUDA when libtorch sees a device, else the CPU.
    Auto,
}

/// `[ingest]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// File format.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Corpus file, relative to the data directory.
    pub corpus: PathBuf,
    /// Meta file (`textgcn` format), relative to the data directory.
    pub meta: Option<PathBuf>,
    /// Encoding of the corpus file.
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Keep documents that are blank in the raw corpus (default: error).
    #[serde(default)]
    pub keep_blank_documents: bool,
    /// Tabular formats: the column holding the text.
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Tabular formats: the column holding the label.
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// Tabular formats: the column holding `train`/`test` (values containing
    /// them); without it, documents are split at random by
    /// `splits.random_split`.
    #[serde(default)]
    pub split_column: Option<String>,
    /// Tabular formats: the column holding unique document names (default:
    /// `row-<n>`, 1-based).
    #[serde(default)]
    pub name_column: Option<String>,
    /// Inductive evaluation: keep the test documents out of every later
    /// stage (vocabulary, graph, training) and store them aside, so that the
    /// trainer classifies them as new documents. Needs a train/test split in
    /// the corpus.
    #[serde(default)]
    pub hold_out_test: bool,
    /// The longest document accepted, in bytes of the corpus file (default
    /// 64 MiB). A build holds a few copies of its longest document at once
    /// (raw, decoded, cleaned, encoded: about 7× in all), so this bounds
    /// the memory one document can take; a longer one is an error naming
    /// its line. Not part of the fingerprint: it changes no output.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
}

/// Tokenizer rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rules {
    /// The reference `clean_str` rules, exactly.
    Reference,
    /// A plain Unicode-aware word tokenizer (alphanumeric runs).
    Unicode,
    /// TextSGC's `clean_str`: characters other than ASCII letters, digits
    /// and spaces deleted, not split on (what its published results use).
    Textsgc,
}

/// `[tokenize]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// Which rules.
    #[serde(default = "default_rules")]
    pub rules: Rules,
    /// Lower-case tokens.
    #[serde(default = "yes")]
    pub lowercase: bool,
}

/// `[vocab]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabConfig {
    /// Drop words with fewer occurrences than this (corpus-wide).
    #[serde(default = "default_min_freq")]
    pub min_freq: u64,
    /// `"nltk-english"` (built in), `"none"`, or a file of one word per line
    /// (relative to the data directory).
    #[serde(default = "default_stopwords")]
    pub stopwords: String,
    /// Keep at most this many words (the most frequent).
    #[serde(default)]
    pub max_size: Option<usize>,
}

/// How word co-occurrence is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cooccurrence {
    /// The reference code: every pair of positions in a window counts.
    PositionPairs,
    /// The paper: the number of windows containing both words.
    Windows,
}

/// `[graph]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// Sliding window size.
    #[serde(default = "default_window")]
    pub window_size: usize,
    /// Co-occurrence counting semantics.
    #[serde(default = "default_cooc")]
    pub cooccurrence: Cooccurrence,
}

/// `[splits]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitsConfig {
    /// Seed of the shuffles.
    #[serde(default)]
    pub seed: u64,
    /// Fraction of the training documents held out for validation.
    #[serde(default = "default_val")]
    pub val_fraction: f64,
    /// Train/validation/test fractions for corpora without a split column.
    #[serde(default = "default_random_split")]
    pub random_split: [f64; 3],
}

/// `[train]`: which model, and its settings. The top-level keys other than
/// `model`, `seed` and `device` are the GCN's (the default model); the
/// other models' settings live in their own tables (`[train.sgc]`,
/// `[train.ssgc]`, `[train.tfidf_lr]`), so one config can carry all of
/// them and `--model` picks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model trained on the graph.
    #[serde(default)]
    pub model: ModelKind,
    /// Hidden layer size.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Dropout on the hidden layer.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Adam learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// L2 weight decay on the first layer's weights.
    #[serde(default)]
    pub weight_decay: f64,
    /// Maximum epochs.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Early-stopping window (0 disables).
    #[serde(default = "default_early")]
    pub early_stopping: usize,
    /// Seed of the initialisation and dropout.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    #[serde(default = "default_device")]
    pub device: DeviceChoice,
    /// `[train.sgc]`: used when `model = "sgc"`.
    #[serde(default)]
    pub sgc: SgcConfig,
    /// `[train.ssgc]`: used when `model = "ssgc"`.
    #[serde(default)]
    pub ssgc: SsgcConfig,
    /// `[train.tfidf_lr]`: used when `model = "tfidf-lr"`.
    #[serde(default)]
    pub tfidf_lr: TfidfLrConfig,
    /// Multi-label training: each document's label is a set, written in
    /// its label field joined by `label_separator`; sigmoid outputs with
    /// binary cross-entropy, a decision threshold chosen on validation.
    #[serde(default)]
    pub multi_label: bool,
    /// What separates the labels of one document's label field (read only
    /// with `multi_label = true`; the labels are trimmed of white space).
    #[serde(default = "default_label_separator")]
    pub label_separator: String,
}

fn default_label_separator() -> String {
    ",".into()
}

/// The models a graph can be trained with (`train.model`, `--model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The 2-layer featureless TextGCN (Yao et al. 2019).
    #[default]
    Gcn,
    /// Simple graph convolution (Wu et al. 2019, the TextSGC setting): a
    /// linear classifier on the document rows of `Â^k`.
    Sgc,
    /// Simple spectral graph convolution (Zhu & Koniusz 2021): a linear
    /// classifier on the document rows of `(1-α)/K Σ_{k=1..K} Â^k + α I`.
    Ssgc,
    /// Logistic regression on the documents' TF-IDF vectors (the TextGCN
    /// paper's TF-IDF + LR baseline), no graph propagation.
    #[serde(rename = "tfidf-lr")]
    #[value(name = "tfidf-lr")]
    TfidfLr,
}

impl ModelKind {
    /// The name as in configs and metrics (`gcn`, `sgc`, `ssgc`, `tfidf-lr`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Gcn => "gcn",
            ModelKind::Sgc => "sgc",
            ModelKind::Ssgc => "ssgc",
            ModelKind::TfidfLr => "tfidf-lr",
        }
    }

    /// The config table of the model's own settings (`None` for the GCN,
    /// whose settings are `[train]`'s top-level keys).
    pub fn table(self) -> Option<&'static str> {
        match self {
            ModelKind::Gcn => None,
            ModelKind::Sgc => Some("train.sgc"),
            ModelKind::Ssgc => Some("train.ssgc"),
            ModelKind::TfidfLr => Some("train.tfidf_lr"),
        }
    }
}

/// The longest propagation `k` accepted for SGC and SSGC.
pub const MAX_PROPAGATION: usize = 64;

/// The `[train]` keys that are the GCN's own: refused beside another
/// `model` in the same file (they would do nothing).
pub const GCN_KEYS: [&str; 6] = ["hidden", "dropout", "learning_rate", "weight_decay", "epochs", "early_stopping"];

/// How the propagated features of SGC/SSGC are scaled before the linear
/// layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureScale {
    /// TextSGC's: each feature column minus its minimum over the training
    /// documents, divided by its range there; columns constant on the
    /// training documents are dropped.
    #[default]
    MinMax,
    /// Each feature column divided by its mean over the training
    /// documents (columns that are 0 there dropped): exact for any `k`, at
    /// the cost of `k` sparse products with one column.
    Mean,
    /// The propagated values as they are (tiny: L-BFGS barely moves).
    None,
}

/// `[train.sgc]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgcConfig {
    /// Propagation steps `k` of `Â^k`.
    #[serde(default = "default_sgc_k")]
    pub k: usize,
    /// L2 penalty `½·λ·‖W‖²` added to the mean cross-entropy.
    #[serde(default = "default_linear_wd")]
    pub weight_decay: f64,
    /// L-BFGS iterations (one loss and gradient evaluation each).
    #[serde(default = "default_linear_iterations")]
    pub iterations: usize,
    /// Feature scaling.
    #[serde(default)]
    pub scale: FeatureScale,
}

/// `[train.ssgc]`: features `α·I + (1-α)·mean_{k=first_power..K} Â^k`.
/// The paper's form has `first_power = 1`; TextS²GC's code, which its
/// published text results come from, averages `Â^2..Â^K` without the
/// identity (`first_power = 2`, `α = 0`, the defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsgcConfig {
    /// The last power `K` averaged.
    #[serde(default = "default_ssgc_k")]
    pub k: usize,
    /// The first power averaged (1 or more, at most `k`).
    #[serde(default = "default_ssgc_first")]
    pub first_power: usize,
    /// Restart weight `α` of the identity term.
    #[serde(default)]
    pub alpha: f64,
    /// L2 penalty `½·λ·‖W‖²` added to the mean cross-entropy.
    #[serde(default = "default_linear_wd")]
    pub weight_decay: f64,
    /// L-BFGS iterations (one loss and gradient evaluation each).
    #[serde(default = "default_linear_iterations")]
    pub iterations: usize,
    /// Feature scaling.
    #[serde(default)]
    pub scale: FeatureScale,
}

/// `[train.tfidf_lr]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TfidfLrConfig {
    /// L2 penalty `½·λ·‖W‖²` (the bias is not penalised).
    #[serde(default = "default_tfidf_wd")]
    pub weight_decay: f64,
    /// L-BFGS iterations (one loss and gradient evaluation each).
    #[serde(default = "default_tfidf_iterations")]
    pub iterations: usize,
}

fn default_format() -> Format {
    Format::Textgcn
}
fn default_max_document_bytes() -> u64 {
    64 << 20
}
fn default_text_column() -> String {
    "text".into()
}
fn default_label_column() -> String {
    "label".into()
}
fn default_encoding() -> Encoding {
    Encoding::Latin1
}
fn default_rules() -> Rules {
    Rules::Reference
}
fn yes() -> bool {
    true
}
fn default_min_freq() -> u64 {
    5
}
fn default_stopwords() -> String {
    "nltk-english".into()
}
fn default_window() -> usize {
    20
}
fn default_cooc() -> Cooccurrence {
    Cooccurrence::PositionPairs
}
fn default_val() -> f64 {
    0.1
}
fn default_random_split() -> [f64; 3] {
    [0.8, 0.1, 0.1]
}
fn default_hidden() -> usize {
    200
}
fn default_dropout() -> f64 {
    0.5
}
fn default_lr() -> f64 {
    0.02
}
fn default_epochs() -> usize {
    200
}
fn default_early() -> usize {
    10
}
fn default_device() -> DeviceChoice {
    DeviceChoice::Auto
}
fn default_sgc_k() -> usize {
    2
}
fn default_ssgc_k() -> usize {
    5
}
fn default_ssgc_first() -> usize {
    2
}
fn default_linear_wd() -> f64 {
    1e-3
}
fn default_linear_iterations() -> usize {
    60
}
fn default_tfidf_wd() -> f64 {
    1e-4
}
fn default_tfidf_iterations() -> usize {
    100
}
impl Default for SgcConfig {
    fn default() -> Self {
        SgcConfig { k: default_sgc_k(), weight_decay: default_linear_wd(), iterations: default_linear_iterations(), scale: FeatureScale::MinMax }
    }
}
impl Default for SsgcConfig {
    fn default() -> Self {
        SsgcConfig { k: default_ssgc_k(), first_power: default_ssgc_first(), alpha: 0.0, weight_decay: default_linear_wd(), iterations: default_linear_iterations(), scale: FeatureScale::MinMax }
    }
}
impl Default for TfidfLrConfig {
    fn default() -> Self {
        TfidfLrConfig { weight_decay: default_tfidf_wd(), iterations: default_tfidf_iterations() }
    }
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig { rules: default_rules(), lowercase: true }
    }
}
impl Default for VocabConfig {
    fn default() -> Self {
        VocabConfig { min_freq: default_min_freq(), stopwords: default_stopwords(), max_size: None }
    }
}
impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig { window_size: default_window(), cooccurrence: default_cooc() }
    }
}
impl Default for SplitsConfig {
    fn default() -> Self {
        SplitsConfig { seed: 0, val_fraction: default_val(), random_split: default_random_split() }
    }
}
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: default_hidden(),
            dropout: default_dropout(),
            learning_rate: default_lr(),
            weight_decay: 0.0,
            epochs: default_epochs(),
            early_stopping: default_early(),
            seed: 0,
            device: default_device(),
            model: ModelKind::Gcn,
            sgc: SgcConfig::default(),
            ssgc: SsgcConfig::default(),
            tfidf_lr: TfidfLrConfig::default(),
            multi_label: false,
            label_separator: default_label_separator(),
        }
    }
}

/// A config error: where and what.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the key path.
    pub message: String,
}

/// A validated config plus where it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The config.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
    /// The resolved data directory.
    pub data_dir: PathBuf,
    /// Data files that were not found, by config key (`ingest.corpus`,
    /// `ingest.meta`, `vocab.stopwords`). Always empty from [`load`]; from
    /// [`load_for_artifacts`], freshness checks take these files' hashes
    /// from the built ref instead of reading them.
    pub missing: Vec<(&'static str, PathBuf)>,
}

impl LoadedConfig {
    /// Resolves a path relative to the data directory.
    pub fn data_path(&self, rel: &Path) -> PathBuf {
        self.data_dir.join(rel)
    }
}

/// Reads, parses and validates a config file, resolving the data directory
/// (config `data_dir`, else `TEXTGCN_DATA_DIR`, else `data/`).
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let loaded = load_for_artifacts(path)?;
    loaded.require_files()?;
    Ok(loaded)
}

/// Like [`load`], for commands that read artifacts already built (training,
/// prediction): a data file that is not there is listed in
/// [`LoadedConfig::missing`] rather than refused, so a store copied to
/// another machine without the corpora can still be used. Every parameter
/// is checked as strictly as by [`load`].
pub fn load_for_artifacts(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError { path: path.into(), line: None, message: format!("cannot read config: {e}") })?;
    let config = parse(&text, path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let data_dir = match &config.data_dir {
        Some(d) => base.join(d),
        None => std::env::var_os("TEXTGCN_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
    };
    let mut loaded = LoadedConfig { config, path: path.into(), data_dir, missing: Vec::new() };
    for (key, rel) in loaded.data_files() {
        let p = loaded.data_path(&rel);
        match std::fs::metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => loaded.missing.push((key, p)),
            Err(e) => return Err(ConfigError { path: path.into(), line: None, message: format!("key `{key}`: cannot examine {}: {e}", p.display()) }),
            Ok(m) => {
                if let Some(what) = not_a_file(&m) {
                    return Err(ConfigError { path: path.into(), line: None, message: format!("key `{key}`: {} is {what}, not a regular file", p.display()) });
                }
            }
        }
    }
    Ok(loaded)
}

/// What a path is when it is not a regular file ("a directory", "a FIFO
/// (named pipe)", ...), for messages; `None` for a regular file.
pub fn not_a_file(m: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

/// Parses and validates config text (`path` only names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let key = e.span().map(|s| key_path_at(text, s.start)).unwrap_or_default();
        let mut message = e.message().trim().to_owned();
        if let Some(hint) = did_you_mean(&message) {
            message.push_str(&format!("; did you mean `{hint}`?"));
        }
        let message = if key.is_empty() { message } else { format!("key `{key}`: {message}") };
        ConfigError { path: path.into(), line, message }
    })?;
    config.validate().map_err(|(key, msg)| ConfigError { path: path.into(), line: find_key_line(text, &key), message: format!("key `{key}`: {msg}") })?;
    check_model_keys(&config, text).map_err(|(key, msg)| ConfigError { path: path.into(), line: find_key_line(text, &key), message: format!("key `{key}`: {msg}") })?;
    Ok(config)
}

/// Refuses the GCN's own `[train]` keys ([`GCN_KEYS`]) in a file that
/// sets `train.model` to another model: they would do nothing, and the
/// user most likely meant that model's table. (Other models' tables may
/// stay in any config: `--model` picks which one applies.) Likewise
/// `train.label_separator` without `train.multi_label = true`.
fn check_model_keys(config: &Config, text: &str) -> Result<(), (String, String)> {
    let model = config.train.model;
    let raw: toml::Table = toml::from_str(text).map_err(|e| ("train".to_owned(), e.message().to_owned()))?;
    let Some(train) = raw.get("train").and_then(|t| t.as_table()) else { return Ok(()) };
    if !config.train.multi_label && train.contains_key("label_separator") {
        return Err(("train.label_separator".to_owned(), "is read only for multi-label training; set `train.multi_label = true` too (see docs/config.md)".to_owned()));
    }
    let Some(table) = model.table() else { return Ok(()) };
    match GCN_KEYS.iter().find(|k| train.contains_key(**k)) {
        Some(k) => Err((
            format!("train.{k}"),
            format!("a setting of the gcn model, but `train.model` is \"{}\" here; its settings are in [{table}] (see docs/config.md)", model.as_str()),
        )),
        None => Ok(()),
    }
}

/// The memory limit of the cgroup that `proc_self_cgroup` (the text of
/// `/proc/self/cgroup`) names, under the cgroup file system at `root`:
/// v1's `memory` hierarchy, else v2's unified one. `None` without a limit
/// ("max", or v1's huge "unlimited" value) or when nothing can be read.
fn cgroup_limit(proc_self_cgroup: &str, root: &Path) -> Option<u64> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let rel = |p: &str| p.trim_start_matches('/').to_owned();
    let mut found = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if controllers.split(',').any(|c| c == "memory") {
            found = read(root.join("memory").join(rel(path)).join("memory.limit_in_bytes"));
        } else if controllers.is_empty() && found.is_none() {
            found = read(root.join(rel(path)).join("memory.max")).or_else(|| read(root.join("unified").join(rel(path)).join("memory.max")));
        }
    }
    // v1 says "no limit" with a value near 2^63.
    found.filter(|&l| l < 1 << 62)
}

impl Config {
    /// Range and consistency checks; returns the offending key path.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_owned(), m));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || self.name.starts_with('.') {
            return err("name", format!("{:?} must be letters, digits, '-', '_' or '.'", self.name));
        }
        if self.ingest.format == Format::Textgcn && self.ingest.meta.is_none() {
            return err("ingest.meta", "the textgcn format needs a meta file".into());
        }
        if self.ingest.format != Format::Textgcn && self.ingest.meta.is_some() {
            return err("ingest.meta", format!("only the textgcn format has a meta file; {:?} files name their columns (text_column, label_column, split_column)", self.ingest.format).to_lowercase());
        }
        if self.ingest.hold_out_test && self.ingest.format != Format::Textgcn && self.ingest.split_column.is_none() {
            return err("ingest.hold_out_test", "needs a train/test split in the corpus: a meta file or `split_column`".into());
        }
        if self.ingest.max_document_bytes == 0 {
            return err("ingest.max_document_bytes", "must be at least 1".into());
        }
        if let Some(Err(m)) = self.build.memory_limit.map(check_memory_limit) {
            return err("build.memory_limit", m);
        }
        if !self.build.engine.available() {
            return err("build.engine", self.build.engine.missing());
        }
        if let Some(Err(m)) = self.build.cluster.as_deref().map(check_cluster) {
            return err("build.cluster", m);
        }
        if self.build.engine == Engine::Ballista && self.build.cluster.is_none() {
            return err("build.cluster", "the ballista engine needs its scheduler's address, e.g. cluster = \"df://127.0.0.1:50050\" (or textgcn build --cluster)".into());
        }
        if self.vocab.min_freq == 0 {
            return err("vocab.min_freq", "must be at least 1 (1 keeps every word)".into());
        }
        if self.vocab.max_size == Some(0) {
            return err("vocab.max_size", "must be at least 1".into());
        }
        if self.graph.window_size == 0 {
            return err("graph.window_size", "must be at least 1".into());
        }
        let v = self.splits.val_fraction;
        if !(0.0..1.0).contains(&v) {
            return err("splits.val_fraction", format!("{v} is out of range [0, 1)"));
        }
        let r = self.splits.random_split;
        if r.iter().any(|x| !(0.0..=1.0).contains(x)) || (r.iter().sum::<f64>() - 1.0).abs() > 1e-9 || r[0] == 0.0 {
            return err("splits.random_split", format!("{r:?} must be three fractions in [0, 1] summing to 1, with a non-zero train part"));
        }
        let t = &self.train;
        if t.hidden == 0 {
            return err("train.hidden", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&t.dropout) {
            return err("train.dropout", format!("{} is out of range [0, 1)", t.dropout));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            return err("train.learning_rate", format!("{} must be positive", t.learning_rate));
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return err("train.weight_decay", format!("{} must be non-negative", t.weight_decay));
        }
        if t.epochs == 0 {
            return err("train.epochs", "must be at least 1".into());
        }
        let linear = [("train.sgc", t.sgc.weight_decay, t.sgc.iterations), ("train.ssgc", t.ssgc.weight_decay, t.ssgc.iterations), ("train.tfidf_lr", t.tfidf_lr.weight_decay, t.tfidf_lr.iterations)];
        for (table, wd, iterations) in linear {
            if !(wd >= 0.0 && wd.is_finite()) {
                return err(&format!("{table}.weight_decay"), format!("{wd} must be non-negative"));
            }
            if iterations == 0 {
                return err(&format!("{table}.iterations"), "must be at least 1".into());
            }
        }
        for (table, k) in [("train.sgc", t.sgc.k), ("train.ssgc", t.ssgc.k)] {
            if k == 0 {
                return err(&format!("{table}.k"), "must be at least 1".into());
            }
            if k > MAX_PROPAGATION {
                return err(&format!("{table}.k"), format!("{k} is more than {MAX_PROPAGATION} propagation steps"));
            }
        }
        if t.ssgc.first_power == 0 || t.ssgc.first_power > t.ssgc.k {
            return err("train.ssgc.first_power", format!("{} must be in [1, k = {}]", t.ssgc.first_power, t.ssgc.k));
        }
        if !(0.0..1.0).contains(&t.ssgc.alpha) {
            return err("train.ssgc.alpha", format!("{} is out of range [0, 1)", t.ssgc.alpha));
        }
        if t.label_separator.is_empty() || t.label_separator.contains(['\n', '\r']) {
            return err("train.label_separator", format!("{:?} must be a non-empty string without line breaks", t.label_separator));
        }
        Ok(())
    }
}

impl LoadedConfig {
    /// The data files the config names, by key, relative to the data
    /// directory.
    fn data_files(&self) -> Vec<(&'static str, PathBuf)> {
        let ing = &self.config.ingest;
        let mut files = vec![("ingest.corpus", ing.corpus.clone())];
        if let Some(m) = &ing.meta {
            files.push(("ingest.meta", m.clone()));
        }
        let sw = &self.config.vocab.stopwords;
        if sw != "nltk-english" && sw != "none" {
            files.push(("vocab.stopwords", PathBuf::from(sw)));
        }
        files
    }

    /// Refuses a config with a data file [`missing`](Self::missing), naming
    /// the key and the path (what [`load`] checks; a build needs them all).
    pub fn require_files(&self) -> Result<(), ConfigError> {
        match self.missing.first() {
            Some((key, p)) => Err(ConfigError {
                path: self.path.clone(),
                line: None,
                message: format!("key `{key}`: file {} not found (data directory {}; set TEXTGCN_DATA_DIR or `data_dir`)", p.display(), self.data_dir.display()),
            }),
            None => Ok(()),
        }
    }
}

/// The dotted key path at a byte offset: the enclosing `[table]` plus the
/// key on that line.
fn key_path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if l.starts_with('[') && l.ends_with(']') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    if line.starts_with('[') {
        return line.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    let key = line.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key.to_owned(),
        (false, false) => format!("{table}.{key}"),
    }
}

fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t, l),
        None => ("", key),
    };
    let mut cur = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') && t.ends_with(']') {
            cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        } else if cur == table && t.split('=').next().map(str::trim) == Some(leaf) {
            return Some(i + 1);
        }
    }
    None
}

/// From a serde message "unknown field `x`, expected one of `a`, `b`" (or
/// "unknown variant"), the closest expected name.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (bad, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(bad, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal:       24104284 kB\nMemFree:          812340 kB\nMemAvailable:   18270012 kB\nHugePages_Total:       0\nSwapFree:              0 kB\n";
        assert_eq!(meminfo_field(text, "MemTotal:"), Some(24104284 * 1024));
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(18270012 * 1024));
        assert_eq!(meminfo_field(text, "SwapFree:"), Some(0));
        // Absent, or not in kB: none.
        assert_eq!(meminfo_field(text, "Shmem:"), None);
        assert_eq!(meminfo_field(text, "HugePages_Total:"), None);
        assert_eq!(meminfo_field("MemTotal: lots kB\n", "MemTotal:"), None);
        // The machine's own file has the fields the builds and the trainer read.
        for key in ["MemTotal:", "MemAvailable:", "SwapFree:"] {
            assert!(meminfo_bytes(key).is_some(), "{key}");
        }
    }

    const GOOD: &str = "name = \"R8\"\n[ingest]\ncorpus = \"R8/R8.txt\"\nmeta = \"R8/R8.meta.txt\"\n[graph]\nwindow_size = 20\n";

    fn err(text: &str) -> String {
        parse(text, Path::new("c.toml")).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_reference() {
        let c = parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(c.vocab.min_freq, 5);
        assert_eq!(c.graph.window_size, 20);
        assert_eq!(c.tokenize.rules, Rules::Reference);
        assert_eq!(c.ingest.encoding, Encoding::Latin1);
        assert_eq!(c.train.hidden, 200);
        assert_eq!(c.train.learning_rate, 0.02);
    }

    #[test]
    fn model_settings_are_checked_against_the_model() {
        // A gcn key beside another model in the same file does nothing: refused.
        let e = err(&format!("{GOOD}[train]\nmodel = \"sgc\"\nhidden = 64\n"));
        assert!(e.starts_with("c.toml:9: key `train.hidden`: a setting of the gcn model, but `train.model` is \"sgc\""), "{e}");
        assert!(e.contains("[train.sgc]"), "{e}");
        // Other models' tables may stay in a gcn config (`--model` picks).
        let c = parse(&format!("{GOOD}[train]\nhidden = 64\n[train.sgc]\nk = 1\nweight_decay = 0.5\n"), Path::new("c.toml")).unwrap();
        assert_eq!((c.train.model, c.train.hidden, c.train.sgc.k, c.train.sgc.weight_decay), (ModelKind::Gcn, 64, 1, 0.5));
        let c = parse(&format!("{GOOD}[train]\nmodel = \"tfidf-lr\"\nseed = 3\n[train.tfidf_lr]\niterations = 7\n"), Path::new("c.toml")).unwrap();
        assert_eq!((c.train.model, c.train.seed, c.train.tfidf_lr.iterations), (ModelKind::TfidfLr, 3, 7));
        // A key the model's table does not have.
        let e = err(&format!("{GOOD}[train]\nmodel = \"sgc\"\n[train.sgc]\nalpha = 0.1\n"));
        assert!(e.starts_with("c.toml:10: key `train.sgc.alpha`: unknown field `alpha`"), "{e}");
        let e = err(&format!("{GOOD}[train]\nmodel = \"ssgc\"\n[train.ssgc]\nk = 65\n"));
        assert!(e.starts_with("c.toml:10: key `train.ssgc.k`: 65 is more than 64 propagation steps"), "{e}");
        let c = parse(&format!("{GOOD}[train.ssgc]\nk = 4\nscale = \"mean\"\nalpha = 0.1\n"), Path::new("c.toml")).unwrap();
        assert_eq!((c.train.ssgc.k, c.train.ssgc.scale, c.train.ssgc.alpha), (4, FeatureScale::Mean, 0.1));
        let e = err(&format!("{GOOD}[train.ssgc]\nalpha = 1.0\n"));
        assert!(e.starts_with("c.toml:8: key `train.ssgc.alpha`: 1 is out of range [0, 1)"), "{e}");
        let e = err(&format!("{GOOD}[train]\nmodel = \"tfidf_lr\"\n"));
        assert!(e.contains("key `train.model`") && e.contains("did you mean `tfidf-lr`?"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_line_and_suggestion() {
        let e = err(&GOOD.replace("window_size = 20", "windw_size = 20"));
        assert!(e.starts_with("c.toml:6: key `graph.windw_size`"), "{e}");
        assert!(e.contains("did you mean `window_size`?"), "{e}");
    }

    #[test]
    fn reference_doc_matches_the_structs() {
        fn flatten(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
            match v.as_object() {
                Some(m) => m.iter().for_each(|(k, x)| flatten(x, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out)),
                None => drop(out.insert(prefix.to_owned(), v.clone())),
            }
        }
        fn render(v: &serde_json::Value) -> String {
            match v {
                serde_json::Value::Null => "none".into(),
                serde_json::Value::String(s) => format!("\"{s}\""),
                serde_json::Value::Array(a) => format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(", ")),
                serde_json::Value::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap()),
                other => other.to_string(),
            }
        }
        let doc = include_str!("../../docs/config.md");
        let rows: std::collections::BTreeMap<String, String> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells.len() >= 5 && cells[1].starts_with('`')).then(|| (cells[1].trim_matches('`').to_owned(), cells[3].trim_matches('`').to_owned()))
            })
            .collect();
        // Every key at its default: only the required ones are given.
        let c: Config = toml::from_str("name = \"x\"\n[ingest]\ncorpus = \"c.txt\"\n").unwrap();
        let mut keys = std::collections::BTreeMap::new();
        flatten(&serde_json::to_value(&c).unwrap(), "", &mut keys);
        assert_eq!(rows.keys().collect::<Vec<_>>(), keys.keys().collect::<Vec<_>>(), "docs/config.md lists other keys than the structs have");
        for (k, v) in &keys {
            let want = &rows[k];
            if want != "required" {
                assert_eq!(&render(v), want, "docs/config.md: default of `{k}`");
            }
        }
    }

    #[test]
    fn the_cgroup_memory_limit_is_read_for_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/jobs/a");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "3221225472\n").unwrap();
        let v2 = root.path().join("jobs/b");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        let unlimited = root.path().join("memory/free");
        std::fs::create_dir_all(&unlimited).unwrap();
        std::fs::write(unlimited.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(root.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit("4:memory:/jobs/a\n1:cpu:/\n0::/\n", root.path()), Some(3 << 30));
        assert_eq!(cgroup_limit("0::/jobs/b\n", root.path()), Some(1 << 30));
        assert_eq!(cgroup_limit("4:memory:/free\n0::/\n", root.path()), None);
        assert_eq!(cgroup_limit("0::/\n", root.path()), None);
        assert_eq!(cgroup_limit("", root.path()), None);
    }

    #[test]
    fn holding_out_test_documents_needs_a_split() {
        let tab = "name = \"t\"\n[ingest]\nformat = \"csv\"\ncorpus = \"t.csv\"\nhold_out_test = true\n";
        let e = err(tab);
        assert!(e.contains("ingest.hold_out_test") && e.contains("needs a train/test split"), "{e}");
        assert!(parse(&tab.replace("hold_out_test", "split_column = \"s\"\nhold_out_test"), Path::new("c.toml")).unwrap().ingest.hold_out_test);
        assert!(parse(&GOOD.replace("[graph]", "hold_out_test = true\n[graph]"), Path::new("c.toml")).unwrap().ingest.hold_out_test);
    }

    #[test]
    fn wrong_type_and_range_and_enum() {
        let e = err(&GOOD.replace("window_size = 20", "window_size = \"20\""));
        assert!(e.contains("graph.window_size") && e.contains(":6"), "{e}");
        let e = err(&GOOD.replace("window_size = 20", "window_size = 0"));
        assert_eq!(e, "c.toml:6: key `graph.window_size`: must be at least 1");
        let e = err(&format!("{GOOD}[vocab]\nmin_freq = -1\n"));
        assert!(e.contains("vocab.min_freq"), "{e}");
        let e = err(&format!("{GOOD}[splits]\nval_fraction = 1.0\n"));
        assert!(e.contains("splits.val_fraction") && e.contains("out of range"), "{e}");
        let e = err(&format!("{GOOD}[tokenize]\nrules = \"referense\"\n"));
        assert!(e.contains("tokenize.rules") && e.contains("did you mean `reference`?"), "{e}");
    }
}

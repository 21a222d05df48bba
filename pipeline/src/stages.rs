//! The five stages and the build/status logic over the store.
//!
//! Each stage is planned first ([`Plan`]: name, code version, canonical
//! params, input hashes) and built only when the store has no record of that
//! fingerprint. The plan is all that `status` needs; `build` adds the work.
//! Why a stage reruns is found by comparing its plan with the record that
//! the config's ref pointed at before (like cargo's `DirtyReason`).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use arrow_array::Array;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use textgcn_artifacts::{Built, EdgeAttr, EdgeIndex, ObjectId, ObjectKind, Outcome, RecordState, Ref, RefStage, RowPtr, StageRecord, Store, StoreError, hash_bytes};

use crate::config::{LoadedConfig, Rules};
use crate::ingest::{self, IngestError};
use crate::{clean, graph, splits, tables, vocab};

/// Stage names, in order.
pub const STAGES: [&str; 5] = ["ingest", "tokenize", "vocab", "graph", "splits"];

/// Code versions: bump one when that stage's output for the same inputs
/// changes, so old records stop matching.
const VERSIONS: [u32; 5] = [1, 1, 1, 2, 1];

/// The outputs of each stage (in [`STAGES`] order): name, kind, and
/// whether every record of the stage has it.
const OUTPUTS: [&[(&str, ObjectKind, bool)]; 5] = [
    &[("documents", ObjectKind::Table, true), ("held_out", ObjectKind::Table, false)],
    &[("tokens", ObjectKind::Table, true)],
    &[("vocab", ObjectKind::Table, true), ("doc_tokens", ObjectKind::Table, true)],
    &[("nodes", ObjectKind::Table, true), ("labels", ObjectKind::Table, true), ("row_ptr", ObjectKind::RowPtr, true), ("edge_attr", ObjectKind::EdgeAttr, true), ("edge_index", ObjectKind::EdgeIndex, true)],
    &[("splits", ObjectKind::Table, true)],
];

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The corpus is malformed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The config cannot be built (a data file is missing).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Every token was filtered away.
    #[error("empty vocabulary: every token of the corpus was removed by the filters (min_freq = {min_freq}, stopwords = {stopwords:?})")]
    EmptyVocabulary {
        /// The frequency threshold.
        min_freq: u64,
        /// The stop-word setting.
        stopwords: String,
    },
    /// Another problem, described.
    #[error("{0}")]
    Other(String),
}

/// One stage's fingerprint inputs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stage name.
    pub stage: &'static str,
    /// Code version.
    pub version: u32,
    /// Canonical params.
    pub params: Value,
    /// Input name -> content hash.
    pub inputs: BTreeMap<String, String>,
}

impl Plan {
    /// The stage fingerprint.
    pub fn fingerprint(&self) -> String {
        textgcn_artifacts::fingerprint(self.stage, self.version, &self.params, &self.inputs)
    }
}

/// What happened to one stage in a build.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// [`StageState::Fresh`] or [`StageState::Rebuilt`].
    pub status: StageState,
    /// Why it reran (or why it was fresh from the cache).
    pub why: Option<String>,
    /// Wall seconds spent on the stage (planning included).
    pub seconds: f64,
    /// Output name -> (object id, bytes).
    pub outputs: BTreeMap<String, (String, u64)>,
    /// The stage's summary facts.
    pub summary: Value,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// A build's report.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The ref that now points at this build.
    pub name: String,
    /// Per stage, in order.
    pub stages: Vec<StageReport>,
    /// Total wall seconds.
    pub seconds: f64,
}

fn stopword_list(cfg: &LoadedConfig) -> Result<Vec<String>, PipelineError> {
    let sw = &cfg.config.vocab.stopwords;
    let mut v: Vec<String> = match sw.as_str() {
        "nltk-english" => clean::nltk_english().into_iter().map(str::to_owned).collect(),
        "none" => Vec::new(),
        path => {
            let p = cfg.data_path(path.as_ref());
            let text = std::fs::read_to_string(&p).map_err(|e| PipelineError::Other(format!("{}: cannot read stop words: {e}", p.display())))?;
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
        }
    };
    v.sort();
    v.dedup();
    Ok(v)
}

fn file_hash(path: &std::path::Path) -> Result<(String, Vec<u8>), PipelineError> {
    let bytes = std::fs::read(path).map_err(|source| IngestError::Io { path: path.into(), source })?;
    Ok((hash_bytes(&bytes).to_hex().to_string(), bytes))
}

/// The content hash of the data file under config key `key`. A file the
/// config marks missing ([`LoadedConfig::missing`]) is taken to be the one
/// the built ref read: its hash comes from that ref's `stage` record.
fn data_file_hash(cfg: &LoadedConfig, key: &str, old: &BTreeMap<String, StageRecord>, stage: &str, input: &str, hash: impl FnOnce() -> Result<String, PipelineError>) -> Result<String, PipelineError> {
    let Some((_, path)) = cfg.missing.iter().find(|(k, _)| *k == key) else {
        return hash();
    };
    old.get(stage).and_then(|r| r.inputs.get(input)).cloned().ok_or_else(|| {
        PipelineError::Other(format!("{}: key `{key}`: file {} not found, and no build of {} in the store read it; set TEXTGCN_DATA_DIR or `data_dir`", cfg.path.display(), path.display(), cfg.config.name))
    })
}

fn plan_ingest(cfg: &LoadedConfig, old: &BTreeMap<String, StageRecord>) -> Result<Plan, PipelineError> {
    let c = &cfg.config.ingest;
    let mut inputs = BTreeMap::new();
    inputs.insert("corpus".to_owned(), data_file_hash(cfg, "ingest.corpus", old, "ingest", "corpus", || Ok(file_hash(&cfg.data_path(&c.corpus))?.0))?);
    if let Some(m) = &c.meta {
        inputs.insert("meta".to_owned(), data_file_hash(cfg, "ingest.meta", old, "ingest", "meta", || Ok(file_hash(&cfg.data_path(m))?.0))?);
    }
    let mut params = json!({"format": c.format, "encoding": c.encoding, "keep_blank_documents": c.keep_blank_documents});
    if c.hold_out_test {
        params["hold_out_test"] = json!(true);
    }
    if c.format != crate::config::Format::Textgcn {
        params["columns"] = json!({"text": c.text_column, "label": c.label_column, "split": c.split_column, "name": c.name_column});
    }
    Ok(Plan { stage: "ingest", version: VERSIONS[0], params, inputs })
}

/// The plan of stage `idx`, given the records of the stages before it
/// (`prev`) and the config's previous build (`old`, consulted only for data
/// files that are missing).
fn plan_for(idx: usize, cfg: &LoadedConfig, prev: &[StageRecord], old: &BTreeMap<String, StageRecord>) -> Result<Plan, PipelineError> {
    let c = &cfg.config;
    let out = |stage: usize, name: &str| -> Result<(String, String), PipelineError> { Ok((format!("{}.{name}", STAGES[stage]), stage_output(prev, stage, name)?.to_string())) };
    Ok(match idx {
        0 => plan_ingest(cfg, old)?,
        1 => Plan { stage: "tokenize", version: VERSIONS[1], params: json!({"rules": c.tokenize.rules, "lowercase": c.tokenize.lowercase}), inputs: [out(0, "documents")?].into() },
        2 => {
            let sw_hash = data_file_hash(cfg, "vocab.stopwords", old, "vocab", "stopwords", || Ok(blake3::hash(stopword_list(cfg)?.join("\n").as_bytes()).to_hex().to_string()))?;
            Plan {
                stage: "vocab",
                version: VERSIONS[2],
                params: json!({"min_freq": c.vocab.min_freq, "max_size": c.vocab.max_size, "stopwords": c.vocab.stopwords}),
                inputs: [out(1, "tokens")?, ("stopwords".to_owned(), sw_hash)].into(),
            }
        }
        3 => Plan {
            stage: "graph",
            version: VERSIONS[3],
            params: json!({"window_size": c.graph.window_size, "cooccurrence": c.graph.cooccurrence}),
            inputs: [out(0, "documents")?, out(2, "vocab")?, out(2, "doc_tokens")?].into(),
        },
        4 => Plan {
            stage: "splits",
            version: VERSIONS[4],
            params: json!({"seed": c.splits.seed, "val_fraction": c.splits.val_fraction, "random_split": c.splits.random_split}),
            inputs: [out(0, "documents")?].into(),
        },
        _ => return Err(PipelineError::Other(format!("no stage {idx}"))),
    })
}

/// Output `name` of stage `stage` among the records built so far.
fn stage_output<'a>(prev: &'a [StageRecord], stage: usize, name: &str) -> Result<&'a ObjectId, PipelineError> {
    let rec = prev.get(stage).ok_or_else(|| PipelineError::Other(format!("stage {} has not run", STAGES[stage])))?;
    rec.output_id(name).map_err(PipelineError::Other)
}

fn build_stage(idx: usize, store: &Store, cfg: &LoadedConfig, prev: &[StageRecord]) -> Result<Built, PipelineError> {
    let c = &cfg.config;
    let input = |stage: usize, name: &str| stage_output(prev, stage, name).cloned();
    let mut out = Built::default();
    let summary;
    match idx {
        0 => {
            let ing = &c.ingest;
            let mut docs = match &ing.meta {
                Some(meta) => ingest::read_textgcn(&cfg.data_path(&ing.corpus), &cfg.data_path(meta), ing)?,
                None => ingest::read_tabular(&cfg.data_path(&ing.corpus), ing)?,
            };
            let held_out = ing.hold_out_test.then(|| docs.take_test());
            if let Some(h) = &held_out {
                if h.names.is_empty() {
                    return Err(PipelineError::Other("ingest.hold_out_test: the corpus has no test documents to hold out".into()));
                }
                if docs.names.is_empty() {
                    return Err(PipelineError::Other("ingest.hold_out_test: the corpus has only test documents".into()));
                }
                out.add("held_out", ObjectKind::Table, tables::put_documents(store, h)?);
            }
            let n_train = docs.splits.iter().filter(|s| *s == "train").count();
            let labels: HashSet<&String> = docs.labels.iter().collect();
            let blank = docs.texts.iter().filter(|t| t.trim().is_empty()).count();
            summary = json!({"documents": docs.names.len(), "train": n_train, "test": docs.names.len() - n_train, "classes": labels.len(), "replacements": docs.replacements, "blank_documents": blank, "held_out": held_out.as_ref().map_or(0, |h| h.names.len())});
            out.add("documents", ObjectKind::Table, tables::put_documents(store, &docs)?);
        }
        1 => {
            let texts = tables::get_string_column(store, &input(0, "documents")?, "text")?;
            let rules = c.tokenize.rules;
            let lower = c.tokenize.lowercase;
            let cleaned: Vec<String> = (0..texts.len())
                .into_par_iter()
                .map_init(Vec::new, |buf, i| match rules {
                    Rules::Reference => clean::reference_clean(texts.value(i), lower, buf),
                    Rules::Unicode => clean::unicode_tokens(texts.value(i), lower).join(" "),
                })
                .collect();
            // Cleaned documents hold tokens separated by single spaces.
            let n_tokens: usize = cleaned.iter().filter(|d| !d.is_empty()).map(|d| d.bytes().filter(|&b| b == b' ').count() + 1).sum();
            summary = json!({"documents": cleaned.len(), "tokens": n_tokens});
            out.add("tokens", ObjectKind::Table, tables::put_tokens(store, &cleaned)?);
        }
        2 => {
            let trace = tracing::enabled!(tracing::Level::DEBUG);
            let t = Instant::now();
            let toks = tables::get_tokens(store, &input(1, "tokens")?)?;
            if trace {
                tracing::debug!("vocab: read tokens {:.3}s", t.elapsed().as_secs_f64());
            }
            let sw: HashSet<String> = stopword_list(cfg)?.into_iter().collect();
            let toks: Vec<&str> = toks.iter().map(|t| t.unwrap_or("")).collect();
            let (v, dt) = vocab::build(&toks, &vocab::VocabParams { min_freq: c.vocab.min_freq, stopwords: &sw, max_size: c.vocab.max_size });
            if v.words.is_empty() {
                return Err(PipelineError::EmptyVocabulary { min_freq: c.vocab.min_freq, stopwords: c.vocab.stopwords.clone() });
            }
            if trace {
                tracing::debug!("vocab: count and encode {:.3}s", t.elapsed().as_secs_f64());
            }
            if dt.ids.len() > i32::MAX as usize {
                return Err(PipelineError::Other(format!(
                    "the corpus has {} tokens after filtering, more than the 2,147,483,647 a doc_tokens table holds; raise vocab.min_freq or split the corpus",
                    dt.ids.len()
                )));
            }
            let empty = (0..dt.num_docs()).filter(|&d| dt.doc(d).is_empty()).count();
            let avg = dt.ids.len() as f64 / dt.num_docs() as f64;
            summary = json!({"vocabulary": v.words.len(), "tokens": dt.ids.len(), "avg_doc_length": avg, "empty_documents": empty});
            out.add("vocab", ObjectKind::Table, tables::put_vocab(store, &v)?);
            out.add("doc_tokens", ObjectKind::Table, tables::put_doc_tokens(store, &dt)?);
        }
        3 => {
            let trace = tracing::enabled!(tracing::Level::DEBUG);
            let mut t = Instant::now();
            let mut mark = |what: &str| {
                if trace {
                    tracing::debug!("graph: {what} {:.3}s", t.elapsed().as_secs_f64());
                    t = Instant::now();
                }
            };
            let docs = tables::get_document_meta(store, &input(0, "documents")?)?;
            let v = tables::get_vocab(store, &input(2, "vocab")?)?;
            let dt = tables::get_doc_tokens(store, &input(2, "doc_tokens")?)?;
            let mut labels: Vec<String> = docs.labels.clone();
            labels.sort();
            labels.dedup();
            out.add("nodes", ObjectKind::Table, tables::put_nodes(store, &docs, &v, &labels)?);
            out.add("labels", ObjectKind::Table, tables::put_labels(store, &labels)?);
            drop(docs);
            mark("read inputs, nodes and labels");
            let mut g = graph::build(&dt.offsets, &dt.ids, v.words.len(), c.graph.window_size, c.graph.cooccurrence);
            drop(dt);
            mark("compute");
            summary = serde_json::to_value(&g.stats).expect("stats serialise");
            let num_nodes = g.stats.num_nodes;
            out.add("row_ptr", ObjectKind::RowPtr, RowPtr::publish(store, g.row_ptr())?);
            // Weights first, so that their f64 source is freed before the
            // large index exists.
            let attr = g.take_edge_attr();
            out.add("edge_attr", ObjectKind::EdgeAttr, EdgeAttr::publish(store, attr)?);
            mark("normalise and publish edge_attr");
            let ei = g.into_edge_index();
            mark("assemble edge_index");
            out.add("edge_index", ObjectKind::EdgeIndex, EdgeIndex::publish(store, ei, num_nodes)?);
            mark("publish edge_index");
        }
        4 => {
            let docs = tables::get_document_meta(store, &input(0, "documents")?)?;
            let s = splits::make(&docs.splits, c.splits.seed, c.splits.val_fraction, c.splits.random_split);
            if s.train.is_empty() {
                return Err(PipelineError::Other("the split leaves no training documents".into()));
            }
            summary = json!({"train": s.train.len(), "val": s.val.len(), "test": s.test.len()});
            out.add("splits", ObjectKind::Table, tables::put_splits(store, &s)?);
        }
        _ => return Err(PipelineError::Other(format!("no stage {idx}"))),
    }
    out.summary = summary;
    Ok(out)
}

/// Why a stage with plan `plan` is not the one the previous build used.
fn why(plan: &Plan, prev_ref: Option<&StageRecord>, cached: bool, cfg: &LoadedConfig) -> String {
    let Some(old) = prev_ref else {
        return if cached { "no previous build of this config; outputs found in the store cache".into() } else { "no previous build of this config".into() };
    };
    let mut reasons = Vec::new();
    if old.code_version != plan.version {
        reasons.push(format!("stage code changed (version {} → {})", old.code_version, plan.version));
    }
    if let (Some(a), Some(b)) = (old.params.as_object(), plan.params.as_object()) {
        for (k, v) in b {
            match a.get(k) {
                Some(o) if o == v => {}
                Some(o) => reasons.push(format!("{k} changed {o} → {v}")),
                None => reasons.push(format!("{k} added ({v})")),
            }
        }
    }
    for (k, v) in &plan.inputs {
        if old.inputs.get(k) != Some(v) {
            reasons.push(match k.split_once('.') {
                Some((stage, out)) => format!("input {out} from {stage} changed"),
                None => {
                    let ing = &cfg.config.ingest;
                    let file = match k.as_str() {
                        "corpus" => Some(ing.corpus.clone()),
                        "meta" => ing.meta.clone(),
                        "stopwords" => Some(cfg.config.vocab.stopwords.clone().into()),
                        _ => None,
                    };
                    match file.as_ref().and_then(|f| f.file_name()) {
                        Some(f) => format!("{k} {} content changed", f.to_string_lossy()),
                        None => format!("{k} content changed"),
                    }
                }
            });
        }
    }
    if reasons.is_empty() {
        reasons.push("outputs missing from the store".into());
    }
    let mut s = reasons.join(", ");
    if cached {
        s.push_str(" (outputs found in the store cache)");
    }
    s
}

/// The records the config's ref pinned before this build, by stage. A
/// damaged ref or record is left out (the build replaces it), so damage
/// never blocks the build that repairs it.
fn previous_records(store: &Store, name: &str) -> Result<BTreeMap<String, StageRecord>, PipelineError> {
    let mut out = BTreeMap::new();
    match store.get_ref(name) {
        Ok(r) => {
            for entry in &r.stages {
                match store.pinned_record(name, entry) {
                    Ok(rec) => {
                        out.insert(entry.stage.clone(), rec);
                    }
                    Err(e) => tracing::warn!("ignoring the previous build's stage {}: {e}", entry.stage),
                }
            }
        }
        Err(StoreError::NoSuchRef { .. }) => {}
        Err(e @ StoreError::BadMetadata { .. }) => tracing::warn!("ignoring the previous build: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}

/// Runs every stale stage of `cfg` and points the config's ref at the
/// result. `on_stage` is called after each stage (for live output).
///
/// If any stage fails, everything this build published is taken back
/// ([`Store::roll_back`]) and the ref is left as it was.
pub fn build(store: &Store, cfg: &LoadedConfig, on_stage: impl FnMut(&StageReport)) -> Result<BuildReport, PipelineError> {
    cfg.require_files()?;
    store.start_transaction();
    match build_inner(store, cfg, on_stage) {
        Ok(r) => {
            store.start_transaction();
            Ok(r)
        }
        Err(e) => {
            store.roll_back()?;
            Err(e)
        }
    }
}

fn build_inner(store: &Store, cfg: &LoadedConfig, mut on_stage: impl FnMut(&StageReport)) -> Result<BuildReport, PipelineError> {
    let t0 = Instant::now();
    let old = previous_records(store, &cfg.config.name)?;
    let mut recs: Vec<StageRecord> = Vec::new();
    let mut reports = Vec::new();
    for idx in 0..STAGES.len() {
        let t = Instant::now();
        let plan = plan_for(idx, cfg, &recs, &old)?;
        let fp = plan.fingerprint();
        let old_rec = old.get(STAGES[idx]);
        let (rec, outcome) = store.get_or_build(plan.stage, plan.version, plan.params.clone(), plan.inputs.clone(), |s| build_stage(idx, s, cfg, &recs))?;
        check_outputs(idx, &rec).map_err(|e| PipelineError::Other(format!("{e}; run `textgcn verify --repair`")))?;
        let same_as_before = old_rec.is_some_and(|o| o.fingerprint == fp);
        let (status, why) = match &outcome {
            Outcome::Built => (StageState::Rebuilt, Some(why(&plan, old_rec, false, cfg))),
            Outcome::Repaired(damage) => (StageState::Rebuilt, Some(format!("its record was damaged and moved to quarantine/ ({damage})"))),
            Outcome::Fresh if same_as_before => (StageState::Fresh, None),
            Outcome::Fresh => (StageState::Fresh, Some(why(&plan, old_rec, true, cfg))),
        };
        let secs = t.elapsed().as_secs_f64();
        if outcome != Outcome::Fresh {
            store.put_provenance(&fp, &json!({"stage": plan.stage, "seconds": secs, "built_at_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0), "threads": rayon::current_num_threads()}))?;
        }
        let report = StageReport {
            stage: STAGES[idx].to_owned(),
            status,
            why,
            seconds: secs,
            outputs: rec.outputs.iter().map(|(k, o)| (k.clone(), (o.id.to_string(), o.bytes))).collect(),
            summary: rec.summary.clone(),
            fingerprint: fp,
        };
        on_stage(&report);
        reports.push(report);
        recs.push(rec);
    }
    store.put_ref(&Ref { name: cfg.config.name.clone(), stages: recs.iter().map(RefStage::of).collect() })?;
    Ok(BuildReport { name: cfg.config.name.clone(), stages: reports, seconds: t0.elapsed().as_secs_f64() })
}

/// Checks that a record of stage `idx` has the outputs that stage makes,
/// each of its kind, and no others.
fn check_outputs(idx: usize, rec: &StageRecord) -> Result<(), String> {
    let spec = OUTPUTS[idx];
    if rec.stage != STAGES[idx] {
        return Err(format!("record {} is a record of stage {}, expected {}", &rec.fingerprint[..12.min(rec.fingerprint.len())], rec.stage, STAGES[idx]));
    }
    for (name, kind, required) in spec {
        match rec.outputs.get(*name) {
            None if *required => return Err(rec.output(name).err().unwrap_or_default()),
            Some(o) if o.kind != *kind => return Err(format!("record of stage {}: output `{name}` is a {}, expected a {kind}", rec.stage, o.kind)),
            _ => {}
        }
    }
    if let Some(extra) = rec.outputs.keys().find(|k| !spec.iter().any(|(n, _, _)| n == k)) {
        return Err(format!("record of stage {}: unexpected output `{extra}`", rec.stage));
    }
    Ok(())
}

/// Whether a stage is up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// A valid record of the stage's current fingerprint exists.
    Fresh,
    /// The stage ran in this build.
    Rebuilt,
    /// A build would run the stage.
    Stale,
}

impl std::fmt::Display for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            StageState::Fresh => "fresh",
            StageState::Rebuilt => "rebuilt",
            StageState::Stale => "stale",
        })
    }
}

/// What `status` says of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    /// Stage name.
    pub stage: String,
    /// [`StageState::Fresh`] or [`StageState::Stale`].
    pub status: StageState,
    /// Why it would rerun.
    pub why: Option<String>,
}

/// Says which stages a build would rerun and why, without running any.
pub fn status(store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
    let old = previous_records(store, &cfg.config.name)?;
    let mut recs: Vec<StageRecord> = Vec::new();
    let mut out = Vec::new();
    for idx in 0..STAGES.len() {
        if recs.len() < idx {
            out.push(StageStatus { stage: STAGES[idx].into(), status: StageState::Stale, why: Some(format!("{} will rerun first", STAGES[recs.len()])) });
            continue;
        }
        let plan = plan_for(idx, cfg, &recs, &old)?;
        let fp = plan.fingerprint();
        let old_rec = old.get(STAGES[idx]);
        let state = match store.load_record(&fp)? {
            RecordState::Valid(rec) => match check_outputs(idx, &rec) {
                Ok(()) => Ok(rec),
                Err(e) => Err(format!("its record is damaged ({e}); a build moves it to quarantine/ and reruns the stage")),
            },
            RecordState::Missing => Err(why(&plan, old_rec, false, cfg)),
            RecordState::Damaged(e) => Err(format!("its record is damaged ({e}); a build moves it to quarantine/ and reruns the stage")),
        };
        match state {
            Ok(rec) => {
                let same = old_rec.is_some_and(|o| o.fingerprint == fp);
                out.push(StageStatus { stage: STAGES[idx].into(), status: StageState::Fresh, why: if same { None } else { Some(why(&plan, old_rec, true, cfg)) } });
                recs.push(rec);
            }
            Err(why) => out.push(StageStatus { stage: STAGES[idx].into(), status: StageState::Stale, why: Some(why) }),
        }
    }
    Ok(out)
}

/// The checked records of a built ref: one per stage, in pipeline order,
/// each the record the ref pins by digest, with exactly the outputs its
/// stage makes, each of its kind. This is the one way the trainer and the
/// CLI read a build, so a damaged or tampered ref is an error here, never a
/// panic or a silent use of other data.
#[derive(Debug, Clone)]
pub struct BuiltRef {
    /// The ref's name.
    pub name: String,
    records: Vec<StageRecord>,
}

impl BuiltRef {
    /// Opens and checks ref `name`.
    pub fn open(store: &Store, name: &str) -> Result<Self, PipelineError> {
        let r = store.get_ref(name)?;
        let hint = "the store is damaged; run `textgcn verify --repair`, then `textgcn build` of the config";
        let names: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
        if names != STAGES {
            return Err(PipelineError::Other(format!("ref {name}: its stages are [{}], expected [{}]; {hint}", names.join(", "), STAGES.join(", "))));
        }
        let mut records = Vec::with_capacity(STAGES.len());
        for (idx, entry) in r.stages.iter().enumerate() {
            let rec = store.pinned_record(name, entry).map_err(|e| PipelineError::Other(format!("ref {name}: {e}; {hint}")))?;
            check_outputs(idx, &rec).map_err(|e| PipelineError::Other(format!("ref {name}: {e}; {hint}")))?;
            records.push(rec);
        }
        Ok(BuiltRef { name: name.to_owned(), records })
    }

    /// The record of stage `stage` (one of [`STAGES`]).
    pub fn record(&self, stage: &str) -> Result<&StageRecord, PipelineError> {
        STAGES.iter().position(|s| *s == stage).and_then(|i| self.records.get(i)).ok_or_else(|| PipelineError::Other(format!("ref {}: no stage {stage}", self.name)))
    }

    /// The object of output `output` of stage `stage`.
    pub fn object(&self, stage: &str, output: &str) -> Result<&ObjectId, PipelineError> {
        self.record(stage)?.output_id(output).map_err(|e| PipelineError::Other(format!("ref {}: {e}", self.name)))
    }

    /// The object of an optional output (`held_out`), if the build made it.
    pub fn optional_object(&self, stage: &str, output: &str) -> Result<Option<&ObjectId>, PipelineError> {
        Ok(self.record(stage)?.outputs.get(output).map(|o| &o.id))
    }

    /// The summary facts of stage `stage`.
    pub fn summary(&self, stage: &str) -> Result<&Value, PipelineError> {
        Ok(&self.record(stage)?.summary)
    }

    /// Every record, in pipeline order.
    pub fn records(&self) -> &[StageRecord] {
        &self.records
    }
}

/// Checks that the ref of `cfg` is exactly what a build would produce now;
/// returns the stale stages with reasons (empty when up to date).
pub fn stale_stages(store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
    let st = status(store, cfg)?;
    let r = store.get_ref(&cfg.config.name).ok();
    let mut stale: Vec<StageStatus> = st.into_iter().filter(|s| s.status != StageState::Fresh).collect();
    if stale.is_empty() && r.is_none() {
        stale.push(StageStatus { stage: "ingest".into(), status: StageState::Stale, why: Some("never built".into()) });
    }
    Ok(stale)
}

/// The cleaned corpus of a built ref, in the reference's `.clean.txt` form.
pub fn export_clean(store: &Store, name: &str) -> Result<String, PipelineError> {
    let built = BuiltRef::open(store, name)?;
    let vocab = tables::get_vocab(store, built.object("vocab", "vocab")?)?;
    let dt = tables::get_doc_tokens(store, built.object("vocab", "doc_tokens")?)?;
    Ok(vocab::clean_text(&vocab, &dt))
}

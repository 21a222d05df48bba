//! The stages of a build, each one type, and the driver that runs them
//! over the store.
//!
//! A stage implements [`Stage`]: its name, code version, typed parameters,
//! the inputs it reads (outputs of earlier stages, data files) and the
//! outputs it writes, and `run`. The standard pipeline is the list in
//! [`Pipeline::standard`]; adding a stage, or swapping one implementation of
//! a stage for another (native or an engine), is one new type and one line
//! there.
//!
//! | file | stage | reads | writes |
//! |---|---|---|---|
//! | `ingest.rs` | [`Ingest`] | corpus (+ meta) file | `documents`, `held_out` |
//! | `tokenize.rs` | [`Tokenize`] | `ingest.documents` | `tokens` |
//! | `vocab.rs` | [`Vocab`] | `tokenize.tokens`, stop words | `vocab`, `doc_tokens` |
//! | `graph.rs` | [`Graph`] | `ingest.documents`, `vocab.vocab`, `vocab.doc_tokens` | `nodes`, `labels`, `row_ptr`, `edge_attr`, `edge_index` |
//! | `splits.rs` | [`Splits`] | `ingest.documents` | `splits` |
//!
//! `driver.rs` plans, builds and explains (fresh, rebuilt, stale and why);
//! `handoff.rs` lets a stage hand what it decoded to the next one of the
//! same build, instead of that one reading it back from the store;
//! `built.rs` is the typed read side ([`BuiltRef`], [`BuiltGraph`]) that the
//! trainer and the CLI use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use textgcn_artifacts::{Built, ObjectId, ObjectKind, StageRecord, Store, StoreError};

use crate::config::LoadedConfig;
use crate::ingest::IngestError;

mod built;
mod driver;
mod graph;
mod handoff;
mod ingest;
mod splits;
mod tokenize;
mod vocab;

pub use built::{BuiltGraph, BuiltRef, check_csr, check_graph, export_clean};
pub use driver::{BuildReport, StageReport, StageState, StageStatus, built_by};
pub use graph::{Graph, GraphParams};
pub use handoff::Handoff;
pub use ingest::{Columns, Ingest, IngestParams};
pub use splits::{Splits, SplitsParams};
pub use tokenize::{Tokenize, TokenizeParams};
pub use vocab::{Vocab, VocabParams};

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
    /// A build's ref or records are not what the stages make (damage, or a
    /// store written by other code).
    #[error("{0}")]
    Contract(String),
    /// Another problem, described.
    #[error("{0}")]
    Other(String),
}

/// One output of one stage: the typed key every reader and writer of it
/// uses, instead of a pair of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputKey {
    /// The stage that writes it.
    pub stage: &'static str,
    /// Its name in the stage's record.
    pub name: &'static str,
    /// What kind of object it is.
    pub kind: ObjectKind,
}

impl OutputKey {
    /// This output as one every record of its stage has.
    pub const fn required(self) -> OutputSpec {
        OutputSpec { key: self, required: true }
    }

    /// This output as one only some records have.
    pub const fn optional(self) -> OutputSpec {
        OutputSpec { key: self, required: false }
    }

    /// Adds object `id` to a stage's outputs under this key.
    pub fn put(self, out: &mut Built, id: ObjectId) {
        out.add(self.name, self.kind, id);
    }

    /// The name of this output as an input of a later stage (`stage.name`),
    /// as fingerprints have always spelt it.
    pub fn input_name(&self) -> String {
        format!("{}.{}", self.stage, self.name)
    }
}

/// An output a stage declares.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    /// Which output.
    pub key: OutputKey,
    /// Whether every record of the stage has it.
    pub required: bool,
}

/// One input of a stage's fingerprint.
#[derive(Debug, Clone)]
pub enum Input {
    /// An output of an earlier stage (its object id is hashed in).
    Output(OutputKey),
    /// The content of something outside the store: a data file, the stop
    /// word list.
    Content {
        /// Its name among the stage's inputs (`corpus`, `meta`, `stopwords`).
        name: &'static str,
        /// Its content hash.
        hash: String,
        /// How a message names it (a file name).
        shown_as: String,
    },
}

/// A stage: one type per stage, registered once in [`Pipeline`].
///
/// The driver computes the fingerprint from [`Stage::NAME`],
/// [`Stage::VERSION`], the serialised [`Stage::Params`] and the hashes of
/// [`Stage::inputs`], and calls [`Stage::run`] only when the store has no
/// valid record of that fingerprint. `run` must be a function of exactly
/// those: the same params and input bytes give the same output bytes.
pub trait Stage: Send + Sync + 'static {
    /// The stage's name (records, refs, messages).
    const NAME: &'static str;
    /// Its code version: bump it when the output for the same inputs
    /// changes, so old records stop matching.
    const VERSION: u32;
    /// What it writes.
    const OUTPUTS: &'static [OutputSpec];
    /// Its fingerprinted parameters. Serialised field order is part of the
    /// fingerprint: never reorder fields of an existing stage.
    type Params: Serialize;
    /// The params of `cfg`.
    fn params(&self, cfg: &LoadedConfig) -> Self::Params;
    /// The inputs of this build (outputs of earlier stages, hashed content).
    fn inputs(&self, cx: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError>;
    /// Does the work, publishing its outputs into `cx.store`.
    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError>;
    /// What computes it under `cfg` (`build.engine` for the stages that
    /// have several engines): written to the provenance, never to the
    /// fingerprint or the record, since every engine writes the same bytes.
    fn engine(&self, _cfg: &LoadedConfig) -> &'static str {
        "native"
    }
}

/// The object-safe face of a [`Stage`], which the driver and [`Pipeline`]
/// hold. Every `Stage` is one; implement `Stage`, not this.
pub trait AnyStage: Send + Sync {
    /// [`Stage::NAME`].
    fn name(&self) -> &'static str;
    /// [`Stage::VERSION`].
    fn version(&self) -> u32;
    /// [`Stage::OUTPUTS`].
    fn outputs(&self) -> &'static [OutputSpec];
    /// The stage's plan: everything its fingerprint is made of.
    fn plan(&self, cx: &PlanContext<'_>) -> Result<Plan, PipelineError>;
    /// [`Stage::run`].
    fn execute(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError>;
    /// [`Stage::engine`].
    fn engine_of(&self, cfg: &LoadedConfig) -> &'static str;
}

impl<S: Stage> AnyStage for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn version(&self) -> u32 {
        S::VERSION
    }

    fn outputs(&self) -> &'static [OutputSpec] {
        S::OUTPUTS
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Result<Plan, PipelineError> {
        let params = serde_json::to_value(self.params(cx.cfg)).map_err(|e| PipelineError::Other(format!("stage {}: params do not serialise: {e}", S::NAME)))?;
        let mut inputs = BTreeMap::new();
        let mut shown = BTreeMap::new();
        for input in self.inputs(cx)? {
            match input {
                Input::Output(key) => {
                    inputs.insert(key.input_name(), cx.output(key)?.to_string());
                }
                Input::Content { name, hash, shown_as } => {
                    inputs.insert(name.to_owned(), hash);
                    shown.insert(name.to_owned(), shown_as);
                }
            }
        }
        Ok(Plan { stage: S::NAME, version: S::VERSION, params, inputs, shown })
    }

    fn execute(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        self.run(cx)
    }

    fn engine_of(&self, cfg: &LoadedConfig) -> &'static str {
        self.engine(cfg)
    }
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
    /// Input name -> how messages name it, for content inputs (not hashed).
    pub shown: BTreeMap<String, String>,
}

impl Plan {
    /// The stage fingerprint.
    pub fn fingerprint(&self) -> String {
        textgcn_artifacts::fingerprint(self.stage, self.version, &self.params, &self.inputs)
    }
}

/// Finds output `key` among the records of the stages built so far.
fn find_output(records: &[StageRecord], key: OutputKey) -> Result<&ObjectId, PipelineError> {
    let rec = records.iter().find(|r| r.stage == key.stage).ok_or_else(|| PipelineError::Other(format!("stage {} has not run before the stage that reads {}", key.stage, key.input_name())))?;
    rec.output_id(key.name).map_err(PipelineError::Contract)
}

/// What a stage's plan may consult: the config, the records of the stages
/// before it in this build, and the config's previous build.
pub struct PlanContext<'a> {
    /// The config being built.
    pub cfg: &'a LoadedConfig,
    stage: &'static str,
    records: &'a [StageRecord],
    previous: &'a BTreeMap<String, StageRecord>,
}

impl PlanContext<'_> {
    /// The object of an earlier stage's output.
    pub fn output(&self, key: OutputKey) -> Result<&ObjectId, PipelineError> {
        find_output(self.records, key)
    }

    /// The content input `name` read from the data file under config key
    /// `key` (`path`, resolved).
    pub fn data_file(&self, name: &'static str, key: &'static str, path: &Path) -> Result<Input, PipelineError> {
        let shown_as = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        self.content(name, key, shown_as, || {
            // Streamed through the hasher: a corpus of gigabytes is never
            // held in memory to be hashed.
            let io = |error| IngestError::Io { path: path.into(), error };
            let file = std::fs::File::open(path).map_err(io)?;
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(file).map_err(io)?;
            Ok(hasher.finalize().to_hex().to_string())
        })
    }

    /// The content input `name`, hashed by `hash`. When the data file under
    /// config key `key` is missing ([`LoadedConfig::missing`]) it is taken
    /// to be the one the previous build read, and its hash comes from that
    /// build's record of this stage.
    pub fn content(&self, name: &'static str, key: &'static str, shown_as: String, hash: impl FnOnce() -> Result<String, PipelineError>) -> Result<Input, PipelineError> {
        let hash = match self.cfg.missing.iter().find(|(k, _)| *k == key) {
            None => hash()?,
            Some((_, path)) => self.previous.get(self.stage).and_then(|r| r.inputs.get(name)).cloned().ok_or_else(|| {
                PipelineError::Other(format!(
                    "{}: key `{key}`: file {} not found, and no build of {} in the store read it; set TEXTGCN_DATA_DIR or `data_dir`",
                    self.cfg.path.display(),
                    path.display(),
                    self.cfg.config.name
                ))
            })?,
        };
        Ok(Input::Content { name, hash, shown_as })
    }
}

/// How far a long stage is: `done` of `total` units of its current
/// `phase` (e.g. "rows", "edges written"). Called from the stage's own
/// thread, often enough for a bar and an ETA, never per item.
pub type ProgressFn<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// What a stage's run may use: the store, the config, the outputs of the
/// stages before it, and a way to say how far it is.
pub struct RunContext<'a> {
    /// Where outputs are published.
    pub store: &'a Store,
    /// The config being built.
    pub cfg: &'a LoadedConfig,
    records: &'a [StageRecord],
    progress: ProgressFn<'a>,
    /// What the previous stage of this build handed over in memory.
    pub handoff: &'a Handoff,
}

impl RunContext<'_> {
    /// Reports that `done` of `total` units of `phase` are done.
    pub fn progress(&self, phase: &str, done: u64, total: u64) {
        (self.progress)(phase, done, total)
    }

    /// The object of an earlier stage's output.
    pub fn input(&self, key: OutputKey) -> Result<&ObjectId, PipelineError> {
        find_output(self.records, key)
    }
}

/// An ordered list of stages: what a build runs and a built ref holds.
pub struct Pipeline {
    stages: Vec<Box<dyn AnyStage>>,
}

impl Pipeline {
    /// The five stages of TextGCN.
    pub fn standard() -> Self {
        Pipeline { stages: Vec::new() }.with(Ingest).with(Tokenize).with(Vocab).with(Graph).with(Splits)
    }

    /// This pipeline with `stage` appended.
    pub fn with(mut self, stage: impl AnyStage + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// The stages, in order.
    pub fn stages(&self) -> impl Iterator<Item = &dyn AnyStage> {
        self.stages.iter().map(|s| s.as_ref())
    }

    /// Stage names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.stages().map(|s| s.name()).collect()
    }
}

/// Checks that a record of `stage` has the outputs that stage makes, each
/// of its kind, and no others.
fn check_outputs(stage: &dyn AnyStage, rec: &StageRecord) -> Result<(), String> {
    if rec.stage != stage.name() {
        return Err(format!("record {} is a record of stage {}, expected {}", &rec.fingerprint[..12.min(rec.fingerprint.len())], rec.stage, stage.name()));
    }
    let spec = stage.outputs();
    for s in spec {
        match rec.outputs.get(s.key.name) {
            None if s.required => return Err(rec.output(s.key.name).err().unwrap_or_default()),
            Some(o) if o.kind != s.key.kind => return Err(format!("record of stage {}: output `{}` is a {}, expected a {}", rec.stage, s.key.name, o.kind, s.key.kind)),
            _ => {}
        }
    }
    if let Some(extra) = rec.outputs.keys().find(|k| !spec.iter().any(|s| s.key.name == k.as_str())) {
        return Err(format!("record of stage {}: unexpected output `{extra}`", rec.stage));
    }
    Ok(())
}

/// Runs every stale stage of the standard pipeline for `cfg` (see
/// [`Pipeline::build`]).
pub fn build(store: &Store, cfg: &LoadedConfig, on_stage: impl FnMut(&StageReport)) -> Result<BuildReport, PipelineError> {
    Pipeline::standard().build(store, cfg, on_stage)
}

/// [`Pipeline::status`] of the standard pipeline.
pub fn status(store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
    Pipeline::standard().status(store, cfg)
}

/// [`status`] of the store at `root`, which may not exist yet: then every
/// stage is stale ("no store yet"). A directory that is a store of another
/// layout, or a file, is an error.
pub fn status_at(root: &Path, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
    match Store::open(root, textgcn_artifacts::OpenMode::Read) {
        Ok(store) => status(&store, cfg),
        Err(e) if root.join("STORE").exists() || root.is_file() => Err(e.into()),
        Err(_) => Ok(Pipeline::standard().names().into_iter().map(|s| StageStatus { stage: s.into(), status: StageState::Stale, why: Some("no store yet".into()), built_by: None }).collect()),
    }
}

/// [`Pipeline::stale_stages`] of the standard pipeline.
pub fn stale_stages(store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
    Pipeline::standard().stale_stages(store, cfg)
}

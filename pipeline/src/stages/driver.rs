//! Running a [`Pipeline`]: planning each stage, building the stale ones in
//! one store transaction, and saying why a stage is fresh, rebuilt or stale
//! (like cargo's `DirtyReason`: the plan against the record that the
//! config's ref pointed at before).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use textgcn_artifacts::{Outcome, RecordState, Ref, RefStage, StageRecord, Store, StoreError};

use super::{AnyStage, Handoff, Pipeline, PipelineError, Plan, PlanContext, ProgressFn, RunContext, check_outputs};
use crate::config::LoadedConfig;

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
    /// What computed it (`native`, `datafusion`): this build's engine when
    /// it ran, else the one its provenance names (`None` if unknown).
    pub engine: Option<String>,
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
    /// For a fresh stage, the engine that built its record, from the
    /// provenance (`None` if unknown).
    pub built_by: Option<String>,
}

/// The engine the provenance of record `fp` names.
pub fn built_by(store: &Store, fp: &str) -> Option<String> {
    store.provenance(fp)?.get("engine")?.as_str().map(str::to_owned)
}

/// Why a stage with plan `plan` is not the one the previous build used.
fn why(plan: &Plan, prev_ref: Option<&StageRecord>, cached: bool) -> String {
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
            reasons.push(match (k.split_once('.'), plan.shown.get(k)) {
                (Some((stage, out)), _) => format!("input {out} from {stage} changed"),
                (None, Some(shown)) => format!("{k} {shown} content changed"),
                (None, None) => format!("{k} content changed"),
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

fn plan(stage: &dyn AnyStage, cfg: &LoadedConfig, records: &[StageRecord], previous: &BTreeMap<String, StageRecord>) -> Result<Plan, PipelineError> {
    stage.plan(&PlanContext { cfg, stage: stage.name(), records, previous })
}

impl Pipeline {
    /// Runs every stale stage for `cfg` and points the config's ref at the
    /// result. `on_stage` is called after each stage (for live output).
    ///
    /// If any stage fails, everything this build published is taken back
    /// ([`Store::roll_back`]) and the ref is left as it was.
    pub fn build(&self, store: &Store, cfg: &LoadedConfig, on_stage: impl FnMut(&StageReport)) -> Result<BuildReport, PipelineError> {
        self.build_with_progress(store, cfg, on_stage, &|_, _, _| {})
    }

    /// [`Pipeline::build`], also passing each stage's progress (phase,
    /// done, total) to `progress` while it runs.
    pub fn build_with_progress(&self, store: &Store, cfg: &LoadedConfig, on_stage: impl FnMut(&StageReport), progress: ProgressFn<'_>) -> Result<BuildReport, PipelineError> {
        cfg.require_files()?;
        // Ingest, tokenize and vocab allocate and free the same buffers
        // batch after batch: kept and reused, they are not fresh pages
        // each time (20ng's build 2-4 % faster, docs/benchmarks.md; the
        // graph stage returns them and sets its own policy). Blocks of 64
        // MiB or more (the token ids of a large corpus) stay mapped for
        // themselves.
        crate::alloc::reuse_allocations_below(64 << 20);
        store.start_transaction();
        match self.build_inner(store, cfg, on_stage, progress) {
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

    fn build_inner(&self, store: &Store, cfg: &LoadedConfig, mut on_stage: impl FnMut(&StageReport), progress: ProgressFn<'_>) -> Result<BuildReport, PipelineError> {
        let t0 = Instant::now();
        let old = previous_records(store, &cfg.config.name)?;
        let mut recs: Vec<StageRecord> = Vec::new();
        let mut reports = Vec::new();
        let handoff = Handoff::default();
        for stage in self.stages() {
            let _span = tracing::debug_span!("stage", name = stage.name()).entered();
            let t = Instant::now();
            let plan = plan(stage, cfg, &recs, &old)?;
            let fp = plan.fingerprint();
            let old_rec = old.get(stage.name());
            let (rec, outcome) = store.get_or_build(plan.stage, plan.version, plan.params.clone(), plan.inputs.clone(), |s| stage.execute(&RunContext { store: s, cfg, records: &recs, progress, handoff: &handoff }))?;
            handoff.end_stage();
            check_outputs(stage, &rec).map_err(|e| PipelineError::Contract(format!("{e}; run `textgcn verify --repair`")))?;
            let same_as_before = old_rec.is_some_and(|o| o.fingerprint == fp);
            let (status, why) = match &outcome {
                Outcome::Built => (StageState::Rebuilt, Some(why(&plan, old_rec, false))),
                Outcome::Repaired(damage) => (StageState::Rebuilt, Some(format!("its record was damaged and moved to quarantine/ ({damage})"))),
                Outcome::Fresh if same_as_before => (StageState::Fresh, None),
                Outcome::Fresh => (StageState::Fresh, Some(why(&plan, old_rec, true))),
            };
            let secs = t.elapsed().as_secs_f64();
            let engine = if outcome != Outcome::Fresh {
                let engine = stage.engine_of(cfg);
                store.put_provenance(&fp, &json!({"stage": plan.stage, "engine": engine, "seconds": secs, "built_at_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0), "threads": rayon::current_num_threads()}))?;
                Some(engine.to_owned())
            } else {
                built_by(store, &fp)
            };
            let report = StageReport {
                stage: stage.name().to_owned(),
                status,
                why,
                seconds: secs,
                outputs: rec.outputs.iter().map(|(k, o)| (k.clone(), (o.id.to_string(), o.bytes))).collect(),
                summary: rec.summary.clone(),
                fingerprint: fp,
                engine,
            };
            on_stage(&report);
            reports.push(report);
            recs.push(rec);
        }
        store.put_ref(&Ref { name: cfg.config.name.clone(), stages: recs.iter().map(RefStage::of).collect() })?;
        Ok(BuildReport { name: cfg.config.name.clone(), stages: reports, seconds: t0.elapsed().as_secs_f64() })
    }

    /// Says which stages a build would rerun and why, without running any.
    pub fn status(&self, store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
        let old = previous_records(store, &cfg.config.name)?;
        let mut recs: Vec<StageRecord> = Vec::new();
        let mut out = Vec::new();
        let damaged = |e: &dyn std::fmt::Display| format!("its record is damaged ({e}); a build moves it to quarantine/ and reruns the stage");
        for (idx, stage) in self.stages().enumerate() {
            let stale = |why: String| StageStatus { stage: stage.name().into(), status: StageState::Stale, why: Some(why), built_by: None };
            if recs.len() < idx {
                out.push(stale(format!("{} will rerun first", self.names()[recs.len()])));
                continue;
            }
            let plan = plan(stage, cfg, &recs, &old)?;
            let fp = plan.fingerprint();
            let old_rec = old.get(stage.name());
            match store.load_record(&fp)? {
                RecordState::Valid(rec) => match check_outputs(stage, &rec) {
                    Ok(()) => {
                        let same = old_rec.is_some_and(|o| o.fingerprint == fp);
                        out.push(StageStatus { stage: stage.name().into(), status: StageState::Fresh, why: (!same).then(|| why(&plan, old_rec, true)), built_by: built_by(store, &fp) });
                        recs.push(rec);
                    }
                    Err(e) => out.push(stale(damaged(&e))),
                },
                RecordState::Missing => out.push(stale(why(&plan, old_rec, false))),
                RecordState::Damaged(e) => out.push(stale(damaged(&e))),
            }
        }
        Ok(out)
    }

    /// The stages whose ref entry for `cfg` is not what a build would
    /// produce now, with reasons (empty when up to date).
    pub fn stale_stages(&self, store: &Store, cfg: &LoadedConfig) -> Result<Vec<StageStatus>, PipelineError> {
        let mut stale: Vec<StageStatus> = self.status(store, cfg)?.into_iter().filter(|s| s.status != StageState::Fresh).collect();
        if stale.is_empty() && store.get_ref(&cfg.config.name).is_err() {
            stale.push(StageStatus { stage: self.names()[0].into(), status: StageState::Stale, why: Some("never built".into()), built_by: None });
        }
        Ok(stale)
    }
}

//! A build as the terminal shows it, shared by the `textgcn` binary and the
//! Python package: a spinner naming the config and the running stage, which
//! becomes a bar with an ETA while a stage reports progress, and each
//! finished stage logged at `-v`. Only with the `cli` feature (it draws with
//! `textgcn-cli`).

use std::sync::Mutex;

use textgcn_artifacts::Store;
use textgcn_cli::ui::{self, Verbosity};

use crate::config::LoadedConfig;
use crate::stages::{BuildReport, Pipeline, PipelineError, StageReport};

/// Builds `cfg` into `store` with the standard pipeline, showing progress
/// on stderr at verbosity `v` (drawn only on a terminal; logged each tenth
/// at `-v` otherwise). `on_stage` also sees each finished stage.
pub fn build(store: &Store, cfg: &LoadedConfig, v: Verbosity, mut on_stage: impl FnMut(&StageReport)) -> Result<BuildReport, PipelineError> {
    let first = Pipeline::standard().names()[0];
    let pb = ui::spinner(v, format!("{}: {first}", cfg.config.name));
    let finished = |r: &StageReport, next: Option<&str>| {
        tracing::info!("{} {} in {:.3}s{}", r.stage, r.status, r.seconds, r.why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default());
        if let Some(next) = next {
            ui::spinner_again(&pb, format!("{}: {next}", cfg.config.name));
        }
        on_stage(r);
    };
    let progress = |stage: &str, phase: &str, done: u64, total: u64| ui::show_progress(&pb, &format!("{}: {stage}", cfg.config.name), phase, done, total);
    let report = build_reporting(store, cfg, finished, &progress);
    pb.finish_and_clear();
    report
}

/// Builds `cfg` into `store` with the standard pipeline, telling
/// `on_stage` each finished stage (with the name of the next, if any) and
/// `progress` the running stage's progress: `(stage, phase, done, total)`.
pub fn build_reporting(
    store: &Store,
    cfg: &LoadedConfig,
    mut on_stage: impl FnMut(&StageReport, Option<&str>),
    progress: &(dyn Fn(&str, &str, u64, u64) + Sync),
) -> Result<BuildReport, PipelineError> {
    let pipeline = Pipeline::standard();
    let names = pipeline.names();
    let stage = Mutex::new(names[0]);
    let finished = |r: &StageReport| {
        let next = names.iter().skip_while(|s| **s != r.stage).nth(1).copied();
        if let Some(next) = next {
            *stage.lock().expect("not poisoned") = next;
        }
        on_stage(r, next);
    };
    let running = |phase: &str, done: u64, total: u64| {
        let current = *stage.lock().expect("not poisoned");
        progress(current, phase, done, total)
    };
    pipeline.build_with_progress(store, cfg, finished, &running)
}

/// A build's report as the CLI prints it: per stage its status, seconds,
/// output size and why it reran, then the total.
pub fn report_table(report: &BuildReport) -> String {
    let mut out = format!("{:<9} {:<8} {:>8} {:>10}  {}\n", "stage", "status", "seconds", "outputs", "why");
    let mut total = 0;
    for s in &report.stages {
        let bytes: u64 = s.outputs.values().map(|o| o.1).sum();
        total += bytes;
        // The engine is named when it is not the native one.
        let by = s.engine.as_deref().filter(|e| *e != "native").map(|e| format!(" [{e}]")).unwrap_or_default();
        out.push_str(&format!("{:<9} {:<8} {:>8.3} {:>10}  {}{by}\n", s.stage, s.status, s.seconds, ui::human_bytes(bytes), s.why.as_deref().unwrap_or("-")));
    }
    out.push_str(&format!("built {} in {:.3}s ({:.1} MB of artifacts)\n", report.name, report.seconds, total as f64 / 1e6));
    out
}

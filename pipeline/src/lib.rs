//! # textgcn-pipeline
//!
//! Turns a text corpus into the artifacts the trainer maps: ingest → tokenize
//! → vocab → graph → splits, each a cached stage in the artifact store
//! (`textgcn-artifacts`), faithful to the reference TextGCN code by default.
//! This crate never links libtorch.
//!
//! - [`config`]: the TOML run config, validated before any work.
//! - [`ingest`]: corpus readers with positioned errors.
//! - [`clean`]: the reference cleaning rules and a Unicode tokenizer.
//! - [`vocab`]: the frequency/stop-word filter with deterministic ids.
//! - [`graph`]: PMI + TF-IDF edges and the normalised adjacency.
//! - [`splits`]: seeded train/validation/test node sets.
//! - [`stages`]: fingerprints, freshness, build and status.
//! - [`tables`]: Parquet tables of the pipeline.
//! - [`fetch`]: downloading the standard corpora, resumably.
//! - [`plot`]: PNG charts (training curves, histograms).
//! - [`ui`]: logs, progress bars and the build summary table.

pub mod clean;
pub mod config;
pub mod fetch;
pub mod graph;
pub mod ingest;
pub mod plot;
pub mod splits;
pub mod stages;
pub mod tables;
pub mod ui;
pub mod vocab;

/// `println!` that returns an error (to be propagated with `?`) instead of
/// panicking when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// The default store directory, relative to the working directory.
pub const DEFAULT_STORE: &str = ".textgcn-store";

/// Resolves the store location: `--store`, else `TEXTGCN_STORE`, else
/// [`DEFAULT_STORE`].
pub fn store_dir(flag: Option<&std::path::Path>) -> std::path::PathBuf {
    flag.map(Into::into)
        .or_else(|| std::env::var_os("TEXTGCN_STORE").map(Into::into))
        .unwrap_or_else(|| DEFAULT_STORE.into())
}

/// Runs a command-line program the same way for both binaries: parse the
/// arguments (a usage error exits 2, `--help`/`--version` exit 0), run, and
/// on failure print the error with its causes (`error: a: b: c`) and exit 1.
/// Output for stdout should go through [`outln!`], so that a closed pipe
/// ends the program quietly instead of panicking.
pub fn cli_main<C: clap::Parser>(run: impl FnOnce(C) -> anyhow::Result<()>) -> std::process::ExitCode {
    let cli = match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): stop quietly, as Unix tools do.
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

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

/// Writes the file `path` atomically: `fill` writes a temporary file in the
/// same folder (given its path, which keeps `path`'s extension, as some
/// writers choose the format by it); that file is then fsynced, made
/// world-readable (0644) and renamed over `path`. A crash leaves the old
/// file or the new one, never half of one. (Store objects have their own,
/// stricter protocol in `textgcn-artifacts`.)
pub fn write_atomic_with(path: &std::path::Path, fill: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let suffix = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = tempfile::Builder::new().prefix(".tmp-").suffix(&suffix).tempfile_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    fill(tmp.path()).with_context(|| format!("writing {}", path.display()))?;
    let f = std::fs::File::open(tmp.path())?;
    f.sync_all().with_context(|| format!("fsyncing {}", tmp.path().display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// [`write_atomic_with`] for bytes in memory.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
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
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// An error and its causes as `a: b: c`, leaving out a cause whose text the
/// message before it already ends with (errors that print their source and
/// also return it from `source()` would otherwise say it twice).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use anyhow::Context;

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no STORE file");
        let store = textgcn_artifacts::StoreError::Io { op: "opening store", path: "/s".into(), source: io };
        let e = Err::<(), _>(store).context("loading R8").unwrap_err();
        assert_eq!(format!("{e:#}"), "loading R8: opening store /s: no STORE file: no STORE file");
        assert_eq!(error_chain(&e), "loading R8: opening store /s: no STORE file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}

//! # textgcn-cli
//!
//! What the two binaries (`textgcn`, `textgcn-train`) share on the
//! terminal and the file system, so that neither library links a terminal
//! and the trainer links no pipeline tooling to draw a progress bar:
//!
//! - [`cli_main`], [`error_chain`], [`outln!`]: argument parsing, exit codes,
//!   errors as `error: a: b: c`, stdout that ends quietly on a closed pipe.
//! - [`ui`]: logs (`tracing`, with step timings as spans at `-vv`),
//!   progress bars and spinners.
//! - [`plot`]: PNG charts (training curves, histograms).
//! - [`write_atomic`], [`write_atomic_with`]: files that are whole or absent
//!   (the one atomic writer, [`textgcn_artifacts::atomic`]).
//! - [`store_dir`]: where the artifact store is.

pub mod plot;
pub mod ui;

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
/// writers choose the format by it); it then lands world-readable (0644)
/// over `path` ([`textgcn_artifacts::atomic::write_file_with`]). A crash
/// leaves the old file or the new one, never half of one.
pub fn write_atomic_with(path: &std::path::Path, fill: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    use anyhow::Context;
    textgcn_artifacts::atomic::write_file_with(path, fill).with_context(|| format!("writing {}", path.display()))
}

/// [`write_atomic_with`] for bytes in memory.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    textgcn_artifacts::atomic::write_file(path, bytes).with_context(|| format!("writing {}", path.display()))
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

/// An error and its causes as `a: b: c`.
pub fn error_chain(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use anyhow::Context;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no STORE file");
        let store = textgcn_artifacts::StoreError::Io { op: "opening store", path: "/s".into(), error: io };
        let e = Err::<(), _>(store).context("loading R8").unwrap_err();
        assert_eq!(error_chain(&e), "loading R8: opening store /s: no STORE file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}

//! What both binaries show on the terminal: logs (`tracing`, filtered by
//! `-v`/`-q` or `TEXTGCN_LOG`), progress bars and spinners (`indicatif`,
//! drawn only when stderr is a terminal, so CI logs stay clean).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How much a command says on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`-q`).
    Quiet,
    /// Results, warnings and progress (the default).
    Normal,
    /// Also what each step does (`-v`: info logs; `-vv`: debug, with
    /// timings of the steps inside stages; `-vvv`: trace).
    Verbose(u8),
}

impl Verbosity {
    /// From the `-v` count and the `-q` flag.
    pub fn from_flags(verbose: u8, quiet: bool) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, v) => Verbosity::Verbose(v),
        }
    }

    /// Whether results and progress are shown.
    pub fn shows_results(self) -> bool {
        self != Verbosity::Quiet
    }

    /// Whether `-v` (or more) was given.
    pub fn is_verbose(self) -> bool {
        matches!(self, Verbosity::Verbose(_))
    }
}

/// Installs the log subscriber (stderr, no timestamps). `TEXTGCN_LOG`
/// (an `EnvFilter` directive such as `debug` or
/// `textgcn_pipeline::stages=trace`) overrides the level the flags give.
pub fn init_logging(v: Verbosity) {
    use tracing_subscriber::EnvFilter;
    let level = match v {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Verbose(1) => "info",
        Verbosity::Verbose(2) => "debug",
        Verbosity::Verbose(_) => "trace",
    };
    let filter = std::env::var("TEXTGCN_LOG").ok().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // No timestamps on events, but span timing kept (`without_time` would drop both).
        .with_timer(())
        .with_target(false)
        // Steps are spans: at `-vv` each says how long it took when it ends.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
}

/// A spinner with a message, ticking on its own; hidden when stderr is not
/// a terminal or output is quiet.
pub fn spinner(v: Verbosity, message: impl Into<String>) -> ProgressBar {
    if !v.shows_results() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Shows a long step's progress on a [`spinner`]: it becomes a bar with an
/// ETA for `phase` (`done` of `total`), and [`spinner_again`] turns it back.
/// When the bar is hidden (stderr not a terminal), each tenth of the way
/// is logged instead (seen at `-v`).
pub fn show_progress(pb: &ProgressBar, label: &str, phase: &str, done: u64, total: u64) {
    if pb.is_hidden() {
        let tenth = |x: u64| x.saturating_mul(10).checked_div(total).unwrap_or(10);
        if pb.length() != Some(total) || tenth(done) != tenth(pb.position()) {
            tracing::info!("{label}: {phase} {done}/{total}");
        }
        pb.set_length(total);
        pb.set_position(done);
        return;
    }
    if pb.length() != Some(total) {
        pb.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} ({elapsed}, eta {eta})").expect("valid template").progress_chars("=> "));
        pb.set_length(total);
        pb.reset_eta();
    }
    pb.set_message(format!("{label}: {phase}"));
    pb.set_position(done);
}

/// Turns a bar made by [`show_progress`] back into a spinner with `message`.
pub fn spinner_again(pb: &ProgressBar, message: impl Into<String>) {
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    pb.unset_length();
    pb.set_position(0);
    pb.set_message(message.into());
}

/// A bar over `len` steps (e.g. epochs); hidden like [`spinner`].
pub fn bar(v: Verbosity, len: u64, prefix: impl Into<String>) -> ProgressBar {
    if !v.shows_results() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})").expect("valid template").progress_chars("=> "));
    pb.set_prefix(prefix.into());
    pb
}

/// Prints a line above a progress bar, or to stderr when the bar is hidden.
pub fn println(pb: &ProgressBar, line: &str) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

/// A byte count for people: `999 B`, `1.5 MB`.
pub fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.2} GB", b as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_sizes() {
        assert_eq!(Verbosity::from_flags(0, true), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(2, false), Verbosity::Verbose(2));
        assert!(!Verbosity::Quiet.shows_results() && Verbosity::Normal.shows_results());
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        // Hidden bars never draw (stderr of a test is not a terminal anyway).
        assert!(spinner(Verbosity::Quiet, "x").is_hidden());
    }
}

//! Helpers for textgcn's end-to-end tests: where the data and binaries
//! are, temporary stores and data directories, running the CLIs.

use std::path::{Path, PathBuf};

// The test harness of this crate is built by every `cargo test` of the
// workspace: without the corpora it stops there, with this one line.
#[cfg(all(test, textgcn_no_data))]
compile_error!(
    "the end-to-end tests need the corpora: set TEXTGCN_DATA_DIR to the folder holding R8/R8.txt, mr/, ohsumed/, 20ng/ (`make test` sets it), or run `cargo test --workspace --exclude textgcn-e2e`"
);
use std::process::{Command, Output};

/// The benchmark data directory (`TEXTGCN_DATA_DIR`); panics with a clear
/// message when unset, since these tests need the corpora.
pub fn data_dir() -> PathBuf {
    let d = std::env::var_os("TEXTGCN_DATA_DIR").map(PathBuf::from).expect("set TEXTGCN_DATA_DIR to the folder with R8/, mr/, ... (make test does)");
    assert!(d.join("R8/R8.txt").is_file(), "TEXTGCN_DATA_DIR={} has no R8/R8.txt", d.display());
    d
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf()
}

/// Path of a workspace binary: `TEXTGCN_BIN_DIR`, else next to this test
/// executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("TEXTGCN_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("test exe");
        exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf()
    });
    let p = dir.join(name);
    assert!(p.is_file(), "{} not built; run `make test` (it builds the binaries first)", p.display());
    p
}

/// A command for the `textgcn` CLI on `store`.
pub fn textgcn(store: &Path) -> Command {
    let mut c = Command::new(bin("textgcn"));
    c.arg("--store").arg(store);
    c
}

/// Runs a command and returns its output (never panics on failure).
pub fn run(mut c: Command) -> Output {
    c.output().expect("spawn")
}

/// Stdout+stderr as text.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A temporary directory with R8 built into its `store`: the directory
/// (removed when dropped), the store and R8's config.
pub fn built_r8() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = repo().join("configs/R8.toml");
    build(&store, &cfg);
    (dir, store, cfg)
}

/// `textgcn build` into `store` of R8's config with `toml` appended (a
/// config refusal to provoke), and its output.
pub fn build_r8_with(store: &Path, toml: &str) -> Output {
    let cfg = store.with_extension("bad.toml");
    std::fs::write(&cfg, std::fs::read_to_string(repo().join("configs/R8.toml")).unwrap() + toml).unwrap();
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--config"]).arg(&cfg);
    run(c)
}

/// Whether `store` has no ref (nothing was published under a name).
pub fn has_no_ref(store: &Path) -> bool {
    !store.join("refs").exists() || std::fs::read_dir(store.join("refs")).unwrap().count() == 0
}

/// Runs and asserts success, returning stdout.
pub fn ok(c: Command) -> String {
    let o = run(c);
    assert!(o.status.success(), "command failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes a config for dataset files `corpus`/`meta` under `data` with
/// `extra` TOML appended, returning its path.
pub fn write_config(dir: &Path, name: &str, data: &Path, corpus: &str, meta: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let text = format!("name = \"{name}\"\ndata_dir = \"{}\"\n\n[ingest]\ncorpus = \"{corpus}\"\nmeta = \"{meta}\"\n{extra}\n", data.display());
    std::fs::write(&p, text).unwrap();
    p
}

/// Builds `config` (with the benchmark data directory) into `store`,
/// asserting success.
pub fn build(store: &Path, config: &Path) {
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).arg("build").arg("--config").arg(config);
    ok(c);
}

/// `build --json` on a config; returns stage -> (status, why).
pub fn build_json(store: &Path, config: &Path, extra_args: &[&str]) -> serde_json::Value {
    let mut c = textgcn(store);
    c.args(extra_args).arg("build").arg("--config").arg(config).arg("--json");
    serde_json::from_str(&ok(c)).expect("build --json prints JSON")
}

/// `(stage, status)` pairs of a build report.
pub fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["stages"].as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned())).collect()
}

/// Names of all files under `dir`, recursively, sorted (to compare stores).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// What must be identical between two stores: objects, records and refs,
/// by name and bytes (provenance holds timings and is excluded on purpose).
pub fn store_content(store: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    ["objects", "records", "refs"]
        .iter()
        .flat_map(|d| files_under(&store.join(d)).into_iter().map(move |f| format!("{d}/{f}")))
        .map(|f| {
            let bytes = std::fs::read(store.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// `textgcn-train --json -q` on `store` and `cfg` into the run directory
/// `out` (the benchmark data directory set), with `extra` flags.
pub fn train_json(store: &Path, cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(bin("textgcn-train"));
    c.arg("--store").arg(store).arg("--config").arg(cfg).arg("--out").arg(out).args(["--json", "-q"]).args(extra).env("TEXTGCN_DATA_DIR", data_dir());
    run(c)
}

/// [`train_json`] on the CPU (`--device cpu` before `extra`).
pub fn train_cpu(store: &Path, cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let cpu: Vec<&str> = ["--device", "cpu"].into_iter().chain(extra.iter().copied()).collect();
    train_json(store, cfg, out, &cpu)
}

/// Asserts that [`train_cpu`] with `extra` fails with a message holding
/// `want` and writes nothing at `out`.
pub fn assert_training_refused(store: &Path, cfg: &Path, out: &Path, extra: &[&str], want: &str) {
    let o = train_cpu(store, cfg, out, extra);
    let t = text(&o);
    assert!(!o.status.success() && t.contains(want), "{extra:?}: expected a refusal naming {want:?}, got: {t}");
    assert!(!out.exists(), "{extra:?}: a refused run wrote {}", out.display());
}

/// The JSON object a successful `--json` run printed (panics with its
/// output otherwise).
pub fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "training failed: {}", text(o));
    serde_json::from_slice(&o.stdout).expect("--json prints one JSON object")
}

/// A run directory's `epochs.csv` without its wall-time column.
pub fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("epochs.csv")).expect("epochs.csv").lines().map(|l| l.rsplit_once(',').expect("a csv line").0.to_owned()).collect()
}

/// The ref of `name` in `store` as `tests/expected/benchmark-builds.txt`
/// spells it: a line `name stage fingerprint record` a stage.
pub fn ref_lines(store: &Path, name: &str) -> Vec<String> {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(format!("refs/{name}.json"))).unwrap()).unwrap();
    r["stages"].as_array().unwrap().iter().map(|s| format!("{name} {} {} {}", s["stage"].as_str().unwrap(), s["fingerprint"].as_str().unwrap(), s["record"].as_str().unwrap())).collect()
}

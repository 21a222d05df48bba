//! Engines (issue 15): the `datafusion` engine publishes the very objects
//! of the `native` one, the engine is named in the provenance, the report
//! and `status`, and is no part of a fingerprint.
//!
//! These tests need a `textgcn` built with the crate feature `datafusion`
//! (`make test` builds it so); with another one they fail, saying so.

use textgcn_e2e::*;

/// `textgcn build --engine E --json` of `config` into `store`.
fn build_with(store: &std::path::Path, config: &std::path::Path, engine: &str, extra: &[&str]) -> serde_json::Value {
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--json", "--engine", engine]).args(extra).arg("--config").arg(config);
    let o = run(c);
    let t = text(&o);
    assert!(!t.contains("crate feature `datafusion`"), "this textgcn has no DataFusion engine; build it with --features textgcn-pipeline/datafusion (make test does): {t}");
    assert!(o.status.success(), "{t}");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// R8 and mr on DataFusion: every stage's fingerprint and record digest
/// (so every object id) is the one main recorded for the native build;
/// the graph stage says it was built by DataFusion, in the report, the
/// provenance and `status`; a native build in the same store finds every
/// stage fresh (the engine is no part of a fingerprint).
#[test]
fn datafusion_publishes_the_native_objects_of_r8_and_mr() {
    let expected = std::fs::read_to_string(repo().join("tests/expected/benchmark-builds.txt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for ds in ["R8", "mr"] {
        let store = dir.path().join(ds);
        let config = repo().join(format!("configs/{ds}.toml"));
        let report = build_with(&store, &config, "datafusion", &[]);
        let engines: Vec<(String, String)> = report["stages"].as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap().to_owned(), s["engine"].as_str().unwrap_or("?").to_owned())).collect();
        let want: Vec<(String, String)> = ["ingest", "tokenize", "vocab", "graph", "splits"].iter().map(|s| (s.to_string(), if *s == "graph" { "datafusion" } else { "native" }.to_owned())).collect();
        assert_eq!(engines, want, "{ds}");
        let theirs: Vec<&str> = expected.lines().filter(|l| l.starts_with(&format!("{ds} "))).collect();
        assert_eq!(ref_lines(&store, ds), theirs, "{ds}: the DataFusion build differs from the native one recorded");

        let graph_fp = report["stages"][3]["fingerprint"].as_str().unwrap();
        let prov: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(format!("provenance/{graph_fp}.json"))).unwrap()).unwrap();
        assert_eq!(prov["engine"], "datafusion");
        let mut c = textgcn(&store);
        c.env("TEXTGCN_DATA_DIR", data_dir()).args(["status", "--config"]).arg(&config);
        let status = ok(c);
        assert!(status.contains("graph fresh [built by datafusion]") && status.contains("vocab fresh\n"), "{status}");

        let again = build_with(&store, &config, "native", &[]);
        assert_eq!(statuses(&again).iter().map(|s| s.1.as_str()).collect::<Vec<_>>(), ["fresh"; 5], "{ds}: a native build after a DataFusion one");
        assert_eq!(again["stages"][3]["engine"], "datafusion", "a fresh stage names the engine that built it");
    }
}

/// A generated corpus of several partitions under a memory limit small
/// enough that DataFusion's pool spills (and the assembled rows too):
/// the same graph objects as the native build held in memory, in either
/// co-occurrence mode; nothing is left in the store's tmp/.
#[test]
fn datafusion_spilling_publishes_the_native_graph() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(bin("textgcn"));
    c.args(["generate", "--docs", "12000", "--classes", "5", "--mean-length", "60", "--seed", "11", "--json", "--out"]).arg(dir.path().join("corpus"));
    let got: serde_json::Value = serde_json::from_str(&ok(c)).unwrap();
    let generated = std::path::PathBuf::from(got["config"].as_str().unwrap());
    let windows = generated.with_file_name("windows.toml");
    std::fs::write(&windows, std::fs::read_to_string(&generated).unwrap() + "\n[graph]\ncooccurrence = \"windows\"\n").unwrap();
    for config in [&generated, &windows] {
        let native = build_with(&dir.path().join("native"), config, "native", &["--memory-limit", "8GiB"]);
        let store = dir.path().join(format!("df-{}", config.file_stem().unwrap().to_string_lossy()));
        let mut c = textgcn(&store);
        c.args(["-v", "build", "--json", "--engine", "datafusion", "--memory-limit", "1MiB", "--config"]).arg(config);
        let o = run(c);
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{log}");
        assert!(log.contains("graph: DataFusion spilled") && log.contains("of rows spilled to"), "the 1 MiB DataFusion build did not spill: {log}");
        // Progress: the documents paired, all of them before the rows.
        let (paired, rows) = (log.find("graph: documents paired 12000/12000"), log.find("graph: rows "));
        assert!(paired.is_some() && paired < rows, "{log}");
        let df: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(df["stages"][3]["outputs"], native["stages"][3]["outputs"], "{}", config.display());
        assert_eq!(df["stages"][3]["summary"], native["stages"][3]["summary"]);
        assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "spill files left behind");
    }
}

/// A `textgcn` without the feature refuses the engine up front (a usage
/// error for the flag, the config key for the config), and one with it
/// refuses a name it does not know: nothing is built either way.
#[test]
fn an_unknown_engine_is_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut c = textgcn(&store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--engine", "spark", "--config"]).arg(repo().join("configs/R8.toml"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--engine"), "{}", text(&o));
    let o = build_r8_with(&store, "\n[build]\nengine = \"spark\"\n");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("build.engine") && text(&o).contains("spark"), "{}", text(&o));
    assert!(has_no_ref(&store));
}

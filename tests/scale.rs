//! Scale work: the corpus generator and the bounded-memory build. A build
//! under a memory limit small enough that every graph row is spilled to
//! disk publishes the same bytes as one that holds them all.

use textgcn_e2e::*;

/// `textgcn generate` into `dir`; returns the config it wrote.
fn generate(dir: &std::path::Path, docs: usize) -> std::path::PathBuf {
    let mut c = std::process::Command::new(bin("textgcn"));
    c.args(["generate", "--docs", &docs.to_string(), "--classes", "5", "--mean-length", "60", "--seed", "11", "--json", "--out"]).arg(dir);
    let got: serde_json::Value = serde_json::from_str(&ok(c)).unwrap();
    assert_eq!(got["docs"], docs);
    std::path::PathBuf::from(got["config"].as_str().unwrap())
}

#[test]
fn a_spilled_build_publishes_the_same_bytes_as_one_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = generate(&dir.path().join("corpus"), 3000);
    let (held, spilled, one_thread) = (dir.path().join("held"), dir.path().join("spilled"), dir.path().join("one"));
    let mut c = textgcn(&held);
    c.args(["build", "--memory-limit", "8GiB", "--config"]).arg(&config);
    ok(c);
    let mut c = textgcn(&spilled);
    c.args(["-v", "build", "--memory-limit", "1MiB", "--config"]).arg(&config);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("of rows spilled to"), "the 1 MiB build did not spill: {log}");
    // Without a terminal, progress is logged (at -v) a tenth at a time,
    // ending at the totals: all nodes' rows, three passes over the edges.
    let report: serde_json::Value = {
        let mut c = textgcn(&spilled);
        c.args(["inspect", "synthetic-3000", "--json"]);
        serde_json::from_str(&ok(c)).unwrap()
    };
    let (nodes, edges) = (report["nodes"].as_u64().unwrap(), report["edges"].as_u64().unwrap());
    assert!(log.contains(&format!("synthetic-3000: graph: rows {nodes}/{nodes}")), "{log}");
    assert!(log.contains(&format!("synthetic-3000: graph: edges written {0}/{0}", 3 * edges)), "{log}");
    // The streamed stages say how far they are too, in documents (the
    // vocab stage takes the word counts from the tokenize stage before it:
    // it has no documents of its own to count).
    assert!(log.contains("synthetic-3000: tokenize: documents 3000/3000"), "{log}");
    assert!(!log.contains("vocab: documents counted"), "{log}");
    let lines = log.lines().filter(|l| l.contains("graph: rows")).count();
    assert!((2..=12).contains(&lines), "{lines} progress lines for the rows: {log}");
    let mut c = textgcn(&one_thread);
    c.args(["--threads", "1", "build", "--memory-limit", "1MiB", "--config"]).arg(&config);
    ok(c);
    let objects = |s: &std::path::Path| files_under(&s.join("objects"));
    assert!(objects(&held).len() >= 9);
    for other in [&spilled, &one_thread] {
        assert_eq!(objects(&held), objects(other), "objects differ");
        for f in files_under(&held.join("records")) {
            assert_eq!(std::fs::read(held.join("records").join(&f)).unwrap(), std::fs::read(other.join("records").join(&f)).unwrap(), "record {f} differs");
        }
        // The spill files were unnamed: nothing is left in tmp/.
        assert_eq!(files_under(&other.join("tmp")), Vec::<String>::new());
    }
}

#[test]
fn a_memory_limit_below_a_mebibyte_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = generate(&dir.path().join("corpus"), 10);
    let mut text_cfg = std::fs::read_to_string(&config).unwrap();
    text_cfg.push_str("\n[build]\nmemory_limit = \"1000B\"\n");
    std::fs::write(&config, text_cfg).unwrap();
    let mut c = textgcn(&dir.path().join("store"));
    c.args(["build", "--config"]).arg(&config);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("key `build.memory_limit`") && err.contains("below 1 MiB"), "{err}");
    assert!(!dir.path().join("store/objects").exists() || files_under(&dir.path().join("store/objects")).is_empty());
    let mut c = textgcn(&dir.path().join("store"));
    c.args(["build", "--memory-limit", "lots", "--config"]).arg(&config);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--memory-limit"), "{}", text(&o));
}

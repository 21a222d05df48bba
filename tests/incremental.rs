//! Incremental rebuilds: only stages whose inputs or parameters changed
//! rerun, with the reason in words; identical earlier runs are cache hits.

use std::path::Path;

use textgcn_e2e::*;

fn copy_r8(dir: &Path) {
    std::fs::create_dir_all(dir.join("R8")).unwrap();
    for f in ["R8.txt", "R8.meta.txt"] {
        std::fs::copy(data_dir().join("R8").join(f), dir.join("R8").join(f)).unwrap();
    }
}

fn config(dir: &Path, data: &Path, window: usize, min_freq: u64) -> std::path::PathBuf {
    write_config(dir, "R8inc", data, "R8/R8.txt", "R8/R8.meta.txt", &format!("[vocab]\nmin_freq = {min_freq}\n[graph]\nwindow_size = {window}\n"))
}

fn expect(report: &serde_json::Value, want: &[(&str, &str)]) {
    let got = statuses(report);
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want, "report: {report:#}");
}

fn why(report: &serde_json::Value, stage: &str) -> String {
    report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap()["why"].as_str().unwrap_or("").to_owned()
}

const ALL_REBUILT: [(&str, &str); 5] = [("ingest", "rebuilt"), ("tokenize", "rebuilt"), ("vocab", "rebuilt"), ("graph", "rebuilt"), ("splits", "rebuilt")];
const ALL_FRESH: [(&str, &str); 5] = [("ingest", "fresh"), ("tokenize", "fresh"), ("vocab", "fresh"), ("graph", "fresh"), ("splits", "fresh")];

#[test]
fn only_what_changed_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_r8(&data);
    let store = dir.path().join("store");

    let cfg = config(dir.path(), &data, 20, 5);
    expect(&build_json(&store, &cfg, &[]), &ALL_REBUILT);
    // Nothing changed: nothing reruns.
    expect(&build_json(&store, &cfg, &[]), &ALL_FRESH);

    // window_size: the graph reruns; splits do not depend on the graph.
    let cfg = config(dir.path(), &data, 15, 5);
    let mut st = textgcn(&store);
    st.args(["status", "--config"]).arg(&cfg);
    let s = ok(st);
    assert!(s.contains("graph stale (window_size changed 20 → 15)"), "{s}");
    let r = build_json(&store, &cfg, &[]);
    expect(&r, &[("ingest", "fresh"), ("tokenize", "fresh"), ("vocab", "fresh"), ("graph", "rebuilt"), ("splits", "fresh")]);
    assert_eq!(why(&r, "graph"), "window_size changed 20 → 15");

    // Back to 20: a cache hit from the earlier run, nothing recomputed.
    let cfg = config(dir.path(), &data, 20, 5);
    let r = build_json(&store, &cfg, &[]);
    expect(&r, &ALL_FRESH);
    assert!(why(&r, "graph").contains("window_size changed 15 → 20") && why(&r, "graph").contains("store cache"), "{r:#}");

    // min_freq: vocab onward.
    let cfg = config(dir.path(), &data, 20, 3);
    let r = build_json(&store, &cfg, &[]);
    expect(&r, &[("ingest", "fresh"), ("tokenize", "fresh"), ("vocab", "rebuilt"), ("graph", "rebuilt"), ("splits", "fresh")]);
    assert_eq!(why(&r, "vocab"), "min_freq changed 5 → 3");
    assert_eq!(why(&r, "graph"), "input doc_tokens from vocab changed, input vocab from vocab changed");

    // Touching the corpus without changing its bytes reruns nothing.
    let corpus = data.join("R8/R8.txt");
    let f = std::fs::File::options().write(true).open(&corpus).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).unwrap();
    drop(f);
    expect(&build_json(&store, &cfg, &[]), &ALL_FRESH);

    // Editing one document reruns everything downstream of ingest.
    let mut text = std::fs::read(&corpus).unwrap();
    let pos = text.iter().position(|&b| b == b' ').unwrap();
    text.splice(pos..pos, b" zebra".iter().copied());
    std::fs::write(&corpus, text).unwrap();
    let r = build_json(&store, &cfg, &[]);
    expect(&r, &ALL_REBUILT);
    assert_eq!(why(&r, "ingest"), "corpus R8.txt content changed");
}

/// Each stage's outputs in a build report: stage → output → object id.
fn outputs(report: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    report["stages"].as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap().to_owned(), s["outputs"].clone())).collect()
}

/// When consecutive stages run in one build, each takes what the stage
/// before it had in hand (the texts, the word counts, the vocabulary, the
/// token ids; the documents' names, splits and labels for the graph and
/// splits stages) instead of reading its output back from the store
/// (`stages/handoff.rs`). A stage that reruns alone reads the store: both
/// ways must publish the same objects.
#[test]
fn a_stage_run_alone_publishes_what_it_publishes_after_its_predecessor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_r8(&data);
    // Capitals in the first document, so that `tokenize.lowercase` matters.
    let corpus = data.join("R8/R8.txt");
    let text = std::fs::read_to_string(&corpus).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    std::fs::write(&corpus, format!("{}\n{rest}", first.to_uppercase())).unwrap();
    let cfg = |window, min_freq| config(dir.path(), &data, window, min_freq);

    // Every stage after its predecessor, in one build.
    let whole = build_json(&dir.path().join("whole"), &cfg(20, 5), &[]);
    expect(&whole, &ALL_REBUILT);
    let want = outputs(&whole);

    // Built first with `first`, then with the config of `whole`: only
    // the stages of `rebuilt` rerun, and publish what `whole` published.
    let alone = |name: &str, first: &Path, rebuilt: &[&str]| {
        let store = dir.path().join(name);
        expect(&build_json(&store, first, &[]), &ALL_REBUILT);
        let r = build_json(&store, &cfg(20, 5), &[]);
        let statuses = ALL_FRESH.map(|(stage, _)| (stage, if rebuilt.contains(&stage) { "rebuilt" } else { "fresh" }));
        expect(&r, &statuses);
        assert_eq!(outputs(&r), want, "{name}");
    };
    // The tokenize stage alone after a fresh ingest stage: it reads the
    // texts back from the documents table.
    let other = write_config(dir.path(), "R8inc", &data, "R8/R8.txt", "R8/R8.meta.txt", "[tokenize]\nlowercase = false\n[vocab]\nmin_freq = 5\n[graph]\nwindow_size = 20\n");
    alone("tokenize-alone", &other, &["tokenize", "vocab", "graph"]);
    // The vocab stage alone after a fresh tokenize stage: it counts the
    // tokens table (and hands its token ids to the graph stage).
    alone("vocab-alone", &cfg(15, 3), &["vocab", "graph"]);
    // The graph stage alone after a fresh vocab stage: it reads the token
    // ids from the doc_tokens table, the vocabulary and the documents'
    // labels from theirs.
    alone("graph-alone", &cfg(15, 5), &["graph"]);
    // The splits stage alone: it reads the documents' splits from the
    // documents table.
    let seed = write_config(dir.path(), "R8inc", &data, "R8/R8.txt", "R8/R8.meta.txt", "[vocab]\nmin_freq = 5\n[graph]\nwindow_size = 20\n[splits]\nseed = 7\n");
    alone("splits-alone", &seed, &["splits"]);
}

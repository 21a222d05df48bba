//! Bad input: each malformed corpus or config gives its own message naming
//! the place, a non-zero exit, and leaves no ref and no object behind.

use std::path::Path;

use textgcn_e2e::*;

struct Case {
    name: &'static str,
    corpus: &'static [u8],
    meta: &'static [u8],
    extra: &'static str,
    want: &'static str,
}

const META2: &[u8] = b"d1\ttrain\tpos\nd2\ttest\tneg\n";

fn cases() -> Vec<Case> {
    vec![
        Case { name: "invalid-utf8", corpus: b"good text\nbad \xe9 text\n", meta: META2, extra: "encoding = \"utf-8\"", want: "corpus.txt:2: invalid UTF-8 at byte offset 14 (byte 0xe9)" },
        Case { name: "utf16-bom", corpus: b"\xff\xfeh\x00i\x00", meta: META2, extra: "", want: "starts with a UTF-16 byte-order mark" },
        Case { name: "nul", corpus: b"one\ntw\x00o\n", meta: META2, extra: "", want: "corpus.txt:2: NUL byte at byte offset 6" },
        Case { name: "empty", corpus: b"", meta: b"", extra: "", want: "the corpus is empty" },
        Case { name: "blank-document", corpus: b"one two\n \t \n", meta: META2, extra: "", want: "corpus.txt:2: document \"d2\" is blank" },
        Case { name: "duplicate-name", corpus: b"a b\nc d\n", meta: b"d1\ttrain\tpos\nd1\ttest\tneg\n", extra: "", want: "meta.txt:2: duplicate document name \"d1\" (first on line 1)" },
        Case { name: "missing-label", corpus: b"a b\nc d\n", meta: b"d1\ttrain\tpos\nd2\ttest\t\n", extra: "", want: "meta.txt:2: document \"d2\" has no label" },
        Case { name: "unknown-split", corpus: b"a b\nc d\n", meta: b"d1\ttrain\tpos\nd2\tdev\tneg\n", extra: "", want: "meta.txt:2: unknown split value \"dev\"" },
        Case { name: "single-class", corpus: b"a b\nc d\n", meta: b"d1\ttrain\tpos\nd2\ttest\tpos\n", extra: "", want: "only one class (\"pos\")" },
        Case { name: "count-mismatch", corpus: b"a b\nc d\ne f\n", meta: META2, extra: "", want: "has 3 documents but" },
        Case { name: "empty-vocabulary", corpus: b"the a an\nof the\n", meta: META2, extra: "", want: "empty vocabulary" },
    ]
}

fn assert_nothing_published(store: &Path) {
    if store.exists() {
        assert!(files_under(&store.join("objects")).is_empty(), "objects left: {:?}", files_under(&store.join("objects")));
        assert!(files_under(&store.join("records")).is_empty(), "records left");
        assert!(files_under(&store.join("refs")).is_empty(), "refs left");
        assert!(files_under(&store.join("tmp")).is_empty(), "temp files left");
    }
}

#[test]
fn malformed_corpora_fail_clearly_and_publish_nothing() {
    let mut messages = std::collections::HashSet::new();
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corpus.txt"), c.corpus).unwrap();
        std::fs::write(dir.path().join("meta.txt"), c.meta).unwrap();
        let cfg = write_config(dir.path(), "bad", dir.path(), "corpus.txt", "meta.txt", c.extra);
        let store = dir.path().join("store");
        let mut cmd = textgcn(&store);
        cmd.arg("build").arg("--config").arg(&cfg);
        let o = run(cmd);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{}: expected exit 1, got {:?}: {t}", c.name, o.status);
        assert!(t.contains(c.want), "{}: message {t:?} lacks {:?}", c.name, c.want);
        assert!(!t.contains("panicked"), "{}: {t}", c.name);
        assert_nothing_published(&store);
        messages.insert(t);
    }
    assert_eq!(messages.len(), cases().len(), "every case has its own message");
}

#[test]
fn a_failed_rebuild_keeps_the_previous_ref() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corpus.txt"), b"alpha beta gamma\nbeta gamma delta\n").unwrap();
    std::fs::write(dir.path().join("meta.txt"), META2).unwrap();
    let cfg = write_config(dir.path(), "tiny", dir.path(), "corpus.txt", "meta.txt", "[vocab]\nmin_freq = 1\n");
    let store = dir.path().join("store");
    build_json(&store, &cfg, &[]);
    let before = (files_under(&store.join("objects")), std::fs::read(store.join("refs/tiny.json")).unwrap());
    std::fs::write(dir.path().join("corpus.txt"), b"alpha beta\ngamma\x00\n").unwrap();
    let mut cmd = textgcn(&store);
    cmd.arg("build").arg("--config").arg(&cfg);
    assert_eq!(run(cmd).status.code(), Some(1));
    assert_eq!(before, (files_under(&store.join("objects")), std::fs::read(store.join("refs/tiny.json")).unwrap()));
}

#[test]
fn config_mistakes_are_rejected_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    let cases: [(&str, &str); 6] = [
        ("[graph]\nwindw_size = 20\n", "key `graph.windw_size`: unknown field `windw_size`"),
        ("[graph]\nwindow_size = \"big\"\n", "key `graph.window_size`: invalid type"),
        ("[graph]\nwindow_size = 0\n", "key `graph.window_size`: must be at least 1"),
        ("[vocab]\nmin_freq = -1\n", "key `vocab.min_freq`"),
        ("[splits]\nval_fraction = 1.5\n", "key `splits.val_fraction`: 1.5 is out of range [0, 1)"),
        ("[tokenize]\nrules = \"refrence\"\n", "did you mean `reference`?"),
    ];
    for (extra, want) in cases {
        let cfg = write_config(dir.path(), "cfg", &data, "R8/R8.txt", "R8/R8.meta.txt", extra);
        let store = dir.path().join("store");
        let mut cmd = textgcn(&store);
        cmd.arg("build").arg("--config").arg(&cfg);
        let o = run(cmd);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{extra}: {t}");
        assert!(t.contains(want) && t.contains("cfg.toml:"), "{extra}: {t}");
        assert!(!store.exists(), "store created before the config was validated");
    }
    let cfg = write_config(dir.path(), "cfg", &data, "R8/nope.txt", "R8/R8.meta.txt", "");
    let mut cmd = textgcn(&dir.path().join("store"));
    cmd.arg("build").arg("--config").arg(&cfg);
    let t = text(&run(cmd));
    assert!(t.contains("key `ingest.corpus`: file") && t.contains("nope.txt not found"), "{t}");
    let mut cmd = textgcn(&dir.path().join("store"));
    cmd.arg("build").arg("--bogus");
    assert_eq!(run(cmd).status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn a_corpus_that_is_not_a_file_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta.txt"), META2).unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (corpus, want) in [(dir.path().join("adir"), "is a directory, not a regular file"), (fifo, "is a FIFO (named pipe), not a regular file"), ("/dev/null".into(), "is a character device, not a regular file")] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, format!("name = \"c\"\ndata_dir = \"{}\"\n[ingest]\ncorpus = \"{}\"\nmeta = \"meta.txt\"\n", dir.path().display(), corpus.display())).unwrap();
        for cmd in ["build", "status"] {
            let mut c = textgcn(&dir.path().join("store"));
            c.arg(cmd).arg("--config").arg(&cfg);
            let o = run(c);
            let t = text(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd} {}: {t}", corpus.display());
            assert!(t.contains("key `ingest.corpus`") && t.contains(want), "{cmd} {}: {t}", corpus.display());
        }
    }
}

#[test]
fn a_window_larger_than_any_document_is_the_whole_document() {
    // Windows of 2^63 - 1 and 2^32 + 1 tokens overflowed an allocation
    // (capacity overflow, a 34 GB abort); any window at least as long as
    // the longest document gives the graph of that window.
    let dir = tempfile::tempdir().unwrap();
    let corpus = b"alpha beta gamma delta alpha\nbeta gamma epsilon\ndelta alpha beta zeta\n";
    let graph_of = |window: &str| {
        let d = dir.path().join(window);
        std::fs::create_dir(&d).unwrap();
        let (o, _) = build_in(&d, corpus, META3, &format!("[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[graph]\nwindow_size = {window}\n"));
        assert!(o.status.success(), "window {window}: {}", text(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let g = report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "graph").unwrap().clone();
        (g["outputs"]["edge_index"][0].clone(), g["outputs"]["edge_attr"][0].clone())
    };
    let want = graph_of("5");
    for w in ["9223372036854775807", "4294967297", "6"] {
        assert_eq!(graph_of(w), want, "window {w}");
    }
}

fn build_in(dir: &Path, corpus: &[u8], meta: &[u8], extra: &str) -> (std::process::Output, std::path::PathBuf) {
    std::fs::write(dir.join("corpus.txt"), corpus).unwrap();
    std::fs::write(dir.join("meta.txt"), meta).unwrap();
    let cfg = write_config(dir, "t", dir, "corpus.txt", "meta.txt", extra);
    let store = dir.join("store");
    let mut cmd = textgcn(&store);
    cmd.arg("build").arg("--config").arg(&cfg).arg("--json");
    (run(cmd), store)
}

const META3: &[u8] = b"d1\ttrain\tpos\nd2\ttest\tneg\nd3\ttrain\tneg\n";

#[test]
fn crlf_line_ends_give_the_same_artifacts_as_lf() {
    let lf = b"good words here\nmore good words\nwords again here\n";
    let crlf = b"good words here\r\nmore good words\r\nwords again here\r\n";
    let meta_crlf = b"d1\ttrain\tpos\r\nd2\ttest\tneg\r\nd3\ttrain\tneg\r\n";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = "[vocab]\nmin_freq = 1";
    let (oa, sa) = build_in(a.path(), lf, META3, extra);
    let (ob, sb) = build_in(b.path(), crlf, meta_crlf, extra);
    assert!(oa.status.success() && ob.status.success(), "{}{}", text(&oa), text(&ob));
    assert_eq!(files_under(&sa.join("objects")), files_under(&sb.join("objects")), "CRLF changed the artifacts");
}

#[test]
fn blank_documents_are_an_error_unless_kept_and_empty_after_cleaning_is_legal() {
    let corpus = b"good words here\n  \t \nwords again here\n";
    let d = tempfile::tempdir().unwrap();
    let (o, _) = build_in(d.path(), corpus, META3, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("corpus.txt:2: document \"d2\" is blank"), "{}", text(&o));
    let d = tempfile::tempdir().unwrap();
    let (o, _) = build_in(d.path(), corpus, META3, "keep_blank_documents = true\n[vocab]\nmin_freq = 1");
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["stages"][0]["summary"]["blank_documents"], 1);
    assert_eq!(r["stages"][2]["summary"]["empty_documents"], 1);
    // Empty only after cleaning and filtering (stop words): a legal node.
    let d = tempfile::tempdir().unwrap();
    let (o, _) = build_in(d.path(), b"good words here\nthe of and a\nwords again here\n", META3, "[vocab]\nmin_freq = 1");
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["stages"][2]["summary"]["empty_documents"], 1, "{}", r["stages"][2]);
    assert_eq!(r["stages"][3]["summary"]["num_docs"], 3, "the empty document stays a node");
}

#[test]
fn a_100_mb_single_line_is_refused_or_handled_in_bounded_memory() {
    use rand::{Rng, SeedableRng};
    let d = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    let mut corpus = Vec::with_capacity(105 << 20);
    while corpus.len() < 100 << 20 {
        corpus.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
        corpus.push(b' ');
    }
    corpus.push(b'\n');
    let mut meta = b"d0\ttrain\tpos\n".to_vec();
    for k in 1..20 {
        let doc: Vec<&str> = (0..50).map(|_| words[rng.random_range(0..words.len())].as_str()).collect();
        corpus.extend_from_slice(doc.join(" ").as_bytes());
        corpus.push(b'\n');
        meta.extend_from_slice(format!("d{k}\t{}\t{}\n", if k % 3 == 0 { "test" } else { "train" }, if k % 2 == 0 { "pos" } else { "neg" }).as_bytes());
    }
    std::fs::write(d.path().join("corpus.txt"), &corpus).unwrap();
    std::fs::write(d.path().join("meta.txt"), &meta).unwrap();
    // Over the default limit of one document (64 MiB): refused at once,
    // naming the line; raised, built in memory linear in the input.
    let cfg = write_config(d.path(), "big", d.path(), "corpus.txt", "meta.txt", "");
    let mut c = textgcn(&d.path().join("store"));
    c.arg("build").arg("--config").arg(&cfg);
    let o = run(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("corpus.txt:1: document \"d0\" is 104857") && t.contains("more than ingest.max_document_bytes (67108864)"), "{t}");
    assert_nothing_published(&d.path().join("store"));
    let cfg = write_config(d.path(), "big", d.path(), "corpus.txt", "meta.txt", "max_document_bytes = 134217728");
    let mut c = std::process::Command::new("/usr/bin/time");
    c.args(["-f", "MAXRSS_KB %M"]).arg(bin("textgcn")).arg("--store").arg(d.path().join("store")).arg("build").arg("--config").arg(&cfg);
    let o = run(c);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let kb: u64 = t.lines().find_map(|l| l.strip_prefix("MAXRSS_KB ")).expect("/usr/bin/time output").trim().parse().unwrap();
    let ratio = (kb * 1024) as f64 / corpus.len() as f64;
    eprintln!("a {} MB corpus with one 100 MB line: peak RSS {} MB ({ratio:.1}x the input)", corpus.len() >> 20, kb >> 10);
    // Linear in the input (measured about 7x: raw, decoded, cleaned and
    // encoded copies); a quadratic blow-up or a per-line buffer explosion
    // would be far above.
    assert!(ratio < 10.0, "peak RSS {kb} KB for a {} byte corpus", corpus.len());
}

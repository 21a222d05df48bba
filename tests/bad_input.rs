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

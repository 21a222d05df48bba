//! Tabular corpora (CSV, TSV, NDJSON, Parquet): the same
//! documents in any format give the same artifacts, byte for byte.

use std::path::Path;
use std::sync::Arc;

use textgcn_e2e::*;

struct Doc {
    name: String,
    split: String,
    label: String,
    text: String,
}

/// The first 400 R8 documents.
fn sample() -> Vec<Doc> {
    let d = data_dir();
    let text = std::fs::read_to_string(d.join("R8/R8.txt")).unwrap();
    let meta = std::fs::read_to_string(d.join("R8/R8.meta.txt")).unwrap();
    text.lines()
        .zip(meta.lines())
        .take(400)
        .map(|(t, m)| {
            let f: Vec<&str> = m.split('\t').collect();
            Doc { name: format!("doc{}", f[0]), split: f[1].into(), label: f[2].into(), text: t.trim().into() }
        })
        .collect()
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn write_all(dir: &Path, docs: &[Doc]) {
    let mut csv = String::from("name,split,label,text\n");
    let mut tsv = String::from("name\tsplit\tlabel\ttext\n");
    let mut ndjson = String::new();
    for d in docs {
        csv.push_str(&format!("{},{},{},{}\n", quote(&d.name), quote(&d.split), quote(&d.label), quote(&d.text)));
        tsv.push_str(&format!("{}\t{}\t{}\t{}\n", quote(&d.name), quote(&d.split), quote(&d.label), quote(&d.text)));
        ndjson.push_str(&serde_json::json!({"name": d.name, "split": d.split, "label": d.label, "text": d.text}).to_string());
        ndjson.push('\n');
    }
    std::fs::write(dir.join("c.csv"), csv).unwrap();
    std::fs::write(dir.join("c.tsv"), tsv).unwrap();
    std::fs::write(dir.join("c.ndjson"), ndjson).unwrap();
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let col = |f: fn(&Doc) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(docs.iter().map(f))) };
    let batch = RecordBatch::try_from_iter([("name", col(|d| &d.name)), ("split", col(|d| &d.split)), ("label", col(|d| &d.label)), ("text", col(|d| &d.text))]).unwrap();
    let f = std::fs::File::create(dir.join("c.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn config(dir: &Path, name: &str, format: &str, file: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!("name = \"{name}\"\ndata_dir = \"{}\"\n[ingest]\nformat = \"{format}\"\ncorpus = \"{file}\"\nencoding = \"utf-8\"\n{extra}\n[vocab]\nmin_freq = 2\n", dir.display()),
    )
    .unwrap();
    p
}

fn outputs(report: &serde_json::Value) -> Vec<String> {
    report["stages"].as_array().unwrap().iter().flat_map(|s| s["outputs"].as_object().unwrap().values().map(|o| o[0].as_str().unwrap().to_owned())).collect()
}

#[test]
fn every_tabular_format_gives_the_same_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &sample());
    let store = dir.path().join("store");
    let cols = "name_column = \"name\"\nsplit_column = \"split\"";
    let mut all = Vec::new();
    for (fmt, file) in [("csv", "c.csv"), ("tsv", "c.tsv"), ("ndjson", "c.ndjson"), ("parquet", "c.parquet")] {
        let cfg = config(dir.path(), fmt, fmt, file, cols);
        let r = build_json(&store, &cfg, &[]);
        assert_eq!(r["stages"][0]["summary"]["documents"], 400, "{fmt}");
        all.push((fmt, outputs(&r)));
    }
    // The ingest parameters name the format, so records differ, but every
    // object (documents table, tokens, vocabulary, graph, splits) is equal.
    for (fmt, outs) in &all[1..] {
        assert_eq!(outs, &all[0].1, "{fmt} artifacts differ from csv's");
    }
}

#[test]
fn no_split_column_means_a_seeded_random_split() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &sample());
    let cfg = config(dir.path(), "rnd", "csv", "c.csv", "[splits]\nrandom_split = [0.7, 0.1, 0.2]\nseed = 3");
    let r = build_json(&dir.path().join("store"), &cfg, &[]);
    let s = &r["stages"][4]["summary"];
    assert_eq!((s["train"].as_u64(), s["val"].as_u64(), s["test"].as_u64()), (Some(280), Some(40), Some(80)), "{s}");
}

#[test]
fn tabular_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &sample());
    let cases = [
        ("c.csv", "csv", "text_column = \"body\"", "no column \"body\" (config key ingest.text_column)"),
        ("c.parquet", "parquet", "label_column = \"class\"", "no column \"class\" (config key ingest.label_column)"),
        ("c.ndjson", "ndjson", "text_column = \"body\"", "c.ndjson: no column \"body\" (config key ingest.text_column)"),
        ("ragged.csv", "csv", "", "ragged.csv: line 3: 3 fields, but the header has 2 (ragged row)"),
        ("badsplit.csv", "csv", "split_column = \"split\"", "badsplit.csv: row 2: unknown split value \"dev\""),
        ("nolabel.csv", "csv", "", "nolabel.csv: row 1: document \"row-1\" has no label"),
        ("badline.ndjson", "ndjson", "", "badline.ndjson: line 3: invalid JSON at column 25"),
        ("notobject.ndjson", "ndjson", "", "notobject.ndjson: line 2: expected a JSON object"),
        ("numbers.ndjson", "ndjson", "", "column \"text\" (config key ingest.text_column) holds a number, not text"),
        ("dupname.csv", "csv", "name_column = \"id\"", "dupname.csv: row 3: duplicate document name \"d1\" (first in row 1)"),
        ("oneclass.csv", "csv", "", "oneclass.csv: only one class (\"a\")"),
    ];
    std::fs::write(dir.path().join("dupname.csv"), "id,text,label\nd1,hello world,a\nd2,good day,b\nd1,bad day,b\n").unwrap();
    std::fs::write(dir.path().join("oneclass.csv"), "text,label\nhello world,a\ngood day,a\n").unwrap();
    std::fs::write(dir.path().join("badline.ndjson"), "{\"text\": \"a b\", \"label\": \"x\"}\n\n{\"text\": \"c d\", \"label\" \"y\"}\n").unwrap();
    std::fs::write(dir.path().join("notobject.ndjson"), "{\"text\": \"a b\", \"label\": \"x\"}\n[1, 2]\n").unwrap();
    std::fs::write(dir.path().join("numbers.ndjson"), "{\"text\": 12, \"label\": \"x\"}\n{\"text\": 7, \"label\": \"y\"}\n").unwrap();
    std::fs::write(dir.path().join("ragged.csv"), "text,label\nhello world,a\ngood day,b,extra\n").unwrap();
    std::fs::write(dir.path().join("badsplit.csv"), "text,label,split\nhello world,a,train\ngood day,b,dev\n").unwrap();
    std::fs::write(dir.path().join("nolabel.csv"), "text,label\nhello world,\ngood day,b\n").unwrap();
    for (file, fmt, extra, want) in cases {
        let cfg = config(dir.path(), "bad", fmt, file, extra);
        let store = dir.path().join(format!("store-{file}"));
        let mut c = textgcn(&store);
        c.arg("build").arg("--config").arg(&cfg);
        let o = run(c);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {t}");
        assert!(t.contains(want), "{file}: {t:?} lacks {want:?}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

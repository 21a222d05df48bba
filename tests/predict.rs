//! Inductive prediction (`textgcn-train predict`): training documents fed
//! back get their transductive label, results are deterministic, empty and
//! all-unknown documents get a clear result, mismatched pipelines and
//! damaged predictor files are refused, and held-out test documents are
//! classified after training.

use std::path::Path;

use textgcn_e2e::*;

fn trainer() -> std::process::Command {
    let mut c = std::process::Command::new(bin("textgcn-train"));
    c.env("TEXTGCN_DATA_DIR", data_dir());
    c
}

fn predict(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = trainer();
    c.arg("predict").arg("--model").arg(model).arg("--input").arg(input).arg("--output").arg(out).args(extra);
    run(c)
}

/// `(document, predicted label)` of the training (and validation) documents in a run's
/// predictions.parquet.
fn transductive_labels(run_dir: &Path) -> std::collections::HashMap<String, String> {
    use arrow_array::{Array, StringArray};
    let f = std::fs::File::open(run_dir.join("predictions.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut out = std::collections::HashMap::new();
    for b in reader {
        let b = b.unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (doc, split, pred) = (col("document"), col("split"), col("predicted_label"));
        for i in 0..b.num_rows() {
            if split.value(i) == "train" || split.value(i) == "val" {
                out.insert(doc.value(i).to_owned(), pred.value(i).to_owned());
            }
        }
    }
    out
}

#[test]
fn r8_documents_fed_back_deterministic_edge_cases_and_mismatch() {
    let (dir, store, cfg) = built_r8();
    let model = dir.path().join("run");
    let mut c = trainer();
    c.arg("--store").arg(&store).arg("--config").arg(&cfg).arg("--out").arg(&model).args(["--epochs", "60", "--seed", "3", "-q"]);
    ok(c);
    for f in ["predictor.json", "predictor.safetensors"] {
        assert!(model.join(f).is_file(), "{f} missing from the run directory");
    }

    // Training documents, fed back as new documents (raw text, as in R8.txt).
    let data = data_dir();
    let corpus = std::fs::read(data.join("R8/R8.txt")).unwrap();
    let meta = std::fs::read_to_string(data.join("R8/R8.meta.txt")).unwrap();
    let mut names = Vec::new();
    let mut lines = Vec::new();
    for (line, m) in corpus.split(|&b| b == b'\n').zip(meta.lines()) {
        let f: Vec<&str> = m.split('\t').collect();
        if f[1].contains("train") && names.len() < 2000 {
            names.push(f[0].to_owned());
            lines.push(line.to_vec());
        }
    }
    let input = dir.path().join("train-docs.txt");
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let out = dir.path().join("p.json");
    let o = predict(&model, &input, &out, &["--encoding", "latin-1", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["documents"], 2000);
    let preds: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let want = transductive_labels(&model);
    let same = names.iter().zip(&preds).filter(|(n, p)| p["prediction"]["label"].as_str() == Some(want[*n].as_str())).count();
    eprintln!("{same} of {} training documents fed back got their transductive label", names.len());
    assert!(same as f64 >= 0.95 * names.len() as f64, "only {same} of {} training documents got their transductive label", names.len());
    // Every prediction names words that are in the document's top list.
    assert!(preds.iter().all(|p| p["prediction"]["top_words"].as_array().unwrap().len() <= 5));

    // Deterministic: the same input gives the same bytes.
    let out2 = dir.path().join("p2.json");
    assert!(predict(&model, &input, &out2, &["--encoding", "latin-1"]).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap(), "two predictions differ");

    // A Latin-1 byte under the default strict UTF-8: the error names the
    // flag that reads it (predict has no config file to edit).
    let latin = dir.path().join("latin.txt");
    std::fs::write(&latin, b"caf\xe9 prices rose\n").unwrap();
    let o = predict(&model, &latin, &dir.path().join("latin.csv"), &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("latin.txt:1: invalid UTF-8 at byte offset 3 (byte 0xe9); use --encoding latin-1 or --encoding utf-8-lossy"), "{}", text(&o));
    let o = predict(&model, &latin, &dir.path().join("latin.csv"), &["--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("possible values: text, csv, tsv, parquet, ndjson"), "{}", text(&o));

    // An empty document and one of unknown words: no label, said why.
    let odd = dir.path().join("odd.txt");
    std::fs::write(&odd, "\nqqqzzz xxyyww\nshr cts net profit mln vs\n").unwrap();
    let out3 = dir.path().join("odd.csv");
    let o = predict(&model, &odd, &out3, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&out3).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("document,true_label,predicted_label,note,"), "{}", rows[0]);
    assert!(rows[1].starts_with("line-1,,,empty document,,0,0,"), "{}", rows[1]);
    assert!(rows[2].starts_with("line-2,,,no known words,,0,2,"), "{}", rows[2]);
    assert!(rows[3].starts_with("line-3,,earn,,"), "{}", rows[3]);
    assert!(text(&o).contains("2 without any known word"), "{}", text(&o));

    // A pipeline whose vocabulary differs is refused, naming both.
    let other = write_config(dir.path(), "R8x", &data, "R8/R8.txt", "R8/R8.meta.txt", "encoding = \"latin-1\"\n[vocab]\nmin_freq = 3\n");
    build_json(&store, &other, &[]);
    let o = predict(&model, &odd, &dir.path().join("x.csv"), &["--config", other.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("model/pipeline mismatch: the model was trained on vocabulary"), "{}", text(&o));
    assert!(!dir.path().join("x.csv").exists(), "nothing is written on error");
    // So is one whose tokenizer differs.
    let uni = write_config(dir.path(), "R8u", &data, "R8/R8.txt", "R8/R8.meta.txt", "encoding = \"latin-1\"\n[tokenize]\nrules = \"unicode\"\n");
    let o = predict(&model, &odd, &dir.path().join("x.csv"), &["--config", uni.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("model/pipeline mismatch: the model was trained with tokenizer rules Reference"), "{}", text(&o));
    // The matching config passes.
    let o = predict(&model, &odd, &dir.path().join("y.csv"), &["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // Damaged predictor files: a clear error, never a panic.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let pj = std::fs::read_to_string(model.join("predictor.json")).unwrap();
    std::fs::write(broken.join("predictor.json"), pj.replacen("\"words\":[\"", "\"words\":[\"extra\",\"", 1)).unwrap();
    std::fs::copy(model.join("predictor.safetensors"), broken.join("predictor.safetensors")).unwrap();
    let o = predict(&broken, &odd, &dir.path().join("z.csv"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("predictor files disagree"), "{}", text(&o));
    let o = predict(&dir.path().join("nowhere"), &odd, &dir.path().join("z.csv"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no predictor here"), "{}", text(&o));

    // A model directory whose name is not UTF-8 (the summary panicked,
    // after the predictions were written).
    use std::os::unix::ffi::OsStrExt;
    let latin = dir.path().join(std::ffi::OsStr::from_bytes(b"mod\xe8le"));
    std::fs::create_dir(&latin).unwrap();
    for f in ["predictor.json", "predictor.safetensors"] {
        std::fs::copy(model.join(f), latin.join(f)).unwrap();
    }
    let o = predict(&latin, &odd, &dir.path().join("latin.csv"), &["--json"]);
    assert!(o.status.success() && !text(&o).contains("panicked"), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["documents"], 3);

    // Tabular input: a text column of numbers, or a null text, is refused
    // with the column's type or the row, not classified as documents.
    let nums = dir.path().join("nums.ndjson");
    std::fs::write(&nums, "{\"text\": 17}\n{\"text\": 4}\n").unwrap();
    let o = predict(&model, &nums, &dir.path().join("n.csv"), &["--format", "ndjson"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("holds a number, not text"), "{}", text(&o));
    let nulls = dir.path().join("nulls.ndjson");
    std::fs::write(&nulls, "{\"text\": \"net profit\"}\n{\"text\": null}\n").unwrap();
    let o = predict(&model, &nulls, &dir.path().join("n.csv"), &["--format", "ndjson"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nulls.ndjson: row 2: the text column \"text\" is null"), "{}", text(&o));
    assert!(!dir.path().join("n.csv").exists());
}

#[test]
fn held_out_test_documents_are_classified_after_training() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = repo().join("configs/mr-inductive.toml");
    let report = build_json(&store, &cfg, &[]);
    let ingest = &report["stages"][0];
    assert_eq!(ingest["summary"]["held_out"], 3554, "mr has 3554 test documents");
    assert_eq!(ingest["summary"]["test"], 0);
    let mut c = trainer();
    c.arg("--store").arg(&store).arg("--config").arg(&cfg).arg("--out").arg(dir.path().join("run")).args(["--epochs", "15", "--json", "-q"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["inductive"]["documents"], 3554);
    let acc = m["test_accuracy"].as_f64().unwrap();
    // Two balanced classes: chance is 0.5.
    assert!(acc > 0.65, "inductive mr accuracy {acc}");
    // The per-class table covers the held-out documents.
    let support: u64 = m["per_class"].as_array().unwrap().iter().map(|r| r["support"].as_u64().unwrap()).sum();
    assert_eq!(support, 3554);
}

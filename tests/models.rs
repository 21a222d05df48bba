//! The models on one graph (`--model gcn|sgc|ssgc|tfidf-lr`): each learns a
//! corpus whose answer is known, is deterministic for a seed, records
//! itself in the run's files, and wrong mixes of model settings are refused
//! with a clear error.

use std::path::{Path, PathBuf};

use textgcn_e2e::*;

/// A corpus of three topics: each document draws 9 of its 12 words from
/// its class's 6 topic words and 3 from 10 words shared by all classes
/// (a fixed LCG, so the corpus is the same every run). 60 training and 30
/// test documents; any classifier that reads the words gets them right.
fn topics_corpus(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut state: u64 = 12345;
    let mut next = |m: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let (mut corpus, mut meta) = (String::new(), String::new());
    for i in 0..90 {
        let class = i % 3;
        let words: Vec<String> = (0..12).map(|k| if k % 4 == 3 { format!("shared{}", next(10)) } else { format!("topic{class}word{}", next(6)) }).collect();
        corpus.push_str(&words.join(" "));
        corpus.push('\n');
        meta.push_str(&format!("{i}\t{}\tclass{class}\n", if i < 60 { "train" } else { "test" }));
    }
    std::fs::write(data.join("topics.txt"), corpus).unwrap();
    std::fs::write(data.join("topics.meta.txt"), meta).unwrap();
    data
}

/// The linear models' floats do not depend on the thread count: R8 (large
/// enough that libtorch split its sums between threads, which changed
/// every model's per-iteration losses and SSGC's accuracy between one
/// thread and three).
#[test]
fn linear_models_do_not_depend_on_the_thread_count() {
    let (dir, store, cfg) = built_r8();
    for model in ["sgc", "ssgc", "tfidf-lr"] {
        let run = |threads: &str| {
            let out = dir.path().join(format!("{model}-{threads}"));
            let m = json_of(&train_cpu(&store, &cfg, &out, &["--model", model, "--seed", "3", "--iterations", "30", "--threads", threads]));
            (m, losses(&out))
        };
        let (a, la) = run("1");
        let (b, lb) = run("3");
        for k in ["test_accuracy", "macro_f1", "epochs_run"] {
            assert_eq!(a[k], b[k], "{model}: {k} differs between 1 and 3 threads");
        }
        assert_eq!(la, lb, "{model}: per-iteration losses differ between 1 and 3 threads");
    }
}

#[test]
fn every_model_learns_the_topics_and_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = topics_corpus(dir.path());
    let store = dir.path().join("store");
    let cfg = write_config(dir.path(), "topics", &data, "topics.txt", "topics.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[train]\nepochs = 60\nearly_stopping = 0\n");
    build(&store, &cfg);
    for model in ["gcn", "sgc", "ssgc", "tfidf-lr"] {
        let a_dir = dir.path().join(format!("{model}-a"));
        let a = json_of(&train_cpu(&store, &cfg, &a_dir, &["--model", model, "--seed", "3"]));
        let acc = a["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.95, "{model}: test accuracy {acc} on separable topics (chance 1/3)");
        let b_dir = dir.path().join(format!("{model}-b"));
        let b = json_of(&train_cpu(&store, &cfg, &b_dir, &["--model", model, "--seed", "3"]));
        for k in ["test_accuracy", "macro_f1", "epochs_run"] {
            assert_eq!(a[k], b[k], "{model}: {k} differs between two runs with one seed");
        }
        assert_eq!(losses(&a_dir), losses(&b_dir), "{model}: per-epoch losses differ between two runs with one seed");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(a_dir.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(m["model"], model, "metrics.json names the model");
        assert_eq!(m["hyper"]["model"], model);
        assert!(m["train_seconds"].as_f64().unwrap() > 0.0);
        if model == "gcn" {
            assert!(m["linear"].is_null());
        } else {
            let l = &m["linear"];
            assert!(l["iterations_run"].as_u64().unwrap() >= 1 && l["iterations_run"] == m["epochs_run"], "{l}");
            assert!(l["used_features"].as_u64().unwrap() <= l["features"].as_u64().unwrap());
        }
        let p: serde_json::Value = serde_json::from_slice(&std::fs::read(a_dir.join("predictor.json")).unwrap()).unwrap();
        assert_eq!(p["model"], model, "predictor.json names the model");
        // The run classifies new text: a document of class 1's topic words.
        let new_doc = dir.path().join("new.txt");
        std::fs::write(&new_doc, "topic1word0 topic1word3 topic1word5 shared2 topic1word1\n").unwrap();
        let mut c = std::process::Command::new(bin("textgcn-train"));
        let jsonl = dir.path().join(format!("{model}.jsonl"));
        c.args(["predict", "--model"]).arg(&a_dir).arg("--input").arg(&new_doc).arg("--output").arg(&jsonl);
        ok(c);
        let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(line["prediction"]["label"], "class1", "{model}: predict on a class-1 document: {line}");
        for f in ["metrics.json", "epochs.csv", "predictions.parquet", "model.safetensors", "curves.png", "predictor.safetensors"] {
            assert!(a_dir.join(f).is_file(), "{model}: {f} missing");
        }
    }
    // The model can also come from the file.
    let cfg2 = write_config(dir.path(), "topics", &data, "topics.txt", "topics.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[train]\nmodel = \"sgc\"\n[train.sgc]\niterations = 7\n");
    let m = json_of(&train_cpu(&store, &cfg2, &dir.path().join("file"), &[]));
    assert_eq!(m["epochs_run"], 7, "train.sgc.iterations from the file: {m}");
    let m = json_of(&train_cpu(&store, &cfg2, &dir.path().join("flag"), &["--iterations", "4"]));
    assert_eq!(m["epochs_run"], 4, "--iterations wins over the file: {m}");
}

#[test]
fn wrong_mixes_of_model_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = topics_corpus(dir.path());
    let store = dir.path().join("store");
    let cfg = write_config(dir.path(), "topics", &data, "topics.txt", "topics.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n");
    build(&store, &cfg);
    let refused = |cfg: &Path, extra: &[&str], want: &str| assert_training_refused(&store, cfg, &dir.path().join("r"), extra, want);
    refused(&cfg, &["--model", "sgc", "--hidden", "16"], "--hidden is a setting of the gcn model, but the model is sgc");
    refused(&cfg, &["--model", "tfidf-lr", "--epochs", "5"], "--epochs is a setting of the gcn model");
    refused(&cfg, &["--iterations", "5"], "--iterations is a setting of the linear models");
    refused(&cfg, &["--model", "svm"], "invalid value 'svm' for '--model");
    let mixed = write_config(dir.path(), "topics", &data, "topics.txt", "topics.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[train]\nmodel = \"ssgc\"\ndropout = 0.3\n");
    refused(&mixed, &[], "key `train.dropout`: a setting of the gcn model, but `train.model` is \"ssgc\" here; its settings are in [train.ssgc]");
    let zero = write_config(dir.path(), "topics", &data, "topics.txt", "topics.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[train.sgc]\nk = 0\n");
    refused(&zero, &["--model", "sgc"], "key `train.sgc.k`: must be at least 1");
}

/// With the test documents held out of the graph, each linear model
/// classifies them inductively, as new documents.
#[test]
fn linear_models_classify_held_out_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = topics_corpus(dir.path());
    let store = dir.path().join("store");
    let held = write_config(dir.path(), "held", &data, "topics.txt", "topics.meta.txt", "hold_out_test = true\n[vocab]\nmin_freq = 1\nstopwords = \"none\"\n");
    build(&store, &held);
    for model in ["sgc", "ssgc", "tfidf-lr"] {
        let m = json_of(&train_cpu(&store, &held, &dir.path().join(model), &["--model", model]));
        assert_eq!(m["inductive"]["documents"], 30, "{model}: {m}");
        let acc = m["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.95, "{model}: inductive accuracy {acc} on separable topics");
    }
}

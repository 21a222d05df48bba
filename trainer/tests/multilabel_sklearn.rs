//! The multi-label metrics ([`textgcn_trainer::metrics::multi_label`],
//! [`textgcn_trainer::metrics::best_threshold`]) against scikit-learn's on
//! a fixed example that holds the awkward cases: a label never predicted,
//! a label no document has, a document without labels, one predicted
//! empty, tied probabilities and a document scored 0 everywhere.
//! scikit-learn runs in the project venv (`TEXTGCN_PYTHON`, which
//! `make test` sets) through `scripts/multilabel_metrics.py`.

use std::path::Path;

use serde_json::{Value, json};
use textgcn_trainer::metrics;

fn sklearn(input: &Value) -> Value {
    let python = std::env::var("TEXTGCN_PYTHON").expect("TEXTGCN_PYTHON (the project venv's python; make test sets it)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("example.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/multilabel_metrics.py");
    let o = std::process::Command::new(python).arg(script).arg("--json").arg(&file).output().expect("run python");
    assert!(o.status.success(), "scripts/multilabel_metrics.py failed (is scikit-learn in the venv? `make setup` installs it): {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn close(a: f64, b: &Value, what: &str) {
    let b = b.as_f64().unwrap_or_else(|| panic!("{what}: no number in {b}"));
    assert!((a - b).abs() < 1e-12, "{what}: ours {a}, scikit-learn's {b}");
}

#[test]
fn multi_label_metrics_match_scikit_learn_on_a_fixed_example() {
    let labels: Vec<String> = ["acq", "crude", "earn", "grain", "ship", "trade"].iter().map(|s| s.to_string()).collect();
    // 8 documents × 6 labels. "ship" is never true, "trade" never
    // predicted at 0.5; document 3 has no label; document 5 is predicted
    // empty; document 6 ties three labels at 0.7; document 7 is all zeros.
    #[rustfmt::skip]
    let truth: [[u8; 6]; 8] = [
        [1, 0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0, 1],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 1],
        [1, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
    ];
    #[rustfmt::skip]
    let probs: [[f32; 6]; 8] = [
        [0.91, 0.12, 0.66, 0.05, 0.51, 0.33],
        [0.20, 0.85, 0.10, 0.40, 0.02, 0.45],
        [0.75, 0.55, 0.95, 0.35, 0.60, 0.10],
        [0.05, 0.62, 0.08, 0.01, 0.30, 0.20],
        [0.44, 0.09, 0.81, 0.52, 0.15, 0.49],
        [0.48, 0.05, 0.30, 0.10, 0.20, 0.25],
        [0.70, 0.70, 0.70, 0.30, 0.65, 0.10],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ];
    let t: Vec<u8> = truth.iter().flatten().copied().collect();
    let p: Vec<f32> = probs.iter().flatten().copied().collect();
    let threshold = metrics::best_threshold(&t, &p).expect("there are true pairs");
    for at in [0.5, threshold] {
        let ours = metrics::multi_label(&t, &p, &labels, at);
        let theirs = sklearn(&json!({"labels": labels, "truth": truth, "probs": probs, "threshold": at}));
        let what = |k: &str| format!("{k} at threshold {at}");
        for (k, v) in [
            ("micro_precision", ours.micro_precision),
            ("micro_recall", ours.micro_recall),
            ("micro_f1", ours.micro_f1),
            ("macro_precision", ours.macro_precision),
            ("macro_recall", ours.macro_recall),
            ("macro_f1", ours.macro_f1),
            ("subset_accuracy", ours.subset_accuracy),
            ("hamming_loss", ours.hamming_loss),
        ] {
            close(v, &theirs[k], &what(k));
        }
        let rows = theirs["per_label"].as_array().unwrap();
        assert_eq!(rows.len(), ours.per_label.len());
        for (o, r) in ours.per_label.iter().zip(rows) {
            assert_eq!(r["label"], o.label.as_str());
            close(o.precision, &r["precision"], &what(&format!("{} precision", o.label)));
            close(o.recall, &r["recall"], &what(&format!("{} recall", o.label)));
            close(o.f1, &r["f1"], &what(&format!("{} f1", o.label)));
            assert_eq!(r["support"].as_u64().unwrap() as usize, o.support, "{} support", o.label);
        }
        let pk = theirs["precision_at"].as_array().unwrap();
        assert_eq!(pk.len(), ours.precision_at.len());
        for (o, r) in ours.precision_at.iter().zip(pk) {
            assert_eq!(r["k"].as_u64().unwrap() as usize, o.k);
            close(o.precision, &r["precision"], &what(&format!("P@{}", o.k)));
        }
        if at == threshold {
            // The chosen threshold reaches the best micro F1 of any.
            close(ours.micro_f1, &theirs["best_micro_f1"], "micro F1 at the chosen threshold vs the best over all thresholds");
        }
    }
    assert!(threshold > 0.0 && threshold < 1.0, "{threshold}");
}

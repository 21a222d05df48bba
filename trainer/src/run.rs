//! One training run: the epoch loop with early stopping, the final test
//! evaluation, and the run directory's files.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use serde::Serialize;
use tch::{Device, Tensor};

use crate::graph::GraphData;
use crate::metrics::{self, ClassRow, Memory};
use textgcn_pipeline::splits::Split;
use crate::model::{self, Adam, Hyper, Model};
use crate::predict::{Prediction, Predictor};
use crate::targets::{LabelSets, Targets};

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training loss (with dropout).
    pub train_loss: f64,
    /// Training accuracy (with dropout).
    pub train_acc: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Wall seconds of the epoch (step + validation).
    pub seconds: f64,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The model trained (`gcn`, `sgc`, `ssgc`, `tfidf-lr`).
    pub model: String,
    /// Wall seconds of the whole fit (epochs or iterations, and a linear
    /// model's setup), before the test evaluation.
    pub train_seconds: f64,
    /// A linear model's L-BFGS and feature numbers.
    pub linear: Option<crate::linear::LinearInfo>,
    /// Seed.
    pub seed: u64,
    /// Device used.
    pub device: String,
    /// Epochs run.
    pub epochs_run: usize,
    /// Validation accuracy of the final weights (what hyper-parameters are
    /// chosen by).
    pub val_accuracy: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Macro precision.
    pub macro_precision: f64,
    /// Macro recall.
    pub macro_recall: f64,
    /// Macro F1.
    pub macro_f1: f64,
    /// Median epoch wall time.
    pub median_epoch_seconds: f64,
    /// Per-class (per-label) scores on the test set.
    pub per_class: Vec<ClassRow>,
    /// Label sets (`train.multi_label`): the threshold, micro scores,
    /// subset accuracy, Hamming loss and P@k; then `test_accuracy` and
    /// `val_accuracy` are subset accuracies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelReport>,
    /// Set when the test documents were held out of the graph and
    /// classified inductively (the test metrics above are theirs).
    pub inductive: Option<Inductive>,
    /// Memory of the process.
    pub memory: Memory,
    /// Hyper-parameters.
    pub hyper: Hyper,
    /// Per-epoch log.
    pub epochs: Vec<EpochLog>,
}

/// Trains one model with `h` on `data` (`h.model`: the GCN or one of the
/// linear models of [`crate::linear`]). `on_epoch` sees every epoch (for a
/// linear model, every L-BFGS iteration).
pub fn train_run(data: &GraphData, h: &Hyper, on_epoch: impl FnMut(&EpochLog)) -> Trained {
    let peak_anon = metrics::anon_now();
    let t = Instant::now();
    let fitted = match crate::linear::Spec::of(h) {
        Some(spec) => {
            let lt = crate::linear::train(data, &spec, h, on_epoch);
            let predictor = data.vocab.as_ref().map(|info| {
                let words = data.num_docs..data.num_nodes;
                Predictor::from_linear(info, data.num_docs, &data.label_names, h.model.as_str(), &lt.head, &data.self_loops(words)).expect("the graph's nodes are its documents and words")
            });
            Fitted { log: lt.log, probs: lt.probs, weights: lt.weights, predictor, linear: Some(lt.info), peak_anon: peak_anon.max(metrics::anon_now()) }
        }
        None => train_gcn(data, h, on_epoch),
    };
    finish(data, h, fitted, t.elapsed().as_secs_f64())
}

/// What a model's fit hands to the shared evaluation.
struct Fitted {
    log: Vec<EpochLog>,
    probs: Tensor,
    weights: Vec<(String, Tensor)>,
    predictor: Option<Predictor>,
    linear: Option<crate::linear::LinearInfo>,
    peak_anon: u64,
}

fn train_gcn(data: &GraphData, h: &Hyper, mut on_epoch: impl FnMut(&EpochLog)) -> Fitted {
    let device = data.adj.device();
    tch::manual_seed(h.seed as i64);
    if let Device::Cuda(_) = device {
        tch::Cuda::manual_seed_all(h.seed);
    }
    let mut model = Model::new(data.num_nodes, h.hidden, data.num_classes(), device);
    let mut opt = Adam::new(&model, h.learning_rate);
    let mut log = Vec::new();
    let mut val_losses = Vec::new();
    let mut peak_anon = metrics::anon_now();
    // `Â·W0` of the current weights, computed by the evaluation and reused
    // by the next training step (one sparse product fewer per epoch).
    let mut z1: Option<Tensor> = None;
    for epoch in 1..=h.epochs {
        let t = Instant::now();
        let (train_loss, train_acc) = model::train_step(&mut model, &mut opt, &data.adj, z1.take(), &data.train, &data.targets, h);
        let step = tracing::debug_span!("evaluate", op = "A.W0").entered();
        let z = tch::no_grad(|| model.first_layer(&data.adj));
        drop(step);
        let step = tracing::debug_span!("evaluate", op = "logits+loss").entered();
        let (val_loss, val_acc) = tch::no_grad(|| model::loss_acc(&model.logits_from(&z, &data.adj, data.num_docs), &data.val, &data.targets));
        drop(step);
        z1 = Some(z);
        if device != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        let e = EpochLog { epoch, train_loss, train_acc, val_loss, val_acc, seconds: t.elapsed().as_secs_f64() };
        on_epoch(&e);
        log.push(e);
        peak_anon = peak_anon.max(metrics::anon_now());
        val_losses.push(val_loss);
        if val_loss.is_finite() && model::should_stop(&val_losses, h.early_stopping) {
            break;
        }
    }
    let z = z1.unwrap_or_else(|| tch::no_grad(|| model.first_layer(&data.adj)));
    let probs = tch::no_grad(|| data.targets.probabilities(&model.logits_from(&z, &data.adj, data.num_docs))).to_device(Device::Cpu);
    drop(opt); // the Adam state is as large as the weights: free it first
    let predictor = data.vocab.as_ref().map(|info| {
        let words = data.num_docs..data.num_nodes;
        Predictor::from_training(info, data.num_docs, &data.label_names, &model.w0, &model.w1, &z, &data.self_loops(words)).expect("the graph's nodes are its documents and words")
    });
    drop(z);
    let weights = vec![("w0".to_owned(), model.w0.to_device(Device::Cpu)), ("w1".to_owned(), model.w1.to_device(Device::Cpu))];
    Fitted { log, probs, weights, predictor, linear: None, peak_anon }
}

/// Test metrics (and the held-out documents' inductive ones) of a fit.
fn finish(data: &GraphData, h: &Hyper, fitted: Fitted, train_seconds: f64) -> Trained {
    let Fitted { log, probs, weights, mut predictor, linear, peak_anon } = fitted;
    let device = data.adj.device();
    let scores = match &data.targets {
        Targets::Single(_) => single_label_scores(data, &probs, predictor.as_ref()),
        Targets::Multi(sets) => multi_label_scores(data, sets, &probs, predictor.as_mut()),
    };
    let mut times: Vec<f64> = log.iter().map(|e| e.seconds).collect();
    times.sort_by(f64::total_cmp);
    let peak = metrics::peak_rss();
    let mapped = metrics::mapped_rss(&data.mapped_paths);
    let result = RunResult {
        model: h.model.as_str().to_owned(),
        train_seconds,
        linear,
        seed: h.seed,
        device: format!("{device:?}"),
        epochs_run: log.len(),
        val_accuracy: scores.val_accuracy,
        test_accuracy: scores.accuracy,
        macro_precision: scores.macro_p,
        macro_recall: scores.macro_r,
        macro_f1: scores.macro_f1,
        median_epoch_seconds: times.get(times.len() / 2).copied().unwrap_or(0.0),
        per_class: scores.per_class,
        multi_label: scores.multi_label,
        inductive: scores.inductive,
        memory: Memory { peak_rss: peak, mapped_graph_rss: mapped, peak_anon, other_peak: peak.saturating_sub(mapped), mapped_graph_bytes: data.mapped_bytes },
        hyper: h.clone(),
        epochs: log,
    };
    Trained { result, weights, probs, predictor, held_out_predictions: scores.held_out_predictions }
}

/// What [`finish`] reports of the test documents (and the held-out ones).
struct Scores {
    val_accuracy: f64,
    accuracy: f64,
    macro_p: f64,
    macro_r: f64,
    macro_f1: f64,
    per_class: Vec<ClassRow>,
    multi_label: Option<MultiLabelReport>,
    inductive: Option<Inductive>,
    held_out_predictions: Option<Vec<Prediction>>,
}

/// Classifies the held-out test documents with the predictor (when both
/// exist), timing it.
fn predict_held_out(data: &GraphData, predictor: Option<&Predictor>) -> Option<(Vec<Prediction>, f64)> {
    let (held, pr) = (data.held_out.as_ref()?, predictor?);
    let t = Instant::now();
    let preds = pr.predict_all(&held.texts, 5);
    Some((preds, t.elapsed().as_secs_f64()))
}

fn single_label_scores(data: &GraphData, probs: &Tensor, predictor: Option<&Predictor>) -> Scores {
    let pred: Vec<i64> = Vec::<i64>::try_from(probs.argmax(-1, false)).expect("int64 predictions");
    let labels = data.targets.class_ids().expect("single labels");
    let val = &data.split_lists[1];
    let val_accuracy = val.iter().filter(|&&i| pred[i as usize] == labels[i as usize]).count() as f64 / val.len().max(1) as f64;
    let test = &data.split_lists[2];
    let mut truth: Vec<i64> = test.iter().map(|&i| labels[i as usize]).collect();
    let mut tp: Vec<i64> = test.iter().map(|&i| pred[i as usize]).collect();
    let mut label_names = data.label_names.clone();
    // Held-out test documents: classified inductively, as new documents.
    let mut inductive = None;
    let mut held_out_predictions = None;
    if let Some((preds, seconds)) = predict_held_out(data, predictor) {
        let held = data.held_out.as_ref().expect("held out");
        for (label, p) in held.labels.iter().zip(&preds) {
            // A label never seen in training cannot be predicted: it gets a
            // class of its own in the report and always counts as wrong.
            let id = label_names.iter().position(|l| l == label).unwrap_or_else(|| {
                label_names.push(label.clone());
                label_names.len() - 1
            });
            truth.push(id as i64);
            // No known word: no prediction, which is never right.
            tp.push(p.label_id.map_or(-1, |k| k as i64));
        }
        inductive = Some(Inductive::of(&preds, label_names.len() - data.label_names.len(), seconds));
        held_out_predictions = Some(preds);
    }
    let (accuracy, macro_p, macro_r, macro_f1, per_class) = metrics::classification(&truth, &tp, &label_names);
    Scores { val_accuracy, accuracy, macro_p, macro_r, macro_f1, per_class, multi_label: None, inductive, held_out_predictions }
}

/// Label sets: the threshold is chosen on the validation documents (0.5
/// without any), set on the predictor, and the test documents (and the
/// held-out ones, predicted with it) are scored at it.
fn multi_label_scores(data: &GraphData, sets: &LabelSets, probs: &Tensor, predictor: Option<&mut Predictor>) -> Scores {
    let c = data.num_classes();
    let pv: Vec<f32> = Vec::<f32>::try_from(probs.flatten(0, -1)).expect("float probabilities");
    let rows = |docs: &[i64]| -> Vec<f32> { docs.iter().flat_map(|&d| pv[d as usize * c..(d as usize + 1) * c].iter().copied()).collect() };
    let val = &data.split_lists[1];
    let val_truth = sets.truth_rows(val, c);
    let val_probs = rows(val);
    let chosen = metrics::best_threshold(&val_truth, &val_probs);
    let threshold = chosen.unwrap_or(0.5);
    let validation = metrics::multi_label(&val_truth, &val_probs, &data.label_names, threshold);
    let predictor = predictor.map(|p| {
        p.set_multi_label(&sets.separator, threshold);
        &*p
    });
    let test = &data.split_lists[2];
    let mut truth = sets.truth_rows(test, c);
    let mut test_probs = rows(test);
    let mut label_names = data.label_names.clone();
    let mut inductive = None;
    let mut held_out_predictions = None;
    if let Some((preds, seconds)) = predict_held_out(data, predictor) {
        let held = data.held_out.as_ref().expect("held out");
        // Labels never seen in training get a column of their own (never
        // predicted). The fields were checked by `use_label_sets`.
        let mut held_sets: Vec<Vec<usize>> = Vec::new();
        for field in &held.labels {
            let parts = crate::targets::split_label_field(field, &sets.separator).expect("held-out label fields are checked when the label sets are read");
            held_sets.push(
                parts
                    .iter()
                    .map(|l| {
                        label_names.iter().position(|n| n == l).unwrap_or_else(|| {
                            label_names.push(l.to_string());
                            label_names.len() - 1
                        })
                    })
                    .collect(),
            );
        }
        let wide = label_names.len();
        let widen = |flat: Vec<f32>| -> Vec<f32> { flat.chunks(c.max(1)).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, wide - c))).collect() };
        let widen_u8 = |flat: Vec<u8>| -> Vec<u8> { flat.chunks(c.max(1)).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, wide - c))).collect() };
        test_probs = widen(test_probs);
        truth = widen_u8(truth);
        for (set, p) in held_sets.iter().zip(&preds) {
            let mut t = vec![0u8; wide];
            set.iter().for_each(|&l| t[l] = 1);
            truth.extend(t);
            test_probs.extend(p.probabilities.iter().copied().chain(std::iter::repeat_n(0.0, wide - c)));
        }
        inductive = Some(Inductive::of(&preds, wide - c, seconds));
        held_out_predictions = Some(preds);
    }
    let s = metrics::multi_label(&truth, &test_probs, &label_names, threshold);
    let report = MultiLabelReport {
        separator: sets.separator.clone(),
        threshold,
        threshold_chosen_on_validation: chosen.is_some(),
        validation_micro_f1: validation.micro_f1,
        micro_precision: s.micro_precision,
        micro_recall: s.micro_recall,
        micro_f1: s.micro_f1,
        subset_accuracy: s.subset_accuracy,
        hamming_loss: s.hamming_loss,
        precision_at: s.precision_at.clone(),
    };
    Scores {
        val_accuracy: validation.subset_accuracy,
        accuracy: s.subset_accuracy,
        macro_p: s.macro_precision,
        macro_r: s.macro_recall,
        macro_f1: s.macro_f1,
        per_class: s.per_label,
        multi_label: Some(report),
        inductive,
        held_out_predictions,
    }
}

/// A multi-label run's scores beyond the macro ones and the per-label
/// table (which are [`RunResult`]'s own fields; its accuracies are subset
/// accuracies).
#[derive(Debug, Clone, Serialize)]
pub struct MultiLabelReport {
    /// The label separator of the label fields.
    pub separator: String,
    /// The decision threshold: a label is predicted at this probability or
    /// above.
    pub threshold: f64,
    /// Whether it was chosen on validation (else 0.5: no validation
    /// document had a label).
    pub threshold_chosen_on_validation: bool,
    /// Micro F1 of the validation documents at the threshold.
    pub validation_micro_f1: f64,
    /// Micro precision on the test documents.
    pub micro_precision: f64,
    /// Micro recall.
    pub micro_recall: f64,
    /// Micro F1.
    pub micro_f1: f64,
    /// Test documents whose predicted set is their true set.
    pub subset_accuracy: f64,
    /// Share of test document-label pairs predicted wrongly.
    pub hamming_loss: f64,
    /// Precision at 1, 3 and 5.
    pub precision_at: Vec<metrics::PrecisionAt>,
}

/// Everything a training run produced.
pub struct Trained {
    /// Metrics and logs.
    pub result: RunResult,
    /// Final weights by name (`w0`, `w1` for the GCN; [`crate::linear`]'s
    /// for the linear models), on the CPU.
    pub weights: Vec<(String, Tensor)>,
    /// Class probabilities of the graph's documents `[D, C]` (CPU).
    pub probs: Tensor,
    /// The inductive classifier (when the graph came from a store).
    pub predictor: Option<Predictor>,
    /// Predictions of the held-out test documents, in their order.
    pub held_out_predictions: Option<Vec<Prediction>>,
}

impl Inductive {
    fn of(preds: &[Prediction], unseen_labels: usize, seconds: f64) -> Self {
        Inductive { documents: preds.len(), no_known_words: preds.iter().filter(|p| p.label.is_none()).count(), unseen_labels, documents_per_second: preds.len() as f64 / seconds.max(1e-9) }
    }
}

/// How the held-out test documents were classified.
#[derive(Debug, Clone, Serialize)]
pub struct Inductive {
    /// Held-out documents classified.
    pub documents: usize,
    /// Of those, documents without any known word (counted as errors).
    pub no_known_words: usize,
    /// Labels of held-out documents never seen in training.
    pub unseen_labels: usize,
    /// Classification throughput (documents per second, all threads).
    pub documents_per_second: f64,
}

/// Publishes the run directory `dir` whole ([`crate::run_dir`]):
/// `metrics.json`, `epochs.csv`, `curves.png`, `predictions.parquet`,
/// `model.safetensors` and the predictor files are written into a staging
/// directory that is renamed to `dir` at the end. Held-out documents
/// appear in `predictions.parquet` with the split `held-out`.
pub fn write_outputs(dir: &Path, data: &GraphData, run: &Trained) -> Result<()> {
    let staging = crate::run_dir::Staging::create(dir)?;
    write_files(staging.path(), data, run)?;
    staging.publish()?;
    Ok(())
}

fn write_files(dir: &Path, data: &GraphData, run: &Trained) -> Result<()> {
    let (res, probs) = (&run.result, &run.probs);
    let atomic = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {}", dir.join(name).display()));
    atomic("metrics.json", &serde_json::to_vec_pretty(res)?)?;
    let mut csv = String::from("epoch,train_loss,train_acc,val_loss,val_acc,seconds\n");
    for e in &res.epochs {
        csv.push_str(&format!("{},{},{},{},{},{}\n", e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.seconds));
    }
    atomic("epochs.csv", csv.as_bytes())?;

    let mut split = vec![""; data.num_docs];
    for (k, name) in Split::ALL.iter().map(|s| s.as_str()).enumerate() {
        for &i in &data.split_lists[k] {
            split[i as usize] = name;
        }
    }
    let c = data.num_classes();
    let pv: Vec<f32> = Vec::<f32>::try_from(probs.flatten(0, -1))?;
    let mut rows = PredictionRows::default();
    match &data.targets {
        Targets::Single(_) => {
            let labels = data.targets.class_ids().expect("single labels");
            let pred: Vec<i64> = Vec::<i64>::try_from(probs.argmax(-1, false))?;
            for d in 0..data.num_docs {
                rows.push(&data.doc_names[d], split[d], &data.label_names[labels[d] as usize], Some(&data.label_names[pred[d] as usize]), &pv[d * c..(d + 1) * c]);
            }
        }
        Targets::Multi(sets) => {
            // Label fields: the true set and the set at the threshold.
            let threshold = res.multi_label.as_ref().map_or(0.5, |m| m.threshold);
            let field = |ids: &mut dyn Iterator<Item = usize>| crate::targets::join_label_set(&ids.map(|l| data.label_names[l].as_str()).collect::<Vec<_>>(), &sets.separator);
            for d in 0..data.num_docs {
                let p = &pv[d * c..(d + 1) * c];
                let truth = field(&mut sets.sets[d].iter().map(|&l| l as usize));
                let predicted = field(&mut (0..c).filter(|&l| p[l] as f64 >= threshold));
                rows.push(&data.doc_names[d], split[d], &truth, Some(&predicted), p);
            }
        }
    }
    if let (Some(held), Some(preds)) = (&data.held_out, &run.held_out_predictions) {
        for ((name, label), p) in held.names.iter().zip(&held.labels).zip(preds) {
            rows.push(name, "held-out", label, p.label.as_deref(), &p.probabilities);
        }
    }
    atomic("predictions.parquet", &rows.to_parquet(&data.label_names)?)?;

    let named: Vec<(&str, &Tensor)> = run.weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    textgcn_cli::write_atomic_with(&dir.join("model.safetensors"), |tmp| Ok(Tensor::write_safetensors(&named, tmp)?))?;
    if let Some(p) = &run.predictor {
        p.save(dir)?;
    }
    write_curves(&dir.join("curves.png"), res)?;
    Ok(())
}

/// `curves.png`: training and validation loss and accuracy per epoch.
pub fn write_curves(path: &Path, res: &RunResult) -> Result<()> {
    use textgcn_cli::plot::{Panel, line_panels};
    let pts = |f: fn(&EpochLog) -> f64| -> Vec<(f64, f64)> { res.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect() };
    let panels = [
        Panel { title: "loss", x_label: "epoch", y_label: "cross-entropy", series: vec![("train (with dropout)", pts(|e| e.train_loss)), ("validation", pts(|e| e.val_loss))] },
        Panel { title: "accuracy", x_label: "epoch", y_label: "accuracy", series: vec![("train (with dropout)", pts(|e| e.train_acc)), ("validation", pts(|e| e.val_acc))] },
    ];
    let title = format!("seed {}: test accuracy {:.4} after {} epochs", res.seed, res.test_accuracy, res.epochs_run);
    line_panels(path, &title, &panels)
}

/// Rows of a predictions table: document, split, true label, predicted
/// label (empty when there is none) and one probability column per class.
#[derive(Default)]
pub struct PredictionRows {
    document: Vec<String>,
    split: Vec<String>,
    true_label: Vec<String>,
    predicted: Vec<String>,
    probs: Vec<f32>,
}

impl PredictionRows {
    /// Adds one document.
    pub fn push(&mut self, document: &str, split: &str, true_label: &str, predicted: Option<&str>, probs: &[f32]) {
        self.document.push(document.to_owned());
        self.split.push(split.to_owned());
        self.true_label.push(true_label.to_owned());
        self.predicted.push(predicted.unwrap_or("").to_owned());
        self.probs.extend_from_slice(probs);
    }

    /// The table as Parquet bytes; `labels` name the probability columns
    /// (`p_<label>`).
    pub fn to_parquet(&self, labels: &[String]) -> Result<Vec<u8>> {
        let c = labels.len();
        let n = self.document.len();
        let mut cols: Vec<(String, ArrayRef)> = vec![
            ("document".into(), Arc::new(StringArray::from_iter_values(&self.document))),
            ("split".into(), Arc::new(StringArray::from_iter_values(&self.split))),
            ("true_label".into(), Arc::new(StringArray::from_iter_values(&self.true_label))),
            ("predicted_label".into(), Arc::new(StringArray::from_iter_values(&self.predicted))),
        ];
        for (k, name) in labels.iter().enumerate() {
            cols.push((format!("p_{name}"), Arc::new(Float32Array::from_iter_values((0..n).map(|d| self.probs[d * c + k])))));
        }
        let schema = Arc::new(Schema::new(cols.iter().map(|(n, a)| Field::new(n, a.data_type().clone(), false)).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect())?;
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None)?;
        w.write(&batch)?;
        w.close()?;
        Ok(buf)
    }
}

//! Inductive prediction: classify new documents with a trained run, without
//! rebuilding the graph or retraining, and without touching the stored
//! graph or weights.
//!
//! # The method
//! A new document `d` becomes a node that is joined only to the known
//! words it contains, with the training corpus's TF-IDF weights
//! `a_j = tf_j · idf_j` (`idf_j = ln(D / df_j)` over the `D` documents of
//! the graph). It is normalised like `Â`: its degree is `deg_d = 1 + Σ a_j`
//! (the self loop), the words keep the degrees they have in the trained
//! graph, so `Â_dj = a_j / √(deg_d · deg_j)` and `Â_dd = 1 / deg_d`. The
//! word degrees come from the stored `Â` itself: `Â_jj = 1 / deg_j`.
//!
//! The two layers, with the trained word rows of `W0` and the trained word
//! representations `P_j = ReLU(Â·W0)_j · W1` (computed once, at the end of
//! training, and saved with the run):
//!
//! - `z = Σ_j Â_dj W0_j` (a new node has no trained row of its own in the
//!   featureless `W0`, so its self-loop term is zero), `h = ReLU(z)`;
//! - `logits_c = Σ_j Â_dj P_jc + Â_dd · (h · W1)_c`.
//!
//! With `m = [z > 0]`, the logits split exactly into per-word parts,
//! `Â_dj · (P_jc + Â_dd · ((m ⊙ W0_j) · W1)_c)`: those are the "top
//! contributing words" reported per document.
//!
//! # The linear models
//! SGC and SSGC (features `Σ_k c_k Â^k`, scaled by `s`, shifted by `m`)
//! add the document the same way and follow its paths into the trained
//! graph: with `u_0 = 0` (a new node has no weight row of its own) and
//! `u_k = Â_dd·u_{k-1} + Σ_j Â_dj·Q_{k-1,j}`, where `Q_k = (Â^k·(s⊙W))`'s
//! word rows are saved with the run, the logits are
//! `Σ_k c_k·u_k - (m⊙s)ᵀW`. (Paths that come back through the new node
//! after leaving it are left out, as the word degrees are kept: both are
//! `O(Â_dj²)`.) TF-IDF + LR needs no graph: the document's TF-IDF vector,
//! L2-normalised, times `W`, plus the bias, exactly what training saw for
//! a document of the graph.
//!
//! # Files
//! Training writes `predictor.json` (pipeline settings, vocabulary, labels,
//! the ids of the objects it was built from, the model and, for SGC/SSGC,
//! the coefficients `c_k`) and `predictor.safetensors` into the run
//! directory; [`Predictor::load`] needs nothing else. The tensors: for the
//! gcn `word_w0 [V,H]`, `word_p [V,C]`, `w1 [H,C]`; for SGC/SSGC `q0..q{K-1}
//! [V,C]` and `constant [C]`; for TF-IDF + LR `w [V,C]` and `bias [C]`; for
//! all `word_dinv [V]`, `word_idf [V]`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use textgcn_pipeline::clean;
use textgcn_pipeline::config::Rules;

/// Format version of the predictor files.
const FORMAT: u32 = 1;

/// The training pipeline a predictor comes from: what a new document must
/// be tokenized like, and which build it was trained on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineSource {
    /// Config name of the training pipeline.
    pub dataset: String,
    /// Tokenizer rules.
    pub rules: Rules,
    /// Lower-casing.
    pub lowercase: bool,
    /// The vocabulary object the graph was built on.
    pub vocab_object: String,
    /// The `edge_attr` object of the graph trained on.
    pub graph_object: String,
}

/// What a predictor was built from, saved as `predictor.json` (the
/// source's fields at its top level, as format 1 has them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictorMeta {
    /// Format version.
    pub format: u32,
    /// The training pipeline.
    #[serde(flatten)]
    pub source: PipelineSource,
    /// Documents in the graph (the IDF's `D`).
    pub num_docs: usize,
    /// Class labels by id.
    pub labels: Vec<String>,
    /// Words by id.
    pub words: Vec<String>,
    /// The model (`gcn`, `sgc`, `ssgc`, `tfidf-lr`); files without it are
    /// a gcn's.
    #[serde(default = "gcn_name")]
    pub model: String,
    /// SGC/SSGC: the coefficients `c_k` of `Â^k`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coef: Vec<f64>,
    /// Set for a model trained on label sets: sigmoid outputs, and the
    /// labels at or above the threshold are predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelMeta>,
}

/// How a multi-label model turns probabilities into a label set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MultiLabelMeta {
    /// What joins the labels of a set in a label field.
    pub separator: String,
    /// The decision threshold chosen on validation.
    pub threshold: f64,
}

fn gcn_name() -> String {
    "gcn".into()
}

/// What a predictor needs from the training data: its pipeline and the
/// vocabulary.
#[derive(Debug, Clone)]
pub struct VocabInfo {
    /// The training pipeline.
    pub source: PipelineSource,
    /// Words by id.
    pub words: Vec<String>,
    /// Document frequencies by word id.
    pub df: Vec<u64>,
}

/// A trained model's inductive classifier.
pub struct Predictor {
    meta: PredictorMeta,
    index: HashMap<String, u32>,
    classes: usize,
    head: Head,
    word_dinv: Vec<f32>,
    word_idf: Vec<f64>,
}

/// What turns a document's words into logits (module docs).
enum Head {
    /// The GCN's two layers.
    Gcn { hidden: usize, word_w0: Vec<f32>, word_p: Vec<f32>, w1: Vec<f32> },
    /// SGC/SSGC: `q[k]` is `Q_k` `[V, C]`, `coef` the `c_k`.
    Propagated { coef: Vec<f64>, q: Vec<Vec<f32>>, constant: Vec<f32> },
    /// TF-IDF + LR: the word rows of `W` `[V, C]` and the bias.
    Tfidf { w: Vec<f32>, bias: Vec<f32> },
}

/// A linear model's part of a predictor, from the end of its training
/// ([`crate::linear`]), on any device.
pub enum LinearHead {
    /// SGC/SSGC: the coefficients and `Q_0..Q_{K-1}` (word rows), and the
    /// constant `-(m⊙s)ᵀW`.
    Propagated { coef: Vec<f64>, q: Vec<Tensor>, constant: Tensor },
    /// TF-IDF + LR: the weights `[V, C]` and the bias `[C]`.
    Tfidf { w: Tensor, bias: Tensor },
}

/// A word's additive part of the predicted class's logit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordShare {
    /// The word.
    pub word: String,
    /// Its part of the logit.
    pub share: f32,
}

/// One document's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Predicted label (a multi-label model's: the predicted set as a label
    /// field, its labels joined by the separator, possibly empty); `None`
    /// when the document has no known word (then nothing links it to the
    /// graph and the probabilities are uniform, or 0 for label sets).
    pub label: Option<String>,
    /// The predicted labels: the one class, or the set (label order).
    pub labels: Vec<String>,
    /// Index of the predicted label in [`Predictor::labels`] (a
    /// multi-label model's most probable label).
    pub label_id: Option<usize>,
    /// Class probabilities (softmax), or each label's (sigmoid), in label
    /// order.
    pub probabilities: Vec<f32>,
    /// The words that add most to the predicted class's logit (a
    /// multi-label model's: the most probable label's), with their share
    /// of it, largest first.
    pub top_words: Vec<WordShare>,
    /// Why there is no label: `empty document` or `no known words`.
    pub note: Option<&'static str>,
    /// Tokens found in the vocabulary.
    pub known_tokens: usize,
    /// Tokens not in the vocabulary (ignored).
    pub unknown_tokens: usize,
}

fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1))?)
}

/// A function giving each known word's exact additive part of every
/// class's logit (see `Predictor::logits`).
type WordParts<'a> = Box<dyn Fn(usize) -> Vec<f32> + 'a>;

impl Predictor {
    /// Builds the predictor at the end of training. `z1` is `Â·W0` of the
    /// final weights, `w0`/`w1` the weights, `word_self_loops` the diagonal
    /// `Â_jj` of the word rows.
    pub fn from_training(info: &VocabInfo, num_docs: usize, labels: &[String], w0: &Tensor, w1: &Tensor, z1: &Tensor, word_self_loops: &[f32]) -> Result<Self> {
        let v = info.words.len();
        let n = w0.size()[0] as usize;
        if n != num_docs + v || word_self_loops.len() != v || info.df.len() != v {
            bail!("graph of {n} nodes does not hold {num_docs} documents and {v} words");
        }
        let (d, vv) = (num_docs as i64, v as i64);
        let word_p = tch::no_grad(|| z1.narrow(0, d, vv).relu().mm(w1));
        let idf: Vec<f64> = info.df.iter().map(|&df| (num_docs as f64 / df as f64).ln()).collect();
        let meta = Self::meta_for(info, num_docs, labels, "gcn", Vec::new());
        let dinv: Vec<f32> = word_self_loops.iter().map(|&a| a.sqrt()).collect();
        let head = Head::Gcn { hidden: w0.size()[1] as usize, word_w0: to_f32(&w0.narrow(0, d, vv))?, word_p: to_f32(&word_p)?, w1: to_f32(w1)? };
        Self::assemble(meta, head, dinv, idf)
    }

    /// Builds a linear model's predictor at the end of its training
    /// (`model`: its name; `word_self_loops` as in [`Self::from_training`]).
    pub fn from_linear(info: &VocabInfo, num_docs: usize, labels: &[String], model: &str, head: &LinearHead, word_self_loops: &[f32]) -> Result<Self> {
        let v = info.words.len();
        if word_self_loops.len() != v || info.df.len() != v {
            bail!("the graph does not hold {v} words");
        }
        let idf: Vec<f64> = info.df.iter().map(|&df| (num_docs as f64 / df as f64).ln()).collect();
        let dinv: Vec<f32> = word_self_loops.iter().map(|&a| a.sqrt()).collect();
        let (coef, head) = match head {
            LinearHead::Propagated { coef, q, constant } => (coef.clone(), Head::Propagated { coef: coef.clone(), q: q.iter().map(to_f32).collect::<Result<_>>()?, constant: to_f32(constant)? }),
            LinearHead::Tfidf { w, bias } => (Vec::new(), Head::Tfidf { w: to_f32(w)?, bias: to_f32(bias)? }),
        };
        Self::assemble(Self::meta_for(info, num_docs, labels, model, coef), head, dinv, idf)
    }

    fn meta_for(info: &VocabInfo, num_docs: usize, labels: &[String], model: &str, coef: Vec<f64>) -> PredictorMeta {
        PredictorMeta { format: FORMAT, source: info.source.clone(), num_docs, labels: labels.to_vec(), words: info.words.clone(), model: model.to_owned(), coef, multi_label: None }
    }

    fn assemble(meta: PredictorMeta, head: Head, word_dinv: Vec<f32>, word_idf: Vec<f64>) -> Result<Self> {
        let v = meta.words.len();
        let classes = meta.labels.len();
        if v == 0 || classes == 0 {
            bail!("a predictor needs words and labels ({v} words, {classes} labels)");
        }
        let mut shapes = vec![(word_dinv.len(), v, "word_dinv".to_owned()), (word_idf.len(), v, "word_idf".to_owned())];
        match &head {
            Head::Gcn { hidden, word_w0, word_p, w1 } => {
                if *hidden == 0 {
                    bail!("predictor files disagree: no hidden units");
                }
                shapes.extend([(word_w0.len(), v * hidden, "word_w0".to_owned()), (word_p.len(), v * classes, "word_p".to_owned()), (w1.len(), hidden * classes, "w1".to_owned())]);
            }
            Head::Propagated { coef, q, constant } => {
                if coef.len() != q.len() + 1 {
                    bail!("predictor files disagree: {} coefficients for {} propagated matrices", coef.len(), q.len());
                }
                shapes.extend(q.iter().enumerate().map(|(k, m)| (m.len(), v * classes, format!("q{k}"))));
                shapes.push((constant.len(), classes, "constant".to_owned()));
            }
            Head::Tfidf { w, bias } => shapes.extend([(w.len(), v * classes, "w".to_owned()), (bias.len(), classes, "bias".to_owned())]),
        }
        for (got, want, name) in shapes {
            if got != want {
                bail!("predictor files disagree: `{name}` has {got} values, expected {want} ({v} words, {classes} labels)");
            }
        }
        let mut index = HashMap::with_capacity(v);
        for (i, w) in meta.words.iter().enumerate() {
            if index.insert(w.clone(), i as u32).is_some() {
                bail!("predictor vocabulary lists {w:?} twice");
            }
        }
        Ok(Predictor { meta, index, classes, head, word_dinv, word_idf })
    }

    /// Writes `predictor.json` and `predictor.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let (v, c) = (self.meta.words.len() as i64, self.classes as i64);
        let mut tensors = vec![("word_dinv".to_owned(), Tensor::from_slice(&self.word_dinv)), ("word_idf".to_owned(), Tensor::from_slice(&self.word_idf))];
        match &self.head {
            Head::Gcn { hidden, word_w0, word_p, w1 } => {
                let h = *hidden as i64;
                tensors.push(("word_w0".into(), Tensor::from_slice(word_w0).reshape([v, h])));
                tensors.push(("word_p".into(), Tensor::from_slice(word_p).reshape([v, c])));
                tensors.push(("w1".into(), Tensor::from_slice(w1).reshape([h, c])));
            }
            Head::Propagated { q, constant, .. } => {
                tensors.extend(q.iter().enumerate().map(|(k, m)| (format!("q{k}"), Tensor::from_slice(m).reshape([v, c]))));
                tensors.push(("constant".into(), Tensor::from_slice(constant)));
            }
            Head::Tfidf { w, bias } => {
                tensors.push(("w".into(), Tensor::from_slice(w).reshape([v, c])));
                tensors.push(("bias".into(), Tensor::from_slice(bias)));
            }
        }
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        textgcn_cli::write_atomic_with(&dir.join("predictor.safetensors"), |tmp| Ok(Tensor::write_safetensors(&named, tmp)?))?;
        textgcn_cli::write_atomic(&dir.join("predictor.json"), &serde_json::to_vec(&self.meta)?)
    }

    /// Loads the predictor of a run directory (written by training).
    pub fn load(run_dir: &Path) -> Result<Self> {
        let mp = run_dir.join("predictor.json");
        let text = std::fs::read_to_string(&mp).with_context(|| format!("{}: no predictor here; is {} a training run directory (runs/<name>/seed-<n>)?", mp.display(), run_dir.display()))?;
        let meta: PredictorMeta = serde_json::from_str(&text).with_context(|| format!("{}: not a predictor description", mp.display()))?;
        if meta.format != FORMAT {
            bail!("{}: predictor format {} is not supported (this build reads format {FORMAT}); retrain with this version", mp.display(), meta.format);
        }
        let tp = run_dir.join("predictor.safetensors");
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&tp).with_context(|| format!("reading {}", tp.display()))?.into_iter().collect();
        let get = |name: &str| tensors.get(name).with_context(|| format!("{}: missing tensor `{name}`", tp.display()));
        let idf = Vec::<f64>::try_from(get("word_idf")?.to_kind(Kind::Double))?;
        let head = match meta.model.as_str() {
            "gcn" => Head::Gcn { hidden: get("w1")?.size()[0] as usize, word_w0: to_f32(get("word_w0")?)?, word_p: to_f32(get("word_p")?)?, w1: to_f32(get("w1")?)? },
            "sgc" | "ssgc" => Head::Propagated {
                coef: meta.coef.clone(),
                q: (0..meta.coef.len().saturating_sub(1)).map(|k| to_f32(get(&format!("q{k}"))?)).collect::<Result<_>>()?,
                constant: to_f32(get("constant")?)?,
            },
            "tfidf-lr" => Head::Tfidf { w: to_f32(get("w")?)?, bias: to_f32(get("bias")?)? },
            other => bail!("{}: model {other:?} is not one this build predicts with (gcn, sgc, ssgc, tfidf-lr)", mp.display()),
        };
        Self::assemble(meta, head, to_f32(get("word_dinv")?)?, idf).with_context(|| format!("loading the predictor of {}", run_dir.display()))
    }

    /// What the predictor was built from.
    pub fn meta(&self) -> &PredictorMeta {
        &self.meta
    }

    /// Class labels by id.
    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// Makes this a multi-label classifier: sigmoid probabilities, and the
    /// labels at or above `threshold` predicted (a set joined by
    /// `separator`).
    pub fn set_multi_label(&mut self, separator: &str, threshold: f64) {
        self.meta.multi_label = Some(MultiLabelMeta { separator: separator.to_owned(), threshold });
    }

    /// Whether `truth` (a label field) is what `p` predicted: the same
    /// class, or for a multi-label model the same set (`truth` split at the
    /// separator; a malformed field is never right).
    pub fn is_right(&self, truth: &str, p: &Prediction) -> bool {
        match &self.meta.multi_label {
            None => p.label.as_deref() == Some(truth),
            Some(m) => p.label.is_some() && crate::targets::split_label_field(truth, &m.separator).is_ok_and(|mut t| {
                t.sort_unstable();
                let mut got: Vec<&str> = p.labels.iter().map(String::as_str).collect();
                got.sort_unstable();
                t == got
            }),
        }
    }

    /// Classifies one raw document (cleaned with the training settings).
    pub fn predict(&self, text: &str, top: usize) -> Prediction {
        // Known words with their counts, by id (a fixed order).
        let mut ids: Vec<u32> = Vec::new();
        let mut unknown = 0usize;
        let mut take = |t: &str| match self.index.get(t) {
            Some(&i) => ids.push(i),
            None if t.is_empty() => {}
            None => unknown += 1,
        };
        match self.meta.source.rules {
            Rules::Reference => {
                let mut buf = Vec::new();
                clean::reference_tokens(text, self.meta.source.lowercase, &mut buf).for_each(&mut take);
            }
            Rules::Unicode => clean::unicode_tokens(text, self.meta.source.lowercase).iter().for_each(|t| take(t)),
            Rules::Textsgc => clean::textsgc_clean(text, self.meta.source.lowercase).split(' ').for_each(&mut take),
        }
        let known = ids.len();
        ids.sort_unstable();
        let mut words: Vec<(usize, f64)> = Vec::new(); // (word, TF-IDF)
        for run in ids.chunk_by(|a, b| a == b) {
            let j = run[0] as usize;
            let a = run.len() as f64 * self.word_idf[j];
            if a != 0.0 {
                words.push((j, a));
            }
        }
        let c = self.classes;
        if words.is_empty() {
            let note = if known + unknown == 0 { "empty document" } else { "no known words" };
            let p = if self.meta.multi_label.is_some() { 0.0 } else { 1.0 / c as f32 };
            return Prediction { label: None, labels: Vec::new(), label_id: None, probabilities: vec![p; c], top_words: Vec::new(), note: Some(note), known_tokens: known, unknown_tokens: unknown };
        }
        let (logits, parts) = self.logits(&words);
        let best = (0..c).fold(0, |b, k| if logits[k] > logits[b] { k } else { b });
        let (probabilities, label, labels) = match &self.meta.multi_label {
            None => {
                let mx = logits[best];
                let exp: Vec<f32> = logits.iter().map(|&l| (l - mx).exp()).collect();
                let sum: f32 = exp.iter().sum();
                let name = self.meta.labels[best].clone();
                (exp.iter().map(|e| e / sum).collect::<Vec<f32>>(), name.clone(), vec![name])
            }
            Some(m) => {
                let p: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
                let set: Vec<String> = (0..c).filter(|&k| p[k] as f64 >= m.threshold).map(|k| self.meta.labels[k].clone()).collect();
                (p, crate::targets::join_label_set(&set, &m.separator), set)
            }
        };
        let mut parts: Vec<(usize, f32)> = words.iter().map(|&(j, _)| j).zip(parts(best)).collect();
        parts.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let top_words = parts.iter().take(top).map(|&(j, share)| WordShare { word: self.meta.words[j].clone(), share }).collect();
        Prediction { label: Some(label), labels, label_id: Some(best), probabilities, top_words, note: None, known_tokens: known, unknown_tokens: unknown }
    }

    /// The logits of a document with known `words` (id, TF-IDF weight), and
    /// a function giving each word's exact additive part of a class's
    /// logit (the constant and bias belong to no word).
    fn logits<'a>(&'a self, words: &'a [(usize, f64)]) -> (Vec<f32>, WordParts<'a>) {
        let c = self.classes;
        // The new node's normalised edges (the graph models).
        let dinv_d = (1.0 + words.iter().map(|w| w.1).sum::<f64>()).powf(-0.5);
        let self_loop = (dinv_d * dinv_d) as f32;
        let ahat: Vec<f32> = words.iter().map(|&(j, a)| (a * dinv_d * self.word_dinv[j] as f64) as f32).collect();
        let row = |m: &[f32], j: usize, width: usize| -> Vec<f32> { m[j * width..(j + 1) * width].to_vec() };
        match &self.head {
            Head::Gcn { hidden, word_w0, word_p, w1 } => {
                let h = *hidden;
                let mut z = vec![0f32; h];
                let mut logits = vec![0f32; c];
                for (&(j, _), &a) in words.iter().zip(&ahat) {
                    for (zk, &w) in z.iter_mut().zip(&word_w0[j * h..(j + 1) * h]) {
                        *zk += a * w;
                    }
                    for (lk, &p) in logits.iter_mut().zip(&word_p[j * c..(j + 1) * c]) {
                        *lk += a * p;
                    }
                }
                for (k, &zk) in z.iter().enumerate() {
                    if zk > 0.0 {
                        for (lc, &w) in logits.iter_mut().zip(&w1[k * c..(k + 1) * c]) {
                            *lc += self_loop * zk * w;
                        }
                    }
                }
                let parts = move |best: usize| {
                    let v: Vec<f32> = (0..h).map(|k| if z[k] > 0.0 { w1[k * c + best] } else { 0.0 }).collect();
                    words
                        .iter()
                        .zip(&ahat)
                        .map(|(&(j, _), &a)| {
                            let through_hidden: f32 = word_w0[j * h..(j + 1) * h].iter().zip(&v).map(|(w, x)| w * x).sum();
                            a * (word_p[j * c + best] + self_loop * through_hidden)
                        })
                        .collect()
                };
                (logits, Box::new(parts))
            }
            Head::Propagated { coef, q, constant } => {
                // u_k = Â_dd·u_{k-1} + Σ_j Â_dj·Q_{k-1,j}; logits = Σ c_k u_k + constant.
                let mut u = vec![0f32; c];
                let mut logits = constant.clone();
                for (k, &ck) in coef.iter().enumerate().skip(1) {
                    u.iter_mut().for_each(|x| *x *= self_loop);
                    for (&(j, _), &a) in words.iter().zip(&ahat) {
                        u.iter_mut().zip(row(&q[k - 1], j, c)).for_each(|(x, qv)| *x += a * qv);
                    }
                    logits.iter_mut().zip(&u).for_each(|(l, x)| *l += ck as f32 * x);
                }
                // Word j's part: Â_dj · Σ_i g_i·Q_{i-1,j}, g_i = Σ_{k≥i} c_k·Â_dd^{k-i}.
                let g: Vec<f32> = (1..coef.len()).map(|i| (i..coef.len()).map(|k| coef[k] * (self_loop as f64).powi((k - i) as i32)).sum::<f64>() as f32).collect();
                let parts = move |best: usize| words.iter().zip(&ahat).map(|(&(j, _), &a)| a * g.iter().enumerate().map(|(i, gi)| gi * q[i][j * c + best]).sum::<f32>()).collect();
                (logits, Box::new(parts))
            }
            Head::Tfidf { w, bias } => {
                let norm = words.iter().map(|w| w.1 * w.1).sum::<f64>().sqrt();
                let x: Vec<f32> = words.iter().map(|&(_, a)| (a / norm) as f32).collect();
                let mut logits = bias.clone();
                for (&(j, _), &xj) in words.iter().zip(&x) {
                    logits.iter_mut().zip(row(w, j, c)).for_each(|(l, wv)| *l += xj * wv);
                }
                let parts = move |best: usize| words.iter().zip(&x).map(|(&(j, _), &xj)| xj * w[j * c + best]).collect();
                (logits, Box::new(parts))
            }
        }
    }

    /// Classifies many documents in parallel (results in input order).
    pub fn predict_all<S: AsRef<str> + Sync>(&self, texts: &[S], top: usize) -> Vec<Prediction> {
        texts.par_iter().map(|t| self.predict(t.as_ref(), top)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three words `a b c` with document frequencies 1, 2, 4 of 4 documents,
    /// 2 classes; word self loops `Â_jj` 0.25, 0.5, 1/9.
    fn info() -> (VocabInfo, Vec<f32>) {
        let source = PipelineSource { dataset: "t".into(), rules: Rules::Reference, lowercase: true, vocab_object: "v".into(), graph_object: "g".into() };
        (VocabInfo { source, words: vec!["a".into(), "b".into(), "c".into()], df: vec![1, 2, 4] }, vec![0.25, 0.5, 1.0 / 9.0])
    }

    fn close(got: &[f32], want: &[f64]) -> bool {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (*g as f64 - w).abs() < 1e-5)
    }

    fn softmax(l: &[f64]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    /// TF-IDF + LR: the document "a b b c" (c has idf 0, so it is no edge)
    /// is `x = (ln 4, 2·ln 2, 0)/‖·‖` and its logits `x·W + b`, by hand;
    /// the words' parts add up to the logit less the bias. Saved and
    /// loaded, it predicts the same.
    #[test]
    fn tfidf_head_is_the_normalised_tfidf_times_w() {
        let (info, loops) = info();
        let w = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0, 3.0, 3.0]).reshape([3, 2]);
        let bias = Tensor::from_slice(&[0.1f32, -0.2]);
        let p = Predictor::from_linear(&info, 4, &["x".into(), "y".into()], "tfidf-lr", &LinearHead::Tfidf { w, bias }, &loops).unwrap();
        let (ta, tb) = (4f64.ln(), 2.0 * 2f64.ln());
        let n = (ta * ta + tb * tb).sqrt();
        let (xa, xb) = (ta / n, tb / n);
        let logits = [xa * 1.0 + xb * 0.5 + 0.1, -xa + xb * 2.0 - 0.2];
        let got = p.predict("a b b c", 3);
        assert!(close(&got.probabilities, &softmax(&logits)), "{:?} vs {:?}", got.probabilities, softmax(&logits));
        assert_eq!(got.label.as_deref(), Some("x"), "logits {logits:?}");
        let parts: f64 = got.top_words.iter().map(|s| s.share as f64).sum();
        assert!((parts - (logits[0] - 0.1)).abs() < 1e-5, "parts {parts}");
        let dir = tempfile::tempdir().unwrap();
        p.save(dir.path()).unwrap();
        assert_eq!(Predictor::load(dir.path()).unwrap().predict("a b b c", 3), got);
    }

    /// SGC/SSGC: with `Â_dj = a_j·dinv_d·√Â_jj`, `u_1 = Σ Â_dj Q0_j`,
    /// `u_2 = Â_dd·u_1 + Σ Â_dj Q1_j`, logits `c_1 u_1 + c_2 u_2 + constant`,
    /// by hand for "a b".
    #[test]
    fn propagated_head_follows_the_paths_into_the_graph() {
        let (info, loops) = info();
        let q0 = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 5.0, 5.0]).reshape([3, 2]);
        let q1 = Tensor::from_slice(&[0.0f32, 2.0, 1.0, 1.0, 7.0, 7.0]).reshape([3, 2]);
        let constant = Tensor::from_slice(&[0.3f32, -0.1]);
        let coef = vec![0.0, 0.4, 0.6];
        let head = LinearHead::Propagated { coef: coef.clone(), q: vec![q0, q1], constant };
        let p = Predictor::from_linear(&info, 4, &["x".into(), "y".into()], "ssgc", &head, &loops).unwrap();
        let (ta, tb) = (4f64.ln(), 2f64.ln());
        let dinv = (1.0 + ta + tb).powf(-0.5);
        let (aa, ab, add) = (ta * dinv * 0.5, tb * dinv * 0.5f64.sqrt(), dinv * dinv);
        let u1 = [aa * 1.0 + ab * 0.0, aa * 0.0 + ab * 1.0];
        let u2 = [add * u1[0] + aa * 0.0 + ab * 1.0, add * u1[1] + aa * 2.0 + ab * 1.0];
        let logits = [0.4 * u1[0] + 0.6 * u2[0] + 0.3, 0.4 * u1[1] + 0.6 * u2[1] - 0.1];
        let got = p.predict("a b", 2);
        assert!(close(&got.probabilities, &softmax(&logits)), "{:?} vs {:?}", got.probabilities, softmax(&logits));
        let best = if logits[1] > logits[0] { 1 } else { 0 };
        let parts: f64 = got.top_words.iter().map(|s| s.share as f64).sum();
        assert!((parts - (logits[best] - [0.3, -0.1][best])).abs() < 1e-5, "parts {parts} vs {}", logits[best]);
        let dir = tempfile::tempdir().unwrap();
        p.save(dir.path()).unwrap();
        let back = Predictor::load(dir.path()).unwrap();
        assert_eq!((back.meta().model.as_str(), back.meta().coef.clone()), ("ssgc", coef));
        assert_eq!(back.predict("a b", 2), got);
    }
}

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
//! # Files
//! Training writes `predictor.json` (pipeline settings, vocabulary, labels,
//! the ids of the objects it was built from) and `predictor.safetensors`
//! (`word_w0 [V,H]`, `word_p [V,C]`, `w1 [H,C]`, `word_dinv [V]`,
//! `word_idf [V]`) into the run directory; [`Predictor::load`] needs
//! nothing else.

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
    hidden: usize,
    classes: usize,
    word_w0: Vec<f32>,
    word_p: Vec<f32>,
    w1: Vec<f32>,
    word_dinv: Vec<f32>,
    word_idf: Vec<f64>,
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
    /// Predicted label; `None` when the document has no known word (then
    /// nothing links it to the graph and the probabilities are uniform).
    pub label: Option<String>,
    /// Index of the predicted label in [`Predictor::labels`].
    pub label_id: Option<usize>,
    /// Class probabilities, in label order.
    pub probabilities: Vec<f32>,
    /// The words that add most to the predicted class's logit, with their
    /// share of it, largest first.
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
        let meta = PredictorMeta {
            format: FORMAT,
            source: info.source.clone(),
            num_docs,
            labels: labels.to_vec(),
            words: info.words.clone(),
        };
        let dinv: Vec<f32> = word_self_loops.iter().map(|&a| a.sqrt()).collect();
        Self::assemble(meta, to_f32(&w0.narrow(0, d, vv))?, to_f32(&word_p)?, to_f32(w1)?, dinv, idf)
    }

    fn assemble(meta: PredictorMeta, word_w0: Vec<f32>, word_p: Vec<f32>, w1: Vec<f32>, word_dinv: Vec<f32>, word_idf: Vec<f64>) -> Result<Self> {
        let v = meta.words.len();
        let classes = meta.labels.len();
        if v == 0 || classes == 0 {
            bail!("a predictor needs words and labels ({v} words, {classes} labels)");
        }
        let hidden = word_w0.len() / v;
        let shapes = [(word_w0.len(), v * hidden, "word_w0"), (word_p.len(), v * classes, "word_p"), (w1.len(), hidden * classes, "w1"), (word_dinv.len(), v, "word_dinv"), (word_idf.len(), v, "word_idf")];
        for (got, want, name) in shapes {
            if got != want || hidden == 0 {
                bail!("predictor files disagree: `{name}` has {got} values, expected {want} ({v} words, {classes} labels, {hidden} hidden)");
            }
        }
        let mut index = HashMap::with_capacity(v);
        for (i, w) in meta.words.iter().enumerate() {
            if index.insert(w.clone(), i as u32).is_some() {
                bail!("predictor vocabulary lists {w:?} twice");
            }
        }
        Ok(Predictor { meta, index, hidden, classes, word_w0, word_p, w1, word_dinv, word_idf })
    }

    /// Writes `predictor.json` and `predictor.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let (v, h, c) = (self.meta.words.len() as i64, self.hidden as i64, self.classes as i64);
        let tensors = [
            ("word_w0", Tensor::from_slice(&self.word_w0).reshape([v, h])),
            ("word_p", Tensor::from_slice(&self.word_p).reshape([v, c])),
            ("w1", Tensor::from_slice(&self.w1).reshape([h, c])),
            ("word_dinv", Tensor::from_slice(&self.word_dinv)),
            ("word_idf", Tensor::from_slice(&self.word_idf)),
        ];
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
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
        Self::assemble(meta, to_f32(get("word_w0")?)?, to_f32(get("word_p")?)?, to_f32(get("w1")?)?, to_f32(get("word_dinv")?)?, idf).with_context(|| format!("loading the predictor of {}", run_dir.display()))
    }

    /// What the predictor was built from.
    pub fn meta(&self) -> &PredictorMeta {
        &self.meta
    }

    /// Class labels by id.
    pub fn labels(&self) -> &[String] {
        &self.meta.labels
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
        let (h, c) = (self.hidden, self.classes);
        if words.is_empty() {
            let note = if known + unknown == 0 { "empty document" } else { "no known words" };
            return Prediction { label: None, label_id: None, probabilities: vec![1.0 / c as f32; c], top_words: Vec::new(), note: Some(note), known_tokens: known, unknown_tokens: unknown };
        }
        let dinv_d = (1.0 + words.iter().map(|w| w.1).sum::<f64>()).powf(-0.5);
        let self_loop = (dinv_d * dinv_d) as f32;
        let ahat: Vec<f32> = words.iter().map(|&(j, a)| (a * dinv_d * self.word_dinv[j] as f64) as f32).collect();
        let mut z = vec![0f32; h];
        let mut logits = vec![0f32; c];
        for (&(j, _), &a) in words.iter().zip(&ahat) {
            for (zk, &w) in z.iter_mut().zip(&self.word_w0[j * h..(j + 1) * h]) {
                *zk += a * w;
            }
            for (lk, &p) in logits.iter_mut().zip(&self.word_p[j * c..(j + 1) * c]) {
                *lk += a * p;
            }
        }
        for (k, &zk) in z.iter().enumerate() {
            if zk > 0.0 {
                for (lc, &w) in logits.iter_mut().zip(&self.w1[k * c..(k + 1) * c]) {
                    *lc += self_loop * zk * w;
                }
            }
        }
        let best = (0..c).fold(0, |b, k| if logits[k] > logits[b] { k } else { b });
        let mx = logits[best];
        let exp: Vec<f32> = logits.iter().map(|&l| (l - mx).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let probabilities: Vec<f32> = exp.iter().map(|e| e / sum).collect();
        // Exact per-word parts of the predicted class's logit.
        let v: Vec<f32> = (0..h).map(|k| if z[k] > 0.0 { self.w1[k * c + best] } else { 0.0 }).collect();
        let mut parts: Vec<(usize, f32)> = words
            .iter()
            .zip(&ahat)
            .map(|(&(j, _), &a)| {
                let through_hidden: f32 = self.word_w0[j * h..(j + 1) * h].iter().zip(&v).map(|(w, x)| w * x).sum();
                (j, a * (self.word_p[j * c + best] + self_loop * through_hidden))
            })
            .collect();
        parts.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let top_words = parts.iter().take(top).map(|&(j, share)| WordShare { word: self.meta.words[j].clone(), share }).collect();
        Prediction { label: Some(self.meta.labels[best].clone()), label_id: Some(best), probabilities, top_words, note: None, known_tokens: known, unknown_tokens: unknown }
    }

    /// Classifies many documents in parallel (results in input order).
    pub fn predict_all<S: AsRef<str> + Sync>(&self, texts: &[S], top: usize) -> Vec<Prediction> {
        texts.par_iter().map(|t| self.predict(t.as_ref(), top)).collect()
    }
}

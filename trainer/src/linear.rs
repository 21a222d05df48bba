//! The linear models on the same artifacts: SGC, SSGC and TF-IDF + logistic
//! regression. Each is a softmax classifier `logits = F · W` on fixed
//! document features `F`, fitted by [`crate::lbfgs`] to the mean
//! cross-entropy of the training documents plus `½·λ·‖W‖²`.
//!
//! # Features, never materialised
//! - **SGC** (Wu et al. 2019, featureless as in TextSGC): `F = (Â^k)_{docs,:}`,
//!   so `F·W` is `k` products of `Â` with a `C`-column matrix (the last only
//!   for the document rows) and, `Â` being symmetric, `Fᵀ·G = Â^k·G` with
//!   `G` zero outside the document rows. TextSGC's own code forms `Â^k`'s
//!   columns densely (10+ GB for 20ng); here a pass is `2k` products of
//!   `C` columns.
//! - **SSGC** (Zhu & Koniusz 2021): `F = (α·I + (1-α)·mean_{k=f..K} Â^k)_{docs,:}`,
//!   the same way (`K` products per direction). The paper averages from
//!   `f = 1` with a restart term `α`; TextS²GC's code, the source of its
//!   published text results, from `f = 2` with `α = 0` (the defaults: on
//!   R8 the paper's form measured 84.4 % with `α = 0.05` and 96.3 % with
//!   `α = 0`, the code's 96.9 %, `K = 10`).
//! - **TF-IDF + LR**: `F` is the documents' TF-IDF vectors, L2-normalised
//!   (scikit-learn's `TfidfVectorizer` default), with a bias per class
//!   that is not penalised. The weights are the graph's own doc-word edges
//!   before normalisation, `tf·ln(D/df)`, recovered exactly from `Â`:
//!   `a_dj = Â_dj / √(Â_dd·Â_jj)` (`Â_ii = 1/deg_i`). As in the graph, the
//!   document frequencies count every document, the test ones included (the
//!   transductive setting of the TextGCN paper).
//!
//! # Scaling
//! TextSGC min-max scales each feature column over the training documents
//! and drops the columns constant there ([`FeatureScale::MinMax`], the
//! default for SGC and SSGC). With `s_j = 1/range_j` (0 for a dropped
//! column) and `m_j` the column minimum, the scaled features are
//! `(F - 1·mᵀ)·diag(s)`, so `logits = F·(s⊙W) - 1·((m⊙s)ᵀW)`, and the
//! gradient follows with one column sum. The ranges are exact: for
//! `k ≤ 2` from each training document's two-hop neighbourhood (seconds),
//! beyond that from blocks of `S·E` products ([`column_ranges_by_products`],
//! minutes on 20ng); either is computed once for all seeds of a run.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use textgcn_pipeline::config::{FeatureScale, ModelKind};

use crate::graph::{Adj, GraphData};
use crate::lbfgs::{self, Stop};
use crate::model::Hyper;
use crate::predict::LinearHead;
use crate::run::EpochLog;
use crate::spmm::{Column, Csr};
use crate::targets::Targets;

/// A linear model's settings, from the `[train.<model>]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Which model.
    pub kind: ModelKind,
    /// Coefficients of the propagation polynomial: `coef[k]` multiplies
    /// `Â^k` (`coef[0]` the identity). Empty for TF-IDF + LR.
    pub coef: Vec<f64>,
    /// Feature scaling.
    pub scale: FeatureScale,
    /// L2 penalty `λ`.
    pub weight_decay: f64,
    /// L-BFGS iterations.
    pub iterations: usize,
    /// Whether there is a (not penalised) bias per class.
    pub bias: bool,
}

impl Spec {
    /// The settings of `h.model`; `None` for the GCN.
    pub fn of(h: &Hyper) -> Option<Spec> {
        // α·I + (1-α)·mean_{k=first..last} Â^k
        let poly = |first: usize, last: usize, alpha: f64| -> Vec<f64> {
            let mut c = vec![0.0; last + 1];
            c[0] = alpha;
            c[first..].iter_mut().for_each(|x| *x = (1.0 - alpha) / (last + 1 - first) as f64);
            c
        };
        Some(match h.model {
            ModelKind::Gcn => return None,
            ModelKind::Sgc => Spec { kind: h.model, coef: poly(h.sgc.k, h.sgc.k, 0.0), scale: h.sgc.scale, weight_decay: h.sgc.weight_decay, iterations: h.sgc.iterations, bias: false },
            ModelKind::Ssgc => Spec { kind: h.model, coef: poly(h.ssgc.first_power, h.ssgc.k, h.ssgc.alpha), scale: h.ssgc.scale, weight_decay: h.ssgc.weight_decay, iterations: h.ssgc.iterations, bias: false },
            ModelKind::TfidfLr => Spec { kind: h.model, coef: Vec::new(), scale: FeatureScale::None, weight_decay: h.tfidf_lr.weight_decay, iterations: h.tfidf_lr.iterations, bias: true },
        })
    }
}

/// What a linear run adds to the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct LinearInfo {
    /// L-BFGS iterations run (loss and gradient evaluations).
    pub iterations_run: usize,
    /// Why L-BFGS stopped.
    pub stop: Stop,
    /// Feature columns (nodes for SGC/SSGC, words for TF-IDF).
    pub features: usize,
    /// Of those, the columns the model uses (min-max scaling drops the ones
    /// constant over the training documents).
    pub used_features: usize,
    /// Seconds spent before the first iteration (the TF-IDF matrix, the
    /// column ranges).
    pub setup_seconds: f64,
}

/// Bytes a linear run holds at its peak, estimated from the shapes: the
/// parameters, their gradient and the L-BFGS state (two vectors per kept
/// iteration plus four), the propagation's `[N, C]` intermediates (four) and
/// the document logits (three `[D, C]`), float32. `None` on overflow.
pub fn training_bytes(params: usize, nodes: usize, classes: usize, docs: usize, iterations: usize) -> Option<u128> {
    let (p, n, c, d) = (params as u128, nodes as u128, classes as u128, docs as u128);
    let kept = iterations.min(lbfgs::HISTORY) as u128;
    let floats = (2 * kept + 6) * p * c + 4 * n * c + 3 * d * c;
    floats.checked_mul(4)
}

/// The features as an operator on the weights.
// One value a fit, never in a collection (see `Adj`).
#[allow(clippy::large_enum_variant)]
enum Operator<'a> {
    /// Rows `0..D` of `Σ_k coef[k]·Â^k` (SGC, SSGC). `doc_ends[i]`, on the
    /// CPU, is where row `i`'s document columns end (columns are sorted,
    /// documents are nodes `0..D`, so they are a prefix of the row).
    Poly { adj: &'a Adj, coef: Vec<f64>, nodes: usize, doc_ends: Option<Vec<usize>> },
    /// The TF-IDF rows `[D, V]` and their transpose.
    Tfidf { x: Adj, xt: Adj },
}

impl Operator<'_> {
    /// `F · w` for `w` of `[P, C]`: `[D, C]`.
    fn forward(&self, w: &Tensor, docs: usize) -> Tensor {
        match self {
            Operator::Tfidf { x, .. } => x.mm(w),
            Operator::Poly { adj, coef, .. } => {
                let d = docs as i64;
                let mut acc = w.narrow(0, 0, d) * coef[0];
                let mut y = w.shallow_clone();
                let last = coef.len() - 1;
                for (k, &c) in coef.iter().enumerate().skip(1) {
                    y = if k == last { adj.mm_rows(&y, docs) } else { adj.mm(&y) };
                    if c != 0.0 {
                        acc += y.narrow(0, 0, d) * c;
                    }
                }
                acc
            }
        }
    }

    /// `Fᵀ · g` for `g` of `[D, C]`: `[P, C]`.
    fn backward(&self, g: &Tensor) -> Tensor {
        match self {
            Operator::Tfidf { xt, .. } => xt.mm(g),
            Operator::Poly { adj, coef, nodes, doc_ends } => {
                let (d, c) = (g.size()[0], g.size()[1]);
                let acc = Tensor::zeros([*nodes as i64, c], (Kind::Float, g.device()));
                if coef[0] != 0.0 {
                    acc.narrow(0, 0, d).copy_(&(g * coef[0]));
                }
                let mut acc = acc;
                // The first product only meets the document columns: on the
                // CPU it reads just those (a few percent of the graph).
                let mut y = match (doc_ends, adj.host()) {
                    (Some(ends), Some(a)) => crate::graph::with_csr!(a, a => doc_columns_product(a, ends, g)),
                    _ => {
                        let full = Tensor::zeros([*nodes as i64, c], (Kind::Float, g.device()));
                        full.narrow(0, 0, d).copy_(g);
                        adj.mm(&full)
                    }
                };
                for (k, &w) in coef.iter().enumerate().skip(1) {
                    if k > 1 {
                        y = adj.mm(&y);
                    }
                    if w != 0.0 {
                        acc += &y * w;
                    }
                }
                acc
            }
        }
    }
}

/// Where each row's document columns (`< docs`) end.
fn doc_column_ends<C: Column>(a: Csr<C>, docs: usize) -> Vec<usize> {
    (0..a.rows()).into_par_iter().map(|i| a.row_ptr[i] as usize + a.cols[a.row_ptr[i] as usize..a.row_ptr[i + 1] as usize].partition_point(|&c| c.index() < docs)).collect()
}

/// `Â · G` for `g` holding `G`'s rows `0..D` (the rest zero): each row
/// reads only its document columns, `cols[row_ptr[i]..ends[i]]`.
fn doc_columns_product<C: Column>(a: Csr<C>, ends: &[usize], g: &Tensor) -> Tensor {
    let (rp, cols, vals) = (a.row_ptr, a.cols, a.vals);
    let g = g.contiguous();
    let c = g.size()[1] as usize;
    let gs = crate::mapping::f32_slice(&g);
    let mut out = Tensor::zeros([ends.len() as i64, c as i64], (Kind::Float, Device::Cpu));
    crate::mapping::f32_slice_mut(&mut out).par_chunks_mut(c).enumerate().for_each(|(i, o)| {
        for k in rp[i] as usize..ends[i] {
            let (v, x) = (vals[k], &gs[cols[k].index() * c..][..c]);
            o.iter_mut().zip(x).for_each(|(o, x)| *o += v * x);
        }
    });
    out
}

/// A trained linear model.
pub struct LinearTrained {
    /// One entry per L-BFGS iteration (its loss and validation numbers are
    /// those of the weights the iteration started from).
    pub log: Vec<EpochLog>,
    /// Class probabilities of the documents `[D, C]` (CPU).
    pub probs: Tensor,
    /// The weights by name, for `model.safetensors`: `w` `[P, C]`, and
    /// `bias` `[C]`, `scale` and `shift` `[P]` where the model has them.
    pub weights: Vec<(String, Tensor)>,
    /// What the metrics report of the run.
    pub info: LinearInfo,
    /// What an inductive predictor needs ([`crate::predict`]).
    pub head: LinearHead,
}

/// The predictor's part of a trained linear model: for SGC/SSGC the word
/// rows of `Q_k = Â^k·(s⊙W)` for `k < K` and `-(m⊙s)ᵀW`; for TF-IDF + LR
/// the weights and bias.
fn predictor_head(problem: &Problem, theta: &Tensor, spec: &Spec) -> LinearHead {
    let w = problem.weights(theta);
    let c = problem.classes as i64;
    match &problem.op {
        Operator::Tfidf { .. } => LinearHead::Tfidf { w: w.to_device(Device::Cpu), bias: theta.narrow(0, problem.params as i64 * c, c).to_device(Device::Cpu) },
        Operator::Poly { adj, nodes, .. } => {
            let (docs, words) = (problem.docs as i64, (*nodes - problem.docs) as i64);
            let (mut y, constant) = match &problem.scaling {
                Some((s, shift)) => (&w * s, -crate::ordered::transposed_mm(shift, &w).squeeze_dim(0)),
                None => (w.shallow_clone(), Tensor::zeros([c], (Kind::Float, w.device()))),
            };
            let mut q = Vec::new();
            for k in 0..spec.coef.len() - 1 {
                if k > 0 {
                    y = adj.mm(&y);
                }
                q.push(y.narrow(0, docs, words).to_device(Device::Cpu));
            }
            LinearHead::Propagated { coef: spec.coef.clone(), q, constant: constant.to_device(Device::Cpu) }
        }
    }
}

/// Trains the linear model `spec` on `data` (seeded by `h.seed`, which only
/// sets the starting point: the objective is convex).
pub fn train(data: &GraphData, spec: &Spec, h: &Hyper, mut on_epoch: impl FnMut(&EpochLog)) -> LinearTrained {
    let setup = Instant::now();
    let device = data.adj.device();
    let docs = data.num_docs;
    let classes = data.num_classes();
    let op = match spec.kind {
        ModelKind::TfidfLr => tfidf_operator(data, device),
        _ => {
            let doc_ends = data.adj.host().map(|a| crate::graph::with_csr!(a, a => doc_column_ends(a, docs)));
            Operator::Poly { adj: &data.adj, coef: spec.coef.clone(), nodes: data.num_nodes, doc_ends }
        }
    };
    let params = match &op {
        Operator::Tfidf { .. } => data.num_nodes - docs,
        Operator::Poly { .. } => data.num_nodes,
    };
    // Min-max scaling: s (0 drops a column) and the shift m⊙s; mean
    // scaling: s = |T| / (Fᵀ·1_T), no shift.
    let scaling = match spec.scale {
        FeatureScale::None => None,
        FeatureScale::Mean => {
            let mut ones = Tensor::zeros([docs as i64, 1], (Kind::Float, device));
            let _ = ones.index_fill_(0, &data.train, 1.0);
            let mean = op.backward(&ones) / data.train.numel() as f64;
            let s = mean.gt(0.0).to_kind(Kind::Float) / mean.clamp_min(f64::MIN_POSITIVE);
            Some((s, Tensor::zeros([params as i64, 1], (Kind::Float, device))))
        }
        FeatureScale::MinMax => Some({
        let ranges = data.column_ranges(&spec.coef, || {
            if spec.coef.len() <= 3 {
                column_ranges(data.host_csr(), docs, &spec.coef, &data.split_lists[0])
            } else {
                column_ranges_by_products(&data.adj, &spec.coef, &data.split_lists[0])
            }
        });
        let (lo, hi) = (&ranges.0, &ranges.1);
        let s: Vec<f32> = lo.iter().zip(hi).map(|(l, h)| if h > l { 1.0 / (h - l) } else { 0.0 }).collect();
        let shift: Vec<f32> = lo.iter().zip(&s).map(|(l, s)| l * s).collect();
        (Tensor::from_slice(&s).to_device(device).unsqueeze(1), Tensor::from_slice(&shift).to_device(device).unsqueeze(1))
        }),
    };
    let used = match &scaling {
        Some((s, _)) => s.gt(0.0).sum(Kind::Int64).int64_value(&[]) as usize,
        None => params,
    };
    // Xavier-normal start over the used columns (TextSGC's), zero for the
    // dropped ones and the bias.
    tch::manual_seed(h.seed as i64);
    let rows = params + spec.bias as usize;
    let std = (2.0 / (used + classes) as f64).sqrt();
    let theta = Tensor::randn([rows as i64, classes as i64], (Kind::Float, device)) * std;
    if spec.bias {
        let _ = theta.narrow(0, params as i64, 1).zero_();
    }
    let mask = scaling.as_ref().map(|(s, _)| s.gt(0.0).to_kind(Kind::Float));
    if let Some(m) = &mask {
        let _ = theta.narrow(0, 0, params as i64).g_mul_(m);
    }
    let mut theta = theta.flatten(0, -1);
    let setup_seconds = setup.elapsed().as_secs_f64();

    let problem = Problem { op, scaling, mask, bias: spec.bias, weight_decay: spec.weight_decay, params, classes, docs };
    let mut log = Vec::new();
    let stop = lbfgs::minimize(&mut theta, spec.iterations, |theta| {
        let t = Instant::now();
        let f = problem.evaluate(theta, &data.train, &data.targets);
        let (val_loss, val_acc) = data.targets.loss_acc(&f.logits, &data.val);
        if device != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        let e = EpochLog { epoch: log.len() + 1, train_loss: f.cross_entropy, train_acc: f.train_acc, val_loss, val_acc, seconds: t.elapsed().as_secs_f64() };
        on_epoch(&e);
        log.push(e);
        (f.cross_entropy + f.penalty, f.grad)
    });
    let Problem { scaling, .. } = &problem;
    let (p, c) = (params as i64, classes as i64);
    let probs = tch::no_grad(|| data.targets.probabilities(&problem.logits(&theta))).to_device(Device::Cpu);
    let w = theta.narrow(0, 0, p * c).view([p, c]).to_device(Device::Cpu);
    let mut weights = vec![("w".to_owned(), w)];
    if spec.bias {
        weights.push(("bias".to_owned(), theta.narrow(0, p * c, c).to_device(Device::Cpu)));
    }
    if let Some((s, shift)) = &scaling {
        weights.push(("scale".to_owned(), s.squeeze_dim(1).to_device(Device::Cpu)));
        weights.push(("shift".to_owned(), shift.squeeze_dim(1).to_device(Device::Cpu)));
    }
    let head = tch::no_grad(|| predictor_head(&problem, &theta, spec));
    let info = LinearInfo { iterations_run: log.len(), stop, features: params, used_features: used, setup_seconds };
    LinearTrained { log, probs, weights, info, head }
}

/// The objective: features, scaling, penalty and the parameter layout
/// (`theta` is the flat `[P·C]` weights, then `[C]` bias when there is
/// one).
struct Problem<'a> {
    op: Operator<'a>,
    /// `s` and `m⊙s`, both `[P, 1]`.
    scaling: Option<(Tensor, Tensor)>,
    /// `[P, 1]`: 1 for the columns in use (scaling drops some).
    mask: Option<Tensor>,
    bias: bool,
    weight_decay: f64,
    params: usize,
    classes: usize,
    docs: usize,
}

/// One evaluation of the objective.
struct Evaluation {
    /// Logits of every document `[D, C]`.
    logits: Tensor,
    /// Mean loss over the training documents (cross-entropy, or binary
    /// cross-entropy for label sets).
    cross_entropy: f64,
    /// `½·λ·‖W‖²`.
    penalty: f64,
    /// Accuracy on the training documents.
    train_acc: f64,
    /// Gradient of `cross_entropy + penalty` with respect to `theta`.
    grad: Tensor,
}

impl Problem<'_> {
    fn weights(&self, theta: &Tensor) -> Tensor {
        let (p, c) = (self.params as i64, self.classes as i64);
        theta.narrow(0, 0, p * c).view([p, c])
    }

    /// Logits of every document for `theta`.
    fn logits(&self, theta: &Tensor) -> Tensor {
        let w = self.weights(theta);
        let mut z = match &self.scaling {
            Some((s, shift)) => self.op.forward(&(&w * s), self.docs) - crate::ordered::transposed_mm(shift, &w),
            None => self.op.forward(&w, self.docs),
        };
        if self.bias {
            let c = self.classes as i64;
            z += theta.narrow(0, self.params as i64 * c, c).view([1, c]);
        }
        z
    }

    /// Loss and gradient at `theta` over the `train` documents.
    fn evaluate(&self, theta: &Tensor, train: &Tensor, targets: &Targets) -> Evaluation {
        let c = self.classes as i64;
        let w = self.weights(theta);
        let logits = self.logits(theta);
        // dL/dz on the training rows, 0 elsewhere.
        let (cross_entropy, train_acc, gt) = targets.loss_grad(&logits.index_select(0, train), train);
        let wm = match &self.mask {
            Some(m) => &w * m,
            None => w.shallow_clone(),
        };
        let penalty = 0.5 * self.weight_decay * crate::ordered::sum_squares(&wm);
        let mut g = Tensor::zeros([self.docs as i64, c], (Kind::Float, theta.device()));
        let _ = g.index_copy_(0, train, &gt);
        let mut gw = match &self.scaling {
            Some((s, shift)) => (self.op.backward(&g) * s) - shift.mm(&crate::ordered::column_sums(&g).view([1, c])),
            None => self.op.backward(&g),
        };
        if self.weight_decay > 0.0 {
            gw += &wm * self.weight_decay;
        }
        let mut parts = vec![gw.flatten(0, -1)];
        if self.bias {
            parts.push(crate::ordered::column_sums(&g));
        }
        Evaluation { logits, cross_entropy, penalty, train_acc, grad: Tensor::cat(&parts, 0) }
    }
}

/// The documents' L2-normalised TF-IDF rows, recovered from `Â` (module
/// docs), and their transpose.
fn tfidf_operator(data: &GraphData, device: Device) -> Operator<'static> {
    let (docs, n) = (data.num_docs, data.num_nodes);
    let ((rp, cols, vals), (trp, tcols, tvals)) = tfidf_rows(data.host_csr(), docs, &data.self_loops(0..n));
    Operator::Tfidf { x: Adj::from_host(rp, cols, vals, n - docs, device), xt: Adj::from_host(trp, tcols, tvals, docs, device) }
}

/// CSR arrays (offsets, columns, values).
type CsrParts = (Vec<i64>, Vec<i64>, Vec<f32>);

/// The TF-IDF rows `[D, V]` of the graph `a` (documents `0..D`, words
/// after them; `self_loops[i] = Â_ii`), L2-normalised, and their
/// transpose `[V, D]`.
fn tfidf_rows(a: Csr, docs: usize, self_loops: &[f32]) -> (CsrParts, CsrParts) {
    let n = a.rows();
    let rows: Vec<Vec<(i64, f32)>> = (0..docs)
        .into_par_iter()
        .map(|d| {
            let (s, e) = (a.row_ptr[d] as usize, a.row_ptr[d + 1] as usize);
            let mut row: Vec<(i64, f32)> = (s..e)
                .filter(|&k| a.cols[k] as usize >= docs)
                .map(|k| {
                    let j = a.cols[k] as usize;
                    (j as i64 - docs as i64, (a.vals[k] as f64 / (self_loops[d] as f64 * self_loops[j] as f64).sqrt()) as f32)
                })
                .collect();
            let norm = row.iter().map(|(_, v)| (*v as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|(_, v)| *v = (*v as f64 / norm) as f32);
            }
            row
        })
        .collect();
    let words = n - docs;
    let (mut rp, mut cols, mut vals) = (vec![0i64], Vec::new(), Vec::new());
    let mut counts = vec![0i64; words + 1];
    for row in &rows {
        for &(j, v) in row {
            cols.push(j);
            vals.push(v);
            counts[j as usize + 1] += 1;
        }
        rp.push(cols.len() as i64);
    }
    // The transpose by counting sort: word rows, documents in order.
    for j in 0..words {
        counts[j + 1] += counts[j];
    }
    let mut next = counts.clone();
    let (mut tcols, mut tvals) = (vec![0i64; cols.len()], vec![0f32; cols.len()]);
    for (d, row) in rows.iter().enumerate() {
        for &(j, v) in row {
            let at = next[j as usize] as usize;
            tcols[at] = d as i64;
            tvals[at] = v;
            next[j as usize] += 1;
        }
    }
    ((rp, cols, vals), (counts, tcols, tvals))
}

/// [`column_ranges`] for any number of steps: the training documents'
/// rows of `S = Σ_k coef[k]·Â^k` in blocks of [`RANGE_BLOCK`], each block
/// `S·E` for the one-hot columns `E` of its documents (`S` is symmetric,
/// so its columns are the rows), `k` products of that many columns. Exact,
/// and slow: `k·|T|/RANGE_BLOCK` products of the graph.
pub fn column_ranges_by_products(adj: &Adj, coef: &[f64], train: &[i64]) -> (Vec<f32>, Vec<f32>) {
    let device = adj.device();
    let n = match adj.host() {
        Some(a) => a.rows(),
        None => match adj {
            Adj::Torch(t) => t.size()[0] as usize,
            _ => unreachable!("host variants have host arrays"),
        },
    };
    let mut lo = Tensor::full([n as i64], f64::INFINITY, (Kind::Float, device));
    let mut hi = Tensor::full([n as i64], f64::NEG_INFINITY, (Kind::Float, device));
    for block in train.chunks(RANGE_BLOCK) {
        let b = block.len() as i64;
        let mut e = Tensor::zeros([n as i64, b], (Kind::Float, device));
        let rows = Tensor::from_slice(block).to_device(device);
        let cols = Tensor::arange(b, (Kind::Int64, device));
        let _ = e.index_put_(&[Some(rows), Some(cols)], &Tensor::ones([b], (Kind::Float, device)), false);
        let mut acc = &e * coef[0];
        let mut y = e;
        for &c in &coef[1..] {
            y = adj.mm(&y);
            if c != 0.0 {
                acc += &y * c;
            }
        }
        lo = lo.minimum(&acc.amin(1, false));
        hi = hi.maximum(&acc.amax(1, false));
    }
    let v = |t: Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu)).expect("float32 ranges");
    (v(lo), v(hi))
}

/// Training documents per block of [`column_ranges_by_products`].
pub const RANGE_BLOCK: usize = 256;

/// For each column `j`, the minimum and maximum over the training
/// documents `d` of `Σ_k coef[k]·(Â^k)_{dj}` (`coef.len() ≤ 3`), computed
/// row by row from each document's two-hop neighbourhood. A document
/// whose two hops reach a good part of the graph is accumulated into a
/// dense row (no bookkeeping per entry, one vectorised pass to fold it);
/// one that reaches few columns, sparsely (only those are folded).
pub fn column_ranges(a: Csr, docs: usize, coef: &[f64], train: &[i64]) -> (Vec<f32>, Vec<f32>) {
    column_ranges_with(a, docs, coef, train, 4)
}

/// [`column_ranges`], a document dense when `dense_from ×` its two-hop
/// entries reach the node count (0: never dense).
fn column_ranges_with(a: Csr, docs: usize, coef: &[f64], train: &[i64], dense_from: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(coef.len() <= 3, "column ranges are exact for k <= 2 only");
    let n = a.rows();
    let c = |k: usize| coef.get(k).copied().unwrap_or(0.0) as f32;
    let (c0, c1, c2) = (c(0), c(1), c(2));
    struct Acc {
        row: Vec<f32>,
        seen: Vec<bool>,
        touched: Vec<u32>,
        lo: Vec<f32>,
        hi: Vec<f32>,
        /// Sparse documents that reached each column.
        count: Vec<u32>,
        /// Dense documents (they reach every column, with 0 where no path
        /// leads).
        dense: usize,
    }
    let new = || Acc { row: vec![0.0; n], seen: vec![false; n], touched: Vec::new(), lo: vec![f32::INFINITY; n], hi: vec![f32::NEG_INFINITY; n], count: vec![0; n], dense: 0 };
    let span = |r: usize| a.row_ptr[r] as usize..a.row_ptr[r + 1] as usize;
    let acc = train
        .par_iter()
        .fold(new, |mut acc, &d| {
            let d = d as usize;
            debug_assert!(d < docs);
            let work: usize = if c2 != 0.0 { a.cols[span(d)].iter().map(|&t| span(t as usize).len()).sum() } else { span(d).len() };
            let dense = dense_from > 0 && work * dense_from >= n;
            fn add(acc: &mut Acc, dense: bool, j: usize, v: f32) {
                if !dense && !acc.seen[j] {
                    acc.seen[j] = true;
                    acc.touched.push(j as u32);
                }
                acc.row[j] += v;
            }
            if c0 != 0.0 {
                add(&mut acc, dense, d, c0);
            }
            for k in span(d) {
                let (t, w) = (a.cols[k] as usize, a.vals[k]);
                if c1 != 0.0 {
                    add(&mut acc, dense, t, c1 * w);
                }
                if c2 != 0.0 {
                    let cw = c2 * w;
                    let r = span(t);
                    if dense {
                        for (&j, &v) in a.cols[r.clone()].iter().zip(&a.vals[r]) {
                            acc.row[j as usize] += cw * v;
                        }
                    } else {
                        for (&j, &v) in a.cols[r.clone()].iter().zip(&a.vals[r]) {
                            add(&mut acc, false, j as usize, cw * v);
                        }
                    }
                }
            }
            if dense {
                acc.dense += 1;
                for ((v, lo), hi) in acc.row.iter_mut().zip(&mut acc.lo).zip(&mut acc.hi) {
                    *lo = lo.min(*v);
                    *hi = hi.max(*v);
                    *v = 0.0;
                }
            } else {
                for k in std::mem::take(&mut acc.touched) {
                    let j = k as usize;
                    let v = acc.row[j];
                    acc.lo[j] = acc.lo[j].min(v);
                    acc.hi[j] = acc.hi[j].max(v);
                    acc.count[j] += 1;
                    acc.row[j] = 0.0;
                    acc.seen[j] = false;
                }
            }
            acc
        })
        .reduce(new, |mut a, b| {
            for j in 0..n {
                a.lo[j] = a.lo[j].min(b.lo[j]);
                a.hi[j] = a.hi[j].max(b.hi[j]);
                a.count[j] += b.count[j];
            }
            a.dense += b.dense;
            a
        });
    // A column some training document does not reach is 0 there.
    let (mut lo, mut hi) = (acc.lo, acc.hi);
    for j in 0..n {
        if acc.count[j] as usize + acc.dense < train.len() {
            lo[j] = lo[j].min(0.0);
            hi[j] = hi[j].max(0.0);
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small symmetric, TextGCN-normalised graph: `D` documents joined to
    /// words with weights `raw`, words to words, self loops; returned as
    /// the dense `Â`, its CSR parts and the raw doc-word block.
    fn graph(docs: usize, words: usize, seed: i64) -> (Tensor, CsrParts, Tensor) {
        tch::manual_seed(seed);
        let n = (docs + words) as i64;
        let opts = (Kind::Float, Device::Cpu);
        let a = Tensor::zeros([n, n], opts);
        // Doc-word weights, about half present; word-word ones, symmetric.
        let dw = Tensor::rand([docs as i64, words as i64], opts) * Tensor::rand([docs as i64, words as i64], opts).gt(0.5).to_kind(Kind::Float);
        a.narrow(0, 0, docs as i64).narrow(1, docs as i64, words as i64).copy_(&dw);
        a.narrow(0, docs as i64, words as i64).narrow(1, 0, docs as i64).copy_(&dw.tr());
        let ww = Tensor::rand([words as i64, words as i64], opts) * Tensor::rand([words as i64, words as i64], opts).gt(0.6).to_kind(Kind::Float);
        let ww = (&ww + ww.tr()) * 0.5 * (1 - Tensor::eye(words as i64, opts));
        a.narrow(0, docs as i64, words as i64).narrow(1, docs as i64, words as i64).copy_(&ww);
        let a = a + Tensor::eye(n, opts);
        let dinv = a.sum_dim_intlist(1, false, Kind::Float).pow_tensor_scalar(-0.5);
        let norm = &dinv.unsqueeze(1) * &a * dinv.unsqueeze(0);
        let (mut rp, mut cols, mut vals) = (vec![0i64], Vec::new(), Vec::new());
        let dense: Vec<f32> = Vec::try_from(norm.flatten(0, -1)).unwrap();
        for i in 0..n as usize {
            for j in 0..n as usize {
                let v = dense[i * n as usize + j];
                if v != 0.0 {
                    cols.push(j as i64);
                    vals.push(v);
                }
            }
            rp.push(cols.len() as i64);
        }
        (norm, (rp, cols, vals), dw)
    }

    fn csr((rp, cols, vals): &CsrParts) -> Csr<'_> {
        Csr { row_ptr: rp, cols, vals, mapped: false }
    }

    /// The dense features `(Σ coef_k Â^k)[:D]`.
    fn dense_poly(a: &Tensor, coef: &[f64], docs: usize) -> Tensor {
        let n = a.size()[0];
        let mut power = Tensor::eye(n, (Kind::Float, Device::Cpu));
        let mut f = &power * coef[0];
        for &c in &coef[1..] {
            power = power.mm(a);
            f += &power * c;
        }
        f.narrow(0, 0, docs as i64)
    }

    /// Loss and gradient of the matrix-free objective equal autograd on the
    /// dense, explicitly scaled features, for SGC (k = 2, min-max), SSGC
    /// (K = 3, α = 0.1, unscaled; K = 2 min-max) and TF-IDF + LR (bias).
    #[test]
    fn objective_matches_autograd_on_dense_features() {
        let _rng = crate::torch_rng_lock();
        let (docs, words, classes) = (7, 9, 3);
        let (a, parts, dw) = graph(docs, words, 11);
        let n = docs + words;
        let train = Tensor::from_slice(&[0i64, 2, 3, 5, 6]);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 1, 0, 2, 1]);
        let train_list: Vec<i64> = Vec::try_from(&train).unwrap();
        let adj = Adj::from_host(parts.0.clone(), parts.1.clone(), parts.2.clone(), n, Device::Cpu);
        let self_loops: Vec<f32> = Vec::try_from(a.diagonal(0, 0, 1)).unwrap();
        let cases: [(&str, Vec<f64>, FeatureScale, bool); 5] = [
            ("sgc k=2 min-max", vec![0.0, 0.0, 1.0], FeatureScale::MinMax, false),
            ("ssgc K=3 a=0.1", vec![0.1, 0.3, 0.3, 0.3], FeatureScale::None, false),
            ("ssgc K=2 min-max", vec![0.05, 0.475, 0.475], FeatureScale::MinMax, false),
            ("ssgc K=3 min-max", vec![0.1, 0.3, 0.3, 0.3], FeatureScale::MinMax, false),
            ("tfidf-lr", Vec::new(), FeatureScale::None, true),
        ];
        for (name, coef, scale, bias) in cases {
            let (op, dense) = if coef.is_empty() {
                let ((rp, cols, vals), (trp, tcols, tvals)) = tfidf_rows(csr(&parts), docs, &self_loops);
                let rown = dw.square().sum_dim_intlist(1, true, Kind::Float).sqrt();
                (Operator::Tfidf { x: Adj::from_host(rp, cols, vals, words, Device::Cpu), xt: Adj::from_host(trp, tcols, tvals, docs, Device::Cpu) }, &dw / rown)
            } else {
                // The document-column product in the backward pass, and
                // (SSGC K=3) the plain one.
                let doc_ends = (coef.len() != 4).then(|| doc_column_ends(csr(&parts), docs));
                (Operator::Poly { adj: &adj, coef: coef.clone(), nodes: n, doc_ends }, dense_poly(&a, &coef, docs))
            };
            let params = dense.size()[1] as usize;
            let (dense, scaling, mask) = if scale == FeatureScale::MinMax {
                let ft = dense.index_select(0, &train);
                let (want_lo, want_hi) = (ft.amin(0, false), ft.amax(0, false));
                // Every document sparse, every one dense, and the default.
                let mut found = vec![column_ranges_by_products(&adj, &coef, &train_list)];
                if coef.len() <= 3 {
                    for dense_from in [0, 1 << 20, 4] {
                        found.push(column_ranges_with(csr(&parts), docs, &coef, &train_list, dense_from));
                    }
                }
                for (i, (lo, hi)) in found.iter().enumerate() {
                    assert!(Tensor::from_slice(lo).allclose(&want_lo, 1e-5, 1e-6, false), "{name}: column minima ({i})");
                    assert!(Tensor::from_slice(hi).allclose(&want_hi, 1e-5, 1e-6, false), "{name}: column maxima ({i})");
                }
                let range = &want_hi - &want_lo;
                let s = range.gt(0.0).to_kind(Kind::Float) / range.clamp_min(1e-30);
                let scaled = (&dense - want_lo.unsqueeze(0)) * s.unsqueeze(0);
                let mask = s.gt(0.0).to_kind(Kind::Float).unsqueeze(1);
                (scaled, Some((s.unsqueeze(1), (want_lo * &s).unsqueeze(1))), Some(mask))
            } else {
                (dense, None, None)
            };
            let wd = 0.03;
            let problem = Problem { op, scaling, mask: mask.as_ref().map(|m| m.shallow_clone()), bias, weight_decay: wd, params, classes, docs };
            let rows = params + bias as usize;
            let theta = Tensor::randn([(rows * classes) as i64], (Kind::Float, Device::Cpu));
            // Single labels (cross-entropy) and label sets (binary cross-entropy).
            let fields: Vec<String> = ["a", "b,c", "c", "a,b,c"].iter().map(|s| s.to_string()).collect();
            let doc_names: Vec<String> = (0..docs).map(|d| format!("d{d}")).collect();
            let (sets, _) = crate::targets::LabelSets::parse(&fields, &[0, 1, 2, 1, 3, 0, 2], &doc_names, ",", Device::Cpu).unwrap();
            let y_sets = sets.y.shallow_clone();
            for targets in [Targets::Single(labels.shallow_clone()), Targets::Multi(sets)] {
                let f = problem.evaluate(&theta, &train, &targets);
                // Autograd on the dense features.
                let t = theta.copy().set_requires_grad(true);
                let w = t.narrow(0, 0, (params * classes) as i64).view([params as i64, classes as i64]);
                let mut z = dense.mm(&w);
                if bias {
                    z += t.narrow(0, (params * classes) as i64, classes as i64);
                }
                let wm = match &mask {
                    Some(m) => &w * m,
                    None => w.shallow_clone(),
                };
                let zt = z.index_select(0, &train);
                let data_loss = match &targets {
                    Targets::Single(_) => zt.cross_entropy_for_logits(&labels.index_select(0, &train)),
                    Targets::Multi(_) => zt.binary_cross_entropy_with_logits::<Tensor>(&y_sets.index_select(0, &train), None, None, tch::Reduction::Mean),
                };
                let loss = data_loss + (&wm * &wm).sum(Kind::Float) * (wd / 2.0);
                loss.backward();
                let name = format!("{name} ({})", if targets.is_multi() { "label sets" } else { "single labels" });
                assert!((f.cross_entropy + f.penalty - loss.double_value(&[])).abs() < 1e-5, "{name}: loss {} vs {}", f.cross_entropy + f.penalty, loss.double_value(&[]));
                assert!(f.logits.allclose(&z.detach(), 1e-4, 1e-5, false), "{name}: logits differ");
                assert!(f.grad.allclose(&t.grad(), 1e-4, 1e-6, false), "{name}: gradient differs");
            }
        }
    }

    /// The TF-IDF rows recovered from `Â` are the raw doc-word weights,
    /// L2-normalised, and the transpose holds the same entries.
    #[test]
    fn tfidf_rows_undo_the_normalisation() {
        let _rng = crate::torch_rng_lock();
        let (docs, words) = (5, 6);
        let (a, parts, dw) = graph(docs, words, 4);
        let self_loops: Vec<f32> = Vec::try_from(a.diagonal(0, 0, 1)).unwrap();
        let ((rp, cols, vals), (trp, tcols, tvals)) = tfidf_rows(csr(&parts), docs, &self_loops);
        let x = Tensor::zeros([docs as i64, words as i64], (Kind::Float, Device::Cpu));
        let xt = Tensor::zeros([words as i64, docs as i64], (Kind::Float, Device::Cpu));
        for d in 0..docs {
            for k in rp[d] as usize..rp[d + 1] as usize {
                let _ = x.get(d as i64).get(cols[k]).fill_(vals[k] as f64);
            }
        }
        for j in 0..words {
            for k in trp[j] as usize..trp[j + 1] as usize {
                let _ = xt.get(j as i64).get(tcols[k]).fill_(tvals[k] as f64);
            }
        }
        let want = &dw / dw.square().sum_dim_intlist(1, true, Kind::Float).sqrt();
        assert!(x.allclose(&want, 1e-5, 1e-6, false), "{x:?} vs {want:?}");
        assert!(xt.equal(&x.tr()), "the transpose differs");
    }
}

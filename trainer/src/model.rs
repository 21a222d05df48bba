//! The 2-layer featureless GCN and its training step, written by hand.
//!
//! `logits = Â · dropout(ReLU(Â · W0)) · W1` (hidden 200, dropout 0.5, no
//! biases, Glorot init). The identity input never exists: the first layer
//! is `Â · W0`.
//!
//! The backward pass is explicit. Because `Â` is symmetric, the gradient of
//! `Â · X` with respect to `X` is `Âᵀ · G = Â · G`, so both layers' backward
//! products reuse the same CSR matrix: no transposed, re-sorted or
//! coalesced copy of the graph is ever made, and no autograd graph is kept.
//! Adam follows the reference (TensorFlow) update.

use tch::{Device, Kind, Tensor};

use crate::fused;
use crate::graph::Adj;
use crate::targets::Targets;

/// Hyper-parameters of one run: the config's `[train]` section (with the
/// command line's overrides applied); `device` is where it runs.
pub type Hyper = textgcn_pipeline::config::TrainConfig;

/// The weights.
pub struct Model {
    /// First layer `[N, hidden]` (the featureless layer's `X·W0 = W0`).
    pub w0: Tensor,
    /// Second layer `[hidden, classes]`.
    pub w1: Tensor,
}

fn glorot(rows: usize, cols: usize, device: Device) -> Tensor {
    let r = (6.0 / (rows + cols) as f64).sqrt();
    let mut t = Tensor::empty([rows as i64, cols as i64], (Kind::Float, device));
    let _ = t.uniform_(-r, r);
    t
}

/// Bytes a training run on the CPU holds at its peak, estimated from the
/// shapes: the weights (`N·H + H·C`) and Adam's two moments (×3: `dW0` is
/// never formed whole, each block of it goes into Adam as it is
/// computed), the dense activations (`3·N·H`: `Â·W0`, which the ReLU and
/// dropout overwrite and whose gradient takes its place; the panels'
/// partial sums; one more for what the allocator keeps), the logits, their
/// gradient, `Hd·W1` and its gradient (`4·N·C`), and the class
/// probabilities of the documents (`D·C`), all float32. `None` when it
/// overflows. Measured peaks of the trainer's own memory (AMD EPYC host,
/// 2026-12-06, H = 200): 4.5·N·H floats at a million generated documents
/// (products in one pass), 5.3 at 400k and 5.4 at 100k (in panels),
/// against 6 here (7 before, which refused runs that fit).
pub fn training_bytes(nodes: usize, hidden: usize, classes: usize, docs: usize) -> Option<u128> {
    let (n, h, c, d) = (nodes as u128, hidden as u128, classes as u128, docs as u128);
    let floats = 3 * (n * h + h * c) + 3 * n * h + 4 * n * c + d * c;
    floats.checked_mul(4)
}

/// Memory the system can give this process now: its
/// [`crate::metrics::memory_room`] (which a cgroup's limit bounds) plus
/// free swap (`None` where `/proc/meminfo` cannot be read).
fn available_bytes() -> Option<u128> {
    let swap = textgcn_pipeline::config::meminfo_bytes("SwapFree:").unwrap_or(0);
    Some(u128::from(crate::metrics::memory_room()?) + u128::from(swap))
}

/// Refuses, before anything is allocated, a model whose training would not
/// fit: more memory than the machine has available (CPU), more than
/// libtorch can index, or (any device) more than 1 TiB. The message names
/// the shapes, so a corpus with a million classes gets a sentence instead
/// of an allocation failure.
pub fn check_fits(nodes: usize, hidden: usize, classes: usize, docs: usize, device: Device) -> anyhow::Result<()> {
    let shapes = format!("{nodes} nodes × {hidden} hidden units × {classes} classes ({docs} documents)");
    if [nodes as u128 * hidden.max(classes) as u128, hidden as u128 * classes as u128].iter().any(|&x| x > i64::MAX as u128 / 4) {
        anyhow::bail!("the model does not fit: {shapes} exceeds the largest tensor libtorch can hold");
    }
    check_bytes_fit(training_bytes(nodes, hidden, classes, docs), &shapes, device)
}

/// Refuses a training that needs `need` bytes (`None`: overflowed) when
/// that is more than 1 TiB or, on the CPU, more than the memory available;
/// `shapes` describes the model in the message.
pub fn check_bytes_fit(need: Option<u128>, shapes: &str, device: Device) -> anyhow::Result<()> {
    let gb = |b: u128| b as f64 / 1e9;
    let Some(need) = need else {
        anyhow::bail!("the model does not fit: {shapes} overflows any memory");
    };
    if need > 1 << 40 {
        anyhow::bail!("the model does not fit: {shapes} needs about {:.0} GB for weights, Adam state and activations (more than 1 TiB)", gb(need));
    }
    if device == Device::Cpu
        && let Some(avail) = available_bytes()
        && need > avail
    {
        anyhow::bail!("the model does not fit: {shapes} needs about {:.1} GB for weights, Adam state and activations, but {:.1} GB of memory is available", gb(need), gb(avail));
    }
    Ok(())
}

impl Model {
    /// Glorot-uniform weights; call `tch::manual_seed` first for
    /// reproducibility.
    pub fn new(nodes: usize, hidden: usize, classes: usize, device: Device) -> Self {
        Model { w0: glorot(nodes, hidden, device), w1: glorot(hidden, classes, device) }
    }

    /// Logits of every node without dropout (evaluation).
    pub fn logits(&self, adj: &Adj) -> Tensor {
        let z1 = self.first_layer(adj);
        let n = z1.size()[0] as usize;
        self.logits_from(&z1, adj, n)
    }

    /// The first layer's pre-activation `Z1 = Â · W0` (the identity input
    /// is never formed). Training reuses the evaluation's `Z1` for the next
    /// step's forward pass, as `W0` does not change in between.
    pub fn first_layer(&self, adj: &Adj) -> Tensor {
        adj.mm(&self.w0)
    }

    /// Logits of the first `rows` nodes without dropout from `z1`, which
    /// must be [`Model::first_layer`] of these weights (the documents are
    /// nodes `0..D`: only their rows of the last product are computed).
    /// `ReLU(z1)·W1` is formed in row blocks, so no second `[N, hidden]`
    /// buffer exists next to `z1`.
    pub fn logits_from(&self, z1: &Tensor, adj: &Adj, rows: usize) -> Tensor {
        const BLOCK: i64 = 8192;
        let n = z1.size()[0];
        let parts: Vec<Tensor> = (0..n).step_by(BLOCK as usize).map(|s| z1.narrow(0, s, BLOCK.min(n - s)).relu().mm(&self.w1)).collect();
        adj.mm_rows(&Tensor::cat(&parts, 0), rows)
    }

    /// The hidden representation `ReLU(Â · W0)` of every node.
    pub fn hidden(&self, adj: &Adj) -> Tensor {
        let mut h = adj.mm(&self.w0);
        let _ = h.relu_();
        h
    }
}

/// Adam state (TensorFlow's formulation: bias correction folded into the
/// step size, epsilon added to the root).
pub struct Adam {
    m: [Tensor; 2],
    v: [Tensor; 2],
    t: i32,
    lr: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Adam {
    /// Zero state for `model`.
    pub fn new(model: &Model, lr: f64) -> Self {
        Adam { m: [model.w0.zeros_like(), model.w1.zeros_like()], v: [model.w0.zeros_like(), model.w1.zeros_like()], t: 0, lr }
    }

    /// Starts step `t + 1`: its step size (bias correction folded in).
    fn next_step(&mut self) -> f64 {
        self.t += 1;
        self.lr * (1.0 - BETA2.powi(self.t)).sqrt() / (1.0 - BETA1.powi(self.t))
    }

    /// The fused CPU update's constants for step size `lr_t`.
    fn fused_step(lr_t: f64) -> fused::AdamStep {
        fused::AdamStep { w1: (1.0 - BETA1) as f32, w2: (1.0 - BETA2) as f32, lr_t: lr_t as f32, eps: EPS as f32 }
    }

    /// Updates parameter `k` (`w`: `W0` or `W1`) from its gradient `g`.
    fn update(&mut self, k: usize, w: &mut Tensor, g: Tensor, lr_t: f64) {
        if w.device() == Device::Cpu {
            // One pass, no temporaries (fused::adam: the same formula).
            let g = g.contiguous();
            use crate::mapping::{f32_slice, f32_slice_mut};
            fused::adam(f32_slice_mut(w), f32_slice(&g), f32_slice_mut(&mut self.m[k]), f32_slice_mut(&mut self.v[k]), Self::fused_step(lr_t));
            return;
        }
        let _ = self.m[k].lerp_(&g, 1.0 - BETA1);
        let g2 = g.square();
        drop(g);
        let _ = self.v[k].lerp_(&g2, 1.0 - BETA2);
        drop(g2);
        let mut denom = self.v[k].sqrt();
        let _ = denom.g_add_scalar_(EPS);
        let mut upd = &self.m[k] / &denom;
        drop(denom);
        let _ = upd.g_mul_scalar_(lr_t);
        let _ = w.g_sub_(&upd);
    }

    fn step(&mut self, model: &mut Model, [g0, g1]: [Tensor; 2]) {
        let lr_t = self.next_step();
        self.update(0, &mut model.w0, g0, lr_t);
        self.update(1, &mut model.w1, g1, lr_t);
    }
}

/// Mean loss and accuracy of `logits` rows `idx` against `targets`
/// (cross-entropy, or binary cross-entropy for label sets).
pub fn loss_acc(logits: &Tensor, idx: &Tensor, targets: &Targets) -> (f64, f64) {
    targets.loss_acc(logits, idx)
}

/// One full-batch training step: forward with dropout, explicit backward
/// through `Â` (symmetric, reused as its own transpose), Adam update.
/// Returns the training loss and accuracy of the forward pass.
///
/// `z1`, when given, must be `model.first_layer(adj)` for the model's
/// current weights (it is consumed); otherwise it is computed.
///
/// On the CPU, `dW0 = Â·dZ1` is never formed whole: each block of its rows
/// is computed, given its weight decay and applied to `W0` by Adam while
/// it is in cache ([`crate::spmm::Csr::mul_dense_then`]), the same floats
/// as forming it first (tested).
pub fn train_step(model: &mut Model, opt: &mut Adam, adj: &Adj, z1: Option<Tensor>, train: &Tensor, targets: &Targets, h: &Hyper) -> (f64, f64) {
    let Some(csr) = adj.host().filter(|_| model.w0.device() == Device::Cpu) else {
        let (loss, acc, grads) = gradients(model, adj, z1, train, targets, h);
        let _step = tracing::debug_span!("train_step", op = "adam").entered();
        tch::no_grad(|| opt.step(model, grads));
        return (loss, acc);
    };
    tch::no_grad(|| {
        let (loss, acc, dz1, dw1) = backward_to_first_layer(model, adj, z1, train, targets, h);
        let lr_t = opt.next_step();
        let step = tracing::debug_span!("train_step", op = "A.dZ1+adam").entered();
        use crate::mapping::{f32_slice, f32_slice_mut};
        let hidden = dz1.size()[1] as usize;
        let (wd, c) = (h.weight_decay as f32, Adam::fused_step(lr_t));
        let [m0, _] = &mut opt.m;
        let [v0, _] = &mut opt.v;
        csr.mul_dense_then(f32_slice(&dz1), hidden, [f32_slice_mut(&mut model.w0), f32_slice_mut(m0), f32_slice_mut(v0)], |g, [w, m, v]| {
            if wd > 0.0 {
                // libtorch's dW0 += W0 · wd, the same floats.
                for (g, w) in g.iter_mut().zip(w.iter()) {
                    *g += *w * wd;
                }
            }
            fused::adam(w, g, m, v, c);
        });
        drop((dz1, step));
        let _step = tracing::debug_span!("train_step", op = "adam").entered();
        opt.update(1, &mut model.w1, dw1, lr_t);
        (loss, acc)
    })
}

/// Forward with dropout and the explicit backward pass: training loss,
/// accuracy, and the gradients of `W0` and `W1`. `z1` as in [`train_step`].
pub fn gradients(model: &Model, adj: &Adj, z1: Option<Tensor>, train: &Tensor, targets: &Targets, h: &Hyper) -> (f64, f64, [Tensor; 2]) {
    tch::no_grad(|| {
        let (loss, acc, dz1, dw1) = backward_to_first_layer(model, adj, z1, train, targets, h);
        // First layer: Z1 = Â·W0.
        let step = tracing::debug_span!("train_step", op = "A.dZ1").entered();
        let mut dw0 = adj.mm(&dz1);
        drop(dz1);
        drop(step);
        if h.weight_decay > 0.0 {
            let _ = dw0.g_add_(&(&model.w0 * h.weight_decay));
        }
        (loss, acc, [dw0, dw1])
    })
}

/// Forward with dropout and the backward pass down to the first layer's
/// output: training loss, accuracy, `dL/dZ1` and the gradient of `W1`.
fn backward_to_first_layer(model: &Model, adj: &Adj, z1: Option<Tensor>, train: &Tensor, targets: &Targets, h: &Hyper) -> (f64, f64, Tensor, Tensor) {
    // Each operation is a debug span: `-vv` logs its time when it ends.
    let step = tracing::debug_span!("train_step", op = "A.W0").entered();
    // Forward. `hd` is, in place, Â·W0 -> ReLU -> dropout.
    let mut hd = z1.unwrap_or_else(|| model.first_layer(adj));
    drop(step);
    let step = tracing::debug_span!("train_step", op = "relu+dropout").entered();
    let keep = 1.0 - h.dropout;
    let mask = relu_dropout(&mut hd, keep);
    drop(step);
    let step = tracing::debug_span!("train_step", op = "Hd.W1").entered();
    let p = hd.mm(&model.w1);
    drop(step);
    // Only the documents' rows (nodes 0..D) of the logits are read:
    // the word rows of the product are not computed.
    let step = tracing::debug_span!("train_step", op = "A.P").entered();
    let logits = adj.mm_rows(&p, targets.documents());
    drop(p);
    drop(step);
    let step = tracing::debug_span!("train_step", op = "loss+dlogits").entered();

    // Loss over the training documents, and dL/dlogits on their rows
    // (0 elsewhere: on the other documents, and on every word).
    let lt = logits.index_select(0, train);
    let [docs, classes] = logits.size()[..] else { unreachable!("logits are a matrix") };
    drop(logits);
    let (loss, acc, g_lt) = targets.loss_grad(&lt, train);
    let mut g = Tensor::zeros([docs, classes], (Kind::Float, model.w0.device()));
    let _ = g.index_copy_(0, train, &g_lt);
    drop((g_lt, lt));

    // Second layer: logits = Â·(Hd·W1). The rows of G past the
    // documents are zero, so the word columns of Â are skipped (most
    // of its non-zeros: 22.4 of 27 M on 20ng).
    drop(step);
    let step = tracing::debug_span!("train_step", op = "A.G").entered();
    let dp = adj.mm_columns_below(&g, docs as usize); // Âᵀ·G = Â·G
    drop(g);
    drop(step);
    let step = tracing::debug_span!("train_step", op = "dW1,dHd").entered();
    // A sum over every node: in a fixed order (libtorch's floats change
    // with its thread count).
    let dw1 = crate::ordered::transposed_mm(&hd, &dp);
    // Through dropout and ReLU: kept, positive units pass, scaled.
    let dhd = match mask {
        Some(mask) => {
            // `hd` is no longer needed (the mask is its bits): freed
            // first, its memory holds `dhd`.
            drop(hd);
            let mut dhd = dp.mm(&model.w1.tr());
            fused::relu_dropout_backward(crate::mapping::f32_slice_mut(&mut dhd), &mask, keep);
            dhd
        }
        None => {
            let mut dhd = dp.mm(&model.w1.tr());
            let _ = dhd.masked_fill_(&hd.le(0.0), 0.0);
            if keep != 1.0 {
                let _ = dhd.g_mul_scalar_(1.0 / keep);
            }
            dhd
        }
    };
    drop((dp, step));
    (loss, acc, dhd, dw1)
}

/// In place, `h ← dropout(ReLU(h))` keeping each unit with probability
/// `keep` and scaling the kept ones by `1 / keep`. On the CPU one fused
/// pass whose mask comes from a seed drawn from libtorch's generator
/// ([`fused::relu_dropout`]); it returns the mask of units that passed,
/// for the backward pass. Elsewhere libtorch's operations (`None`: the
/// backward pass reads `h` itself).
fn relu_dropout(h: &mut Tensor, keep: f64) -> Option<fused::Mask> {
    if h.device() == Device::Cpu {
        let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
        return Some(fused::relu_dropout(crate::mapping::f32_slice_mut(h), keep, seed));
    }
    let _ = h.relu_();
    if keep < 1.0 {
        let mut mask = h.empty_like();
        let _ = mask.bernoulli_float_(keep);
        let _ = h.g_mul_(&mask);
        drop(mask);
        let _ = h.g_mul_scalar_(1.0 / keep);
    }
    None
}

/// The reference early stopping: after epoch `window` (0-based index
/// greater than `window`), stop when this epoch's validation loss exceeds
/// the mean of the previous `window` validation losses.
pub fn should_stop(val_losses: &[f64], window: usize) -> bool {
    let e = val_losses.len() - 1;
    if window == 0 || e <= window {
        return false;
    }
    let prev = &val_losses[e - window..e];
    val_losses[e] > prev.iter().sum::<f64>() / window as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use textgcn_pipeline::config::DeviceChoice;

    #[test]
    fn early_stopping_matches_reference_rule() {
        let mut v: Vec<f64> = (0..11).map(|i| 1.0 - i as f64 * 0.01).collect();
        assert!(!should_stop(&v, 10)); // epoch index 10: too early
        v.push(0.5);
        assert!(!should_stop(&v, 10));
        v.push(0.99);
        assert!(should_stop(&v, 10));
        assert!(!should_stop(&v, 0));
    }

    /// The CPU step that applies `dW0` block by block (train_step on a host
    /// matrix) gives the floats of forming `dW0` first and then updating.
    #[test]
    fn fused_first_layer_update_equals_the_whole_gradient() {
        let _rng = crate::torch_rng_lock();
        let n = 300usize;
        // A symmetric sparse matrix with a self loop on every row.
        let (mut row_ptr, mut cols, mut vals) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..n {
            for c in 0..n {
                if r == c || (r * c + r + c) % 7 == 0 {
                    cols.push(c as i64);
                    vals.push(1.0 / (1.0 + ((r + c) % 5) as f32));
                }
            }
            row_ptr.push(cols.len() as i64);
        }
        let adj = Adj::from_host(row_ptr, cols, vals, n, Device::Cpu);
        assert!(matches!(adj, Adj::Host { .. }));
        let labels = Tensor::from_slice(&(0..100).map(|i| i % 3).collect::<Vec<i64>>());
        let targets = Targets::Single(labels);
        let train = Tensor::from_slice(&(0..60).collect::<Vec<i64>>());
        for wd in [0.0, 5e-4] {
            let h = Hyper { hidden: 67, dropout: 0.5, learning_rate: 0.02, weight_decay: wd, ..Hyper::default() };
            let run = |fused: bool| {
                tch::manual_seed(5);
                let mut model = Model::new(n, 67, 3, Device::Cpu);
                let mut opt = Adam::new(&model, h.learning_rate);
                for _ in 0..3 {
                    if fused {
                        train_step(&mut model, &mut opt, &adj, None, &train, &targets, &h);
                    } else {
                        let (_, _, grads) = gradients(&model, &adj, None, &train, &targets, &h);
                        tch::no_grad(|| opt.step(&mut model, grads));
                    }
                }
                (Vec::<f32>::try_from(model.w0.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(model.w1.flatten(0, -1)).unwrap())
            };
            let (a, b) = (run(true), run(false));
            assert!(a.0.iter().zip(&b.0).all(|(x, y)| x.to_bits() == y.to_bits()), "W0 differs (weight decay {wd})");
            assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "W1 differs (weight decay {wd})");
        }
    }

    /// The explicit backward pass equals autograd on a small dense graph.
    #[test]
    fn manual_gradients_match_autograd() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(3);
        let n = 12;
        let a = Tensor::rand([n, n], (Kind::Float, Device::Cpu));
        let a = (&a + a.tr()) * 0.5; // symmetric
        let adj = Adj::Torch(a.to_sparse_csr(None::<i64>));
        let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        let train = Tensor::from_slice(&[0i64, 3, 4, 7, 8]);
        for wd in [0.0, 0.01] {
            let h = Hyper { hidden: 5, dropout: 0.0, learning_rate: 1.0, weight_decay: wd, epochs: 1, early_stopping: 0, seed: 0, device: DeviceChoice::Cpu, ..Hyper::default() };
            let model = Model::new(n as usize, 5, 3, Device::Cpu);
            let w0 = model.w0.copy().set_requires_grad(true);
            let w1 = model.w1.copy().set_requires_grad(true);
            let logits = a.mm(&a.mm(&w0).relu().mm(&w1));
            let loss = logits.index_select(0, &train).cross_entropy_for_logits(&labels.index_select(0, &train)) + (&w0 * &w0).sum(Kind::Float) * (wd / 2.0);
            loss.backward();
            let (l, _, [g0, g1]) = gradients(&model, &adj, None, &train, &Targets::Single(labels.shallow_clone()), &h);
            let ce = loss.double_value(&[]) - (&model.w0 * &model.w0).sum(Kind::Float).double_value(&[]) * wd / 2.0;
            assert!((l - ce).abs() < 1e-5, "loss {l} vs {ce}");
            assert!(g0.allclose(&w0.grad(), 1e-4, 1e-6, false), "dW0 differs");
            assert!(g1.allclose(&w1.grad(), 1e-4, 1e-6, false), "dW1 differs");
        }
    }
}

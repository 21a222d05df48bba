//! L-BFGS for the linear models (SGC, SSGC, TF-IDF + LR), written by hand.
//!
//! The iteration is PyTorch's `torch.optim.LBFGS` with its defaults, the
//! optimiser TextSGC trains with: step size 1 (the first step
//! `min(1, 1/‖g‖₁)`), no line search, a history of [`HISTORY`] curvature
//! pairs kept only when `yᵀs > 1e-10`, the initial Hessian scaled by
//! `yᵀs / yᵀy`, and its stopping tests (gradient ≤ 1e-7 in max norm,
//! direction or loss change below 1e-9). TextSGC's 3 calls of 20
//! iterations are one run of 60 here (the calls only restart the loop:
//! the state carries over). The objective is convex for every model that
//! uses it, so the optimum does not depend on the start.

use tch::Tensor;

/// Curvature pairs kept (PyTorch's default `history_size`).
pub const HISTORY: usize = 100;
const TOLERANCE_GRAD: f64 = 1e-7;
const TOLERANCE_CHANGE: f64 = 1e-9;

/// Why the iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// All iterations ran.
    Iterations,
    /// The gradient's largest entry fell to the tolerance.
    Gradient,
    /// The step or the loss change fell below the tolerance.
    Change,
    /// The direction was no longer one of descent.
    NotDescent,
    /// The loss became NaN or infinite.
    NotFinite,
}

/// Minimises `f` from `x` (a flat float32 tensor, updated in place) for at
/// most `iterations` updates. `f(x)` returns the loss and its gradient
/// (same shape as `x`); it is called once per iteration, before the
/// update, and never after the last one, as PyTorch does. Returns why it
/// stopped.
pub fn minimize(x: &mut Tensor, iterations: usize, mut f: impl FnMut(&Tensor) -> (f64, Tensor)) -> Stop {
    tch::no_grad(|| {
        let (mut loss, mut grad) = f(x);
        if !loss.is_finite() {
            return Stop::NotFinite;
        }
        if max_abs(&grad) <= TOLERANCE_GRAD {
            return Stop::Gradient;
        }
        let mut dirs: Vec<Tensor> = Vec::new(); // y_i = g_{i+1} - g_i
        let mut steps: Vec<Tensor> = Vec::new(); // s_i = t·d
        let mut ro: Vec<f64> = Vec::new();
        let mut h_diag = 1.0;
        let mut d = grad.neg();
        let mut t = 0.0;
        let mut prev_grad: Option<Tensor> = None;
        for iter in 1..=iterations {
            if iter > 1 {
                let prev = prev_grad.as_ref().expect("set after the first iteration");
                let y = &grad - prev;
                let s = &d * t;
                let ys = dot(&y, &s);
                if ys > 1e-10 {
                    if dirs.len() == HISTORY {
                        let _ = dirs.remove(0);
                        let _ = steps.remove(0);
                        ro.remove(0);
                    }
                    h_diag = ys / dot(&y, &y);
                    dirs.push(y);
                    steps.push(s);
                    ro.push(1.0 / ys);
                }
                // Two-loop recursion: d = -H·g.
                let mut q = grad.neg();
                let mut al = vec![0.0; dirs.len()];
                for i in (0..dirs.len()).rev() {
                    al[i] = dot(&steps[i], &q) * ro[i];
                    axpy(&mut q, -al[i], &dirs[i]);
                }
                let _ = q.g_mul_scalar_(h_diag);
                for i in 0..dirs.len() {
                    let be = dot(&dirs[i], &q) * ro[i];
                    axpy(&mut q, al[i] - be, &steps[i]);
                }
                d = q;
            }
            prev_grad = Some(grad.copy());
            let prev_loss = loss;
            t = if iter == 1 { (1.0 / crate::ordered::sum_abs(&grad)).min(1.0) } else { 1.0 };
            let gtd = dot(&grad, &d);
            if gtd > -TOLERANCE_CHANGE {
                return Stop::NotDescent;
            }
            axpy(x, t, &d);
            if iter == iterations {
                break;
            }
            (loss, grad) = f(x);
            if !loss.is_finite() {
                return Stop::NotFinite;
            }
            if max_abs(&grad) <= TOLERANCE_GRAD {
                return Stop::Gradient;
            }
            if max_abs(&d) * t <= TOLERANCE_CHANGE || (loss - prev_loss).abs() < TOLERANCE_CHANGE {
                return Stop::Change;
            }
        }
        Stop::Iterations
    })
}

/// `aᵀb` rounded to float32, as PyTorch's L-BFGS computes it, but summed
/// in a fixed order ([`crate::ordered::dot`]).
fn dot(a: &Tensor, b: &Tensor) -> f64 {
    crate::ordered::dot(a, b)
}

/// `y += alpha·x`: in place on the CPU (libtorch has no fused form in
/// tch), with a temporary elsewhere.
fn axpy(y: &mut Tensor, alpha: f64, x: &Tensor) {
    use rayon::prelude::*;
    if y.device() == tch::Device::Cpu && y.is_contiguous() && x.is_contiguous() {
        let a = alpha as f32;
        let xs = crate::mapping::f32_slice(x);
        let ys = crate::mapping::f32_slice_mut(y);
        ys.par_chunks_mut(1 << 16).zip(xs.par_chunks(1 << 16)).for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x));
    } else {
        let _ = y.g_add_(&(x * alpha));
    }
}

fn max_abs(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A convex quadratic `½ xᵀAx - bᵀx` is minimised (`Ax = b`), to the
    /// precision float32 allows.
    #[test]
    fn minimises_a_quadratic() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(1);
        let m = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        let a = m.mm(&m.tr()) + Tensor::eye(8, (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8], (Kind::Float, Device::Cpu));
        let mut x = Tensor::zeros([8], (Kind::Float, Device::Cpu));
        let mut calls = 0;
        let stop = minimize(&mut x, 100, |x| {
            calls += 1;
            let ax = a.mv(x);
            let loss = x.dot(&ax).double_value(&[]) * 0.5 - b.dot(x).double_value(&[]);
            (loss, ax - &b)
        });
        let want = a.inverse().mv(&b);
        assert!(x.allclose(&want, 1e-3, 1e-4, false), "{stop:?} after {calls} calls: {x:?} vs {want:?}");
        assert_ne!(stop, Stop::NotFinite);
    }

    /// `f` is called once per iteration and not after the last update.
    #[test]
    fn calls_once_per_iteration() {
        let mut x = Tensor::from_slice(&[3.0f32, -2.0]);
        let mut calls = 0;
        let stop = minimize(&mut x, 5, |x| {
            calls += 1;
            let scale = Tensor::from_slice(&[1.0f32, 10.0]);
            ((x * x * &scale).sum(Kind::Double).double_value(&[]) / 2.0, x * &scale)
        });
        assert_eq!((stop, calls), (Stop::Iterations, 5));
    }
}

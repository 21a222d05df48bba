//! Sums in a fixed order, so that a run's floats do not depend on the
//! thread count.
//!
//! libtorch splits a long reduction between its threads (MKL's dense
//! products over a long inner dimension, ATen's sums over more than 32,768
//! elements), so the rounding of the result changes with `--threads`, and
//! with it every later step of a run. On the CPU these functions sum fixed
//! chunks of `CHUNK` elements, each in order, and add the chunks' sums in
//! order: parallel, and the same floats on any number of threads. Elsewhere
//! (CUDA) they are libtorch's operations.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::fused;
use crate::mapping::f32_slice;

/// Elements summed in order by one task.
const CHUNK: usize = 1 << 15;

/// Elements from which the chunks are summed in parallel (the same chunks,
/// so the same floats, either way).
const PARALLEL_FROM: usize = 8 * CHUNK;

/// `Σ f(a[i], b[i])` in f64, by fixed chunks.
fn chunked_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64 + Sync) -> f64 {
    assert_eq!(a.len(), b.len(), "sums of two slices of one length");
    let chunk = |(a, b): (&[f32], &[f32])| a.iter().zip(b).fold(0.0, |s, (&x, &y)| s + f(x, y));
    // A few chunks are summed here: waking the pool costs more (L-BFGS
    // takes ~25 dot products of the weights an iteration).
    let parts: Vec<f64> = if a.len() <= PARALLEL_FROM { a.chunks(CHUNK).zip(b.chunks(CHUNK)).map(chunk).collect() } else { a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)).map(chunk).collect() };
    parts.iter().fold(0.0, |s, &p| s + p)
}

/// `Σ a[i]·b[i]` in f64 (each product exact), by fixed chunks.
pub fn dot_slices(a: &[f32], b: &[f32]) -> f64 {
    chunked_sum(a, b, |x, y| x as f64 * y as f64)
}

/// `Σ a[i]` in f64, by fixed chunks.
pub fn sum_slice(a: &[f32]) -> f64 {
    chunked_sum(a, a, |x, _| x as f64)
}

fn cpu_contiguous(t: &Tensor) -> Option<Tensor> {
    (t.device() == Device::Cpu && t.kind() == Kind::Float).then(|| t.contiguous())
}

/// `aᵀb` of two float tensors of one size, rounded to float32 (the
/// precision of libtorch's `dot`, which PyTorch's L-BFGS uses).
pub fn dot(a: &Tensor, b: &Tensor) -> f64 {
    match (cpu_contiguous(a), cpu_contiguous(b)) {
        (Some(a), Some(b)) => dot_slices(f32_slice(&a), f32_slice(&b)) as f32 as f64,
        _ => a.flatten(0, -1).dot(&b.flatten(0, -1)).double_value(&[]),
    }
}

/// `Σ |a[i]|` in f64.
pub fn sum_abs(a: &Tensor) -> f64 {
    match cpu_contiguous(a) {
        Some(a) => {
            let s = f32_slice(&a);
            chunked_sum(s, s, |x, _| x.abs() as f64)
        }
        None => a.abs().sum(Kind::Double).double_value(&[]),
    }
}

/// `Σ a[i]²` in f64.
pub fn sum_squares(a: &Tensor) -> f64 {
    match cpu_contiguous(a) {
        Some(a) => {
            let s = f32_slice(&a);
            dot_slices(s, s)
        }
        None => (a * a).sum(Kind::Double).double_value(&[]),
    }
}

/// The mean of a float tensor's elements in f64 (NaN when empty).
pub fn mean(a: &Tensor) -> f64 {
    match cpu_contiguous(a) {
        Some(a) => sum_slice(f32_slice(&a)) / a.numel() as f64,
        None => a.mean(Kind::Double).double_value(&[]),
    }
}

/// `aᵀ · b` for float matrices `a` `[n, h]` and `b` `[n, c]`: `[h, c]`
/// ([`fused::transposed_product`] on the CPU).
pub fn transposed_mm(a: &Tensor, b: &Tensor) -> Tensor {
    match (cpu_contiguous(a), cpu_contiguous(b)) {
        (Some(a), Some(b)) => {
            let [n, h] = a.size()[..] else { panic!("aᵀ·b of a matrix a") };
            let [nb, c] = b.size()[..] else { panic!("aᵀ·b of a matrix b") };
            assert_eq!(n, nb, "aᵀ·b: a and b have one row count");
            let w = fused::transposed_product(f32_slice(&a), f32_slice(&b), n as usize, h as usize, c as usize);
            Tensor::from_slice(&w).view([h, c])
        }
        _ => a.tr().mm(b),
    }
}

/// The column sums of a float matrix `[n, c]`: `[c]`.
pub fn column_sums(a: &Tensor) -> Tensor {
    match cpu_contiguous(a) {
        Some(a) => {
            let n = a.size()[0];
            transposed_mm(&Tensor::ones([n, 1], (Kind::Float, Device::Cpu)), &a).view([-1])
        }
        None => a.sum_dim_intlist(0, false, Kind::Float),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
    }

    /// Each sum equals libtorch's to its precision, and has the same bits
    /// on one thread and on three.
    #[test]
    fn sums_match_libtorch_and_do_not_depend_on_threads() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(5);
        let a = Tensor::randn([PARALLEL_FROM as i64 + 3 * CHUNK as i64 + 17], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([PARALLEL_FROM as i64 + 3 * CHUNK as i64 + 17], (Kind::Float, Device::Cpu));
        let m = Tensor::randn([2 * CHUNK as i64 + 5, 7], (Kind::Float, Device::Cpu));
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
        let (av, bv, mv) = (Vec::<f32>::try_from(&a).unwrap(), Vec::<f32>::try_from(&b).unwrap(), Vec::<f32>::try_from(m.flatten(0, -1)).unwrap());
        // Tensors are not `Sync`: each thread count makes its own.
        let all = || {
            let (a, b, m) = (Tensor::from_slice(&av), Tensor::from_slice(&bv), Tensor::from_slice(&mv).view([-1, 7]));
            (dot(&a, &b), sum_abs(&a), sum_squares(&a), mean(&a), Vec::<f32>::try_from(column_sums(&m)).unwrap(), Vec::<f32>::try_from(transposed_mm(&m, &m).flatten(0, -1)).unwrap())
        };
        let one = with_threads(1, all);
        assert_eq!(with_threads(3, all), one, "1 and 3 threads");
        let (d, sa, sq, mu, cols, mm) = one;
        assert!(close(d, a.dot(&b).double_value(&[])), "dot {d}");
        assert!(close(sa, a.abs().sum(Kind::Double).double_value(&[])), "sum_abs {sa}");
        assert!(close(sq, (&a * &a).sum(Kind::Double).double_value(&[])), "sum_squares {sq}");
        assert!(close(mu, a.mean(Kind::Double).double_value(&[])), "mean {mu}");
        let want = Vec::<f32>::try_from(m.sum_dim_intlist(0, false, Kind::Float)).unwrap();
        assert!(cols.iter().zip(&want).all(|(x, y)| close(*x as f64, *y as f64)), "{cols:?} vs {want:?}");
        let want = Vec::<f32>::try_from(m.tr().mm(&m).flatten(0, -1)).unwrap();
        assert!(mm.iter().zip(&want).all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1.0)), "mᵀm");
        assert!(mean(&Tensor::zeros([0], (Kind::Float, Device::Cpu))).is_nan());
    }
}

//! The CPU sparse × dense product `Â · X` over the mapped CSR arrays.
//!
//! libtorch's CPU CSR product (MKL) converts int64 indices to int32 on
//! every call, allocating a buffer of the graph's size each time (measured:
//! +108 MB per product on 20ng). This kernel reads the mapped `row_ptr`,
//! column half of `edge_index` and `edge_attr` directly, allocates nothing
//! but its output, parallelises over rows (each output row is computed by
//! one thread in a fixed order, so results do not depend on the thread
//! count), and uses AVX2+FMA when the CPU has them.
//!
//! The SIMD builds come from `pulp`: [`pulp::x86::V3`] is a token that
//! only run-time detection makes (AVX2, FMA and the rest of x86-64-v3), and
//! `V3::vectorize` compiles the inlined loop under those features and runs
//! it. So this module has no `unsafe`: the token is the proof, and the
//! loops are plain Rust that the compiler vectorises.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use pulp::x86::V3;

/// A CSR matrix as borrowed slices (the mapped artifacts).
#[derive(Clone, Copy)]
pub struct Csr<'a> {
    /// `N + 1` row offsets.
    pub row_ptr: &'a [i64],
    /// Column of each non-zero.
    pub cols: &'a [i64],
    /// Value of each non-zero.
    pub vals: &'a [f32],
}

impl Csr<'_> {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    /// The first `rows` rows (row offsets start at 0, so they are a prefix
    /// of the arrays).
    pub fn prefix(&self, rows: usize) -> Self {
        let end = self.row_ptr[rows] as usize;
        Csr { row_ptr: &self.row_ptr[..=rows], cols: &self.cols[..end], vals: &self.vals[..end] }
    }

    /// `out = self · x`, with `x` row-major `[ncols, k]` and `out` row-major
    /// `[rows, k]`. Panics on mismatched sizes or an out-of-range column.
    pub fn mul_dense(&self, x: &[f32], k: usize, out: &mut [f32]) {
        self.mul_dense_with(Kernel::pick(), x, k, out);
    }

    /// [`Csr::mul_dense`] with a chosen kernel (tests compare them all).
    pub fn mul_dense_with(&self, kernel: Kernel, x: &[f32], k: usize, out: &mut [f32]) {
        let n = self.rows();
        assert_eq!(out.len(), n * k, "output size");
        assert!(self.row_ptr[n] as usize == self.cols.len() && self.cols.len() == self.vals.len(), "CSR arrays disagree");
        if k == 0 {
            return;
        }
        const ROWS: usize = 64;
        out.par_chunks_mut(ROWS * k).enumerate().for_each(|(ci, chunk)| {
            let first = ci * ROWS;
            let rows = chunk.len() / k;
            let (a, b) = (self.row_ptr[first] as usize, self.row_ptr[first + rows] as usize);
            let block = Block { row_ptr: &self.row_ptr[first..=first + rows], base: a, cols: &self.cols[a..b], vals: &self.vals[a..b] };
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2(simd) => simd.vectorize(
                    #[inline(always)]
                    move || block.run_tiled::<64>(x, k, chunk),
                ),
                #[cfg(target_arch = "x86_64")]
                Kernel::AxpyAvx2(simd) => simd.vectorize(
                    #[inline(always)]
                    move || block.run(x, k, chunk, axpy_fused),
                ),
                Kernel::Axpy => block.run(x, k, chunk, axpy_portable),
            }
        });
    }
}

/// Which inner loop runs: register-tiled with AVX2+FMA where the CPU has
/// them, else an axpy per non-zero (with AVX2+FMA when the CPU has them).
/// `TEXTGCN_SPMM_KERNEL=axpy` overrides the choice, for measurements. (An
/// AVX-512 variant with 128-float tiles measured no better on 20ng: memory
/// bandwidth bounds it.) The AVX2 variants carry the proof that the CPU
/// has the features (pulp's [`V3`] token), so they cannot be chosen
/// wrongly.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    /// 8-wide, output tiles of 64 floats.
    #[cfg(target_arch = "x86_64")]
    Avx2(V3),
    /// One axpy per non-zero, compiled for AVX2+FMA.
    #[cfg(target_arch = "x86_64")]
    AxpyAvx2(V3),
    /// One portable axpy per non-zero.
    Axpy,
}

impl PartialEq for Kernel {
    /// The same kernel (the tokens carry no state).
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl Eq for Kernel {}

impl Kernel {
    /// The best kernel for this CPU (or the one the environment asks for).
    pub fn pick() -> Kernel {
        static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *K.get_or_init(|| {
            let axpy = std::env::var("TEXTGCN_SPMM_KERNEL").as_deref() == Ok("axpy");
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = V3::try_new() {
                return if axpy { Kernel::AxpyAvx2(simd) } else { Kernel::Avx2(simd) };
            }
            let _ = axpy;
            Kernel::Axpy
        })
    }

    /// Every kernel this CPU can run (the portable one last).
    pub fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = V3::try_new() {
            all.extend([Kernel::Avx2(simd), Kernel::AxpyAvx2(simd)]);
        }
        all.push(Kernel::Axpy);
        all
    }
}

/// A run of consecutive rows, processed by one thread.
pub(crate) struct Block<'a> {
    row_ptr: &'a [i64],
    base: usize,
    cols: &'a [i64],
    vals: &'a [f32],
}

impl Block<'_> {
    /// Computes the block's rows with the output tiled into fixed-size
    /// accumulators (`T` floats) that the compiler keeps in registers, so a
    /// non-zero costs loads of `x` and FMAs only. `#[inline(always)]`: it is
    /// compiled into each kernel, under its target features.
    #[inline(always)]
    pub(crate) fn run_tiled<const T: usize>(&self, x: &[f32], k: usize, out: &mut [f32]) {
        for (r, orow) in out.chunks_exact_mut(k).enumerate() {
            let (a, b) = (self.row_ptr[r] as usize - self.base, self.row_ptr[r + 1] as usize - self.base);
            let (cols, vals) = (&self.cols[a..b], &self.vals[a..b]);
            let mut t = 0;
            while t < k {
                let w = T.min(k - t);
                let mut acc = [0f32; T];
                if w == T {
                    for (&c, &v) in cols.iter().zip(vals) {
                        let xs: &[f32; T] = x[c as usize * k + t..][..T].try_into().expect("tile");
                        for j in 0..T {
                            acc[j] = v.mul_add(xs[j], acc[j]);
                        }
                    }
                } else {
                    for (&c, &v) in cols.iter().zip(vals) {
                        let xs = &x[c as usize * k + t..][..w];
                        for (o, xv) in acc[..w].iter_mut().zip(xs) {
                            *o = v.mul_add(*xv, *o);
                        }
                    }
                }
                orow[t..t + w].copy_from_slice(&acc[..w]);
                t += w;
            }
        }
    }

    /// Computes the block's rows of `Â · x` into `out` with `axpy`
    /// (`y += a · x`) for each non-zero.
    #[inline(always)]
    pub(crate) fn run(&self, x: &[f32], k: usize, out: &mut [f32], axpy: impl Fn(f32, &[f32], &mut [f32])) {
        for (r, orow) in out.chunks_exact_mut(k).enumerate() {
            orow.fill(0.0);
            let (a, b) = (self.row_ptr[r] as usize - self.base, self.row_ptr[r + 1] as usize - self.base);
            for (&c, &v) in self.cols[a..b].iter().zip(&self.vals[a..b]) {
                axpy(v, &x[c as usize * k..][..k], orow);
            }
        }
    }
}

/// `y += a · x` with fused multiply-adds (only fast where the build has
/// FMA: under [`V3::vectorize`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn axpy_fused(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = a.mul_add(*xv, *yv);
    }
}

/// Portable `y += a · x`.
fn axpy_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_dense_product() {
        let n = 37;
        let k = 23;
        let mut row_ptr = vec![0i64];
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for r in 0..n {
            for c in 0..n {
                if (r * 7 + c * 3) % 5 == 0 {
                    cols.push(c as i64);
                    vals.push(((r + 2 * c) % 11) as f32 * 0.25 - 1.0);
                }
            }
            row_ptr.push(cols.len() as i64);
        }
        let csr = Csr { row_ptr: &row_ptr, cols: &cols, vals: &vals };
        let kernels = Kernel::available();
        assert!(kernels.contains(&Kernel::pick()));
        for kernel in kernels {
            // Widths below, at and above the 64-float tile.
            for k in [k, 64, 67] {
                let x: Vec<f32> = (0..n * k).map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8).collect();
                let mut out = vec![0f32; n * k];
                csr.mul_dense_with(kernel, &x, k, &mut out);
                for r in 0..n {
                    for j in 0..k {
                        let mut want = 0f64;
                        for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
                            want += vals[e] as f64 * x[cols[e] as usize * k + j] as f64;
                        }
                        assert!((out[r * k + j] as f64 - want).abs() < 1e-4, "{kernel:?} k={k} ({r},{j})");
                    }
                }
            }
        }
    }
}

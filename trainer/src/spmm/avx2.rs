//! The AVX2+FMA builds of the sparse product's inner loops: the only
//! `unsafe` of the kernels.
//!
//! # Invariant
//! A `target_feature(enable = "avx2,fma")` function may be called only on
//! a CPU that has both features. [`Avx2Fma`] can only be made by
//! [`Avx2Fma::detect`], which checks them at run time, so holding one is
//! the proof; its methods are therefore safe.

use super::Block;

/// Proof that this CPU has AVX2 and FMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2Fma(());

impl Avx2Fma {
    /// The proof, when the CPU has both features (checked once).
    pub fn detect() -> Option<Self> {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")).then_some(Avx2Fma(()))
    }

    /// A block of the product, register-tiled (tiles of 64 floats).
    pub(crate) fn spmm_tiled(self, block: &Block<'_>, x: &[f32], k: usize, out: &mut [f32]) {
        #[target_feature(enable = "avx2,fma")]
        fn inner(block: &Block<'_>, x: &[f32], k: usize, out: &mut [f32]) {
            block.run_tiled::<64>(x, k, out)
        }
        // SAFETY: `self` exists, so the CPU has AVX2 and FMA (module
        // invariant), the only precondition of a `target_feature` call.
        unsafe { inner(block, x, k, out) }
    }

    /// `y += a · x`.
    pub(crate) fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        #[target_feature(enable = "avx2,fma")]
        fn inner(a: f32, x: &[f32], y: &mut [f32]) {
            for (yv, xv) in y.iter_mut().zip(x) {
                *yv = a.mul_add(*xv, *yv);
            }
        }
        // SAFETY: as in `spmm_tiled`.
        unsafe { inner(a, x, y) }
    }
}

//! # textgcn-trainer
//!
//! Trains the reference 2-layer featureless GCN (and simpler models) on artifacts that
//! `textgcn build` published, without rebuilding or copying them:
//! `edge_index`/`edge_attr`/`row_ptr` are memory-mapped and viewed as one
//! CSR tensor ([`graph`], via [`mapping`]), train,
//! validation and test are index sets over that one graph, and the training
//! step ([`model`]) uses `Â` as its own transpose in the backward pass.
//! The same graph also trains the linear models of [`linear`] (SGC, SSGC,
//! TF-IDF + logistic regression, fitted by the hand-written [`lbfgs`]),
//! chosen by `train.model` / `--model`; [`run::train_run`] dispatches.
//! This is the only crate of the workspace that links libtorch.
//!
//! Where the `unsafe` is, each module with its invariant: [`mapping`]
//! (tensors viewing mapped files), [`cuda_library`] (loading libtorch's
//! CUDA library when a run may use a GPU) and [`alloc`] (glibc allocator
//! tuning, the pipeline crate's module, shared).
//! Sums whose floats must not depend on the thread count are
//! [`ordered`]'s.
//! The SIMD kernels ([`spmm`]) have none: `pulp`'s feature tokens dispatch
//! them.

pub use textgcn_pipeline::alloc;
pub mod cuda_library;
pub mod fused;
pub mod graph;
pub mod lbfgs;
pub mod linear;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod ordered;
pub mod predict;
pub mod run;
pub mod run_dir;
pub mod spmm;
pub mod targets;

pub use graph::{Adj, GraphData};
pub use model::{Hyper, Model};
pub use predict::{Prediction, Predictor};
pub use run::{RunResult, Trained, train_run};

/// Serialises the unit tests that draw from libtorch's global generator
/// (`manual_seed` and random tensors): run in parallel, they would draw
/// from each other's streams, and a test comparing two seeded runs would
/// see different numbers.
#[cfg(test)]
pub(crate) fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

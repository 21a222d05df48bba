//! Engines: what computes the graph stage's counts (`build.engine`).
//!
//! `native` is the graph module's own code ([`crate::graph::build`]).
//! `datafusion` (crate feature `datafusion`) runs the same counts as an
//! Apache DataFusion plan in this process (`df`); `ballista` (crate
//! feature `ballista`) submits that plan to a Ballista cluster, whose
//! scheduler and executors this crate also runs ([`cluster`],
//! `textgcn-ballista`). All end in [`crate::graph::Graph`], whose rows,
//! degrees and published files are one code path, so every engine
//! publishes the same bytes; the stage's fingerprint does not name the
//! engine, and its provenance does.

#[cfg(feature = "datafusion")]
pub(crate) mod df;

#[cfg(feature = "ballista")]
pub mod cluster;

#[cfg(feature = "ballista")]
pub(crate) mod runs;

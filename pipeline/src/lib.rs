//! # textgcn-pipeline
//!
//! Turns a text corpus into the artifacts the trainer maps: ingest → tokenize
//! → vocab → graph → splits, each a cached stage in the artifact store
//! (`textgcn-artifacts`), faithful to the reference TextGCN code by default.
//! This crate never links libtorch, and draws nothing: the terminal is
//! `textgcn-cli`'s, the `textgcn` binary is `src/bin/textgcn/`.
//!
//! - [`config`]: the TOML run config, validated before any work.
//! - [`ingest`]: corpus readers with positioned errors.
//! - [`clean`]: the reference cleaning rules and a Unicode tokenizer.
//! - [`vocab`]: the frequency/stop-word filter with deterministic ids.
//! - [`graph`]: PMI + TF-IDF edges and the normalised adjacency.
//! - `engine`: what computes the graph's counts (`build.engine`): the
//!   native code, or Apache DataFusion (feature `datafusion`).
//! - [`splits`]: seeded train/validation/test node sets.
//! - [`stages`]: each stage as a type, the driver (fingerprints,
//!   freshness, build, status) and the typed read side ([`stages::BuiltGraph`]).
//! - [`tables`]: Parquet tables of the pipeline.
//! - [`alloc`]: glibc allocator tuning for the graph build and training.
//!
//! - [`prefetch`]: the software prefetch hint (the graph's word rows and
//!   normalisation, the trainer's sparse kernel).
//!
//! Where the `unsafe` is, each module with its invariant: [`alloc`]
//! (`mallopt`, `malloc_trim`) and [`prefetch`] (the prefetch hint).
//! - `terminal` (feature `cli`): a build with the CLI's progress, for the
//!   `textgcn` binary and the Python package.

pub mod alloc;
pub mod clean;
pub mod config;
pub mod engine;
pub mod graph;
pub mod prefetch;
pub mod ingest;
pub mod splits;
pub mod stages;
pub mod tables;
#[cfg(feature = "cli")]
pub mod terminal;
pub mod vocab;

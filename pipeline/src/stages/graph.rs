//! Stage `graph`: the node and label tables, and the normalised adjacency
//! `Â` (PMI word-word and TF-IDF doc-word edges, self-loops) as the CSR
//! columns the trainer maps: `row_ptr`, `edge_attr`, `edge_index`.

use serde::Serialize;
use textgcn_artifacts::{Built, EdgeAttr, EdgeIndex, ObjectKind, RowPtr};

use super::{Ingest, Input, OutputKey, OutputSpec, PipelineError, PlanContext, RunContext, Stage, Vocab};
use crate::config::{Cooccurrence, Engine, LoadedConfig};
use crate::{graph, tables};

/// The graph stage.
pub struct Graph;

/// The fingerprinted params of [`Graph`].
#[derive(Debug, Serialize)]
pub struct GraphParams {
    /// `graph.window_size`.
    pub window_size: usize,
    /// `graph.cooccurrence`.
    pub cooccurrence: Cooccurrence,
}

impl Graph {
    /// One row per node: kind (`doc`/`word`), name, label id.
    pub const NODES: OutputKey = OutputKey { stage: "graph", name: "nodes", kind: ObjectKind::Table };
    /// The label names, by id.
    pub const LABELS: OutputKey = OutputKey { stage: "graph", name: "labels", kind: ObjectKind::Table };
    /// CSR row offsets of `Â`.
    pub const ROW_PTR: OutputKey = OutputKey { stage: "graph", name: "row_ptr", kind: ObjectKind::RowPtr };
    /// The weights of `Â`, in `edge_index` order.
    pub const EDGE_ATTR: OutputKey = OutputKey { stage: "graph", name: "edge_attr", kind: ObjectKind::EdgeAttr };
    /// The `[2, E]` edges of `Â`, row-major sorted.
    pub const EDGE_INDEX: OutputKey = OutputKey { stage: "graph", name: "edge_index", kind: ObjectKind::EdgeIndex };
}

/// The graph's counts on DataFusion: its pool (aggregations, joins, the
/// sort of the edges) and the assembled rows share what is `free` of the
/// memory limit, less the table copy of the token ids.
#[cfg(feature = "datafusion")]
fn on_datafusion(dt: &crate::vocab::DocTokens, num_words: usize, p: &GraphParams, free: usize, scratch: &std::path::Path, spill_dir: &std::path::Path, progress: &(dyn Fn(&str, u64, u64) + Sync)) -> std::io::Result<graph::Graph> {
    let free = free.saturating_sub(dt.ids.len() * 4 + dt.offsets.len() * 8);
    let memory = graph::RowMemory { budget: free / 2, index_budget: 0, spill_dir, progress };
    let site = crate::engine::df::Site::Local { pool_bytes: (free / 2).max(crate::engine::df::MIN_POOL), spill_dir: scratch };
    crate::engine::df::build(&dt.offsets, &dt.ids, num_words, p.window_size, p.cooccurrence, site, memory)
}

/// The graph's counts on the Ballista cluster at `url`: the executors
/// read the token ids from `scratch` (in the store: they must see it at
/// the same path); this process holds only the assembled rows, in what is
/// `free` of the memory limit.
#[cfg(feature = "ballista")]
#[allow(clippy::too_many_arguments)]
fn on_ballista(dt: &crate::vocab::DocTokens, num_words: usize, p: &GraphParams, url: &str, free: usize, scratch: &std::path::Path, spill_dir: &std::path::Path, progress: &(dyn Fn(&str, u64, u64) + Sync)) -> std::io::Result<graph::Graph> {
    let memory = graph::RowMemory { budget: free, index_budget: 0, spill_dir, progress };
    crate::engine::df::build(&dt.offsets, &dt.ids, num_words, p.window_size, p.cooccurrence, crate::engine::df::Site::Cluster { url, scratch }, memory)
}

/// Without the engine's feature the config check refuses the engine
/// before any stage runs; this is the same refusal, should a caller skip it.
#[cfg(not(feature = "datafusion"))]
fn on_datafusion(_: &crate::vocab::DocTokens, _: usize, _: &GraphParams, _: usize, _: &std::path::Path, _: &std::path::Path, _: &(dyn Fn(&str, u64, u64) + Sync)) -> std::io::Result<graph::Graph> {
    Err(std::io::Error::other(Engine::Datafusion.missing()))
}

/// See the `datafusion` one above.
#[cfg(not(feature = "ballista"))]
#[allow(clippy::too_many_arguments)]
fn on_ballista(_: &crate::vocab::DocTokens, _: usize, _: &GraphParams, _: &str, _: usize, _: &std::path::Path, _: &std::path::Path, _: &(dyn Fn(&str, u64, u64) + Sync)) -> std::io::Result<graph::Graph> {
    Err(std::io::Error::other(Engine::Ballista.missing()))
}

impl Stage for Graph {
    const NAME: &'static str = "graph";
    const VERSION: u32 = 2;
    const OUTPUTS: &'static [OutputSpec] = &[Self::NODES.required(), Self::LABELS.required(), Self::ROW_PTR.required(), Self::EDGE_ATTR.required(), Self::EDGE_INDEX.required()];
    type Params = GraphParams;

    fn params(&self, cfg: &LoadedConfig) -> GraphParams {
        GraphParams { window_size: cfg.config.graph.window_size, cooccurrence: cfg.config.graph.cooccurrence }
    }

    fn engine(&self, cfg: &LoadedConfig) -> &'static str {
        cfg.config.build.engine.name()
    }

    fn inputs(&self, _: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        Ok(vec![Input::Output(Ingest::DOCUMENTS), Input::Output(Vocab::VOCAB), Input::Output(Vocab::DOC_TOKENS)])
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let _span = tracing::debug_span!("graph").entered();
        let (store, p) = (cx.store, self.params(cx.cfg));
        let mut out = Built::default();
        let step = |name: &'static str| tracing::debug_span!("step", name).entered();
        let s = step("read inputs, nodes and labels");
        // What the ingest and vocab stages of this build had in hand, else
        // read from the store.
        let docs = Ingest::document_meta(cx)?;
        let vocab_id = cx.input(Vocab::VOCAB)?;
        let v = match cx.handoff.take::<crate::vocab::Vocab>(vocab_id) {
            Some(v) => v,
            None => tables::get_vocab(store, vocab_id)?,
        };
        let mut labels: Vec<String> = docs.labels.clone();
        labels.sort();
        labels.dedup();
        Self::NODES.put(&mut out, tables::put_nodes(store, &docs, &v, &labels)?);
        Self::LABELS.put(&mut out, tables::put_labels(store, &labels)?);
        // Only the counts are needed from here on: the names and words go
        // before the token ids come in (read from the store; when the vocab
        // stage of this build handed them over, they are held already).
        let num_words = v.words.len();
        drop((docs, v));
        let dt_id = cx.input(Vocab::DOC_TOKENS)?;
        let dt = match cx.handoff.take::<crate::vocab::DocTokens>(dt_id) {
            Some(dt) => dt,
            None => tables::get_doc_tokens(store, dt_id)?,
        };
        drop(s);
        let s = step("compute");
        // Blocks of rows are allocated by the workers and freed by the
        // thread that spills them: served from fresh pages, they go back.
        // What the earlier stages kept for reuse goes back first (the heap
        // is not trimmed after them: see `Pipeline::build_with_progress`).
        crate::alloc::release_free_memory();
        crate::alloc::allocations_via_mmap_from(128 << 10);
        // The rows may take what the memory limit leaves after the tokens
        // and the build's working set; beyond that they are spilled.
        let limit = cx.cfg.config.build.memory_limit_bytes();
        let held = dt.ids.len() * 4 + dt.offsets.len() * 8 + graph::working_bytes(dt.offsets.len() - 1, num_words, rayon::current_num_threads());
        let free = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(held);
        // The inverted index takes what it needs for one pass over the
        // tokens when that is at most half of what is free, else half, but
        // never so little that the word rows need more than
        // `graph::MAX_PASSES` passes; the rows get the rest.
        let whole_index = dt.ids.len() * graph::INDEX_BYTES_PER_OCCURRENCE;
        let index_budget = whole_index.min(free / 2).max(whole_index / graph::MAX_PASSES);
        let budget = free.saturating_sub(index_budget);
        let spill_dir = store.tmp_dir();
        let progress = |phase: &str, done: u64, total: u64| cx.progress(phase, done, total);
        let mut g = match cx.cfg.config.build.engine {
            Engine::Native => {
                let memory = graph::RowMemory { budget, index_budget, spill_dir: &spill_dir, progress: &progress };
                graph::build(&dt.offsets, &dt.ids, num_words, p.window_size, p.cooccurrence, memory)
            }
            Engine::Datafusion => {
                // DataFusion names its spill files: they go in a scratch
                // directory of the store's, which a crash leaves to the sweep.
                let scratch = store.scratch_dir()?;
                on_datafusion(&dt, num_words, &p, free, scratch.path(), &spill_dir, &progress)
            }
            Engine::Ballista => {
                // The executors read the token ids from Parquet files in a
                // scratch directory of the store's, removed when the stage
                // ends (and by the sweep after a crash).
                let scratch = store.scratch_dir()?;
                let url = cx.cfg.config.build.cluster.as_deref().ok_or_else(|| PipelineError::Other("the ballista engine needs build.cluster (or textgcn build --cluster)".into()))?;
                on_ballista(&dt, num_words, &p, url, free, scratch.path(), &spill_dir, &progress)
            }
        }
        .map_err(|e| PipelineError::Other(format!("building the graph ({} engine): {e}", cx.cfg.config.build.engine.name())))?;
        drop((dt, s));
        if g.spilled_bytes() > 0 {
            tracing::info!("graph: {:.1} MiB of rows spilled to {} (memory limit {:.1} MiB, {:.1} MiB of it for tokens and tables)", g.spilled_bytes() as f64 / 1048576.0, spill_dir.display(), limit as f64 / 1048576.0, held as f64 / 1048576.0);
        }
        out.summary = serde_json::to_value(&g.stats).map_err(|e| PipelineError::Other(format!("graph statistics: {e}")))?;
        let (num_nodes, num_edges) = (g.stats.num_nodes, g.stats.num_edges);
        Self::ROW_PTR.put(&mut out, RowPtr::publish(store, g.row_ptr())?);
        // Writing pushes every edge three times (row, weight, column).
        let total = 3 * num_edges as u64;
        let written = std::cell::Cell::new(0u64);
        let count = |n: usize| {
            let before = written.get();
            written.set(before + n as u64);
            if before >> 22 != written.get() >> 22 || written.get() == total {
                cx.progress("edges written", written.get(), total);
            }
        };
        // `edge_index` is published inside `edge_attr`'s publish, so that
        // one pass over the rows feeds both files; its error, if any, is
        // kept as it is rather than as a write error of `edge_attr`.
        let _s = step("normalise and publish edge_attr and edge_index");
        // One pass reads the spilled rows: their disk space goes as it does.
        g.free_disk_as_written();
        let mut index = None;
        let attr = EdgeAttr::publish_streamed(store, num_edges, |attr| {
            let published = EdgeIndex::publish_streamed(store, num_edges, num_nodes, |idx| {
                g.write_edge_rows(|v| {
                    count(v.len());
                    idx.push(v)
                })?;
                g.write_weights_and_columns(
                    |v| {
                        count(v.len());
                        attr.push(v)
                    },
                    |v| {
                        count(v.len());
                        idx.push(v)
                    },
                )
            });
            let failed = published.is_err();
            index = Some(published);
            if failed { Err(std::io::Error::other("edge_index was not published")) } else { Ok(()) }
        });
        let index = index.transpose()?;
        Self::EDGE_ATTR.put(&mut out, attr?);
        Self::EDGE_INDEX.put(&mut out, index.expect("edge_index is published inside edge_attr's publish"));
        Ok(out)
    }
}

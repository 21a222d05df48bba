//! Loading a built graph for training: `Â` as a CSR tensor viewing the
//! mapped `row_ptr`, `edge_index` columns and `edge_attr`; labels and split
//! node sets as small tensors. Train, validation and test are index sets
//! over this one graph.

use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow_array::types::{Float32Type, Int64Type};
use tch::{Device, Kind, Tensor};
use textgcn_artifacts::{EdgeAttr, EdgeIndex, ObjectId, OpenMode, RowPtr, Store, StoreError};
use textgcn_pipeline::config::LoadedConfig;
use textgcn_pipeline::stages::{self, Graph, Vocab};

use crate::predict::{PipelineSource, VocabInfo};
use crate::mapping::MappedTensor;
use crate::spmm::Csr;
use textgcn_pipeline::ingest::Documents;

/// `Â` on one device, as whatever computes `Â · X` best there.
// One value a run (or two), never in a collection: boxing the large
// variant would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub enum Adj {
    /// CPU: the native kernel ([`crate::spmm`]) over the mapped row
    /// offsets and values, and the columns as `u32` where memory allows
    /// (else the mapped `i64` ones).
    Native {
        /// Row offsets (mapped).
        row_ptr: MappedTensor<Int64Type>,
        /// The column half of `edge_index` (mapped).
        cols: MappedTensor<Int64Type>,
        /// The same columns as `u32`, half the bytes, which the products
        /// then read instead (see `narrow_columns`); `None` where the
        /// copy would not fit the memory (see `narrow_fits`).
        narrow: Option<Vec<u32>>,
        /// `edge_attr` (mapped).
        vals: MappedTensor<Float32Type>,
    },
    /// A libtorch sparse CSR tensor (on CUDA, or on the CPU when asked with
    /// `TEXTGCN_SPMM=torch` for comparison).
    Torch(Tensor),
    /// CPU: the native kernel over CSR arrays in memory (a matrix derived
    /// from the graph, such as the TF-IDF rows of [`crate::linear`]); it
    /// need not be square.
    Host {
        /// `rows + 1` offsets.
        row_ptr: Vec<i64>,
        /// Column of each non-zero.
        cols: Vec<u32>,
        /// Value of each non-zero.
        vals: Vec<f32>,
    },
}

impl Adj {
    /// `Â · x` (`x` dense `[N, k]`).
    pub fn mm(&self, x: &Tensor) -> Tensor {
        match self {
            Adj::Torch(t) => t.mm(x),
            Adj::Native { row_ptr, .. } => self.mm_rows(x, row_ptr.values().len() - 1),
            Adj::Host { row_ptr, .. } => self.mm_rows(x, row_ptr.len() - 1),
        }
    }

    /// The first `rows` rows of `Â · x` (on the CPU only those are
    /// computed; libtorch computes all and narrows).
    pub fn mm_rows(&self, x: &Tensor, rows: usize) -> Tensor {
        let native = |csr: HostCsr| {
            let csr = csr.prefix(rows);
            let x = x.contiguous();
            let k = x.size()[1];
            let mut out = Tensor::empty([rows as i64, k], (Kind::Float, Device::Cpu));
            csr.mul_dense(crate::mapping::f32_slice(&x), k as usize, crate::mapping::f32_slice_mut(&mut out));
            out
        };
        match self {
            Adj::Torch(t) => t.mm(x).narrow(0, 0, rows as i64),
            Adj::Native { .. } | Adj::Host { .. } => native(self.host().expect("a host matrix")),
        }
    }

    /// `Â[:, ..cols] · x` for `x` of `cols` rows: the product `Â · x'` where
    /// `x'` is `x` followed by zero rows (up to `Â`'s column count). On the
    /// CPU the non-zeros of the left-out columns are skipped, with the
    /// same bits as the whole product (columns are sorted within rows).
    pub fn mm_columns_below(&self, x: &Tensor, cols: usize) -> Tensor {
        assert_eq!(x.size()[0], cols as i64, "x has one row per kept column");
        let native = |csr: HostCsr| {
            let x = x.contiguous();
            let k = x.size()[1];
            let mut out = Tensor::empty([csr.rows() as i64, k], (Kind::Float, Device::Cpu));
            csr.mul_dense_columns_below(cols, crate::mapping::f32_slice(&x), k as usize, crate::mapping::f32_slice_mut(&mut out));
            out
        };
        match self {
            Adj::Torch(t) => {
                let ncols = t.size()[1];
                let pad = Tensor::zeros([ncols - cols as i64, x.size()[1]], (x.kind(), x.device()));
                t.mm(&Tensor::cat(&[x, &pad], 0))
            }
            Adj::Native { .. } | Adj::Host { .. } => native(self.host().expect("a host matrix")),
        }
    }

    /// The CSR arrays when they are on the host (the CPU variants).
    pub fn host(&self) -> Option<HostCsr<'_>> {
        match self {
            Adj::Native { row_ptr, cols, narrow, vals } => Some(match narrow {
                Some(narrow) => HostCsr::Narrow(Csr { row_ptr: row_ptr.values(), cols: narrow, vals: vals.values(), mapped: true }),
                None => HostCsr::Wide(Csr { row_ptr: row_ptr.values(), cols: cols.values(), vals: vals.values(), mapped: true }),
            }),
            Adj::Host { row_ptr, cols, vals } => Some(HostCsr::Narrow(Csr { row_ptr, cols, vals, mapped: false })),
            Adj::Torch(_) => None,
        }
    }

    /// A CSR matrix held in memory, multiplied where `device` is: natively
    /// on the CPU (its columns as `u32`), as a libtorch CSR tensor of
    /// `[rows, ncols]` elsewhere (or where a column does not fit a `u32`).
    pub fn from_host(row_ptr: Vec<i64>, cols: Vec<i64>, vals: Vec<f32>, ncols: usize, device: Device) -> Adj {
        if device == Device::Cpu
            && let Some(cols) = narrow_columns(&cols, ncols)
        {
            return Adj::Host { row_ptr, cols, vals };
        }
        let rows = row_ptr.len() as i64 - 1;
        let t = Tensor::sparse_csr_tensor_crow_col_value_size(&Tensor::from_slice(&row_ptr), &Tensor::from_slice(&cols), &Tensor::from_slice(&vals), [rows, ncols as i64], (Kind::Float, Device::Cpu));
        Adj::Torch(t.to_device(device))
    }

    /// The device the products run on.
    pub fn device(&self) -> Device {
        match self {
            Adj::Torch(t) => t.device(),
            Adj::Native { .. } | Adj::Host { .. } => Device::Cpu,
        }
    }
}

/// The CSR arrays of a CPU [`Adj`]: columns as `u32` (a copy, or a
/// matrix held in memory) or the mapped `i64`s.
#[derive(Clone, Copy)]
pub enum HostCsr<'a> {
    /// `u32` columns.
    Narrow(Csr<'a, u32>),
    /// The mapped `i64` columns.
    Wide(Csr<'a, i64>),
}

/// `$body` with `$c` bound to the [`Csr`] inside a [`HostCsr`], of either
/// column type.
macro_rules! with_csr {
    ($host:expr, $c:ident => $body:expr) => {
        match $host {
            $crate::graph::HostCsr::Narrow($c) => $body,
            $crate::graph::HostCsr::Wide($c) => $body,
        }
    };
}
pub(crate) use with_csr;

impl HostCsr<'_> {
    /// Rows.
    pub fn rows(&self) -> usize {
        with_csr!(self, c => c.rows())
    }

    /// The first `rows` rows ([`Csr::prefix`]).
    pub fn prefix(&self, rows: usize) -> Self {
        match self {
            HostCsr::Narrow(c) => HostCsr::Narrow(c.prefix(rows)),
            HostCsr::Wide(c) => HostCsr::Wide(c.prefix(rows)),
        }
    }

    /// [`Csr::mul_dense`].
    pub fn mul_dense(&self, x: &[f32], k: usize, out: &mut [f32]) {
        with_csr!(self, c => c.mul_dense(x, k, out))
    }

    /// [`Csr::mul_dense_columns_below`].
    pub fn mul_dense_columns_below(&self, cols: usize, x: &[f32], k: usize, out: &mut [f32]) {
        with_csr!(self, c => c.mul_dense_columns_below(cols, x, k, out))
    }

    /// [`Csr::mul_dense_then`].
    pub fn mul_dense_then(&self, x: &[f32], k: usize, rows: [&mut [f32]; 3], then: impl Fn(&mut [f32], [&mut [f32]; 3]) + Sync) {
        with_csr!(self, c => c.mul_dense_then(x, k, rows, then))
    }

    /// [`Csr::diagonal`].
    pub fn diagonal(&self, nodes: std::ops::Range<usize>) -> Vec<f32> {
        with_csr!(self, c => c.diagonal(nodes))
    }
}

/// The graph and everything a run needs, on one device.
pub struct GraphData {
    // Field order is drop order: tensors that view the mappings first.
    /// `Â` `[N, N]`, float32.
    pub adj: Adj,
    /// What each document is trained towards: its class id (`[D]` int64
    /// on the device) or, after [`GraphData::use_label_sets`], its label set.
    pub targets: crate::targets::Targets,
    /// Training document nodes.
    pub train: Tensor,
    /// Validation document nodes.
    pub val: Tensor,
    /// Test document nodes.
    pub test: Tensor,
    /// Nodes (documents + words).
    pub num_nodes: usize,
    /// Documents (nodes `0..D`).
    pub num_docs: usize,
    /// Edges.
    pub num_edges: usize,
    /// Label names by id (with label sets: each label of the sets).
    pub label_names: Vec<String>,
    /// Document names by node.
    pub doc_names: Vec<String>,
    /// Host copies of the split node lists.
    pub split_lists: [Vec<i64>; 3],
    /// Bytes of the mapped graph files (edge_index, edge_attr, row_ptr).
    pub mapped_bytes: u64,
    /// Paths of the mapped graph files (to find them in /proc/self/smaps).
    pub mapped_paths: Vec<std::path::PathBuf>,
    /// What an inductive predictor needs from the pipeline (set by
    /// [`load`]; `None` for graphs opened from bare objects).
    pub vocab: Option<VocabInfo>,
    /// Test documents held out of the graph (`ingest.hold_out_test`), to
    /// be classified inductively after training.
    pub held_out: Option<Documents>,
    cols: MappedTensor<Int64Type>,
    vals: MappedTensor<Float32Type>,
    rowptr: MappedTensor<Int64Type>,
    /// The min-max column ranges of a propagation (by its coefficients),
    /// computed once for all seeds of a `--runs` ([`crate::linear`]).
    ranges: std::sync::Mutex<Option<(Vec<f64>, ColumnRanges)>>,
}

/// The `n × n` libtorch CPU CSR tensor viewing the mapped arrays (no copy).
fn csr_tensor(rowptr: &MappedTensor<Int64Type>, cols: &MappedTensor<Int64Type>, vals: &MappedTensor<Float32Type>, n: usize) -> Tensor {
    Tensor::sparse_csr_tensor_crow_col_value_size(rowptr.tensor(), cols.tensor(), vals.tensor(), [n as i64, n as i64], (Kind::Float, Device::Cpu))
}

/// Per-column minima and maxima over the training documents.
pub type ColumnRanges = std::sync::Arc<(Vec<f32>, Vec<f32>)>;

impl GraphData {
    /// Whether the graph's arrays are views of the mapped files (zero-copy):
    /// the values, row offsets and columns of `edge_index` that the CPU
    /// products are given. It checks the mapped views only: the native
    /// kernel may read a `u32` copy of the columns instead (see
    /// `narrow_columns`), which this does not count as a copy of the graph.
    pub fn is_zero_copy(&self) -> bool {
        let mapped = self.cols.is_zero_copy() && self.vals.is_zero_copy() && self.rowptr.is_zero_copy();
        match &self.adj {
            Adj::Native { row_ptr, cols, vals, .. } => mapped && row_ptr.is_zero_copy() && cols.is_zero_copy() && vals.is_zero_copy(),
            Adj::Torch(t) if t.device() == Device::Cpu => {
                mapped
                    && crate::mapping::inside(&t.col_indices(), self.cols.mapping_range())
                    && crate::mapping::inside(&t.values(), self.vals.mapping_range())
                    && crate::mapping::inside(&t.crow_indices(), self.rowptr.mapping_range())
            }
            Adj::Torch(_) | Adj::Host { .. } => false,
        }
    }

    /// The graph's CSR arrays on the host (the mapped files, `i64`
    /// columns).
    pub fn host_csr(&self) -> crate::spmm::Csr<'_> {
        crate::spmm::Csr { row_ptr: self.rowptr.values(), cols: self.cols.values(), vals: self.vals.values(), mapped: true }
    }

    /// `Â` as a libtorch CPU CSR tensor viewing the mapped arrays (`i64`
    /// columns): what `TEXTGCN_SPMM=torch` multiplies with (comparisons).
    pub fn mapped_csr_tensor(&self) -> Tensor {
        csr_tensor(&self.rowptr, &self.cols, &self.vals, self.num_nodes)
    }

    /// Opens and checks the graph objects directly (tests, benchmarks).
    pub fn from_objects(store: &Store, edge_index: &ObjectId, edge_attr: &ObjectId, row_ptr: &ObjectId, device: Device) -> Result<Self> {
        let (ei, ea, rp) = (EdgeIndex::open(store, edge_index)?, EdgeAttr::open(store, edge_attr)?, RowPtr::open(store, row_ptr)?);
        stages::check_graph(&ei, &ea, &rp).map_err(anyhow::Error::msg)?;
        Ok(Self::from_columns(&ei, &ea, &rp, vec![store.object_path(edge_index), store.object_path(edge_attr), store.object_path(row_ptr)], device))
    }

    /// Views checked graph columns ([`stages::check_graph`]) as `Â` on
    /// `device`; `mapped_paths` are their files.
    fn from_columns(ei: &EdgeIndex, ea: &EdgeAttr, rp: &RowPtr, mapped_paths: Vec<std::path::PathBuf>, device: Device) -> Self {
        let (n, e) = (ei.num_nodes(), ei.num_edges());
        let cols = MappedTensor::view(ei.column(), e, e, Kind::Int64);
        let vals = MappedTensor::view(ea.column(), 0, e, Kind::Float);
        let rowptr = MappedTensor::view(rp.column(), 0, n + 1, Kind::Int64);
        let torch_csr = || csr_tensor(&rowptr, &cols, &vals, n);
        let adj = match device {
            Device::Cpu if std::env::var("TEXTGCN_SPMM").as_deref() == Ok("torch") => Adj::Torch(torch_csr()),
            Device::Cpu => {
                let narrow = narrow_fits(e, crate::metrics::memory_room()).then(|| narrow_columns(cols.values(), n)).flatten();
                if narrow.is_some() {
                    // The products read only the copy: the mapped columns
                    // leave this process's resident set (the page cache
                    // keeps them for whoever reads them next).
                    ei.column().release(e..2 * e);
                } else {
                    tracing::info!("the products read the graph's columns from the mapping: a u32 copy of its {e} edges would take more than a quarter of the memory left (or its {n} nodes more than a u32 indexes)");
                }
                Adj::Native { row_ptr: rowptr.clone(), cols: cols.clone(), narrow, vals: vals.clone() }
            }
            // On a GPU the graph must live in device memory: one copy, made once.
            _ => Adj::Torch(torch_csr().to_device(device)),
        };
        let mapped_bytes = mapped_paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
        GraphData {
            adj,
            targets: crate::targets::Targets::Single(Tensor::zeros([0], (Kind::Int64, device))),
            train: Tensor::zeros([0], (Kind::Int64, device)),
            val: Tensor::zeros([0], (Kind::Int64, device)),
            test: Tensor::zeros([0], (Kind::Int64, device)),
            num_nodes: n,
            num_docs: 0,
            num_edges: e,
            label_names: Vec::new(),
            doc_names: Vec::new(),
            split_lists: Default::default(),
            mapped_bytes,
            mapped_paths,
            vocab: None,
            held_out: None,
            cols,
            vals,
            rowptr,
            ranges: Default::default(),
        }
    }

    /// The column ranges of the propagation `coef` on this graph's
    /// training documents: `compute`'s result, kept for the next call with
    /// the same `coef`.
    pub fn column_ranges(&self, coef: &[f64], compute: impl FnOnce() -> (Vec<f32>, Vec<f32>)) -> ColumnRanges {
        let mut cache = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((c, r)) if c == coef => r.clone(),
            _ => {
                let r = std::sync::Arc::new(compute());
                *cache = Some((coef.to_vec(), r.clone()));
                r
            }
        }
    }

    /// Sets labels and splits (document label ids, split node lists).
    pub fn with_labels(mut self, labels: Vec<i64>, label_names: Vec<String>, doc_names: Vec<String>, splits: [Vec<i64>; 3]) -> Self {
        let device = self.adj.device();
        self.num_docs = labels.len();
        self.targets = crate::targets::Targets::Single(Tensor::from_slice(&labels).to_device(device));
        self.train = Tensor::from_slice(&splits[0]).to_device(device);
        self.val = Tensor::from_slice(&splits[1]).to_device(device);
        self.test = Tensor::from_slice(&splits[2]).to_device(device);
        self.label_names = label_names;
        self.doc_names = doc_names;
        self.split_lists = splits;
        self
    }

    /// Reads each document's label field as a set of labels joined by
    /// `separator` ([`crate::targets`]): the model then trains with sigmoid
    /// outputs and binary cross-entropy. Refuses an empty or repeated label
    /// in a field, naming the document.
    pub fn use_label_sets(&mut self, separator: &str) -> Result<()> {
        let Some(fields) = self.targets.class_ids() else { return Ok(()) };
        if let Some(held) = &self.held_out {
            for (name, field) in held.names.iter().zip(&held.labels) {
                crate::targets::split_label_field(field, separator).map_err(|why| anyhow::anyhow!("held-out document {name:?}: {why}"))?;
            }
        }
        let (sets, names) = crate::targets::LabelSets::parse(&self.label_names, &fields, &self.doc_names, separator, self.adj.device())?;
        self.targets = crate::targets::Targets::Multi(sets);
        self.label_names = names;
        Ok(())
    }

    /// Number of classes (labels, with label sets).
    pub fn num_classes(&self) -> usize {
        self.label_names.len()
    }

    /// The self-loop weights `Â_ii` of `nodes` (from the host arrays the
    /// products read, else the mapped ones; `0` where a row has no
    /// diagonal entry).
    pub fn self_loops(&self, nodes: std::ops::Range<usize>) -> Vec<f32> {
        match self.adj.host() {
            Some(csr) => csr.diagonal(nodes),
            None => self.host_csr().diagonal(nodes),
        }
    }
}

/// Whether the trainer copies the columns of a graph of `e` edges to
/// `u32` (see `narrow_columns`), given the `room` the memory has left
/// ([`crate::metrics::memory_room`], before the model is made; `None`:
/// unknown): where the copy takes at most a quarter of it. The copy is
/// anonymous memory, which nothing can reclaim, in place of mapped pages
/// that the page cache may evict; the rest of the room is the model's
/// (weights, Adam's moments and the activations: 2.2 GB for the generated
/// 100k-document corpus, 10-14 GB for the million, whose 1.7 G edges are
/// then read from the mapping) and the page cache's.
fn narrow_fits(e: usize, room: Option<u64>) -> bool {
    room.is_none_or(|room| (e as u64).saturating_mul(4) <= room / 4)
}

/// The columns `cols` (each below `ncols`) as `u32`, or `None` where
/// `ncols` exceeds what a `u32` indexes. The native kernel reads these:
/// half the bytes of the `i64` columns a product, 108 MB of its reads on
/// 20ng; a 20ng epoch took 3-9 % less (docs/benchmarks.md).
fn narrow_columns(cols: &[i64], ncols: usize) -> Option<Vec<u32>> {
    use rayon::prelude::*;
    if ncols > u32::MAX as usize + 1 {
        return None;
    }
    let mut narrow = vec![0u32; cols.len()];
    narrow.par_chunks_mut(1 << 16).zip(cols.par_chunks(1 << 16)).for_each(|(to, from)| {
        for (t, &c) in to.iter_mut().zip(from) {
            *t = c as u32;
        }
    });
    Some(narrow)
}

/// Loads the artifacts a config's ref points at. Refuses when the ref is
/// missing or stale, naming the stage and the command that rebuilds it.
pub fn load(store_path: &Path, cfg: &LoadedConfig, device: Device) -> Result<GraphData> {
    load_checked(store_path, cfg, device).map_err(|e| {
        // Damage in the store has a way back: say which.
        let damaged = e.chain().any(|c| {
            matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Corrupt { .. } | StoreError::Missing { .. } | StoreError::Damaged { .. } | StoreError::Format { .. } | StoreError::BadMetadata { .. }))
                || c.downcast_ref::<stages::PipelineError>().is_some_and(|p| matches!(p, stages::PipelineError::Store(_) | stages::PipelineError::Contract(_) | stages::PipelineError::Other(_)))
        });
        if damaged {
            anyhow::anyhow!("{}; `textgcn build --repair --config {}` moves what is damaged to quarantine/ and rebuilds it", textgcn_cli::error_chain(&e), cfg.path.display())
        } else {
            e
        }
    })
}

fn load_checked(store_path: &Path, cfg: &LoadedConfig, device: Device) -> Result<GraphData> {
    let name = &cfg.config.name;
    let fix = format!("make pipeline CONFIG={}", cfg.path.display());
    let store = Store::open(store_path, OpenMode::Read).with_context(|| format!("no artifacts in {}; build them first with `{fix}`", store_path.display()))?;
    let stale = stages::stale_stages(&store, cfg)?;
    if let Some(s) = stale.first() {
        bail!("the artifacts of {name} are stale: stage {} would rerun ({}); run `{fix}` first", s.stage, s.why.as_deref().unwrap_or("changed"));
    }
    let g = stages::BuiltGraph::open(&store, name)?;
    let vocab = g.vocab(&store)?;
    let held_out = g.held_out(&store)?;
    let mut data = GraphData::from_columns(&g.edge_index, &g.edge_attr, &g.row_ptr, g.mapped_paths.to_vec(), device);
    data.vocab = Some(VocabInfo {
        source: PipelineSource {
            dataset: name.clone(),
            rules: cfg.config.tokenize.rules,
            lowercase: cfg.config.tokenize.lowercase,
            vocab_object: g.built.object(Vocab::VOCAB)?.to_string(),
            graph_object: g.built.object(Graph::EDGE_ATTR)?.to_string(),
        },
        words: vocab.words,
        df: vocab.df,
    });
    data.held_out = held_out;
    let s = g.splits;
    Ok(data.with_labels(g.labels, g.label_names, g.doc_names, [s.train, s.val, s.test]))
}

#[cfg(test)]
mod tests {
    use super::{narrow_columns, narrow_fits};

    /// The columns are copied where the copy takes at most a quarter of
    /// the room left, and always where the room is unknown.
    #[test]
    fn columns_are_narrowed_where_the_copy_fits_a_quarter_of_the_room() {
        // 20ng's 27 M edges: 108 MB of u32.
        let e = 26_990_597usize;
        assert!(narrow_fits(e, None));
        assert!(narrow_fits(e, Some(4 * 4 * e as u64)));
        assert!(!narrow_fits(e, Some(4 * 4 * e as u64 - 4)));
        assert!(!narrow_fits(e, Some(0)));
        // The generated million documents (1.7 G edges) on a 24 GB
        // machine with 22 GB available: read from the mapping.
        assert!(!narrow_fits(1_717_716_760, Some(22 << 30)));
        assert!(narrow_fits(656_237_131, Some(22 << 30)));
    }

    /// Columns below 2^32 are copied exactly; more nodes than a `u32`
    /// indexes give no copy.
    #[test]
    fn narrow_columns_are_the_columns() {
        let cols = [0i64, 5, u32::MAX as i64, 7];
        assert_eq!(narrow_columns(&cols, u32::MAX as usize + 1), Some(vec![0, 5, u32::MAX, 7]));
        assert_eq!(narrow_columns(&cols[..2], u32::MAX as usize + 2), None);
    }
}

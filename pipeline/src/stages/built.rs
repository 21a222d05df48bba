//! The read side of a build: [`BuiltRef`], the checked records a ref pins,
//! and [`BuiltGraph`], the mapped graph with its tables, which is what the
//! trainer, `inspect` and the Python snippet in the README read. Every
//! lookup is by [`OutputKey`]; a ref or record that is not what the stages
//! make is an error naming it, never a panic.

use std::path::PathBuf;

use serde_json::Value;
use textgcn_artifacts::{EdgeAttr, EdgeIndex, ObjectId, RowPtr, StageRecord, Store};

use super::{Graph, Ingest, OutputKey, Pipeline, PipelineError, Splits, Vocab, check_outputs};
use crate::ingest::Documents;
use crate::{splits, tables, vocab};

/// The checked records of a built ref: one per stage, in pipeline order,
/// each the record the ref pins by digest, with exactly the outputs its
/// stage makes, each of its kind. This is the one way the trainer and the
/// CLI read a build, so a damaged or tampered ref is an error here, never a
/// panic or a silent use of other data.
#[derive(Debug, Clone)]
pub struct BuiltRef {
    /// The ref's name.
    pub name: String,
    records: Vec<StageRecord>,
}

impl BuiltRef {
    /// Opens and checks ref `name` as a build of the standard pipeline.
    pub fn open(store: &Store, name: &str) -> Result<Self, PipelineError> {
        Self::open_with(store, name, &Pipeline::standard())
    }

    /// Opens and checks ref `name` as a build of `pipeline`.
    pub fn open_with(store: &Store, name: &str, pipeline: &Pipeline) -> Result<Self, PipelineError> {
        let r = store.get_ref(name)?;
        let hint = "the store is damaged; run `textgcn verify --repair`, then `textgcn build` of the config";
        let names: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
        let expected = pipeline.names();
        if names != expected {
            return Err(PipelineError::Contract(format!("ref {name}: its stages are [{}], expected [{}]; {hint}", names.join(", "), expected.join(", "))));
        }
        let mut records = Vec::with_capacity(expected.len());
        for (stage, entry) in pipeline.stages().zip(&r.stages) {
            let rec = store.pinned_record(name, entry).map_err(|e| PipelineError::Contract(format!("ref {name}: {e}; {hint}")))?;
            check_outputs(stage, &rec).map_err(|e| PipelineError::Contract(format!("ref {name}: {e}; {hint}")))?;
            records.push(rec);
        }
        Ok(BuiltRef { name: name.to_owned(), records })
    }

    /// The record of stage `stage`.
    pub fn record(&self, stage: &str) -> Result<&StageRecord, PipelineError> {
        self.records.iter().find(|r| r.stage == stage).ok_or_else(|| PipelineError::Contract(format!("ref {}: no stage {stage}", self.name)))
    }

    /// The object of output `key`.
    pub fn object(&self, key: OutputKey) -> Result<&ObjectId, PipelineError> {
        self.record(key.stage)?.output_id(key.name).map_err(|e| PipelineError::Contract(format!("ref {}: {e}", self.name)))
    }

    /// The object of an optional output (`held_out`), if the build made it.
    pub fn optional_object(&self, key: OutputKey) -> Result<Option<&ObjectId>, PipelineError> {
        Ok(self.record(key.stage)?.outputs.get(key.name).map(|o| &o.id))
    }

    /// The summary facts of stage `stage`.
    pub fn summary(&self, stage: &str) -> Result<&Value, PipelineError> {
        Ok(&self.record(stage)?.summary)
    }

    /// Every record, in pipeline order.
    pub fn records(&self) -> &[StageRecord] {
        &self.records
    }
}

/// A built graph, opened and checked: `Â` as three mapped CSR columns,
/// each document's label, the split node sets and the names. Opening
/// checks what the kernels and the trainer index by (CSR structure,
/// documents as nodes `0..D`, label ids, split nodes), so a bad build is an
/// error here and never an out-of-bounds access later.
pub struct BuiltGraph {
    /// The ref it came from (records, summaries).
    pub built: BuiltRef,
    /// `edge_index` `[2, E]`, mapped.
    pub edge_index: EdgeIndex,
    /// `edge_attr` `[E]`, mapped.
    pub edge_attr: EdgeAttr,
    /// `row_ptr` `[N + 1]`, mapped.
    pub row_ptr: RowPtr,
    /// The files of `edge_index`, `edge_attr` and `row_ptr`.
    pub mapped_paths: [PathBuf; 3],
    /// Label id of each document node `0..D`.
    pub labels: Vec<i64>,
    /// Label names by id.
    pub label_names: Vec<String>,
    /// Document names by node.
    pub doc_names: Vec<String>,
    /// Train, validation and test document nodes.
    pub splits: splits::Splits,
}

impl BuiltGraph {
    /// Opens and checks the graph of ref `name`.
    pub fn open(store: &Store, name: &str) -> Result<Self, PipelineError> {
        let built = BuiltRef::open(store, name)?;
        let bad = |what: String| PipelineError::Contract(format!("ref {name}: {what}"));
        let edge_index = EdgeIndex::open(store, built.object(Graph::EDGE_INDEX)?)?;
        let edge_attr = EdgeAttr::open(store, built.object(Graph::EDGE_ATTR)?)?;
        let row_ptr = RowPtr::open(store, built.object(Graph::ROW_PTR)?)?;
        check_graph(&edge_index, &edge_attr, &row_ptr).map_err(bad)?;
        let n = edge_index.num_nodes();
        let nodes = tables::get_nodes(store, built.object(Graph::NODES)?)?;
        let label_names = tables::get_labels(store, built.object(Graph::LABELS)?)?;
        let s = tables::get_splits(store, built.object(Splits::SPLITS)?)?;
        if nodes.kind.len() != n {
            return Err(bad(format!("the node table has {} rows for a graph of {n} nodes", nodes.kind.len())));
        }
        let num_docs = nodes.kind.iter().take_while(|k| *k == tables::DOC_NODE).count();
        if nodes.kind[num_docs..].iter().any(|k| k == tables::DOC_NODE) {
            return Err(bad("node table: documents are not nodes 0..D".into()));
        }
        let labels: Vec<i64> = nodes.label_id[..num_docs].iter().map(|&l| l as i64).collect();
        if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= label_names.len()) {
            return Err(bad(format!("node table: label id {l} outside the {} labels", label_names.len())));
        }
        for which in splits::Split::ALL {
            if let Some(node) = s.nodes(which).iter().find(|&&i| i < 0 || i as usize >= num_docs) {
                return Err(bad(format!("split table: {which} node {node} is not a document node (0..{num_docs})")));
            }
        }
        let mut doc_names = nodes.name;
        doc_names.truncate(num_docs);
        let mapped_paths = [edge_index.column().id(), edge_attr.column().id(), row_ptr.column().id()].map(|id| store.object_path(id));
        Ok(BuiltGraph { mapped_paths, built, edge_index, edge_attr, row_ptr, labels, label_names, doc_names, splits: s })
    }

    /// Nodes (documents, then words).
    pub fn num_nodes(&self) -> usize {
        self.edge_index.num_nodes()
    }

    /// Document nodes (`0..D`).
    pub fn num_docs(&self) -> usize {
        self.labels.len()
    }

    /// The vocabulary (words of nodes `D..N`, with frequencies).
    pub fn vocab(&self, store: &Store) -> Result<vocab::Vocab, PipelineError> {
        Ok(tables::get_vocab(store, self.built.object(Vocab::VOCAB)?)?)
    }

    /// The test documents held out of the graph, if the build held any out.
    pub fn held_out(&self, store: &Store) -> Result<Option<Documents>, PipelineError> {
        self.built.optional_object(Ingest::HELD_OUT)?.map(|id| tables::get_documents(store, id)).transpose().map_err(Into::into)
    }
}

/// Checks that the three graph columns describe one CSR matrix: as many
/// weights as edges, `N + 1` row offsets ending at `E`, and
/// [`check_csr`].
pub fn check_graph(edge_index: &EdgeIndex, edge_attr: &EdgeAttr, row_ptr: &RowPtr) -> Result<(), String> {
    let (n, e) = (edge_index.num_nodes(), edge_index.num_edges());
    if edge_attr.values().len() != e || row_ptr.values().len() != n + 1 || row_ptr.values()[n] != e as i64 {
        return Err(format!("graph objects disagree: {e} edges in edge_index, {} weights, row_ptr of {} ending at {:?}", edge_attr.values().len(), row_ptr.values().len(), row_ptr.values().last()));
    }
    check_csr(row_ptr.values(), edge_index.cols(), n)
}

/// Checks the CSR structure kernels index by: offsets start at 0, never
/// decrease and end at `E`; every column is a node. Objects are verified
/// against their hashes, but a hash only says the bytes are the ones named,
/// not that whoever wrote them was right.
pub fn check_csr(row_ptr: &[i64], cols: &[i64], n: usize) -> Result<(), String> {
    use rayon::prelude::*;
    if row_ptr.first() != Some(&0) {
        return Err(format!("graph objects are inconsistent: row_ptr starts at {:?}, not 0", row_ptr.first()));
    }
    if let Some(r) = row_ptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(format!("graph objects are inconsistent: row_ptr decreases at row {r}"));
    }
    if let Some(k) = cols.par_iter().position_any(|&c| c < 0 || c as usize >= n) {
        return Err(format!("graph objects are inconsistent: edge {k} has column {} outside 0..{n}", cols[k]));
    }
    Ok(())
}

/// The cleaned corpus of a built ref, in the reference's `.clean.txt` form.
pub fn export_clean(store: &Store, name: &str) -> Result<String, PipelineError> {
    let built = BuiltRef::open(store, name)?;
    let vocab = tables::get_vocab(store, built.object(Vocab::VOCAB)?)?;
    let dt = tables::get_doc_tokens(store, built.object(Vocab::DOC_TOKENS)?)?;
    Ok(vocab::clean_text(&vocab, &dt))
}

#[cfg(test)]
mod tests {
    use super::check_csr;

    #[test]
    fn malformed_csr_structures_are_errors() {
        assert!(check_csr(&[0, 2, 3], &[0, 1, 1], 2).is_ok());
        let e = |rp: &[i64], cols: &[i64]| check_csr(rp, cols, 2).unwrap_err();
        assert!(e(&[1, 2, 3], &[0, 1, 1]).contains("starts at Some(1)"));
        assert!(e(&[0, 3, 2], &[0, 1, 1]).contains("decreases at row 1"));
        assert!(e(&[0, 2, 3], &[0, 2, 1]).contains("edge 1 has column 2 outside 0..2"));
        assert!(e(&[0, 2, 3], &[0, -1, 1]).contains("column -1"));
    }
}

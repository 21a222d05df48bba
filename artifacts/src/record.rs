//! Stage records and refs: the store's metadata, made tamper-evident the way
//! git's trees and commits are.
//!
//! - A [`StageRecord`] names its stage, fingerprint, parameters, inputs and
//!   each output's object id, [`ObjectKind`] and size in bytes.
//! - On disk a record is `{"digest": D, "record": {...}}`, where `D` is the
//!   BLAKE3 hash of the record's canonical JSON (object keys sorted, no
//!   whitespace; see [`StageRecord::digest`]). An edit that does not also
//!   recompute the digest is detected by every reader.
//! - A [`Ref`] names, for each stage, the fingerprint *and the digest* of its
//!   record, so a ref pins exactly one record content per stage; a record
//!   pins its objects by content hash. From a ref down to the bytes, every
//!   link is a hash: a Merkle chain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;

/// What kind of file an object is; checked by `verify` (the object must
/// decode as its kind) and by readers that expect an output of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Arrow IPC file of the `[2, E]` int64 edge index ([`crate::EdgeIndex`]).
    EdgeIndex,
    /// Arrow IPC file of the `[E]` float32 edge weights ([`crate::EdgeAttr`]).
    EdgeAttr,
    /// Arrow IPC file of the `[N + 1]` int64 CSR row offsets ([`crate::RowPtr`]).
    RowPtr,
    /// A Parquet table ([`crate::publish_table`]).
    Table,
}

impl ObjectKind {
    /// The name used in records and messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::EdgeIndex => "edge_index",
            ObjectKind::EdgeAttr => "edge_attr",
            ObjectKind::RowPtr => "row_ptr",
            ObjectKind::Table => "table",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One output of a stage: the object, what kind of file it is, its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The object.
    pub id: ObjectId,
    /// Its kind.
    pub kind: ObjectKind,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A stage record: what one run of a stage with a given fingerprint produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    /// Stage name ("ingest", "tokenize", ...).
    pub stage: String,
    /// Fingerprint (hex BLAKE3) of stage, code version, params and inputs.
    pub fingerprint: String,
    /// The stage implementation's version; bump it when its output changes.
    pub code_version: u32,
    /// The canonical parameters the stage read.
    pub params: serde_json::Value,
    /// Input name -> content hash (objects of earlier stages or raw files).
    pub inputs: BTreeMap<String, String>,
    /// Output name -> object, kind and size.
    pub outputs: BTreeMap<String, Output>,
    /// Deterministic facts about the outputs (counts, sizes) for `inspect`.
    pub summary: serde_json::Value,
}

impl StageRecord {
    /// The output `name`, or an error naming the stage, the fingerprint and
    /// the outputs the record does have.
    pub fn output(&self, name: &str) -> Result<&Output, String> {
        self.outputs.get(name).ok_or_else(|| {
            let have: Vec<&str> = self.outputs.keys().map(String::as_str).collect();
            format!("record {} of stage {} has no output `{name}` (it has: {})", short(&self.fingerprint), self.stage, have.join(", "))
        })
    }

    /// The object id of output `name` (see [`StageRecord::output`]).
    pub fn output_id(&self, name: &str) -> Result<&ObjectId, String> {
        self.output(name).map(|o| &o.id)
    }

    /// The record's digest: BLAKE3 of its canonical JSON (keys sorted at
    /// every level, no whitespace), so the same content always has the same
    /// digest whatever the map order of the JSON library in use.
    pub fn digest(&self) -> String {
        let v = serde_json::to_value(self).expect("records serialise");
        blake3::hash(&canonical_json(&v)).to_hex().to_string()
    }
}

/// The bytes of a record file: the record and its digest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordFile {
    pub digest: String,
    pub record: StageRecord,
}

/// One stage of a ref: its record's fingerprint and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefStage {
    /// Stage name.
    pub stage: String,
    /// Fingerprint of the record (its file name).
    pub fingerprint: String,
    /// Digest of the record's content ([`StageRecord::digest`]).
    pub record: String,
}

impl RefStage {
    /// The entry pinning `rec`.
    pub fn of(rec: &StageRecord) -> Self {
        RefStage { stage: rec.stage.clone(), fingerprint: rec.fingerprint.clone(), record: rec.digest() }
    }
}

/// A named ref: the stages of the latest build of one config, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ref {
    /// The ref's name (usually the config's dataset name).
    pub name: String,
    /// The stages, in pipeline order.
    pub stages: Vec<RefStage>,
}

impl Ref {
    /// The entry of stage `stage`, if the ref has one.
    pub fn stage(&self, stage: &str) -> Option<&RefStage> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}

/// Computes a stage fingerprint. Paths and times never enter it: only the
/// stage name, its code version, its canonical params and its inputs' hashes.
pub fn fingerprint(stage: &str, code_version: u32, params: &serde_json::Value, inputs: &BTreeMap<String, String>) -> String {
    let canon = serde_json::json!({
        "stage": stage,
        "code_version": code_version,
        "params": params,
        "inputs": inputs,
    });
    let bytes = serde_json::to_vec(&canon).expect("JSON values always serialise");
    blake3::hash(&bytes).to_hex().to_string()
}

/// JSON with object keys sorted at every level and no whitespace.
pub(crate) fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    fn write(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (k, key) in keys.into_iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(key).expect("strings serialise"));
                    out.push(b':');
                    write(&m[key], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(a) => {
                out.push(b'[');
                for (k, x) in a.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).expect("scalars serialise")),
        }
    }
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

/// The first 12 characters of a hash, for messages.
pub(crate) fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#).unwrap();
        assert_eq!(String::from_utf8(canonical_json(&a)).unwrap(), r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[test]
    fn the_digest_changes_with_any_output() {
        let id = |c: char| ObjectId::parse(&c.to_string().repeat(64)).unwrap();
        let mut rec = StageRecord {
            stage: "graph".into(),
            fingerprint: "f".repeat(64),
            code_version: 1,
            params: serde_json::json!({"w": 20}),
            inputs: BTreeMap::new(),
            outputs: [("edge_attr".to_owned(), Output { id: id('a'), kind: ObjectKind::EdgeAttr, bytes: 10 })].into(),
            summary: serde_json::json!({}),
        };
        let d = rec.digest();
        rec.outputs.get_mut("edge_attr").unwrap().id = id('b');
        assert_ne!(rec.digest(), d);
        rec.outputs.get_mut("edge_attr").unwrap().id = id('a');
        assert_eq!(rec.digest(), d);
        rec.outputs.get_mut("edge_attr").unwrap().kind = ObjectKind::Table;
        assert_ne!(rec.digest(), d);
        assert!(rec.output("edge_index").unwrap_err().contains("has no output `edge_index` (it has: edge_attr)"));
    }
}

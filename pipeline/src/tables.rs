//! Conversions between the pipeline's in-memory structures and the store's
//! Parquet tables.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use textgcn_artifacts::{ObjectId, Store, StoreError, publish_table, read_table};

use crate::ingest::Documents;
use crate::splits::{Split, Splits};
use crate::vocab::{DocTokens, Vocab};

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols.into_iter().map(|(_, a)| a).collect()).expect("columns of one length")
}

fn strings<S: AsRef<str>>(v: &[S]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v.iter().map(|s| s.as_ref())))
}

fn bad(id: &ObjectId, detail: String) -> StoreError {
    StoreError::Format { id: id.to_string(), kind: "pipeline table", detail }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, id: &ObjectId, name: &str) -> Result<&'a T, StoreError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| bad(id, format!("missing or mistyped column `{name}`")))
}

fn string_vec(b: &RecordBatch, id: &ObjectId, name: &str) -> Result<Vec<String>, StoreError> {
    Ok(col::<StringArray>(b, id, name)?.iter().map(|s| s.unwrap_or("").to_owned()).collect())
}

/// The documents table's `split` column: train, test or empty (none).
fn corpus_splits(b: &RecordBatch, id: &ObjectId) -> Result<Vec<Option<Split>>, StoreError> {
    col::<StringArray>(b, id, "split")?
        .iter()
        .map(|s| match s.unwrap_or("") {
            "" => Ok(None),
            v => match Split::parse(v) {
                Some(k @ (Split::Train | Split::Test)) => Ok(Some(k)),
                _ => Err(bad(id, format!("unknown corpus split {v:?}"))),
            },
        })
        .collect()
}

/// Publishes the documents table.
pub fn put_documents(store: &Store, d: &Documents) -> Result<ObjectId, StoreError> {
    let splits: Vec<&str> = d.splits.iter().map(|s| s.map_or("", Split::as_str)).collect();
    publish_table(store, &batch(vec![("name", strings(&d.names)), ("split", strings(&splits)), ("label", strings(&d.labels)), ("text", strings(&d.texts))]))
}

/// Reads the documents table without the text column.
pub fn get_document_meta(store: &Store, id: &ObjectId) -> Result<Documents, StoreError> {
    let b = textgcn_artifacts::read_table_columns(store, id, Some(&["name", "split", "label"]))?;
    Ok(Documents { names: string_vec(&b, id, "name")?, splits: corpus_splits(&b, id)?, labels: string_vec(&b, id, "label")?, texts: Vec::new(), replacements: 0 })
}

/// Reads the documents table.
pub fn get_documents(store: &Store, id: &ObjectId) -> Result<Documents, StoreError> {
    let b = read_table(store, id)?;
    Ok(Documents {
        names: string_vec(&b, id, "name")?,
        splits: corpus_splits(&b, id)?,
        labels: string_vec(&b, id, "label")?,
        texts: string_vec(&b, id, "text")?,
        replacements: 0,
    })
}

/// Reads one string column of a table (e.g. the documents' `text`).
pub fn get_string_column(store: &Store, id: &ObjectId, name: &str) -> Result<StringArray, StoreError> {
    let b = textgcn_artifacts::read_table_columns(store, id, Some(&[name]))?;
    Ok(col::<StringArray>(&b, id, name)?.clone())
}

/// Publishes cleaned documents (tokens joined by single spaces).
pub fn put_tokens(store: &Store, docs: &[String]) -> Result<ObjectId, StoreError> {
    publish_table(store, &batch(vec![("tokens", strings(docs))]))
}

/// Reads cleaned documents.
pub fn get_tokens(store: &Store, id: &ObjectId) -> Result<StringArray, StoreError> {
    get_string_column(store, id, "tokens")
}

/// Publishes the vocabulary table (id, word, freq, df).
pub fn put_vocab(store: &Store, v: &Vocab) -> Result<ObjectId, StoreError> {
    publish_table(
        store,
        &batch(vec![
            ("id", Arc::new(UInt32Array::from_iter_values(0..v.words.len() as u32))),
            ("word", strings(&v.words)),
            ("freq", Arc::new(UInt64Array::from(v.freq.clone()))),
            ("df", Arc::new(UInt64Array::from(v.df.clone()))),
        ]),
    )
}

/// Reads the vocabulary table.
pub fn get_vocab(store: &Store, id: &ObjectId) -> Result<Vocab, StoreError> {
    let b = read_table(store, id)?;
    Ok(Vocab {
        words: string_vec(&b, id, "word")?,
        freq: col::<UInt64Array>(&b, id, "freq")?.values().to_vec(),
        df: col::<UInt64Array>(&b, id, "df")?.values().to_vec(),
    })
}

/// Publishes id-encoded documents as one `List<UInt32>` column.
pub fn put_doc_tokens(store: &Store, t: &DocTokens) -> Result<ObjectId, StoreError> {
    let offsets: Vec<i32> = t.offsets.iter().map(|&o| i32::try_from(o).expect("the vocab stage refuses more than 2^31 - 1 tokens")).collect();
    let field = Arc::new(Field::new("item", DataType::UInt32, false));
    let list = ListArray::new(field, arrow_buffer::OffsetBuffer::new(offsets.into()), Arc::new(UInt32Array::from(t.ids.clone())), None);
    publish_table(store, &batch(vec![("tokens", Arc::new(list))]))
}

/// Reads id-encoded documents.
pub fn get_doc_tokens(store: &Store, id: &ObjectId) -> Result<DocTokens, StoreError> {
    let b = read_table(store, id)?;
    let list = col::<ListArray>(&b, id, "tokens")?;
    let vals = list.values().as_any().downcast_ref::<UInt32Array>().ok_or_else(|| bad(id, "token ids are not UInt32".into()))?;
    let base = list.value_offsets()[0];
    Ok(DocTokens {
        offsets: list.value_offsets().iter().map(|&o| (o - base) as usize).collect(),
        ids: vals.values()[base as usize..*list.value_offsets().last().unwrap_or(&0) as usize].to_vec(),
    })
}

/// The `kind` of a document node in the node table.
pub const DOC_NODE: &str = "doc";
/// The `kind` of a word node in the node table.
pub const WORD_NODE: &str = "word";

/// The node table: documents then words; label ids index the sorted labels.
pub fn put_nodes(store: &Store, docs: &Documents, vocab: &Vocab, labels: &[String]) -> Result<ObjectId, StoreError> {
    let n = docs.names.len() + vocab.words.len();
    let mut kind = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut label_id = Int32Builder::new();
    for (i, nm) in docs.names.iter().enumerate() {
        kind.append_value(DOC_NODE);
        name.append_value(nm);
        label_id.append_value(labels.binary_search(&docs.labels[i]).expect("label listed") as i32);
    }
    for w in &vocab.words {
        kind.append_value(WORD_NODE);
        name.append_value(w);
        label_id.append_value(-1);
    }
    publish_table(
        store,
        &batch(vec![
            ("node", Arc::new(Int64Array::from_iter_values(0..n as i64))),
            ("kind", Arc::new(kind.finish())),
            ("name", Arc::new(name.finish())),
            ("label_id", Arc::new(label_id.finish())),
        ]),
    )
}

/// Node table contents.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// `doc` or `word`.
    pub kind: Vec<String>,
    /// Document name or word.
    pub name: Vec<String>,
    /// Label id for documents, -1 for words.
    pub label_id: Vec<i32>,
}

/// Reads the node table.
pub fn get_nodes(store: &Store, id: &ObjectId) -> Result<Nodes, StoreError> {
    let b = read_table(store, id)?;
    Ok(Nodes { kind: string_vec(&b, id, "kind")?, name: string_vec(&b, id, "name")?, label_id: col::<Int32Array>(&b, id, "label_id")?.values().to_vec() })
}

/// The label table (id, label), labels sorted.
pub fn put_labels(store: &Store, labels: &[String]) -> Result<ObjectId, StoreError> {
    publish_table(store, &batch(vec![("id", Arc::new(Int32Array::from_iter_values(0..labels.len() as i32))), ("label", strings(labels))]))
}

/// Reads the label names by id.
pub fn get_labels(store: &Store, id: &ObjectId) -> Result<Vec<String>, StoreError> {
    string_vec(&read_table(store, id)?, id, "label")
}

/// The splits table (node, split), train then val then test.
pub fn put_splits(store: &Store, s: &Splits) -> Result<ObjectId, StoreError> {
    let nodes: Vec<i64> = Split::ALL.iter().flat_map(|&k| s.nodes(k).iter().copied()).collect();
    let names: Vec<&str> = Split::ALL.iter().flat_map(|&k| std::iter::repeat_n(k.as_str(), s.nodes(k).len())).collect();
    publish_table(store, &batch(vec![("node", Arc::new(Int64Array::from(nodes))), ("split", strings(&names))]))
}

/// Reads the splits table.
pub fn get_splits(store: &Store, id: &ObjectId) -> Result<Splits, StoreError> {
    let b = read_table(store, id)?;
    let nodes = col::<Int64Array>(&b, id, "node")?;
    let names = col::<StringArray>(&b, id, "split")?;
    let mut s = Splits::default();
    for i in 0..b.num_rows() {
        let split = Split::parse(names.value(i)).ok_or_else(|| bad(id, format!("unknown split {:?}", names.value(i))))?;
        s.nodes_mut(split).push(nodes.value(i));
    }
    Ok(s)
}

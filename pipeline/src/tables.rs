//! Conversions between the pipeline's in-memory structures and the store's
//! Parquet tables.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use textgcn_artifacts::{ObjectId, Store, StoreError, TableSink, publish_table, publish_table_streamed, read_table};

use crate::ingest::{Document, Documents};
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

/// Publishes a table whose batches `fill` pushes with [`push`], holding
/// one row group at a time. An error of `fill` is returned as it is, and
/// nothing is published.
pub fn publish_streamed<E: From<StoreError>>(store: &Store, schema: SchemaRef, fill: impl FnOnce(&mut TableSink<'_>) -> Result<(), E>) -> Result<ObjectId, E> {
    let mut failed = None;
    let published = publish_table_streamed(store, schema, |sink| {
        fill(sink).map_err(|e| {
            failed = Some(e);
            std::io::Error::other("the table's producer failed")
        })
    });
    match (published, failed) {
        (_, Some(e)) => Err(e),
        (r, None) => r.map_err(E::from),
    }
}

/// Pushes `batch` to a streamed table (see [`publish_streamed`]).
pub fn push(store: &Store, sink: &mut TableSink<'_>, batch: RecordBatch) -> Result<(), StoreError> {
    sink.push(batch).map_err(|error| StoreError::Io { op: "writing a table in", path: store.tmp_dir(), error })
}

/// Documents per batch of a streamed documents table (a constant, so the
/// table's bytes do not depend on anything but the documents).
pub const DOC_BATCH: usize = 4096;

/// The documents table: name, split (`train`, `test` or empty), label,
/// text; no nulls.
pub fn documents_schema() -> SchemaRef {
    Arc::new(Schema::new(["name", "split", "label", "text"].map(|n| Field::new(n, DataType::Utf8, false)).to_vec()))
}

/// Documents being gathered into a batch of the documents table.
#[derive(Default)]
pub struct DocumentRows {
    name: StringBuilder,
    split: StringBuilder,
    label: StringBuilder,
    text: StringBuilder,
    len: usize,
}

impl DocumentRows {
    /// Adds a document.
    pub fn push(&mut self, d: &Document) {
        self.name.append_value(&d.name);
        self.split.append_value(d.split.map_or("", Split::as_str));
        self.label.append_value(&d.label);
        self.text.append_value(&d.text);
        self.len += 1;
    }

    /// Documents gathered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The gathered documents as a batch; starts a new one.
    pub fn take(&mut self) -> RecordBatch {
        self.len = 0;
        let cols: Vec<ArrayRef> = vec![Arc::new(self.name.finish()), Arc::new(self.split.finish()), Arc::new(self.label.finish()), Arc::new(self.text.finish())];
        RecordBatch::try_new(documents_schema(), cols).expect("columns of the documents schema")
    }
}

/// Publishes the documents `each` produces, as a documents table streamed
/// in batches of [`DOC_BATCH`]; `each` gets a function that adds one.
pub fn put_documents_streamed<E: From<StoreError> + Send>(store: &Store, each: impl FnOnce(&mut dyn FnMut(&Document) -> Result<(), E>) -> Result<(), E> + Send) -> Result<ObjectId, E> {
    put_documents_keeping_texts(store, 0, each).map(|(id, _)| id)
}

/// The documents' texts as the table holds them, in batches of
/// [`DOC_BATCH`] rows: what [`read_string_batches`] reads back from the
/// `text` column.
pub struct DocumentTexts {
    /// The batches, in document order.
    pub batches: Vec<StringArray>,
    /// Documents in all.
    pub rows: u64,
    /// The same batches' `name`, `split` and `label` columns (see
    /// [`document_meta`]).
    pub meta: Vec<RecordBatch>,
}

/// [`put_documents_streamed`], also keeping the texts it wrote (the
/// table's own buffers, no copy) as long as they hold at most `keep_up_to`
/// bytes; `None` beyond.
///
/// `each` runs on a thread of its own, handing batches of [`DOC_BATCH`]
/// documents to this one, which encodes, hashes and writes them: reading
/// and decoding a corpus overlaps writing the table. A failure on either
/// side stops both and publishes nothing; the first failure is returned
/// (the producer's, when the writer only stopped because it did).
pub fn put_documents_keeping_texts<E: From<StoreError> + Send>(store: &Store, keep_up_to: usize, each: impl FnOnce(&mut dyn FnMut(&Document) -> Result<(), E>) -> Result<(), E> + Send) -> Result<(ObjectId, Option<DocumentTexts>), E> {
    let mut texts = (keep_up_to > 0).then(|| DocumentTexts { batches: Vec::new(), rows: 0, meta: Vec::new() });
    let mut kept = 0usize;
    let mut write = |sink: &mut TableSink<'_>, batch: RecordBatch| -> Result<(), StoreError> {
        if let Some(t) = &mut texts {
            let text = batch.column(3).as_any().downcast_ref::<StringArray>().expect("the text column").clone();
            let meta = batch.project(&[0, 1, 2]).expect("the documents table's first three columns");
            kept += text.get_buffer_memory_size() + meta.get_array_memory_size();
            t.rows += text.len() as u64;
            t.batches.push(text);
            t.meta.push(meta);
            if kept > keep_up_to {
                texts = None;
            }
        }
        push(store, sink, batch)
    };
    let writing = std::time::Instant::now();
    let mut busy = std::time::Duration::ZERO;
    let id = std::thread::scope(|scope| {
        // Two batches in the channel: the producer runs ahead by at most that.
        let (batches, received) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let producer = std::thread::Builder::new()
            .name("textgcn-read".into())
            .spawn_scoped(scope, move || {
                // The writer stopped (its error is the one returned).
                let stopped = || E::from(StoreError::Io { op: "handing documents to the writer of", path: store.tmp_dir(), error: std::io::Error::other("the table's writer stopped") });
                let mut rows = DocumentRows::default();
                each(&mut |d| {
                    rows.push(d);
                    if rows.len() == DOC_BATCH {
                        batches.send(rows.take()).map_err(|_| stopped())?;
                    }
                    Ok(())
                })?;
                if !rows.is_empty() {
                    batches.send(rows.take()).map_err(|_| stopped())?;
                }
                Ok::<(), E>(())
            })
            .map_err(|error| E::from(StoreError::Io { op: "starting a reader thread for", path: store.tmp_dir(), error }))?;
        publish_streamed(store, documents_schema(), |sink| {
            let mut failed = None;
            for batch in received.iter() {
                let t = std::time::Instant::now();
                let r = write(sink, batch);
                busy += t.elapsed();
                if let Err(e) = r {
                    failed = Some(e);
                    break;
                }
            }
            // Dropping the receiver stops a producer still sending.
            drop(received);
            let produced = producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match failed {
                Some(e) => Err(E::from(e)),
                None => produced,
            }
        })
    })?;
    tracing::debug!("documents table: {:.3}s, writing it {:.3}s of that", writing.elapsed().as_secs_f64(), busy.as_secs_f64());
    Ok((id, texts))
}

/// Publishes the documents table of `d`.
pub fn put_documents(store: &Store, d: &Documents) -> Result<ObjectId, StoreError> {
    put_documents_streamed(store, |add| d.iter().try_for_each(|doc| add(&doc)))
}

/// Reads the documents table without the text column.
pub fn get_document_meta(store: &Store, id: &ObjectId) -> Result<Documents, StoreError> {
    let b = textgcn_artifacts::read_table_columns(store, id, Some(&["name", "split", "label"]))?;
    document_meta(std::slice::from_ref(&b), id)
}

/// The documents' names, splits and labels (no texts) from batches of
/// the documents table `id` holding those columns: as read from the
/// store, or as the ingest wrote them ([`DocumentTexts::meta`]).
pub fn document_meta(batches: &[RecordBatch], id: &ObjectId) -> Result<Documents, StoreError> {
    let mut d = Documents { names: Vec::new(), splits: Vec::new(), labels: Vec::new(), texts: Vec::new(), replacements: 0 };
    for b in batches {
        d.names.extend(string_vec(b, id, "name")?);
        d.splits.extend(corpus_splits(b, id)?);
        d.labels.extend(string_vec(b, id, "label")?);
    }
    Ok(d)
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

/// The tokens table: one cleaned document (tokens joined by single
/// spaces) per row.
pub fn tokens_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("tokens", DataType::Utf8, false)]))
}

/// A batch of the tokens table.
pub fn tokens_batch(docs: &[String]) -> RecordBatch {
    RecordBatch::try_new(tokens_schema(), vec![strings(docs)]).expect("one string column")
}

/// One string column of a table, `rows` at a time (the last batches may
/// be shorter), decoded from the file as it is read, with the table's row
/// count (for progress).
pub fn read_string_batches(store: &Store, id: &ObjectId, name: &str, rows: usize) -> Result<(u64, impl Iterator<Item = Result<StringArray, StoreError>> + use<>), StoreError> {
    let (id2, name) = (id.clone(), name.to_owned());
    let batches = textgcn_artifacts::read_table_batches(store, id, Some(&[&name]), rows)?;
    Ok((
        batches.rows(),
        batches.map(move |b| {
            let b = b?;
            Ok(col::<StringArray>(&b, &id2, &name)?.clone())
        }),
    ))
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

/// The doc_tokens table: one `List<UInt32>` of vocabulary ids per document.
pub fn doc_tokens_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("tokens", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false)]))
}

/// A batch of the doc_tokens table: documents of lengths `lens`, whose ids
/// follow each other in `ids`.
pub fn doc_tokens_batch(ids: &[u32], lens: &[usize]) -> RecordBatch {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(lens.iter().copied());
    let field = Arc::new(Field::new("item", DataType::UInt32, false));
    let list = ListArray::new(field, offsets, Arc::new(UInt32Array::from(ids.to_vec())), None);
    RecordBatch::try_new(doc_tokens_schema(), vec![Arc::new(list)]).expect("one list column")
}

/// Publishes id-encoded documents as one `List<UInt32>` column, streamed in
/// batches of [`DOC_BATCH`] documents.
pub fn put_doc_tokens(store: &Store, t: &DocTokens) -> Result<ObjectId, StoreError> {
    publish_streamed(store, doc_tokens_schema(), |sink| {
        for first in (0..t.num_docs()).step_by(DOC_BATCH) {
            let last = (first + DOC_BATCH).min(t.num_docs());
            let lens: Vec<usize> = (first..last).map(|d| t.offsets[d + 1] - t.offsets[d]).collect();
            push(store, sink, doc_tokens_batch(&t.ids[t.offsets[first]..t.offsets[last]], &lens))?;
        }
        Ok(())
    })
}

/// Reads id-encoded documents, a batch at a time from the file, so that
/// memory holds the ids (4 bytes a token) and one batch.
pub fn get_doc_tokens(store: &Store, id: &ObjectId) -> Result<DocTokens, StoreError> {
    let mut t = DocTokens { offsets: vec![0], ids: Vec::new() };
    for b in textgcn_artifacts::read_table_batches(store, id, None, DOC_BATCH)? {
        let b = b?;
        let list = col::<ListArray>(&b, id, "tokens")?;
        let vals = list.values().as_any().downcast_ref::<UInt32Array>().ok_or_else(|| bad(id, "token ids are not UInt32".into()))?;
        let offs = list.value_offsets();
        let (first, last) = (offs[0] as usize, offs[offs.len() - 1] as usize);
        t.ids.extend_from_slice(&vals.values()[first..last]);
        let base = t.offsets[t.offsets.len() - 1];
        t.offsets.extend(offs[1..].iter().map(|&o| base + (o as usize - first)));
    }
    Ok(t)
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

#[cfg(test)]
mod tests {
    use super::*;
    use textgcn_artifacts::OpenMode;

    fn documents(n: usize) -> Vec<Document> {
        (0..n).map(|i| Document { name: format!("d{i}"), split: Some(Split::Train), label: format!("c{}", i % 3), text: "word ".repeat(i % 7) + &i.to_string() }).collect()
    }

    /// The texts kept while writing the documents table are what reading
    /// its `text` column gives, batch for batch; beyond the byte budget
    /// none are kept, and the table is the same either way.
    #[test]
    fn kept_texts_are_the_text_column_as_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), OpenMode::Write).unwrap();
        let docs = documents(2 * DOC_BATCH + 5);
        let write = |budget| put_documents_keeping_texts::<StoreError>(&store, budget, |add| docs.iter().try_for_each(&mut *add)).unwrap();
        let (id, kept) = write(usize::MAX);
        let kept = kept.expect("within the budget");
        let (rows, read) = read_string_batches(&store, &id, "text", DOC_BATCH).unwrap();
        let read: Vec<StringArray> = read.collect::<Result<_, _>>().unwrap();
        assert_eq!((kept.rows, rows), (docs.len() as u64, docs.len() as u64));
        assert_eq!(kept.batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [DOC_BATCH, DOC_BATCH, 5]);
        assert_eq!(kept.batches, read);
        // Over the budget: nothing kept, the same table.
        let (again, none) = write(1000);
        assert!(none.is_none());
        assert_eq!(again, id);
        assert_eq!(put_documents_streamed::<StoreError>(&store, |add| docs.iter().try_for_each(add)).unwrap(), id);
    }

    /// A producer that fails after batches went to the writer (on its
    /// thread) publishes nothing and returns its own error; a rerun that
    /// succeeds publishes the table.
    #[test]
    fn a_failing_producer_publishes_nothing_after_batches_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), OpenMode::Write).unwrap();
        let docs = documents(3 * DOC_BATCH + 1);
        let objects = || std::fs::read_dir(dir.path().join("store/objects")).map(|d| d.count()).unwrap_or(0);
        let r = put_documents_streamed::<StoreError>(&store, |add| {
            docs.iter().take(2 * DOC_BATCH + 7).try_for_each(&mut *add)?;
            Err(StoreError::Io { op: "reading", path: "corpus.txt".into(), error: std::io::Error::other("line 8199 is bad") })
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("line 8199 is bad"), "{e}");
        assert_eq!(objects(), 0, "a table was published");
        put_documents_streamed::<StoreError>(&store, |add| docs.iter().try_for_each(add)).unwrap();
        assert_eq!(objects(), 1);
    }
}

//! Columnar files meant for memory mapping: one uncompressed Arrow IPC file
//! per array, one record batch, one non-null primitive column, buffers
//! 64-byte aligned.
//!
//! - `edge_index`: int64, `2·E` values, row-major `[2, E]` (all source rows,
//!   then all target columns), so the whole file body is one contiguous
//!   tensor.
//! - `edge_attr`: float32, `E` values.
//!
//! Opening maps the file, verifies its hash, and decodes it with arrow's
//! [`FileDecoder`] with alignment required, so the returned slice points into
//! the mapping: a misaligned file is an error, never a silent copy.

use std::io::Write;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, Buffer, ScalarBuffer, ToByteSlice};
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::{MetadataVersion, root_as_footer};
use arrow_schema::{Field, Schema};

use crate::error::{Result, StoreError};
use crate::id::ObjectId;
use crate::store::Store;

/// Metadata key under which a columnar file records its kind and shape.
pub const META_KEY: &str = "textgcn";

/// A primitive column mapped from a store object, without copying.
#[derive(Debug)]
pub struct MappedColumn<T: ArrowPrimitiveType> {
    id: ObjectId,
    values: ScalarBuffer<T::Native>,
    mapping: Range<usize>,
    meta: serde_json::Value,
    /// Whether `mapping` is a read-only mapping of the object's file
    /// ([`open_column`]), not bytes in memory ([`decode_column`]): only
    /// then may [`MappedColumn::release`] drop its pages.
    file: bool,
}

impl<T: ArrowPrimitiveType> Clone for MappedColumn<T> {
    fn clone(&self) -> Self {
        MappedColumn { id: self.id.clone(), values: self.values.clone(), mapping: self.mapping.clone(), meta: self.meta.clone(), file: self.file }
    }
}

impl<T: ArrowPrimitiveType> MappedColumn<T> {
    /// The values, pointing into the file mapping.
    pub fn values(&self) -> &[T::Native] {
        &self.values
    }
    /// The object this column was mapped from.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }
    /// Address range of the whole file mapping.
    pub fn mapping_range(&self) -> Range<usize> {
        self.mapping.clone()
    }
    /// Whether the values lie inside the mapping (always true: checked at
    /// open). Exposed so tests and the trainer can assert zero-copy.
    pub fn is_zero_copy(&self) -> bool {
        let p = self.values.as_ptr() as usize;
        let end = p + std::mem::size_of_val(self.values());
        self.mapping.start <= p && end <= self.mapping.end
    }
    /// Drops this process's resident pages of `values()[range]` (the
    /// whole pages inside it): the process's resident set no longer counts
    /// them, the page cache keeps them (they are the file's), and the next
    /// read of them maps them again, the same bytes. For a reader that has
    /// copied what it needs of the column (the trainer's `u32` columns of
    /// `edge_index`). A hint: whether the kernel took it is returned; a
    /// column decoded from bytes in memory keeps them (`false`).
    pub fn release(&self, range: Range<usize>) -> bool {
        if !self.file {
            return false;
        }
        let values = &self.values()[range];
        let start = values.as_ptr() as usize;
        crate::mapped::release_pages(start..start + std::mem::size_of_val(values))
    }
    /// The JSON metadata stored with the column (kind, shape, ...).
    pub fn meta(&self) -> &serde_json::Value {
        &self.meta
    }
}

/// Publishes `values` as a single-column IPC file. `meta` must be a JSON
/// object with at least `"kind"`; it is stored as one schema metadata entry
/// (a single key keeps the bytes deterministic).
pub fn publish_column<T: ArrowPrimitiveType>(store: &Store, field: &str, values: Vec<T::Native>, meta: serde_json::Value) -> Result<ObjectId> {
    publish_column_streamed::<T>(store, field, values.len(), meta, |sink| sink.push(&values))
}

/// Receives the values of a column being published by
/// [`publish_column_streamed`], in order, and writes them straight into
/// the object file.
pub struct ColumnSink<'a, N: ArrowNativeType> {
    out: &'a mut dyn Write,
    remaining: usize,
    _values: PhantomData<N>,
}

impl<N: ArrowNativeType> ColumnSink<'_, N> {
    /// Appends `values`. More values than the declared length is an error.
    pub fn push(&mut self, values: &[N]) -> std::io::Result<()> {
        if values.len() > self.remaining {
            return Err(std::io::Error::other(format!("{} values more than the column's declared length", values.len() - self.remaining)));
        }
        self.remaining -= values.len();
        self.out.write_all(values.to_byte_slice())
    }
}

/// Publishes a single-column IPC file of `len` values that `fill` pushes
/// in order, without holding them: the same bytes as [`publish_column`]
/// with the values in memory (it is that function's writer), so a column
/// larger than memory can be written.
///
/// How: arrow's IPC writer is given a batch whose values buffer is an
/// untouched anonymous mapping of the right length (no memory is used
/// until a page is touched, and none is), and writes the file through
/// [`Splice`], which passes the framing (schema, batch header, padding,
/// footer) through and, in place of the placeholder's bytes, writes what
/// `fill` pushes. Pushing fewer or more than `len` values is an error and
/// publishes nothing.
pub fn publish_column_streamed<T: ArrowPrimitiveType>(
    store: &Store,
    field: &str,
    len: usize,
    meta: serde_json::Value,
    fill: impl FnOnce(&mut ColumnSink<'_, T::Native>) -> std::io::Result<()>,
) -> Result<ObjectId> {
    let format_error = |detail: String| StoreError::Format { id: String::from("(new)"), kind: "column", detail };
    let bytes = len.checked_mul(std::mem::size_of::<T::Native>()).ok_or_else(|| format_error(format!("{len} values overflow the address space")))?;
    let placeholder = if bytes == 0 {
        Buffer::from_vec(Vec::<T::Native>::new())
    } else {
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .no_reserve_swap()
            .map_anon()
            .map_err(|e| format_error(format!("reserving {bytes} bytes of address space for a streamed column: {e}")))?;
        Buffer::from(bytes::Bytes::from_owner(map))
    };
    let hole = {
        let p = placeholder.as_ptr() as usize;
        p..p + bytes
    };
    let array = PrimitiveArray::<T>::new(ScalarBuffer::new(placeholder, 0, len), None);
    let meta_s = serde_json::to_string(&meta).expect("json");
    let schema = Arc::new(Schema::new_with_metadata(
        vec![Field::new(field, T::DATA_TYPE, false)],
        [(META_KEY.to_owned(), meta_s)].into_iter().collect::<std::collections::HashMap<_, _>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).map_err(|e| format_error(e.to_string()))?;
    let opts = IpcWriteOptions::try_new(64, false, MetadataVersion::V5).expect("valid IPC options");
    store.publish(|w| {
        let mut splice = Splice { out: w, hole, len, fill: Some(fill), _values: PhantomData };
        let mut fw = FileWriter::try_new_with_options(&mut splice, &schema, opts).map_err(arrow_to_io)?;
        fw.write(&batch).map_err(arrow_to_io)?;
        fw.finish().map_err(arrow_to_io)?;
        drop(fw);
        match splice.fill.take() {
            // An empty column has no body bytes to replace: its filler must
            // push nothing.
            Some(fill) if len == 0 => splice.run(fill),
            Some(_) => Err(std::io::Error::other("the IPC writer never wrote the column's values (streamed publishing needs arrow to write buffers by reference)")),
            None => Ok(()),
        }
    })
}

/// An I/O error from arrow's writer, with the original error when it was one.
fn arrow_to_io(e: arrow_schema::ArrowError) -> std::io::Error {
    match e {
        arrow_schema::ArrowError::IoError(_, source) => source,
        e => std::io::Error::other(e),
    }
}

/// The writer under arrow's [`FileWriter`] in [`publish_column_streamed`]:
/// bytes pass through to `out`, except the one write of the placeholder
/// buffer (recognised by its address, never read), which `fill` replaces.
struct Splice<'a, F, N> {
    out: &'a mut (dyn Write + Send),
    hole: Range<usize>,
    len: usize,
    fill: Option<F>,
    _values: PhantomData<N>,
}

impl<F, N> Splice<'_, F, N>
where
    F: FnOnce(&mut ColumnSink<'_, N>) -> std::io::Result<()>,
    N: ArrowNativeType,
{
    fn run(&mut self, fill: F) -> std::io::Result<()> {
        let mut sink = ColumnSink { out: &mut *self.out, remaining: self.len, _values: PhantomData };
        fill(&mut sink)?;
        if sink.remaining != 0 {
            return Err(std::io::Error::other(format!("{} of the column's {} values were never written", sink.remaining, self.len)));
        }
        Ok(())
    }
}

impl<F, N> Write for Splice<'_, F, N>
where
    F: FnOnce(&mut ColumnSink<'_, N>) -> std::io::Result<()>,
    N: ArrowNativeType,
{
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let p = buf.as_ptr() as usize;
        if buf.is_empty() || !self.hole.contains(&p) {
            return self.out.write(buf);
        }
        if p != self.hole.start || buf.len() != self.hole.len() {
            return Err(std::io::Error::other("the IPC writer split the column's values; they cannot be streamed"));
        }
        let fill = self.fill.take().ok_or_else(|| std::io::Error::other("the IPC writer wrote the column's values twice"))?;
        self.run(fill)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Maps, verifies and decodes a column published by [`publish_column`].
/// `kind` is checked against the stored metadata.
pub fn open_column<T: ArrowPrimitiveType>(store: &Store, id: &ObjectId, kind: &'static str) -> Result<MappedColumn<T>> {
    let column = decode_column(bytes::Bytes::from_owner(store.map_verified(id)?), id, kind)?;
    Ok(MappedColumn { file: true, ..column })
}

/// Decodes the bytes of a columnar file (already verified) without copying
/// them; any malformation is a [`StoreError::Format`] naming `id`. Public
/// for the fuzz targets.
pub fn decode_column<T: ArrowPrimitiveType>(bytes: bytes::Bytes, id: &ObjectId, kind: &'static str) -> Result<MappedColumn<T>> {
    let mapping = {
        let p = bytes.as_ptr() as usize;
        p..p + bytes.len()
    };
    let fmt = |detail: String| StoreError::Format { id: id.to_string(), kind, detail };
    crate::error::decode_guard(fmt, || decode_ipc(bytes, mapping, id, kind))
}

fn decode_ipc<T: ArrowPrimitiveType>(bytes: bytes::Bytes, mapping: Range<usize>, id: &ObjectId, kind: &'static str) -> Result<MappedColumn<T>> {
    let fmt = |detail: String| StoreError::Format { id: id.to_string(), kind, detail };
    let buffer = Buffer::from(bytes);
    if buffer.len() < 10 + 8 {
        return Err(fmt(format!("file of {} bytes is too short for Arrow IPC", buffer.len())));
    }
    let trailer_start = buffer.len() - 10;
    let trailer: [u8; 10] = buffer[trailer_start..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| fmt(e.to_string()))?;
    if footer_len > trailer_start {
        return Err(fmt("footer length exceeds file".into()));
    }
    let footer = root_as_footer(&buffer[trailer_start - footer_len..trailer_start]).map_err(|e| fmt(format!("bad footer: {e}")))?;
    let schema = footer.schema().ok_or_else(|| fmt("no schema".into()))?;
    // arrow 59's `fb_to_schema` unwraps the field list: a footer without
    // one is refused here, and any other malformation is caught by
    // `decode_guard` as the decoder's failure.
    if schema.fields().is_none() {
        return Err(fmt("schema has no field list".into()));
    }
    let schema = Arc::new(arrow_ipc::convert::fb_to_schema(schema));
    if schema.fields().len() != 1 || schema.field(0).data_type() != &T::DATA_TYPE {
        return Err(fmt(format!("expected one {} column, found schema {schema}", T::DATA_TYPE)));
    }
    let meta: serde_json::Value = schema
        .metadata()
        .get(META_KEY)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| fmt(format!("missing `{META_KEY}` metadata")))?;
    if meta.get("kind").and_then(|k| k.as_str()) != Some(kind) {
        return Err(fmt(format!("metadata says kind {:?}", meta.get("kind"))));
    }
    let blocks: Vec<arrow_ipc::Block> = footer.recordBatches().map(|b| b.iter().copied().collect()).unwrap_or_default();
    if blocks.len() != 1 {
        return Err(fmt(format!("expected exactly one record batch, found {}", blocks.len())));
    }
    let block = &blocks[0];
    let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
    let off = block.offset() as usize;
    if block.offset() < 0 || off.checked_add(block_len).is_none_or(|end| end > trailer_start) {
        return Err(fmt("record batch block lies outside the file".into()));
    }
    let decoder = FileDecoder::new(schema, footer.version()).with_require_alignment(true);
    let data = buffer.slice_with_length(off, block_len);
    let batch = decoder
        .read_record_batch(block, &data)
        .map_err(|e| fmt(e.to_string()))?
        .ok_or_else(|| fmt("empty record batch message".into()))?;
    let col = batch.column(0);
    if col.null_count() != 0 {
        return Err(fmt("column has nulls".into()));
    }
    let arr = col.as_any().downcast_ref::<PrimitiveArray<T>>().ok_or_else(|| fmt("column has wrong type".into()))?;
    let out = MappedColumn { id: id.clone(), values: arr.values().clone(), mapping, meta, file: false };
    if !out.is_zero_copy() {
        return Err(fmt("decoded values do not point into the mapping".into()));
    }
    Ok(out)
}

/// The normalised adjacency's index: `[2, E]` int64, rows then columns.
#[derive(Clone, Debug)]
pub struct EdgeIndex {
    col: MappedColumn<Int64Type>,
    num_edges: usize,
    num_nodes: usize,
}

impl EdgeIndex {
    /// Publishes `data` (`2·E` values: rows, then columns) for a graph of
    /// `num_nodes` nodes.
    pub fn publish(store: &Store, data: Vec<i64>, num_nodes: usize) -> Result<ObjectId> {
        assert!(data.len().is_multiple_of(2), "edge_index holds rows then columns");
        Self::publish_streamed(store, data.len() / 2, num_nodes, |sink| sink.push(&data))
    }
    /// Publishes the `2·E` values that `fill` pushes (all rows, then all
    /// columns) without holding them; the same bytes as [`EdgeIndex::publish`].
    pub fn publish_streamed(store: &Store, num_edges: usize, num_nodes: usize, fill: impl FnOnce(&mut ColumnSink<'_, i64>) -> std::io::Result<()>) -> Result<ObjectId> {
        let values = num_edges.checked_mul(2).ok_or_else(|| StoreError::Format { id: String::from("(new)"), kind: "edge_index", detail: format!("{num_edges} edges") })?;
        publish_column_streamed::<Int64Type>(store, "edge_index", values, serde_json::json!({"kind": "edge_index", "shape": [2, num_edges], "num_nodes": num_nodes}), fill)
    }
    /// Maps and verifies an `edge_index` object.
    pub fn open(store: &Store, id: &ObjectId) -> Result<Self> {
        Self::from_column(open_column::<Int64Type>(store, id, "edge_index")?)
    }
    /// Checks a decoded column's shape metadata against its data.
    pub fn from_column(col: MappedColumn<Int64Type>) -> Result<Self> {
        let bad = |d: String| StoreError::Format { id: col.id().to_string(), kind: "edge_index", detail: d };
        let n = col.values().len();
        let shape_e = col.meta()["shape"][1].as_u64().ok_or_else(|| bad("no shape".into()))?;
        let num_nodes = col.meta()["num_nodes"].as_u64().ok_or_else(|| bad("no num_nodes".into()))?;
        if shape_e.checked_mul(2) != Some(n as u64) {
            return Err(bad(format!("shape says {shape_e} edges, data holds {n} values")));
        }
        let num_nodes = usize::try_from(num_nodes).map_err(|_| bad(format!("{num_nodes} nodes")))?;
        Ok(EdgeIndex { col, num_edges: shape_e as usize, num_nodes })
    }
    /// Number of edges E.
    pub fn num_edges(&self) -> usize {
        self.num_edges
    }
    /// Number of nodes N.
    pub fn num_nodes(&self) -> usize {
        self.num_nodes
    }
    /// All `2·E` values (the `[2, E]` tensor's storage).
    pub fn data(&self) -> &[i64] {
        self.col.values()
    }
    /// Source rows.
    pub fn rows(&self) -> &[i64] {
        &self.data()[..self.num_edges]
    }
    /// Target columns.
    pub fn cols(&self) -> &[i64] {
        &self.data()[self.num_edges..]
    }
    /// The underlying mapped column.
    pub fn column(&self) -> &MappedColumn<Int64Type> {
        &self.col
    }
}

/// CSR row pointers of the adjacency: int64 `[N + 1]`, so that a reader
/// never needs to touch the row half of `edge_index`.
#[derive(Clone, Debug)]
pub struct RowPtr {
    col: MappedColumn<Int64Type>,
}

impl RowPtr {
    /// Publishes `N + 1` row offsets.
    pub fn publish(store: &Store, data: Vec<i64>) -> Result<ObjectId> {
        let n = data.len();
        publish_column::<Int64Type>(store, "row_ptr", data, serde_json::json!({"kind": "row_ptr", "shape": [n]}))
    }
    /// Maps and verifies a `row_ptr` object.
    pub fn open(store: &Store, id: &ObjectId) -> Result<Self> {
        Ok(RowPtr { col: open_column::<Int64Type>(store, id, "row_ptr")? })
    }
    /// The offsets.
    pub fn values(&self) -> &[i64] {
        self.col.values()
    }
    /// The underlying mapped column.
    pub fn column(&self) -> &MappedColumn<Int64Type> {
        &self.col
    }
}

/// The normalised adjacency's weights: float32 `[E]`.
#[derive(Clone, Debug)]
pub struct EdgeAttr {
    col: MappedColumn<Float32Type>,
}

impl EdgeAttr {
    /// Publishes `E` weights.
    pub fn publish(store: &Store, data: Vec<f32>) -> Result<ObjectId> {
        Self::publish_streamed(store, data.len(), |sink| sink.push(&data))
    }
    /// Publishes the `E` weights that `fill` pushes without holding them;
    /// the same bytes as [`EdgeAttr::publish`].
    pub fn publish_streamed(store: &Store, num_edges: usize, fill: impl FnOnce(&mut ColumnSink<'_, f32>) -> std::io::Result<()>) -> Result<ObjectId> {
        publish_column_streamed::<Float32Type>(store, "edge_attr", num_edges, serde_json::json!({"kind": "edge_attr", "shape": [num_edges]}), fill)
    }
    /// Maps and verifies an `edge_attr` object.
    pub fn open(store: &Store, id: &ObjectId) -> Result<Self> {
        Ok(EdgeAttr { col: open_column::<Float32Type>(store, id, "edge_attr")? })
    }
    /// The weights, pointing into the mapping.
    pub fn values(&self) -> &[f32] {
        self.col.values()
    }
    /// The underlying mapped column.
    pub fn column(&self) -> &MappedColumn<Float32Type> {
        &self.col
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpenMode;

    /// What arrow's own writer makes of `values` held in memory: the bytes
    /// every streamed column must equal.
    fn arrow_file<T: ArrowPrimitiveType>(field: &str, values: Vec<T::Native>, meta: &serde_json::Value) -> Vec<u8> {
        let array = PrimitiveArray::<T>::new(ScalarBuffer::from(values), None);
        let schema = Arc::new(Schema::new_with_metadata(
            vec![Field::new(field, T::DATA_TYPE, false)],
            [(META_KEY.to_owned(), serde_json::to_string(meta).unwrap())].into_iter().collect::<std::collections::HashMap<_, _>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap();
        let mut out = Vec::new();
        let mut fw = FileWriter::try_new_with_options(&mut out, &schema, IpcWriteOptions::try_new(64, false, MetadataVersion::V5).unwrap()).unwrap();
        fw.write(&batch).unwrap();
        fw.finish().unwrap();
        drop(fw);
        out
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), OpenMode::Write).unwrap();
        (dir, store)
    }

    fn object_bytes(store: &Store, id: &ObjectId) -> Vec<u8> {
        store.map_verified(id).unwrap().to_vec()
    }

    #[test]
    fn streamed_columns_are_arrows_bytes_for_every_length_and_split() {
        let (_dir, store) = temp_store();
        for len in [0usize, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 100_003] {
            let ints: Vec<i64> = (0..len as i64).map(|k| k * 7 - 3).collect();
            let floats: Vec<f32> = (0..len).map(|k| k as f32 * 0.25 - 1.0).collect();
            let meta = serde_json::json!({"kind": "test", "shape": [len]});
            // Pushed in uneven pieces, including empty ones.
            let id = publish_column_streamed::<Int64Type>(&store, "v", len, meta.clone(), |sink| {
                for piece in ints.chunks(97) {
                    sink.push(&[])?;
                    sink.push(piece)?;
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(object_bytes(&store, &id), arrow_file::<Int64Type>("v", ints.clone(), &meta), "int64, {len} values");
            let id = publish_column::<Float32Type>(&store, "w", floats.clone(), meta.clone()).unwrap();
            assert_eq!(object_bytes(&store, &id), arrow_file::<Float32Type>("w", floats.clone(), &meta), "float32, {len} values");
            let back = open_column::<Float32Type>(&store, &id, "test").unwrap();
            assert_eq!(back.values(), &floats[..]);
        }
        // The graph columns: streamed and in-memory publishing agree.
        let data: Vec<i64> = vec![0, 0, 1, 1, 0, 1, 0, 1];
        let a = EdgeIndex::publish(&store, data.clone(), 2).unwrap();
        let b = EdgeIndex::publish_streamed(&store, 4, 2, |sink| {
            sink.push(&data[..4])?;
            sink.push(&data[4..])
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(EdgeIndex::open(&store, &b).unwrap().cols(), &[0, 1, 0, 1]);
    }

    /// Releasing a mapped column's pages keeps its values (the next read
    /// maps the file's pages again); a column decoded from bytes in memory
    /// is never released.
    #[test]
    fn released_pages_read_back_the_same_values() {
        let (_dir, store) = temp_store();
        let values: Vec<i64> = (0..300_000i64).map(|k| k * 31 - 7).collect();
        let id = publish_column::<Int64Type>(&store, "v", values.clone(), serde_json::json!({"kind": "t"})).unwrap();
        let column = open_column::<Int64Type>(&store, &id, "t").unwrap();
        assert_eq!(column.values(), &values[..]);
        assert!(column.release(1000..250_000));
        assert!(column.release(0..values.len()));
        assert_eq!(column.values(), &values[..]);
        let bytes = std::fs::read(store.object_path(&id)).unwrap();
        let in_memory = decode_column::<Int64Type>(bytes::Bytes::from(bytes), &id, "t").unwrap();
        assert!(!in_memory.release(0..values.len()));
        assert_eq!(in_memory.values(), &values[..]);
    }

    #[test]
    fn a_streamed_column_of_the_wrong_length_publishes_nothing() {
        let (dir, store) = temp_store();
        let short = publish_column_streamed::<Int64Type>(&store, "v", 10, serde_json::json!({"kind": "t"}), |sink| sink.push(&[1, 2, 3]));
        let err = short.unwrap_err().to_string();
        assert!(err.contains("7 of the column's 10 values were never written"), "{err}");
        let long = publish_column_streamed::<Int64Type>(&store, "v", 2, serde_json::json!({"kind": "t"}), |sink| sink.push(&[1, 2, 3]));
        let err = long.unwrap_err().to_string();
        assert!(err.contains("1 values more than the column's declared length"), "{err}");
        let empty = publish_column_streamed::<Int64Type>(&store, "v", 0, serde_json::json!({"kind": "t"}), |sink| sink.push(&[1]));
        assert!(empty.is_err());
        let failing = publish_column_streamed::<Int64Type>(&store, "v", 4, serde_json::json!({"kind": "t"}), |_| Err(std::io::Error::other("spill file unreadable")));
        let err = failing.unwrap_err().to_string();
        assert!(err.contains("spill file unreadable"), "{err}");
        let objects: Vec<_> = walk(&dir.path().join("store/objects"));
        assert!(objects.is_empty(), "published: {objects:?}");
        assert!(walk(&dir.path().join("store/tmp")).is_empty(), "temporary files left behind");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

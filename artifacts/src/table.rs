//! Tables at rest as Parquet, written deterministically: a fixed
//! `created_by`, no timestamps, no library versions, no compression and no
//! dictionaries (both measured slower than they save on the text tables).
//!
//! A table is one row group up to [`ROW_GROUP_BYTES`] of Arrow data, so
//! every table of the benchmark corpora is written whole, as it always
//! was. A larger table is written a row group at a time
//! ([`publish_table_streamed`]), so memory holds one row group, not the
//! table; each row group's bytes are those of one write of all its rows
//! (see [`TableSink`]). The bytes depend only on the batches pushed: push the
//! same batches for the same data (never batches sized by the thread
//! count). Reading streams too
//! ([`read_table_batches`]): the object is verified with `read(2)` and
//! decoded from the file a batch at a time, so neither its bytes nor the
//! whole table become resident.

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, StoreError};
use crate::id::ObjectId;
use crate::store::Store;

/// Arrow bytes of pushed batches that make one row group of a streamed
/// table (the last row group may be smaller).
pub const ROW_GROUP_BYTES: usize = 64 << 20;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by("textgcn".to_owned())
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(usize::MAX))
        .build()
}

/// Publishes a record batch as a Parquet object (one row group).
pub fn publish_table(store: &Store, batch: &RecordBatch) -> Result<ObjectId> {
    store.publish(|w| {
        let mut aw = ArrowWriter::try_new(w, batch.schema(), Some(writer_properties())).map_err(std::io::Error::other)?;
        aw.write(batch).map_err(std::io::Error::other)?;
        aw.close().map_err(std::io::Error::other)?;
        Ok(())
    })
}

/// Where [`publish_table_streamed`]'s producer pushes its batches.
///
/// A batch goes to the Parquet writer as it comes when the table's columns
/// are flat and never null and the rows written so far in the row group
/// are a multiple of the writer's mini-batch (`write_batch_size`, 1024
/// rows): the encoder cuts pages at mini-batch ends counted from the start
/// of each write, so such a write splits the row group where one write of
/// all its rows would, and the bytes are the same (tested), without the
/// copy that concatenating the batches makes. Any other batch (a list
/// column, a null-able one, a row count off the mini-batch) waits with the
/// rest of the row group, and those batches are concatenated and written
/// with one call when it is full.
pub struct TableSink<'w> {
    writer: ArrowWriter<&'w mut (dyn Write + Send)>,
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    rows: usize,
    limit: usize,
    /// Whether batches of whole mini-batches may be written as they come.
    flat: bool,
    /// The writer's mini-batch, in rows.
    mini_batch: usize,
}

impl TableSink<'_> {
    /// Appends `batch` (of the table's schema) to the table.
    pub fn push(&mut self, batch: RecordBatch) -> std::io::Result<()> {
        if batch.schema() != self.schema {
            return Err(std::io::Error::other(format!("a batch of schema {} pushed to a table of schema {}", batch.schema(), self.schema)));
        }
        self.rows += batch.num_rows();
        self.pending_bytes += batch.columns().iter().map(|c| row_bytes(c.as_ref())).sum::<usize>();
        if self.flat && self.pending.is_empty() && batch.num_rows().is_multiple_of(self.mini_batch) {
            self.writer.write(&batch).map_err(std::io::Error::other)?;
        } else {
            self.pending.push(batch);
        }
        if self.pending_bytes >= self.limit {
            self.write_row_group()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the pending batches and ends the row group.
    fn write_row_group(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let batch = arrow_select::concat::concat_batches(&self.schema, &self.pending).map_err(std::io::Error::other)?;
            self.pending.clear();
            self.writer.write(&batch).map_err(std::io::Error::other)?;
        }
        self.pending_bytes = 0;
        self.writer.flush().map_err(std::io::Error::other)
    }
}

/// Whether every column of `schema` is flat and never null: the tables
/// whose batches [`TableSink`] may write as they come.
fn flat_and_required(schema: &arrow_schema::Schema) -> bool {
    schema.fields().iter().all(|f| !f.is_nullable() && !f.data_type().is_nested())
}

/// The bytes of an array's own rows: a slice of a larger array counts its
/// rows, not the buffers it shares with the rest (arrow's slice sizes
/// count a list's whole child array).
fn row_bytes(a: &dyn arrow_array::Array) -> usize {
    use arrow_array::cast::AsArray;
    match a.data_type() {
        arrow_schema::DataType::Utf8 => {
            let o = a.as_string::<i32>().value_offsets();
            (o[o.len() - 1] - o[0]) as usize + 4 * a.len()
        }
        arrow_schema::DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            4 * a.len() + row_bytes(l.values().slice(o[0] as usize, (o[o.len() - 1] - o[0]) as usize).as_ref())
        }
        _ => a.to_data().get_slice_memory_size().unwrap_or_else(|_| a.get_array_memory_size()),
    }
}

/// Publishes the table of `schema` whose batches `fill` pushes, holding
/// one row group at a time. A table of less than [`ROW_GROUP_BYTES`] is
/// the same bytes as [`publish_table`] of its rows as one batch. If `fill`
/// fails, nothing is published.
pub fn publish_table_streamed(store: &Store, schema: SchemaRef, fill: impl FnOnce(&mut TableSink<'_>) -> std::io::Result<()>) -> Result<ObjectId> {
    publish_table_streamed_with(store, schema, ROW_GROUP_BYTES, fill)
}

/// [`publish_table_streamed`] with row groups of `limit` bytes (tests make
/// them small to reach several row groups).
pub fn publish_table_streamed_with(store: &Store, schema: SchemaRef, limit: usize, fill: impl FnOnce(&mut TableSink<'_>) -> std::io::Result<()>) -> Result<ObjectId> {
    store.publish(|w| {
        let props = writer_properties();
        let mini_batch = props.write_batch_size().max(1);
        let writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(std::io::Error::other)?;
        let flat = flat_and_required(&schema);
        let mut sink = TableSink { writer, schema, pending: Vec::new(), pending_bytes: 0, rows: 0, limit: limit.max(1), flat, mini_batch };
        fill(&mut sink)?;
        sink.write_row_group()?;
        sink.writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
}

/// The batches of a table object, decoded from its file (after checking
/// its hash) at most `batch_rows` rows at a time: only the named top-level
/// `columns` (all when `None`).
pub fn read_table_batches(store: &Store, id: &ObjectId, columns: Option<&[&str]>, batch_rows: usize) -> Result<TableBatches> {
    let fmt = |detail: String| StoreError::Format { id: id.to_string(), kind: "Parquet table", detail };
    let file = store.open_verified(id)?;
    let len = file.metadata().map_err(|error| StoreError::Io { op: "reading", path: store.object_path(id), error })?.len() as i64;
    let reader = crate::error::decode_guard(fmt, || -> Result<(ParquetRecordBatchReader, u64)> {
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fmt(e.to_string()))?;
        check_chunks(builder.metadata(), len).map_err(fmt)?;
        if let Some(cols) = columns {
            let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied());
            builder = builder.with_projection(mask);
        }
        let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        Ok((builder.with_batch_size(batch_rows.max(1)).build().map_err(|e| fmt(e.to_string()))?, rows))
    })?;
    let (reader, rows) = reader;
    Ok(TableBatches { reader, id: id.clone(), rows })
}

/// The batches of [`read_table_batches`]; a decoding failure is a
/// [`StoreError::Format`] naming the object.
pub struct TableBatches {
    reader: ParquetRecordBatchReader,
    id: ObjectId,
    rows: u64,
}

impl TableBatches {
    /// The table's rows, from its footer (for progress).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The (projected) schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        use arrow_array::RecordBatchReader;
        self.reader.schema()
    }
}

impl Iterator for TableBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let fmt = |detail: String| StoreError::Format { id: self.id.to_string(), kind: "Parquet table", detail };
        let reader = &mut self.reader;
        crate::error::decode_guard(fmt, || reader.next().transpose().map_err(|e| fmt(e.to_string()))).transpose()
    }
}

/// Reads a Parquet object (verified) into one record batch.
pub fn read_table(store: &Store, id: &ObjectId) -> Result<RecordBatch> {
    read_table_columns(store, id, None)
}

/// Reads only the named top-level columns of a Parquet object (all when
/// `columns` is `None`).
pub fn read_table_columns(store: &Store, id: &ObjectId, columns: Option<&[&str]>) -> Result<RecordBatch> {
    decode_table(store.read_verified(id)?, id, columns)
}

/// Decodes Parquet bytes (already verified) into one record batch; any
/// malformation is a [`StoreError::Format`] naming `id`. Public for the
/// fuzz targets.
pub fn decode_table(bytes: bytes::Bytes, id: &ObjectId, columns: Option<&[&str]>) -> Result<RecordBatch> {
    let fmt = |detail: String| StoreError::Format { id: id.to_string(), kind: "Parquet table", detail };
    // The parquet crate asserts (panics) on some malformed metadata, e.g. a
    // negative column chunk offset (found by the `artifact` fuzz target).
    // Check what those asserts check first, and turn any other panic of the
    // decoder into a format error as well.
    let len = bytes.len() as i64;
    crate::error::decode_guard(fmt, || -> Result<RecordBatch> {
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| fmt(e.to_string()))?;
        check_chunks(builder.metadata(), len).map_err(fmt)?;
        if let Some(cols) = columns {
            let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied());
            builder = builder.with_projection(mask);
        }
        let schema: Arc<arrow_schema::Schema> = builder.schema().clone();
        let reader = builder.with_batch_size(1 << 30).build().map_err(|e| fmt(e.to_string()))?;
        let mut batches = Vec::new();
        for b in reader {
            batches.push(b.map_err(|e| fmt(e.to_string()))?);
        }
        only_batch(&schema, &batches).map_err(fmt)
    })
}

/// Checks that verified bytes are a Parquet file this store could have
/// written (its footer parses, its column chunks lie inside the file),
/// without decoding the data.
pub(crate) fn check_table(bytes: bytes::Bytes, id: &ObjectId) -> Result<()> {
    let fmt = |detail: String| StoreError::Format { id: id.to_string(), kind: "Parquet table", detail };
    let len = bytes.len() as i64;
    crate::error::decode_guard(fmt, || {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| fmt(e.to_string()))?;
        check_chunks(builder.metadata(), len).map_err(fmt)
    })
}

/// Column chunks must lie inside the file (the parquet crate asserts on
/// a negative offset instead of returning an error).
fn check_chunks(meta: &parquet::file::metadata::ParquetMetaData, len: i64) -> std::result::Result<(), String> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
            let size = col.compressed_size();
            if start < 0 || size < 0 || col.data_page_offset() < 0 || start.checked_add(size).is_none_or(|end| end > len) {
                return Err(format!("row group {g}, column {c}: chunk at {start} of {size} bytes lies outside the file"));
            }
        }
    }
    Ok(())
}

/// The one batch a table of one row group decodes to (read with a batch
/// size above any row count); none for an empty table.
fn only_batch(schema: &Arc<arrow_schema::Schema>, batches: &[RecordBatch]) -> std::result::Result<RecordBatch, String> {
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema.clone())),
        1 => Ok(batches[0].clone()),
        n => Err(format!("expected one batch, found {n}")),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
    use arrow_array::{ArrayRef, StringArray, UInt32Array};

    use super::*;
    use crate::store::OpenMode;

    /// A table like the pipeline's: a string column and a list column,
    /// with values of uneven sizes (so pages break at uneven places).
    fn table(rows: usize) -> RecordBatch {
        let mut text = StringBuilder::new();
        let mut list = ListBuilder::new(UInt32Builder::new());
        for r in 0..rows {
            text.append_value("w".repeat(r % 97));
            for k in 0..(r * 7) % 53 {
                list.values().append_value((r * 31 + k) as u32);
            }
            list.append(r % 11 != 5);
        }
        let id: ArrayRef = Arc::new(UInt32Array::from_iter_values(0..rows as u32));
        RecordBatch::try_from_iter([("id", id), ("text", Arc::new(text.finish()) as ArrayRef), ("tokens", Arc::new(list.finish()) as ArrayRef)]).unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("s"), OpenMode::Write).unwrap();
        (d, s)
    }

    /// Pushes `t` in pieces of `sizes` rows (cycling).
    fn pieces(t: &RecordBatch, sizes: &[usize]) -> Vec<RecordBatch> {
        let (mut at, mut k, mut out) = (0, 0, Vec::new());
        while at < t.num_rows() {
            let n = sizes[k % sizes.len()].min(t.num_rows() - at);
            out.push(t.slice(at, n));
            at += n;
            k += 1;
        }
        out
    }

    #[test]
    fn a_streamed_table_below_a_row_group_is_the_bytes_of_one_batch() {
        let (_d, s) = store();
        let t = table(30_000);
        let whole = publish_table(&s, &t).unwrap();
        for sizes in [&[1][..], &[1000, 7, 4096], &[30_000]] {
            let streamed = publish_table_streamed(&s, t.schema(), |sink| {
                for p in pieces(&t, sizes) {
                    sink.push(p)?;
                }
                assert_eq!(sink.rows(), 30_000);
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, whole, "pieces of {sizes:?}");
        }
    }

    /// A table of flat, never-null columns (ids and ~500-byte texts: ~15 MB,
    /// many pages) pushed in batches of whole mini-batches is written as the
    /// batches come, and is still the bytes of one write; so when a batch
    /// off the mini-batch makes the rest wait, and over several row groups
    /// the rows read back the same.
    #[test]
    fn flat_batches_written_as_they_come_are_the_bytes_of_one_write() {
        let (_d, s) = store();
        let rows = 30_000;
        let text: StringArray = (0..rows).map(|r| Some("abcdefgh".repeat(r % 125) + &r.to_string())).collect();
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new("id", arrow_schema::DataType::UInt32, false), arrow_schema::Field::new("text", arrow_schema::DataType::Utf8, false)]));
        let t = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt32Array::from_iter_values(0..rows as u32)), Arc::new(text)]).unwrap();
        assert!(flat_and_required(&schema));
        let whole = publish_table(&s, &t).unwrap();
        for sizes in [&[1024][..], &[4096], &[3072, 1024, 8192], &[4096, 4096, 1000, 4096], &[1], &[rows]] {
            let streamed = publish_table_streamed(&s, schema.clone(), |sink| {
                for p in pieces(&t, sizes) {
                    sink.push(p)?;
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, whole, "pieces of {sizes:?}");
        }
        let id = publish_table_streamed_with(&s, schema.clone(), 1 << 20, |sink| {
            for p in pieces(&t, &[2048]) {
                sink.push(p)?;
            }
            Ok(())
        })
        .unwrap();
        let back: Vec<RecordBatch> = read_table_batches(&s, &id, None, 4096).unwrap().collect::<Result<_>>().unwrap();
        assert!(back.len() > 1);
        assert_eq!(arrow_select::concat::concat_batches(&schema, &back).unwrap(), t);
    }

    #[test]
    fn large_tables_are_row_groups_read_back_in_batches() {
        let (_d, s) = store();
        let t = table(20_000);
        let push = |sizes: &[usize]| {
            publish_table_streamed_with(&s, t.schema(), 256 << 10, |sink| {
                for p in pieces(&t, sizes) {
                    sink.push(p)?;
                }
                Ok(())
            })
            .unwrap()
        };
        let id = push(&[3000]);
        assert_eq!(push(&[3000]), id, "the same pushes give the same bytes");
        let bytes = s.read_verified(&id).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().metadata().clone();
        assert!(meta.num_row_groups() > 2, "{} row groups", meta.num_row_groups());
        // Read back whole, in small batches, and a projected column.
        let batches: Vec<RecordBatch> = read_table_batches(&s, &id, None, 777).unwrap().collect::<Result<_>>().unwrap();
        assert!(batches.iter().all(|b| b.num_rows() <= 777));
        assert_eq!(arrow_select::concat::concat_batches(&t.schema(), &batches).unwrap(), t);
        let texts: Vec<RecordBatch> = read_table_batches(&s, &id, Some(&["text"]), 5000).unwrap().collect::<Result<_>>().unwrap();
        let texts = arrow_select::concat::concat_batches(&texts[0].schema(), &texts).unwrap();
        assert_eq!(texts.num_columns(), 1);
        assert_eq!(texts.column(0), t.column(1));
    }

    #[test]
    fn a_failing_producer_or_a_wrong_batch_publishes_nothing() {
        let (d, s) = store();
        let t = table(100);
        let e = publish_table_streamed(&s, t.schema(), |sink| {
            sink.push(t.slice(0, 50))?;
            Err(std::io::Error::other("the producer failed"))
        });
        assert!(e.unwrap_err().to_string().contains("the producer failed"));
        let other = RecordBatch::try_from_iter([("x", Arc::new(UInt32Array::from(vec![1])) as ArrayRef)]).unwrap();
        let e = publish_table_streamed(&s, t.schema(), |sink| sink.push(other.clone()));
        assert!(e.unwrap_err().to_string().contains("pushed to a table of schema"));
        let objects = walk(&d.path().join("s/objects"));
        assert_eq!(objects, 0, "nothing published");
        assert_eq!(std::fs::read_dir(d.path().join("s/tmp")).unwrap().count(), 0, "no temp file left");
    }

    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p).map_or(0, |r| r.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { walk(&p) } else { 1 }).sum())
    }

    #[test]
    fn reading_a_damaged_table_is_an_error_naming_it() {
        let (d, s) = store();
        let id = publish_table(&s, &table(10)).unwrap();
        let path = s.object_path(&id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let e = read_table_batches(&s, &id, None, 10).err().expect("refused");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        drop(d);
    }
}

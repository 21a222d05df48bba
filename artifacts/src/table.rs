//! Tables at rest as Parquet, written deterministically: a fixed
//! `created_by`, no timestamps, no library versions, no compression and no
//! dictionaries (both measured slower than they save on the text tables),
//! one row group.

use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, StoreError};
use crate::id::ObjectId;
use crate::store::Store;

/// Publishes a record batch as a Parquet object.
pub fn publish_table(store: &Store, batch: &RecordBatch) -> Result<ObjectId> {
    let props = WriterProperties::builder()
        .set_created_by("textgcn".to_owned())
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(usize::MAX))
        .build();
    store.publish(|w| {
        let mut aw = ArrowWriter::try_new(w, batch.schema(), Some(props)).map_err(std::io::Error::other)?;
        aw.write(batch).map_err(std::io::Error::other)?;
        aw.close().map_err(std::io::Error::other)?;
        Ok(())
    })
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

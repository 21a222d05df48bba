//! The one reader of tabular files (CSV, TSV, NDJSON, Parquet), for the
//! ingest stage's corpora and `textgcn-train predict`'s new documents.
//!
//! It reads only the columns asked for, each as optional strings: CSV and
//! TSV with the `csv` crate (RFC 4180 quoting, `""` escapes, quoted line
//! breaks, blank lines skipped), NDJSON with `serde_json` (one object per
//! line), Parquet with the `parquet` crate's arrow reader (projected to the
//! asked columns). A JSON `null` or missing key and a Parquet null are
//! `None`; CSV has no nulls (an empty field is an empty string). Text
//! columns must hold text; the others may hold text, integers or booleans
//! (written as their decimal or `true`/`false` form).

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{IngestError, check_binary, lines, read, strip};
use crate::config::{Encoding, Format};

/// A column to read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted<'a> {
    /// Its name in the file.
    pub name: &'a str,
    /// The setting that named it (config key or flag), for errors.
    pub key: &'static str,
    /// Whether it must hold text (a document's text), not numbers.
    pub text: bool,
    /// Whether a file without it is an error (else it reads as nulls).
    pub required: bool,
}

/// The columns read: `columns[i]` is the `i`-th wanted column, one value
/// per data row.
#[derive(Debug)]
pub(super) struct Columns {
    /// The file's column names: in file order (CSV, TSV, Parquet), or every
    /// key of any object, sorted (NDJSON).
    pub header: Vec<String>,
    /// Data rows.
    pub rows: usize,
    /// One vector per wanted column.
    pub columns: Vec<Vec<Option<String>>>,
}

impl Columns {
    /// Whether the file has a column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.header.iter().any(|h| h == name)
    }
}

fn tabular(path: &Path, message: String) -> IngestError {
    IngestError::Tabular { path: path.into(), message }
}

fn missing(path: &Path, w: &Wanted, header: &[String]) -> IngestError {
    IngestError::MissingColumn { path: path.into(), column: w.name.into(), key: w.key, available: header.to_vec() }
}

/// Reads the `wanted` columns of a CSV, TSV, NDJSON or Parquet file. A
/// file without data rows is [`IngestError::Empty`]; a required column the
/// file lacks is [`IngestError::MissingColumn`], an optional one reads as
/// nulls ([`Columns::has`] tells).
pub(super) fn read_columns(path: &Path, format: Format, encoding: Encoding, wanted: &[Wanted]) -> Result<Columns, IngestError> {
    let cols = match format {
        Format::Csv => read_csv(path, b',', encoding, wanted)?,
        Format::Tsv => read_csv(path, b'\t', encoding, wanted)?,
        Format::Ndjson => read_ndjson(path, wanted)?,
        Format::Parquet => read_parquet(path, wanted)?,
        Format::Textgcn => unreachable!("textgcn corpora are read by read_textgcn"),
    };
    if cols.rows == 0 {
        return Err(IngestError::Empty { path: path.into() });
    }
    Ok(cols)
}

/// The file decoded to UTF-8 per `encoding` (errors name the line and
/// offset). A leading UTF-8 byte-order mark is dropped whatever the
/// encoding (as Latin-1 it would be the text `ï»¿` before the first
/// column's name).
fn decoded(path: &Path, encoding: Encoding) -> Result<String, IngestError> {
    let mut raw = read(path)?;
    check_binary(path, &raw)?;
    let bom = raw.starts_with(b"\xef\xbb\xbf");
    if bom {
        raw.drain(..3);
    }
    Ok(match encoding {
        Encoding::Utf8 => String::from_utf8(raw).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let raw = e.as_bytes();
            let line = raw[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            IngestError::InvalidUtf8 { path: path.into(), line, offset: at + 3 * bom as usize, byte: raw[at] }
        })?,
        Encoding::Latin1 => raw.iter().map(|&b| b as char).collect(),
        Encoding::Utf8Lossy => String::from_utf8_lossy(&raw).into_owned(),
    })
}

fn read_csv(path: &Path, sep: u8, encoding: Encoding, wanted: &[Wanted]) -> Result<Columns, IngestError> {
    let text = decoded(path, encoding)?;
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(IngestError::Empty { path: path.into() });
    }
    if let Some((line, got, want)) = super::first_ragged_line(text.as_bytes(), sep) {
        return Err(tabular(path, format!("line {line}: {got} fields, but the header has {want} (ragged row)")));
    }
    let mut reader = csv::ReaderBuilder::new().delimiter(sep).has_headers(true).from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| tabular(path, e.to_string());
    let header: Vec<String> = reader.headers().map_err(csv_error)?.iter().map(str::to_owned).collect();
    let index = positions(path, &header, wanted)?;
    let mut columns = vec![Vec::new(); wanted.len()];
    let mut rows = 0;
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        rows += 1;
        for (c, i) in columns.iter_mut().zip(&index) {
            c.push(i.and_then(|i| record.get(i)).map(str::to_owned));
        }
    }
    Ok(Columns { header, rows, columns })
}

/// Where each wanted column is in `header` (a required one must be there).
fn positions(path: &Path, header: &[String], wanted: &[Wanted]) -> Result<Vec<Option<usize>>, IngestError> {
    wanted
        .iter()
        .map(|w| match header.iter().position(|h| h == w.name) {
            None if w.required => Err(missing(path, w, header)),
            i => Ok(i),
        })
        .collect()
}

/// Reads NDJSON: every non-blank line one object. A line that is not one
/// is reported with its line and column.
fn read_ndjson(path: &Path, wanted: &[Wanted]) -> Result<Columns, IngestError> {
    let raw = read(path)?;
    check_binary(path, &raw)?;
    let mut keys = std::collections::BTreeSet::new();
    let mut columns = vec![Vec::new(); wanted.len()];
    let mut rows = 0;
    for (k, (_, line)) in lines(&raw).iter().enumerate() {
        let line = strip(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |message: String| tabular(path, format!("line {}: {message}", k + 1));
        let object = match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => return Err(at("expected a JSON object ({\"column\": value, ...})".into())),
            Err(e) => return Err(at(format!("invalid JSON at column {}: {}", e.column(), e.to_string().split(" at line ").next().unwrap_or_default()))),
        };
        rows += 1;
        for key in object.keys() {
            if !keys.contains(key) {
                keys.insert(key.clone());
            }
        }
        for (c, w) in columns.iter_mut().zip(wanted) {
            let value = match object.get(w.name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) if !w.text => Some(v.to_string()),
                Some(v) => return Err(IngestError::Row { path: path.into(), row: rows, message: format!("column {:?} ({}) holds {}, not {}", w.name, w.key, json_kind(v), if w.text { "text" } else { "text, a number or a boolean" }) }),
            };
            c.push(value);
        }
    }
    let header: Vec<String> = keys.into_iter().collect();
    for w in wanted.iter().filter(|w| w.required) {
        if !header.iter().any(|h| h == w.name) {
            return Err(missing(path, w, &header));
        }
    }
    Ok(Columns { header, rows, columns })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "text",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_parquet(path: &Path, wanted: &[Wanted]) -> Result<Columns, IngestError> {
    let parquet_error = |e: parquet::errors::ParquetError| tabular(path, e.to_string());
    let f = File::open(path).map_err(|error| IngestError::Io { path: path.into(), error })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(parquet_error)?;
    let schema = builder.schema().clone();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let index = positions(path, &header, wanted)?;
    for (w, i) in wanted.iter().zip(&index) {
        if let Some(i) = *i {
            let t = schema.field(i).data_type();
            if !readable(t, w.text) {
                return Err(tabular(path, format!("column {:?} ({}) holds {t} values, not {}", w.name, w.key, if w.text { "text" } else { "text, integers or booleans" })));
            }
        }
    }
    // The projected batches hold the present columns in file order.
    let mut order: Vec<usize> = index.iter().flatten().copied().collect();
    order.sort_unstable();
    order.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), order.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(parquet_error)?;
    let mut columns = vec![Vec::new(); wanted.len()];
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| tabular(path, e.to_string()))?;
        rows += batch.num_rows();
        for (c, i) in columns.iter_mut().zip(&index) {
            match i {
                Some(i) => strings(batch.column(order.binary_search(i).expect("projected")), c),
                None => c.resize(rows, None),
            }
        }
    }
    Ok(Columns { header, rows, columns })
}

/// Whether a Parquet column of type `t` can be read as a column of text
/// (`text`) or of values.
fn readable(t: &DataType, text: bool) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => readable(v, text),
        DataType::Boolean | DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => !text,
        _ => false,
    }
}

/// Appends the values of `a` (of a [`readable`] type) as strings.
fn strings(a: &ArrayRef, out: &mut Vec<Option<String>>) {
    let push = |out: &mut Vec<Option<String>>, f: &dyn Fn(usize) -> String| out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| f(i))));
    match a.data_type() {
        DataType::Utf8 => out.extend(a.as_string::<i32>().iter().map(|v| v.map(str::to_owned))),
        DataType::LargeUtf8 => out.extend(a.as_string::<i64>().iter().map(|v| v.map(str::to_owned))),
        DataType::Utf8View => out.extend(a.as_string_view().iter().map(|v| v.map(str::to_owned))),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let mut values = Vec::new();
            strings(d.values(), &mut values);
            let keys = d.normalized_keys();
            out.extend((0..a.len()).map(|i| if a.is_valid(i) { values[keys[i]].clone() } else { None }));
        }
        DataType::Boolean => push(out, &|i| a.as_boolean().value(i).to_string()),
        DataType::Int8 => push(out, &|i| a.as_primitive::<Int8Type>().value(i).to_string()),
        DataType::Int16 => push(out, &|i| a.as_primitive::<Int16Type>().value(i).to_string()),
        DataType::Int32 => push(out, &|i| a.as_primitive::<Int32Type>().value(i).to_string()),
        DataType::Int64 => push(out, &|i| a.as_primitive::<Int64Type>().value(i).to_string()),
        DataType::UInt8 => push(out, &|i| a.as_primitive::<UInt8Type>().value(i).to_string()),
        DataType::UInt16 => push(out, &|i| a.as_primitive::<UInt16Type>().value(i).to_string()),
        DataType::UInt32 => push(out, &|i| a.as_primitive::<UInt32Type>().value(i).to_string()),
        DataType::UInt64 => push(out, &|i| a.as_primitive::<UInt64Type>().value(i).to_string()),
        t => unreachable!("checked readable: {t}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, DictionaryArray, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};

    use super::*;

    const TEXT: Wanted = Wanted { name: "text", key: "k.text", text: true, required: true };
    const LABEL: Wanted = Wanted { name: "label", key: "k.label", text: false, required: true };
    const MAYBE: Wanted = Wanted { name: "name", key: "k.name", text: false, required: false };

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn read(p: &Path, format: Format, encoding: Encoding) -> Result<Columns, IngestError> {
        read_columns(p, format, encoding, &[TEXT, LABEL, MAYBE])
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn csv_quotes_line_breaks_byte_order_marks_and_blank_lines() {
        let d = tempfile::tempdir().unwrap();
        let csv = b"\xef\xbb\xbflabel,text,other\r\na,\"hello, world\r\nsecond\",x\r\n\r\nb,\"say \"\"hi\"\"\",\n,,y\n";
        for enc in [Encoding::Utf8, Encoding::Latin1, Encoding::Utf8Lossy] {
            let t = read(&file(&d, "c.csv", csv), Format::Csv, enc).unwrap();
            assert_eq!(t.header, ["label", "text", "other"], "{enc:?}");
            assert_eq!(t.rows, 3);
            assert_eq!(t.columns[0], some(&["hello, world\r\nsecond", "say \"hi\"", ""]));
            assert_eq!(t.columns[1], some(&["a", "b", ""]), "an empty CSV field is an empty string");
            assert!(!t.has("name") && t.columns[2] == [None, None, None]);
        }
        let tsv = read(&file(&d, "c.tsv", b"text\tlabel\tname\nx y\t1\tn1\n"), Format::Tsv, Encoding::Utf8).unwrap();
        assert_eq!((tsv.columns[0].clone(), tsv.columns[2].clone()), (some(&["x y"]), some(&["n1"])));
        let latin = read(&file(&d, "l.csv", b"text,label\ncaf\xe9,a\n"), Format::Csv, Encoding::Latin1).unwrap();
        assert_eq!(latin.columns[0], some(&["caf\u{e9}"]));
    }

    #[test]
    fn csv_errors_name_the_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let e = read(&file(&d, "m.csv", b"body,label\nx,a\n"), Format::Csv, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("m.csv: no column \"text\" (k.text); the file has [\"body\", \"label\"]"), "{e}");
        let e = read(&file(&d, "u.csv", b"\xef\xbb\xbftext,label\nx\xff,a\n"), Format::Csv, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("u.csv:2: invalid UTF-8 at byte offset 15 (byte 0xff); use encoding = \"latin-1\" or \"utf-8-lossy\""), "{e}");
        let e = read(&file(&d, "r.csv", b"text,label\nx,a,b\n"), Format::Csv, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("r.csv: line 2: 3 fields, but the header has 2 (ragged row)"), "{e}");
        assert!(matches!(read(&file(&d, "h.csv", b"text,label\n"), Format::Csv, Encoding::Utf8), Err(IngestError::Empty { .. })));
        assert!(matches!(read(&file(&d, "e.csv", b" \n"), Format::Csv, Encoding::Utf8), Err(IngestError::Empty { .. })));
        assert!(matches!(read(&file(&d, "z.csv", b"text,label\nx\x00,a\n"), Format::Csv, Encoding::Utf8), Err(IngestError::Nul { line: 2, .. })));
    }

    #[test]
    fn ndjson_values_become_text_and_text_must_be_text() {
        let d = tempfile::tempdir().unwrap();
        let t = read(&file(&d, "a.ndjson", b"{\"text\": \"x\", \"label\": 3}\n\n{\"label\": true, \"text\": null, \"name\": \"n\"}\n{\"text\": \"z\", \"label\": null}\n"), Format::Ndjson, Encoding::Utf8).unwrap();
        assert_eq!(t.header, ["label", "name", "text"]);
        assert_eq!(t.rows, 3);
        assert_eq!(t.columns[0], [Some("x".into()), None, Some("z".into())]);
        assert_eq!(t.columns[1], [Some("3".into()), Some("true".into()), None]);
        assert_eq!(t.columns[2], [None, Some("n".into()), None]);
        let e = read(&file(&d, "n.ndjson", b"{\"text\": \"x\", \"label\": 1}\n\n{\"text\": 12, \"label\": 1}\n"), Format::Ndjson, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("n.ndjson: row 2: column \"text\" (k.text) holds a number, not text"), "{e}");
        let e = read(&file(&d, "o.ndjson", b"{\"text\": \"x\", \"label\": [1]}\n"), Format::Ndjson, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("o.ndjson: row 1: column \"label\" (k.label) holds an array, not text, a number or a boolean"), "{e}");
        let e = read(&file(&d, "m.ndjson", b"{\"text\": \"x\"}\n"), Format::Ndjson, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("m.ndjson: no column \"label\" (k.label); the file has [\"text\"]"), "{e}");
        let e = read(&file(&d, "b.ndjson", b"{\"text\": \"x\"}\n[1]\n"), Format::Ndjson, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("b.ndjson: line 2: expected a JSON object ({\"column\": value, ...})"), "{e}");
    }

    fn parquet(d: &tempfile::TempDir, name: &str, cols: Vec<(&str, ArrayRef)>, row_group: usize) -> std::path::PathBuf {
        let p = d.path().join(name);
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(row_group)).build();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        p
    }

    #[test]
    fn parquet_reads_strings_dictionaries_and_integers_across_row_groups() {
        let d = tempfile::tempdir().unwrap();
        let labels: DictionaryArray<arrow_array::types::Int32Type> = vec![Some("b"), None, Some("a"), Some("b"), Some("a")].into_iter().collect();
        let texts: ArrayRef = Arc::new(LargeStringArray::from(vec![Some("t0"), Some("t1"), None, Some("t3"), Some("t4")]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), Some(8), Some(9), None, Some(11)]));
        let p = parquet(&d, "a.parquet", vec![("name", ids), ("extra", Arc::new(Float64Array::from(vec![0.5; 5]))), ("label", Arc::new(labels)), ("text", texts)], 2);
        let t = read(&p, Format::Parquet, Encoding::Utf8).unwrap();
        assert_eq!(t.header, ["name", "extra", "label", "text"]);
        assert_eq!(t.rows, 5);
        assert_eq!(t.columns[0], [Some("t0".into()), Some("t1".into()), None, Some("t3".into()), Some("t4".into())]);
        assert_eq!(t.columns[1], [Some("b".into()), None, Some("a".into()), Some("b".into()), Some("a".into())]);
        assert_eq!(t.columns[2], [Some("7".into()), Some("8".into()), Some("9".into()), None, Some("11".into())]);
        // Views and booleans; a column the file lacks reads as nulls.
        let p = parquet(&d, "b.parquet", vec![("text", Arc::new(StringViewArray::from(vec!["x", "y"]))), ("label", Arc::new(BooleanArray::from(vec![true, false])))], 10);
        let t = read(&p, Format::Parquet, Encoding::Utf8).unwrap();
        assert_eq!((t.columns[0].clone(), t.columns[1].clone(), t.columns[2].clone()), (some(&["x", "y"]), some(&["true", "false"]), vec![None, None]));
    }

    #[test]
    fn parquet_types_that_are_not_text_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = parquet(&d, "n.parquet", vec![("text", Arc::new(Int64Array::from(vec![1, 2]))), ("label", Arc::new(StringArray::from(vec!["a", "b"])))], 10);
        let e = read(&p, Format::Parquet, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("n.parquet: column \"text\" (k.text) holds Int64 values, not text"), "{e}");
        let p = parquet(&d, "f.parquet", vec![("text", Arc::new(StringArray::from(vec!["a", "b"]))), ("label", Arc::new(Float64Array::from(vec![1.0, 2.0])))], 10);
        let e = read(&p, Format::Parquet, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("f.parquet: column \"label\" (k.label) holds Float64 values, not text, integers or booleans"), "{e}");
        let p = parquet(&d, "m.parquet", vec![("body", Arc::new(StringArray::from(vec!["a"]))), ("label", Arc::new(StringArray::from(vec!["a"])))], 10);
        let e = read(&p, Format::Parquet, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("m.parquet: no column \"text\" (k.text); the file has [\"body\", \"label\"]"), "{e}");
        let e = read(&file(&d, "junk.parquet", b"not parquet at all"), Format::Parquet, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", d.path().join("junk.parquet").display())), "{e}");
    }
}

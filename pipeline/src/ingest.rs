//! Reading corpora into the documents table (name, split, label, text).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

mod tabular;

use tabular::Wanted;

use crate::splits::Split;
use crate::config::{Encoding, Format, IngestConfig};

/// A corpus problem, with the position a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        /// (Said in the message, so not also returned as the source.)
        error: std::io::Error,
    },
    /// An invalid UTF-8 sequence under `encoding = "utf-8"`.
    #[error("{}:{line}: invalid UTF-8 at byte offset {offset} (byte 0x{byte:02x}); use encoding = \"latin-1\" or \"utf-8-lossy\"", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Byte offset from the start of the file.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// The file starts with a UTF-16 byte-order mark.
    #[error("{}: starts with a UTF-16 byte-order mark; convert the file to UTF-8 or Latin-1", path.display())]
    Utf16 {
        /// The file.
        path: PathBuf,
    },
    /// A NUL byte: binary data, not text.
    #[error("{}:{line}: NUL byte at byte offset {offset}; this looks like a binary file", path.display())]
    Nul {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Byte offset.
        offset: usize,
    },
    /// The corpus has no documents.
    #[error("{}: the corpus is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A raw document that is only whitespace.
    #[error("{}:{line}: document {name:?} is blank; remove it or set ingest.keep_blank_documents = true", path.display())]
    Blank {
        /// The corpus file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Its name from the meta file.
        name: String,
    },
    /// Corpus and meta disagree on the number of documents.
    #[error("{} has {corpus} documents but {} has {meta} lines", corpus_path.display(), meta_path.display())]
    CountMismatch {
        /// Corpus file.
        corpus_path: PathBuf,
        /// Documents in it.
        corpus: usize,
        /// Meta file.
        meta_path: PathBuf,
        /// Lines in it.
        meta: usize,
    },
    /// A malformed meta line.
    #[error("{}:{line}: {message}", path.display())]
    Meta {
        /// Meta file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A tabular file could not be parsed (the parser's message).
    #[error("{}: {message}", path.display())]
    Tabular {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A column named in the config is not in the file.
    #[error("{}: no column {column:?} ({key}); the file has {available:?}", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The config key that named it.
        key: &'static str,
        /// The columns present.
        available: Vec<String>,
    },
    /// A bad value in one row of a tabular file.
    #[error("{}: row {row}: {message}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based data row (not counting a header).
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A document longer than `ingest.max_document_bytes`.
    #[error("{}:{line}: document {name:?} is {bytes} bytes long, more than ingest.max_document_bytes ({limit}){hint}; a build holds about 7 copies of its longest document, so raise the limit only with the memory for it", path.display())]
    TooLong {
        /// The corpus file.
        path: PathBuf,
        /// 1-based line (or data row).
        line: usize,
        /// The document's name.
        name: String,
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        limit: u64,
        /// A guess at the cause, when there is one.
        hint: String,
    },
    /// Fewer than two classes.
    #[error("{}: only one class ({label:?}); classification needs at least two", path.display())]
    SingleClass {
        /// Meta file.
        path: PathBuf,
        /// The one label.
        label: String,
    },
}

impl IngestError {
    /// The file the error is in, and its 1-based line (or row of a table)
    /// when one is to blame: what an API reports beside the message.
    pub fn location(&self) -> (&Path, Option<usize>) {
        use IngestError::*;
        match self {
            InvalidUtf8 { path, line, .. } | Nul { path, line, .. } | Blank { path, line, .. } | Meta { path, line, .. } | TooLong { path, line, .. } => (path, Some(*line)),
            Row { path, row, .. } => (path, Some(*row)),
            Io { path, .. } | Utf16 { path } | Empty { path } | Tabular { path, .. } | MissingColumn { path, .. } | SingleClass { path, .. } => (path, None),
            CountMismatch { meta_path, .. } => (meta_path, None),
        }
    }
}

/// The ingested corpus, column-wise.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Documents {
    /// Unique document names.
    pub names: Vec<String>,
    /// The corpus's split of each document (train or test), `None` when
    /// the corpus has none (`splits.random_split` decides).
    pub splits: Vec<Option<Split>>,
    /// Class labels.
    pub labels: Vec<String>,
    /// Decoded text.
    pub texts: Vec<String>,
    /// U+FFFD replacements made under `utf-8-lossy`.
    pub replacements: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(|source| IngestError::Io { path: path.into(), error: source })
}

/// Splits on `\n` like Python's `readlines()` on bytes: a final line without
/// newline counts, a final newline does not start another document.
/// Returns `(line_start_offset, line_bytes)`.
fn lines(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push((start, &bytes[start..i]));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push((start, &bytes[start..]));
    }
    out
}

/// Strips ASCII whitespace on both sides, as Python's `bytes.strip()`.
fn strip(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn check_binary(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(IngestError::Utf16 { path: path.into() });
    }
    if let Some(offset) = memchr0(bytes) {
        let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(IngestError::Nul { path: path.into(), line, offset });
    }
    Ok(())
}

fn memchr0(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

fn decode(path: &Path, line_no: usize, offset: usize, raw: &[u8], enc: Encoding, replacements: &mut u64) -> Result<String, IngestError> {
    match enc {
        Encoding::Latin1 if raw.is_ascii() => Ok(std::str::from_utf8(raw).expect("ASCII is UTF-8").to_owned()),
        Encoding::Latin1 => Ok(raw.iter().map(|&b| b as char).collect()),
        Encoding::Utf8 => std::str::from_utf8(raw).map(str::to_owned).map_err(|e| {
            let at = e.valid_up_to();
            IngestError::InvalidUtf8 { path: path.into(), line: line_no, offset: offset + at, byte: raw[at] }
        }),
        Encoding::Utf8Lossy => {
            *replacements += raw.utf8_chunks().filter(|c| !c.invalid().is_empty()).count() as u64;
            Ok(String::from_utf8_lossy(raw).into_owned())
        }
    }
}

/// Reads the original TextGCN format: `corpus` (one document per line) and
/// `meta` (`name<TAB>split<TAB>label` per line, split field containing
/// `test` or `train`).
pub fn read_textgcn(corpus: &Path, meta: &Path, cfg: &IngestConfig) -> Result<Documents, IngestError> {
    let mut docs = Documents::default();
    docs.replacements = stream_textgcn(corpus, meta, cfg, |d| docs.push(d))?;
    Ok(docs)
}

/// [`read_textgcn`] on bytes already read (`corpus` and `meta` name the
/// files in errors). Public for the fuzz targets.
pub fn parse_textgcn(corpus: &Path, cbytes: &[u8], meta: &Path, mbytes: &[u8], cfg: &IngestConfig) -> Result<Documents, IngestError> {
    let mut docs = Documents::default();
    docs.replacements = stream_lines(corpus, || Ok(std::io::Cursor::new(cbytes)), meta, mbytes, cfg, |d| docs.push(d))?;
    Ok(docs)
}

/// One document of a corpus, as the ingest stage publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its unique name.
    pub name: String,
    /// The corpus's split of it, if the corpus has one.
    pub split: Option<Split>,
    /// Its class label.
    pub label: String,
    /// Its decoded text, stripped of ASCII whitespace on both sides.
    pub text: String,
}

/// [`read_textgcn`] a document at a time: `each` gets the documents in
/// corpus order, and memory holds the meta file's names and labels and one
/// document, never the corpus. The corpus is read twice, with the same
/// checks in the same order as a reading of the whole file: first a scan
/// (binary content, line count against the meta file, the longest line),
/// then the documents. Returns the U+FFFD replacements made
/// (`utf-8-lossy`). An error of `each` stops the reading and is returned.
pub fn stream_textgcn<E: From<IngestError>>(corpus: &Path, meta: &Path, cfg: &IngestConfig, each: impl FnMut(Document) -> Result<(), E>) -> Result<u64, E> {
    let open = || std::fs::File::open(corpus).map(|f| std::io::BufReader::with_capacity(1 << 20, f));
    stream_lines(corpus, open, meta, &read(meta)?, cfg, each)
}

/// What the scan of a corpus found: enough to report every whole-file
/// problem before the first document is decoded.
#[derive(Default)]
struct CorpusScan {
    /// Documents (lines, Python's `readlines()` semantics).
    lines: usize,
    /// It starts with a UTF-16 byte-order mark.
    utf16: bool,
    /// The first NUL byte: (1-based line, byte offset).
    nul: Option<(usize, usize)>,
    /// The first line longer than the limit: (0-based line, bytes, CRs in it).
    too_long: Option<(usize, usize, usize)>,
}

fn scan_corpus(mut r: impl std::io::Read, limit: u64) -> std::io::Result<CorpusScan> {
    let mut scan = CorpusScan::default();
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut line_len, mut crs, mut first) = (0usize, 0usize, 0usize, true);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        if first {
            // A BOM split across reads is not worth handling: reads are 1 MiB.
            scan.utf16 = chunk.starts_with(&[0xff, 0xfe]) || chunk.starts_with(&[0xfe, 0xff]);
            first = false;
        }
        // Line ends, CRs and NULs are rare bytes: a vectorised search for
        // the three (a loop over every byte took 46 ms of 20ng's 36 MB).
        let mut start = 0;
        for i in memchr::memchr3_iter(b'\n', b'\r', 0, chunk) {
            match chunk[i] {
                b'\n' => {
                    line_len += i - start;
                    if scan.too_long.is_none() && line_len as u64 > limit {
                        scan.too_long = Some((scan.lines, line_len, crs));
                    }
                    scan.lines += 1;
                    (line_len, crs, start) = (0, 0, i + 1);
                }
                b'\r' => crs += 1,
                _ if scan.nul.is_none() => scan.nul = Some((scan.lines + 1, offset + i)),
                _ => {}
            }
        }
        line_len += n - start;
        offset += n;
    }
    if line_len > 0 {
        if scan.too_long.is_none() && line_len as u64 > limit {
            scan.too_long = Some((scan.lines, line_len, crs));
        }
        scan.lines += 1;
    }
    Ok(scan)
}

/// The entries of a meta file, checked line by line.
struct MetaEntries {
    names: Vec<String>,
    splits: Vec<Split>,
    labels: Vec<String>,
}

fn parse_meta(meta: &Path, mbytes: &[u8]) -> Result<MetaEntries, IngestError> {
    let mlines = lines(mbytes);
    let mut m = MetaEntries { names: Vec::with_capacity(mlines.len()), splits: Vec::with_capacity(mlines.len()), labels: Vec::with_capacity(mlines.len()) };
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(mlines.len());
    for (i, (off, raw)) in mlines.iter().enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw.trim_ascii_start().strip_suffix(b"\r").unwrap_or(raw.trim_ascii_start())).map_err(|e| IngestError::InvalidUtf8 {
            path: meta.into(),
            line,
            offset: off + e.valid_up_to(),
            byte: raw[e.valid_up_to()],
        })?;
        let bad = |message: String| IngestError::Meta { path: meta.into(), line, message };
        let fields: Vec<&str> = text.split('\t').collect();
        if fields.len() < 3 {
            return Err(bad(format!("expected name<TAB>split<TAB>label, found {} field(s)", fields.len())));
        }
        let (name, split, label) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if name.is_empty() {
            return Err(bad("empty document name".into()));
        }
        if label.is_empty() {
            return Err(bad(format!("document {name:?} has no label")));
        }
        let Some(split) = split_of(split) else {
            return Err(bad(format!("unknown split value {split:?} for document {name:?} (expected a value containing `train` or `test`)")));
        };
        if let Some(first) = seen.insert(name.to_owned(), i) {
            return Err(bad(format!("duplicate document name {name:?} (first on line {})", first + 1)));
        }
        m.names.push(name.to_owned());
        m.splits.push(split);
        m.labels.push(label.to_owned());
    }
    Ok(m)
}

/// The streaming reader behind [`stream_textgcn`] and [`parse_textgcn`]:
/// `open` opens the corpus (twice).
fn stream_lines<R: std::io::BufRead, E: From<IngestError>>(
    corpus: &Path,
    open: impl Fn() -> std::io::Result<R>,
    meta: &Path,
    mbytes: &[u8],
    cfg: &IngestConfig,
    mut each: impl FnMut(Document) -> Result<(), E>,
) -> Result<u64, E> {
    let io = |error: std::io::Error| IngestError::Io { path: corpus.into(), error };
    let scan = scan_corpus(open().map_err(io)?, cfg.max_document_bytes).map_err(io)?;
    if scan.utf16 {
        return Err(IngestError::Utf16 { path: corpus.into() }.into());
    }
    if let Some((line, offset)) = scan.nul {
        return Err(IngestError::Nul { path: corpus.into(), line, offset }.into());
    }
    check_binary(meta, mbytes)?;
    if scan.lines == 0 {
        return Err(IngestError::Empty { path: corpus.into() }.into());
    }
    let mcount = lines(mbytes).len();
    if scan.lines != mcount {
        return Err(IngestError::CountMismatch { corpus_path: corpus.into(), corpus: scan.lines, meta_path: meta.into(), meta: mcount }.into());
    }
    let m = parse_meta(meta, mbytes)?;
    if let Some((i, bytes, crs)) = scan.too_long {
        let hint = if crs > 1 { format!(" (it holds {crs} carriage returns: a file with CR line ends? convert them to LF)") } else { String::new() };
        return Err(IngestError::TooLong { path: corpus.into(), line: i + 1, name: m.names[i].clone(), bytes, limit: cfg.max_document_bytes, hint }.into());
    }
    let mut replacements = 0;
    let mut r = open().map_err(io)?;
    let (mut buf, mut off) = (Vec::new(), 0usize);
    for i in 0..scan.lines {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io)?;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let stripped = strip(raw);
        if stripped.is_empty() && !cfg.keep_blank_documents {
            return Err(IngestError::Blank { path: corpus.into(), line: i + 1, name: m.names[i].clone() }.into());
        }
        let lead = raw.len() - raw.trim_ascii_start().len();
        let text = decode(corpus, i + 1, off + lead, stripped, cfg.encoding, &mut replacements)?;
        off += n;
        each(Document { name: m.names[i].clone(), split: Some(m.splits[i]), label: m.labels[i].clone(), text })?;
    }
    check_classes(&m.labels, meta)?;
    Ok(replacements)
}

/// Refuses a corpus of one class (`path` names its labels' file).
fn check_classes(labels: &[String], path: &Path) -> Result<(), IngestError> {
    match labels.first() {
        Some(first) if labels.iter().all(|l| l == first) => Err(IngestError::SingleClass { path: path.into(), label: first.clone() }),
        _ => Ok(()),
    }
}

impl Documents {
    /// Where `name` was first used (an index into `names`), if the corpus
    /// named a document so before; else records it in `seen`.
    fn first_use(&self, seen: &mut HashSet<String>, name: &str) -> Option<usize> {
        if seen.insert(name.to_owned()) { None } else { self.names.iter().position(|n| n == name) }
    }

    /// Appends a document.
    pub fn push(&mut self, d: Document) -> Result<(), IngestError> {
        self.names.push(d.name);
        self.splits.push(d.split);
        self.labels.push(d.label);
        self.texts.push(d.text);
        Ok(())
    }

    /// The documents, in order.
    pub fn iter(&self) -> impl Iterator<Item = Document> + '_ {
        (0..self.names.len()).map(|i| Document { name: self.names[i].clone(), split: self.splits[i], label: self.labels[i].clone(), text: self.texts[i].clone() })
    }

    /// Splits off the test documents: returns them, keeping the others.
    pub fn take_test(&mut self) -> Documents {
        let mut kept = Documents { replacements: self.replacements, ..Default::default() };
        let mut test = Documents::default();
        let old = std::mem::take(self);
        for (((n, s), l), t) in old.names.into_iter().zip(old.splits).zip(old.labels).zip(old.texts) {
            let to = if s == Some(Split::Test) { &mut test } else { &mut kept };
            to.names.push(n);
            to.splits.push(s);
            to.labels.push(l);
            to.texts.push(t);
        }
        *self = kept;
        test
    }
}

/// Classifies a split field: a value containing `test` is test, else one
/// containing `train` is train.
fn split_of(v: &str) -> Option<Split> {
    if v.contains("test") {
        Some(Split::Test)
    } else if v.contains("train") {
        Some(Split::Train)
    } else {
        None
    }
}

/// The first record whose field count differs from the header's, as
/// `(line, fields, header fields)`. Quote-aware (`"` quotes, `""` escapes,
/// quoted newlines); blank lines are skipped.
#[doc(hidden)]
pub fn first_ragged_line(bytes: &[u8], sep: u8) -> Option<(usize, usize, usize)> {
    let (mut line, mut start_line, mut fields, mut in_quotes, mut any) = (1usize, 1usize, 1usize, false, false);
    let mut header: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else if b == b'\n' {
                line += 1;
            }
        } else if b == b'"' {
            in_quotes = true;
            any = true;
        } else if b == sep {
            fields += 1;
            any = true;
        } else if b == b'\n' {
            if any {
                match header {
                    None => header = Some(fields),
                    Some(h) if h != fields => return Some((start_line, fields, h)),
                    _ => {}
                }
            }
            line += 1;
            start_line = line;
            fields = 1;
            any = false;
        } else if b != b'\r' {
            any = true;
        }
        i += 1;
    }
    match header {
        Some(h) if any && h != fields => Some((start_line, fields, h)),
        _ => None,
    }
}

/// New documents to classify (`textgcn-train predict`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewDocuments {
    /// Names: the name column's values, else `line-<n>` / `row-<n>`.
    pub names: Vec<String>,
    /// Decoded text.
    pub texts: Vec<String>,
    /// True labels, when the input has a label column.
    pub labels: Option<Vec<String>>,
}

/// Reads documents to classify: plain text (`Format::Textgcn`: one
/// document per line, blank lines are empty documents), or a tabular file
/// with a text column and optionally label and name columns. With
/// `label_column` `None`, a column called `label` is used when present.
pub fn read_new_documents(path: &Path, format: Format, encoding: Encoding, text_column: &str, label_column: Option<&str>, name_column: Option<&str>) -> Result<NewDocuments, IngestError> {
    if format == Format::Textgcn {
        let bytes = read(path)?;
        check_binary(path, &bytes)?;
        let mut out = NewDocuments::default();
        let mut replacements = 0;
        for (i, (off, raw)) in lines(&bytes).iter().enumerate() {
            let lead = raw.len() - raw.trim_ascii_start().len();
            out.texts.push(decode(path, i + 1, off + lead, strip(raw), encoding, &mut replacements)?);
            out.names.push(format!("line-{}", i + 1));
        }
        if out.texts.is_empty() {
            return Err(IngestError::Empty { path: path.into() });
        }
        return Ok(out);
    }
    let wanted = [
        Wanted { name: text_column, key: "option --text-column", text: true, required: true },
        Wanted { name: label_column.unwrap_or("label"), key: "option --label-column", text: false, required: label_column.is_some() },
        Wanted { name: name_column.unwrap_or_default(), key: "option --name-column", text: false, required: name_column.is_some() },
    ];
    let t = tabular::read_columns(path, format, encoding, &wanted)?;
    let has_labels = t.has(wanted[1].name);
    let [texts, labels, names]: [Vec<Option<String>>; 3] = t.columns.try_into().expect("three columns asked for");
    let texts = texts
        .into_iter()
        .enumerate()
        .map(|(row, t)| t.map(|t| t.trim().to_owned()).ok_or_else(|| IngestError::Row { path: path.into(), row: row + 1, message: format!("the text column {text_column:?} is null; give every row a text (an empty string is an empty document)") }))
        .collect::<Result<_, _>>()?;
    let labels = has_labels.then(|| labels.into_iter().map(|l| l.unwrap_or_default().trim().to_owned()).collect());
    let names = match name_column {
        Some(_) => names.into_iter().enumerate().map(|(i, n)| n.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("row-{}", i + 1))).collect(),
        None => (1..=t.rows).map(|i| format!("row-{i}")).collect(),
    };
    Ok(NewDocuments { names, texts, labels })
}

/// Reads a tabular corpus (CSV, TSV, Parquet, NDJSON), taking the text,
/// label, and optional split and name columns named in the config.
pub fn read_tabular(path: &Path, cfg: &IngestConfig) -> Result<Documents, IngestError> {
    fn optional<'a>(c: &'a Option<String>, key: &'static str) -> Wanted<'a> {
        Wanted { name: c.as_deref().unwrap_or_default(), key, text: false, required: c.is_some() }
    }
    let wanted = [
        Wanted { name: &cfg.text_column, key: "config key ingest.text_column", text: true, required: true },
        Wanted { name: &cfg.label_column, key: "config key ingest.label_column", text: false, required: true },
        optional(&cfg.split_column, "config key ingest.split_column"),
        optional(&cfg.name_column, "config key ingest.name_column"),
    ];
    let t = tabular::read_columns(path, cfg.format, cfg.encoding, &wanted)?;
    let [texts, labels, splits, names]: [Vec<Option<String>>; 4] = t.columns.try_into().expect("four columns asked for");
    let mut docs = Documents::default();
    let mut seen = HashSet::new();
    for (row, (((text, label), split), name)) in texts.into_iter().zip(labels).zip(splits).zip(names).enumerate() {
        let bad = |message: String| IngestError::Row { path: path.into(), row: row + 1, message };
        let name = match &cfg.name_column {
            Some(_) => name.filter(|s| !s.trim().is_empty()).ok_or_else(|| bad("empty document name".into()))?,
            None => format!("row-{}", row + 1),
        };
        if let Some(first) = docs.first_use(&mut seen, &name) {
            return Err(bad(format!("duplicate document name {name:?} (first in row {})", first + 1)));
        }
        let label = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).ok_or_else(|| bad(format!("document {name:?} has no label")))?;
        let split = match &cfg.split_column {
            Some(_) => {
                let v = split.unwrap_or_default();
                Some(split_of(&v).ok_or_else(|| bad(format!("unknown split value {v:?} for document {name:?} (expected a value containing `train` or `test`)")))?)
            }
            None => None,
        };
        let text = text.unwrap_or_default();
        if text.len() as u64 > cfg.max_document_bytes {
            return Err(IngestError::TooLong { path: path.into(), line: row + 1, name, bytes: text.len(), limit: cfg.max_document_bytes, hint: String::new() });
        }
        if text.trim().is_empty() && !cfg.keep_blank_documents {
            return Err(bad(format!("document {name:?} is blank; remove it or set ingest.keep_blank_documents = true")));
        }
        docs.replacements += text.chars().filter(|&c| c == '\u{fffd}').count() as u64 * (cfg.encoding == Encoding::Utf8Lossy) as u64;
        docs.names.push(name);
        docs.labels.push(label);
        docs.splits.push(split);
        docs.texts.push(text.trim().to_owned());
    }
    check_classes(&docs.labels, path)?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(enc: Encoding) -> IngestConfig {
        IngestConfig {
            format: Format::Textgcn,
            corpus: "c".into(),
            meta: Some("m".into()),
            encoding: enc,
            keep_blank_documents: false,
            text_column: "text".into(),
            label_column: "label".into(),
            split_column: None,
            name_column: None,
            hold_out_test: false,
            max_document_bytes: 1 << 20,
        }
    }

    fn run(corpus: &[u8], meta: &[u8], enc: Encoding) -> Result<Documents, IngestError> {
        let d = tempfile::tempdir().unwrap();
        let (c, m) = (d.path().join("c.txt"), d.path().join("m.txt"));
        std::fs::write(&c, corpus).unwrap();
        std::fs::write(&m, meta).unwrap();
        read_textgcn(&c, &m, &cfg(enc))
    }

    const META: &[u8] = b"a\ttrain\tx\nb\ttest\ty\n";

    #[test]
    fn ragged_rows_are_found_with_quotes_and_newlines() {
        assert_eq!(first_ragged_line(b"a,b\n1,2\n\"x,\ny\",3\n4,5,6\n", b','), Some((5, 3, 2)));
        assert_eq!(first_ragged_line(b"a,b\r\n1,\"2,\"\"q\"\"\"\r\n\n", b','), None);
        assert_eq!(first_ragged_line(b"a\tb\n1\n", b'\t'), Some((2, 1, 2)));
    }

    #[test]
    fn an_unreadable_file_says_its_os_error_once() {
        let e = read(Path::new("/nonexistent/c.txt")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/c.txt: No such file or directory (os error 2)");
        assert!(std::error::Error::source(&e).is_none(), "the OS error would be printed twice in an error chain");
    }

    #[test]
    fn crlf_latin1_and_missing_final_newline() {
        let d = run(b"caf\xe9 ok\r\nsecond", META, Encoding::Latin1).unwrap();
        assert_eq!(d.texts, ["caf\u{e9} ok", "second"]);
        assert_eq!(d.splits, [Some(Split::Train), Some(Split::Test)]);
    }

    #[test]
    fn malformed_inputs_have_distinct_positioned_errors() {
        let e = run(b"ok\nbad \xff here\n", META, Encoding::Utf8).unwrap_err().to_string();
        assert!(e.ends_with("c.txt:2: invalid UTF-8 at byte offset 7 (byte 0xff); use encoding = \"latin-1\" or \"utf-8-lossy\""), "{e}");
        let d = run(b"ok\nbad \xff here\n", META, Encoding::Utf8Lossy).unwrap();
        assert_eq!(d.replacements, 1);
        assert!(run(b"\xff\xfea\x00", META, Encoding::Utf8).unwrap_err().to_string().contains("UTF-16"));
        assert!(run(b"a\nb\x00c\n", META, Encoding::Latin1).unwrap_err().to_string().contains("c.txt:2: NUL byte at byte offset 3"));
        assert!(matches!(run(b"", b"", Encoding::Latin1), Err(IngestError::Empty { .. })));
        assert!(run(b"a\n  \t\n", META, Encoding::Latin1).unwrap_err().to_string().contains("c.txt:2: document \"b\" is blank"));
        assert!(matches!(run(b"a\n", META, Encoding::Latin1), Err(IngestError::CountMismatch { corpus: 1, meta: 2, .. })));
        let e = run(b"a\nb\n", b"a\ttrain\tx\na\ttest\ty\n", Encoding::Latin1).unwrap_err().to_string();
        assert!(e.contains("m.txt:2: duplicate document name \"a\" (first on line 1)"), "{e}");
        assert!(run(b"a\nb\n", b"a\ttrain\tx\nb\ttest\t\n", Encoding::Latin1).unwrap_err().to_string().contains("m.txt:2: document \"b\" has no label"));
        assert!(run(b"a\nb\n", b"a\ttrain\tx\nb\tdev\ty\n", Encoding::Latin1).unwrap_err().to_string().contains("m.txt:2: unknown split value \"dev\""));
        assert!(run(b"a\nb\n", b"a\ttrain\tx\nb\ttest\tx\n", Encoding::Latin1).unwrap_err().to_string().contains("only one class"));
        assert!(run(b"a\nb\n", b"a\ttrain\tx\nb test y\n", Encoding::Latin1).unwrap_err().to_string().contains("m.txt:2: expected name<TAB>split<TAB>label"));
    }
    /// What [`scan_oracle`] finds: lines, whether the file starts with a
    /// UTF-16 byte-order mark, the first NUL byte (line, offset) and the
    /// first too-long line (index, length, carriage returns).
    type Scanned = (usize, bool, Option<(usize, usize)>, Option<(usize, usize, usize)>);

    /// The scan as a loop over every byte (the code before the vectorised
    /// search), whole file at once.
    fn scan_oracle(bytes: &[u8], limit: u64) -> Scanned {
        let (mut lines, mut nul, mut too_long, mut line_len, mut crs) = (0, None, None, 0usize, 0usize);
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => {
                    if too_long.is_none() && line_len as u64 > limit {
                        too_long = Some((lines, line_len, crs));
                    }
                    lines += 1;
                    (line_len, crs) = (0, 0);
                    continue;
                }
                0 if nul.is_none() => nul = Some((lines + 1, i)),
                b'\r' => crs += 1,
                _ => {}
            }
            line_len += 1;
        }
        if line_len > 0 {
            if too_long.is_none() && line_len as u64 > limit {
                too_long = Some((lines, line_len, crs));
            }
            lines += 1;
        }
        (lines, bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]), nul, too_long)
    }

    /// A reader handing out at most `step` bytes a read.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_scan_finds_what_a_loop_over_every_byte_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let alphabet = b"ab \n\n\r\x00\xff";
        for case in 0..400 {
            let len = rng.random_range(0..if case % 20 == 0 { 2_500_000 } else { 300 });
            // Mostly letters, with line ends, CRs and NULs sprinkled in.
            let bytes: Vec<u8> = (0..len).map(|_| if rng.random_range(0..16) == 0 { alphabet[rng.random_range(0..alphabet.len())] } else { b'x' }).collect();
            let limit = rng.random_range(0..40u64);
            let steps: &[usize] = if len > 1000 { &[4099, 1 << 20] } else { &[1, 7, 1 << 20] };
            for &step in steps {
                let scan = scan_corpus(Trickle(&bytes, step), limit).unwrap();
                let got = (scan.lines, scan.utf16, scan.nul, scan.too_long);
                // The oracle's BOM test is on the whole file, the scan's on
                // its first read: the same for reads of 2 bytes or more.
                let mut want = scan_oracle(&bytes, limit);
                if step == 1 {
                    want.1 = false;
                }
                assert_eq!(got, want, "case {case}, {len} bytes, limit {limit}, reads of {step}");
            }
        }
    }
}

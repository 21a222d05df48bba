//! Reading corpora into the documents table (name, split, label, text).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::{Encoding, IngestConfig};

/// A corpus problem, with the position a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
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
    /// Fewer than two classes.
    #[error("{}: only one class ({label:?}); classification needs at least two", path.display())]
    SingleClass {
        /// Meta file.
        path: PathBuf,
        /// The one label.
        label: String,
    },
}

/// The ingested corpus, column-wise.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Documents {
    /// Unique document names.
    pub names: Vec<String>,
    /// `train`, `test`, or empty when the corpus has no split.
    pub splits: Vec<String>,
    /// Class labels.
    pub labels: Vec<String>,
    /// Decoded text.
    pub texts: Vec<String>,
    /// U+FFFD replacements made under `utf-8-lossy`.
    pub replacements: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(|source| IngestError::Io { path: path.into(), source })
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
    let cbytes = read(corpus)?;
    let mbytes = read(meta)?;
    check_binary(corpus, &cbytes)?;
    check_binary(meta, &mbytes)?;
    let clines = lines(&cbytes);
    let mlines = lines(&mbytes);
    if clines.is_empty() {
        return Err(IngestError::Empty { path: corpus.into() });
    }
    if clines.len() != mlines.len() {
        return Err(IngestError::CountMismatch { corpus_path: corpus.into(), corpus: clines.len(), meta_path: meta.into(), meta: mlines.len() });
    }
    let mut docs = Documents::default();
    let mut seen = HashSet::with_capacity(mlines.len());
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
        let split = if split.contains("test") {
            "test"
        } else if split.contains("train") {
            "train"
        } else {
            return Err(bad(format!("unknown split value {split:?} for document {name:?} (expected a value containing `train` or `test`)")));
        };
        if !seen.insert(name.to_owned()) {
            let first = docs.names.iter().position(|n| n == name).map(|p| p + 1).unwrap_or(0);
            return Err(bad(format!("duplicate document name {name:?} (first on line {first})")));
        }
        docs.names.push(name.to_owned());
        docs.splits.push(split.to_owned());
        docs.labels.push(label.to_owned());
    }
    let mut replacements = 0;
    for (i, (off, raw)) in clines.iter().enumerate() {
        let stripped = strip(raw);
        if stripped.is_empty() && !cfg.keep_blank_documents {
            return Err(IngestError::Blank { path: corpus.into(), line: i + 1, name: docs.names[i].clone() });
        }
        let lead = raw.len() - raw.trim_ascii_start().len();
        docs.texts.push(decode(corpus, i + 1, off + lead, stripped, cfg.encoding, &mut replacements)?);
    }
    docs.replacements = replacements;
    let first = &docs.labels[0];
    if docs.labels.iter().all(|l| l == first) {
        return Err(IngestError::SingleClass { path: meta.into(), label: first.clone() });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;

    fn cfg(enc: Encoding) -> IngestConfig {
        IngestConfig { format: Format::Textgcn, corpus: "c".into(), meta: Some("m".into()), encoding: enc, keep_blank_documents: false }
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
    fn crlf_latin1_and_missing_final_newline() {
        let d = run(b"caf\xe9 ok\r\nsecond", META, Encoding::Latin1).unwrap();
        assert_eq!(d.texts, ["caf\u{e9} ok", "second"]);
        assert_eq!(d.splits, ["train", "test"]);
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
}

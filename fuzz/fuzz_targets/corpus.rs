//! The TextGCN corpus/meta reader, the CSV ragged-row scanner and both
//! tokenizers on arbitrary bytes: an error or documents, never a panic.
//! Input layout: byte 0 picks the encoding and blank-document switch,
//! bytes 1-2 where the corpus ends and the meta file begins.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use textgcn_pipeline::config::{Encoding, Format, IngestConfig};
use textgcn_pipeline::{clean, ingest};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let encoding = [Encoding::Utf8, Encoding::Latin1, Encoding::Utf8Lossy][data[0] as usize % 3];
    let split = (u16::from_le_bytes([data[1], data[2]]) as usize).min(data.len() - 3);
    let (corpus, meta) = data[3..].split_at(split);
    let cfg = IngestConfig {
        format: Format::Textgcn,
        corpus: "c.txt".into(),
        meta: Some("m.txt".into()),
        encoding,
        keep_blank_documents: data[0] & 4 != 0,
        text_column: "text".into(),
        label_column: "label".into(),
        split_column: None,
        name_column: None,
        hold_out_test: false,
        // Small, so that the fuzzer reaches the limit's error too.
        max_document_bytes: 4096,
    };
    if let Ok(docs) = ingest::parse_textgcn(Path::new("c.txt"), corpus, Path::new("m.txt"), meta, &cfg) {
        for t in &docs.texts {
            let _ = clean::reference_clean(t, true);
            let _ = clean::unicode_tokens(t, data[0] & 8 != 0);
        }
    }
    let _ = ingest::first_ragged_line(data, b',');
    let _ = ingest::first_ragged_line(data, b'\t');
});

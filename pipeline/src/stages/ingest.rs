//! Stage `ingest`: the corpus file(s) into the `documents` table (and the
//! `held_out` table of test documents kept out of the graph).

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;
use textgcn_artifacts::{Built, ObjectKind};

use super::{Input, OutputKey, OutputSpec, PipelineError, PlanContext, RunContext, Stage};
use crate::config::{Encoding, Format, LoadedConfig};
use crate::splits::Split;
use crate::{ingest, tables};

/// The ingest stage.
pub struct Ingest;

/// The fingerprinted params of [`Ingest`]. Field order is fingerprint
/// order.
#[derive(Debug, Serialize)]
pub struct IngestParams {
    /// `ingest.format`.
    pub format: Format,
    /// `ingest.encoding`.
    pub encoding: Encoding,
    /// `ingest.keep_blank_documents`.
    pub keep_blank_documents: bool,
    /// `ingest.hold_out_test`, written only when set (so that configs
    /// from before the setting keep their fingerprints).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hold_out_test: bool,
    /// The column names, for tabular formats only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Columns>,
}

/// The columns a tabular corpus is read from.
#[derive(Debug, Serialize)]
pub struct Columns {
    /// `ingest.text_column`.
    pub text: String,
    /// `ingest.label_column`.
    pub label: String,
    /// `ingest.split_column`.
    pub split: Option<String>,
    /// `ingest.name_column`.
    pub name: Option<String>,
}

impl Ingest {
    /// One row per document: name, split, label, text.
    pub const DOCUMENTS: OutputKey = OutputKey { stage: "ingest", name: "documents", kind: ObjectKind::Table };
    /// The test documents held out of the graph (`ingest.hold_out_test`).
    pub const HELD_OUT: OutputKey = OutputKey { stage: "ingest", name: "held_out", kind: ObjectKind::Table };

    /// The documents' names, splits and labels for a later stage: as the
    /// ingest of this build shared them, else read from the store.
    pub(crate) fn document_meta(cx: &RunContext<'_>) -> Result<std::sync::Arc<ingest::Documents>, PipelineError> {
        let id = cx.input(Self::DOCUMENTS)?;
        Ok(match cx.handoff.shared::<ingest::Documents>(id) {
            Some(docs) => docs,
            None => std::sync::Arc::new(tables::get_document_meta(cx.store, id)?),
        })
    }
}

impl Stage for Ingest {
    const NAME: &'static str = "ingest";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[Self::DOCUMENTS.required(), Self::HELD_OUT.optional()];
    type Params = IngestParams;

    fn params(&self, cfg: &LoadedConfig) -> IngestParams {
        let c = &cfg.config.ingest;
        IngestParams {
            format: c.format,
            encoding: c.encoding,
            keep_blank_documents: c.keep_blank_documents,
            hold_out_test: c.hold_out_test,
            columns: (c.format != Format::Textgcn).then(|| Columns { text: c.text_column.clone(), label: c.label_column.clone(), split: c.split_column.clone(), name: c.name_column.clone() }),
        }
    }

    fn inputs(&self, cx: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        let c = &cx.cfg.config.ingest;
        let mut inputs = vec![cx.data_file("corpus", "ingest.corpus", &cx.cfg.data_path(&c.corpus))?];
        if let Some(m) = &c.meta {
            inputs.push(cx.data_file("meta", "ingest.meta", &cx.cfg.data_path(m))?);
        }
        Ok(inputs)
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let (store, cfg) = (cx.store, cx.cfg);
        let ing = &cfg.config.ingest;
        let corpus = cfg.data_path(&ing.corpus);
        // The documents, streamed from the corpus into the table: a corpus
        // in the TextGCN layout is never held in memory (a tabular one is
        // read whole, then streamed alike).
        let tabular = match &ing.meta {
            Some(_) => None,
            None => Some(ingest::read_tabular(&corpus, ing)?),
        };
        let for_each = |each: &mut dyn FnMut(ingest::Document) -> Result<(), PipelineError>| -> Result<u64, PipelineError> {
            match (&ing.meta, &tabular) {
                (Some(meta), _) => ingest::stream_textgcn(&corpus, &cfg.data_path(meta), ing, each),
                (None, Some(docs)) => {
                    docs.iter().try_for_each(&mut *each)?;
                    Ok(docs.replacements)
                }
                (None, None) => unreachable!("a tabular corpus was read"),
            }
        };
        let mut stats = Stats::default();
        let mut replacements = 0;
        // The texts go to the tokenize stage of the same build in memory
        // (see `handoff`), instead of being read back from the table, when
        // they take at most an eighth of the memory limit.
        let keep_up_to = usize::try_from(cfg.config.build.memory_limit_bytes() / 8).unwrap_or(usize::MAX);
        let (documents, texts) = tables::put_documents_keeping_texts(store, keep_up_to, |add| {
            replacements = for_each(&mut |d| {
                if ing.hold_out_test && d.split == Some(Split::Test) {
                    stats.held_out += 1;
                    return Ok(());
                }
                stats.add(&d);
                add(&d)
            })?;
            Ok(())
        })?;
        let mut out = Built::default();
        if ing.hold_out_test {
            if stats.held_out == 0 {
                return Err(PipelineError::Other("ingest.hold_out_test: the corpus has no test documents to hold out".into()));
            }
            if stats.documents == 0 {
                return Err(PipelineError::Other("ingest.hold_out_test: the corpus has only test documents".into()));
            }
            // A second pass for the held-out table (only with hold_out_test).
            let id = tables::put_documents_streamed(store, |add| for_each(&mut |d| if d.split == Some(Split::Test) { add(&d) } else { Ok(()) }).map(drop))?;
            Self::HELD_OUT.put(&mut out, id);
        }
        out.summary = json!({"documents": stats.documents, "train": stats.train, "test": stats.documents - stats.train, "classes": stats.labels.len(), "replacements": replacements, "blank_documents": stats.blank, "held_out": stats.held_out});
        match texts {
            Some(mut texts) => {
                // Their names, splits and labels as well, which the graph
                // and splits stages of this build read (small beside the
                // texts, and kept only when the texts are).
                let meta = tables::document_meta(&std::mem::take(&mut texts.meta), &documents)?;
                cx.handoff.share(&documents, meta);
                cx.handoff.offer(&documents, texts)
            }
            // Texts kept up to the cap and then let go stay in the reader
            // thread's heap, which the early stages do not trim (see
            // `Pipeline::build_with_progress`) and which no later stage
            // allocates from: returned here. At a million documents the
            // build's peak (in the vocab stage) was 2,081 MiB with them.
            None => crate::alloc::release_free_memory(),
        }
        Self::DOCUMENTS.put(&mut out, documents);
        Ok(out)
    }
}

/// What the ingest stage's summary counts.
#[derive(Default)]
struct Stats {
    documents: usize,
    train: usize,
    blank: usize,
    held_out: usize,
    labels: HashSet<String>,
}

impl Stats {
    fn add(&mut self, d: &ingest::Document) {
        self.documents += 1;
        self.train += (d.split == Some(Split::Train)) as usize;
        self.blank += d.text.trim().is_empty() as usize;
        if !self.labels.contains(&d.label) {
            self.labels.insert(d.label.clone());
        }
    }
}

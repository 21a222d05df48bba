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
        let mut out = Built::default();
        let mut docs = match &ing.meta {
            Some(meta) => ingest::read_textgcn(&cfg.data_path(&ing.corpus), &cfg.data_path(meta), ing)?,
            None => ingest::read_tabular(&cfg.data_path(&ing.corpus), ing)?,
        };
        let held_out = ing.hold_out_test.then(|| docs.take_test());
        if let Some(h) = &held_out {
            if h.names.is_empty() {
                return Err(PipelineError::Other("ingest.hold_out_test: the corpus has no test documents to hold out".into()));
            }
            if docs.names.is_empty() {
                return Err(PipelineError::Other("ingest.hold_out_test: the corpus has only test documents".into()));
            }
            Self::HELD_OUT.put(&mut out, tables::put_documents(store, h)?);
        }
        let n_train = docs.splits.iter().filter(|s| **s == Some(Split::Train)).count();
        let labels: HashSet<&String> = docs.labels.iter().collect();
        let blank = docs.texts.iter().filter(|t| t.trim().is_empty()).count();
        out.summary = json!({"documents": docs.names.len(), "train": n_train, "test": docs.names.len() - n_train, "classes": labels.len(), "replacements": docs.replacements, "blank_documents": blank, "held_out": held_out.as_ref().map_or(0, |h| h.names.len())});
        Self::DOCUMENTS.put(&mut out, tables::put_documents(store, &docs)?);
        Ok(out)
    }
}

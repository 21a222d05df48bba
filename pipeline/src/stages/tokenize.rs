//! Stage `tokenize`: each document's text into its cleaned tokens (the
//! `tokens` table, one space-separated string per document).

use arrow_array::Array;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use textgcn_artifacts::{Built, ObjectKind};

use super::{Ingest, Input, OutputKey, OutputSpec, PipelineError, PlanContext, RunContext, Stage};
use crate::config::{LoadedConfig, Rules};
use crate::{clean, tables, vocab};

/// The tokenize stage.
pub struct Tokenize;

/// The fingerprinted params of [`Tokenize`].
#[derive(Debug, Serialize)]
pub struct TokenizeParams {
    /// `tokenize.rules`.
    pub rules: Rules,
    /// `tokenize.lowercase`.
    pub lowercase: bool,
}

impl Tokenize {
    /// One cleaned document per row.
    pub const TOKENS: OutputKey = OutputKey { stage: "tokenize", name: "tokens", kind: ObjectKind::Table };
}

impl Stage for Tokenize {
    const NAME: &'static str = "tokenize";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[Self::TOKENS.required()];
    type Params = TokenizeParams;

    fn params(&self, cfg: &LoadedConfig) -> TokenizeParams {
        TokenizeParams { rules: cfg.config.tokenize.rules, lowercase: cfg.config.tokenize.lowercase }
    }

    fn inputs(&self, _: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        Ok(vec![Input::Output(Ingest::DOCUMENTS)])
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let TokenizeParams { rules, lowercase } = self.params(cx.cfg);
        let mut documents = 0usize;
        // The words are counted here, from the cleaned text in hand, for
        // the vocab stage that follows in the same build (see `handoff`):
        // it would otherwise read every token back from the table.
        let mut counter = vocab::Counter::default();
        // Wall time of cleaning, counting and writing the table (`-vv`).
        let mut spent = [std::time::Duration::ZERO; 3];
        // A batch of documents at a time: cleaned in parallel, counted,
        // written in order, so memory holds a batch, a row group and the
        // counter (4 bytes a token and the distinct words), not the text.
        let tokens = tables::publish_streamed(cx.store, tables::tokens_schema(), |sink| {
            // The texts the ingest stage of this build handed over, else
            // read back from the documents table.
            let documents_id = cx.input(Ingest::DOCUMENTS)?;
            let (total, batches): (u64, Box<dyn Iterator<Item = Result<arrow_array::StringArray, textgcn_artifacts::StoreError>>>) = match cx.handoff.take::<tables::DocumentTexts>(documents_id) {
                Some(texts) => (texts.rows, Box::new(texts.batches.into_iter().map(Ok))),
                None => {
                    let (total, batches) = tables::read_string_batches(cx.store, documents_id, "text", tables::DOC_BATCH)?;
                    (total, Box::new(batches))
                }
            };
            for batch in batches {
                let texts = batch?;
                let t0 = std::time::Instant::now();
                let cleaned: Vec<String> = (0..texts.len())
                    .into_par_iter()
                    .map(|i| match rules {
                        Rules::Reference => clean::reference_clean(texts.value(i), lowercase),
                        Rules::Unicode => clean::unicode_tokens(texts.value(i), lowercase).join(" "),
                        Rules::Textsgc => clean::textsgc_clean(texts.value(i), lowercase),
                    })
                    .collect();
                documents += cleaned.len();
                let t1 = std::time::Instant::now();
                counter.add(&cleaned);
                let t2 = std::time::Instant::now();
                tables::push(cx.store, sink, tables::tokens_batch(&cleaned))?;
                spent[0] += t1 - t0;
                spent[1] += t2 - t1;
                spent[2] += t2.elapsed();
                cx.progress("documents", documents as u64, total);
            }
            Ok::<_, PipelineError>(())
        })?;
        let n_tokens = counter.tokens();
        tracing::debug!("tokenize: cleaning {:.3}s, counting {:.3}s, writing the table {:.3}s", spent[0].as_secs_f64(), spent[1].as_secs_f64(), spent[2].as_secs_f64());
        cx.handoff.offer(&tokens, counter);
        let mut out = Built { summary: json!({"documents": documents, "tokens": n_tokens}), ..Built::default() };
        Self::TOKENS.put(&mut out, tokens);
        Ok(out)
    }
}

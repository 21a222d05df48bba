//! Stage `vocab`: the vocabulary (frequency and stop-word filters,
//! deterministic ids) and each document as vocabulary ids (`doc_tokens`).

use std::collections::HashSet;

use arrow_array::Array;

use serde::Serialize;
use serde_json::json;
use textgcn_artifacts::{Built, ObjectKind};

use super::{Input, OutputKey, OutputSpec, PipelineError, PlanContext, RunContext, Stage, Tokenize};
use crate::config::LoadedConfig;
use crate::{clean, tables, vocab};

/// The vocab stage.
pub struct Vocab;

/// The fingerprinted params of [`Vocab`].
#[derive(Debug, Serialize)]
pub struct VocabParams {
    /// `vocab.min_freq`.
    pub min_freq: u64,
    /// `vocab.max_size`.
    pub max_size: Option<usize>,
    /// `vocab.stopwords` (the list's content is an input).
    pub stopwords: String,
}

impl Vocab {
    /// The words, their ids and document frequencies.
    pub const VOCAB: OutputKey = OutputKey { stage: "vocab", name: "vocab", kind: ObjectKind::Table };
    /// Each document as a list of vocabulary ids.
    pub const DOC_TOKENS: OutputKey = OutputKey { stage: "vocab", name: "doc_tokens", kind: ObjectKind::Table };
}

/// The strings of a batch of the tokens table.
fn values(b: &arrow_array::StringArray) -> Vec<&str> {
    (0..b.len()).map(|i| b.value(i)).collect()
}

/// The stop words of `cfg`, sorted and unique.
fn stopword_list(cfg: &LoadedConfig) -> Result<Vec<String>, PipelineError> {
    let sw = &cfg.config.vocab.stopwords;
    let mut v: Vec<String> = match sw.as_str() {
        "nltk-english" => clean::nltk_english().into_iter().map(str::to_owned).collect(),
        "none" => Vec::new(),
        path => {
            let p = cfg.data_path(path.as_ref());
            let text = std::fs::read_to_string(&p).map_err(|e| PipelineError::Other(format!("{}: cannot read stop words: {e}", p.display())))?;
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
        }
    };
    v.sort();
    v.dedup();
    Ok(v)
}

impl Stage for Vocab {
    const NAME: &'static str = "vocab";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[Self::VOCAB.required(), Self::DOC_TOKENS.required()];
    type Params = VocabParams;

    fn params(&self, cfg: &LoadedConfig) -> VocabParams {
        let c = &cfg.config.vocab;
        VocabParams { min_freq: c.min_freq, max_size: c.max_size, stopwords: c.stopwords.clone() }
    }

    fn inputs(&self, cx: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        let setting = &cx.cfg.config.vocab.stopwords;
        let shown_as = std::path::Path::new(setting).file_name().map_or_else(|| setting.clone(), |f| f.to_string_lossy().into_owned());
        let stopwords = cx.content("stopwords", "vocab.stopwords", shown_as, || Ok(blake3::hash(stopword_list(cx.cfg)?.join("\n").as_bytes()).to_hex().to_string()))?;
        Ok(vec![Input::Output(Tokenize::TOKENS), stopwords])
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let _span = tracing::debug_span!("vocab").entered();
        let p = self.params(cx.cfg);
        let tokens = cx.input(Tokenize::TOKENS)?;
        let sw: HashSet<String> = stopword_list(cx.cfg)?.into_iter().collect();
        // Counted by the tokenize stage of this build, else from the
        // tokens table a batch at a time: memory holds the distinct words,
        // a provisional id per token and a batch, never the text.
        let counter = match cx.handoff.take::<vocab::Counter>(tokens) {
            Some(counter) => counter,
            None => tracing::debug_span!("count").in_scope(|| -> Result<_, PipelineError> {
                let mut counter = vocab::Counter::default();
                let (total, batches) = tables::read_string_batches(cx.store, tokens, "tokens", tables::DOC_BATCH)?;
                let mut done = 0;
                for b in batches {
                    let b = b?;
                    counter.add(&values(&b));
                    done += b.len() as u64;
                    cx.progress("documents counted", done, total);
                }
                Ok(counter)
            })?,
        };
        let distinct = counter.distinct();
        let (v, dt) = tracing::debug_span!("encode").in_scope(|| counter.finish(&vocab::VocabParams { min_freq: p.min_freq, stopwords: &sw, max_size: p.max_size }));
        if v.words.is_empty() {
            return Err(PipelineError::EmptyVocabulary { min_freq: p.min_freq, stopwords: p.stopwords });
        }
        if dt.ids.len() > i32::MAX as usize {
            return Err(PipelineError::Other(format!(
                "the corpus has {} tokens after filtering, more than the 2,147,483,647 a doc_tokens table holds; raise vocab.min_freq or split the corpus",
                dt.ids.len()
            )));
        }
        let (docs, total) = (dt.num_docs(), dt.ids.len());
        let empty = (0..docs).filter(|&d| dt.doc(d).is_empty()).count();
        let doc_tokens = tables::put_doc_tokens(cx.store, &dt)?;
        cx.handoff.offer(&doc_tokens, dt);
        let avg = total as f64 / docs as f64;
        let mut out = Built { summary: json!({"vocabulary": v.words.len(), "tokens": total, "avg_doc_length": avg, "empty_documents": empty}), ..Built::default() };
        tracing::debug!("vocab: {distinct} distinct words counted, {} kept", v.words.len());
        let vocab = tables::put_vocab(cx.store, &v)?;
        cx.handoff.offer(&vocab, v);
        Self::VOCAB.put(&mut out, vocab);
        Self::DOC_TOKENS.put(&mut out, doc_tokens);
        Ok(out)
    }
}

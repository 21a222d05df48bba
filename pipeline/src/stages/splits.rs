//! Stage `splits`: the seeded train/validation/test document sets.

use serde::Serialize;
use serde_json::json;
use textgcn_artifacts::{Built, ObjectKind};

use super::{Ingest, Input, OutputKey, OutputSpec, PipelineError, PlanContext, RunContext, Stage};
use crate::config::LoadedConfig;
use crate::{splits, tables};

/// The splits stage.
pub struct Splits;

/// The fingerprinted params of [`Splits`].
#[derive(Debug, Serialize)]
pub struct SplitsParams {
    /// `splits.seed`.
    pub seed: u64,
    /// `splits.val_fraction`.
    pub val_fraction: f64,
    /// `splits.random_split`.
    pub random_split: [f64; 3],
}

impl Splits {
    /// The node ids of each split.
    pub const SPLITS: OutputKey = OutputKey { stage: "splits", name: "splits", kind: ObjectKind::Table };
}

impl Stage for Splits {
    const NAME: &'static str = "splits";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[Self::SPLITS.required()];
    type Params = SplitsParams;

    fn params(&self, cfg: &LoadedConfig) -> SplitsParams {
        let c = &cfg.config.splits;
        SplitsParams { seed: c.seed, val_fraction: c.val_fraction, random_split: c.random_split }
    }

    fn inputs(&self, _: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        Ok(vec![Input::Output(Ingest::DOCUMENTS)])
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let p = self.params(cx.cfg);
        let docs = Ingest::document_meta(cx)?;
        let s = splits::make(&docs.splits, p.seed, p.val_fraction, p.random_split);
        if s.train.is_empty() {
            return Err(PipelineError::Other("the split leaves no training documents".into()));
        }
        let mut out = Built { summary: json!({"train": s.train.len(), "val": s.val.len(), "test": s.test.len()}), ..Built::default() };
        Self::SPLITS.put(&mut out, tables::put_splits(cx.store, &s)?);
        Ok(out)
    }
}

//! A sixth stage, defined here, joins the pipeline with one type and one
//! line of registration: it is planned, fingerprinted, built, cached,
//! explained and read back like the five standard ones, and it leaves the
//! standard stages' fingerprints as they were.

use serde::Serialize;
use textgcn_artifacts::{Built, ObjectKind, OpenMode, RowPtr, Store};
use textgcn_pipeline::config;
use textgcn_pipeline::stages::{BuiltRef, Input, OutputKey, OutputSpec, Pipeline, PipelineError, PlanContext, RunContext, Stage, StageState, Vocab};

/// The toy stage: each document's length in vocabulary tokens, times
/// `scale`, as a column.
struct DocLengths {
    scale: i64,
}

#[derive(Serialize)]
struct DocLengthsParams {
    scale: i64,
}

impl DocLengths {
    const LENGTHS: OutputKey = OutputKey { stage: "doc_lengths", name: "lengths", kind: ObjectKind::RowPtr };
}

impl Stage for DocLengths {
    const NAME: &'static str = "doc_lengths";
    const VERSION: u32 = 1;
    const OUTPUTS: &'static [OutputSpec] = &[Self::LENGTHS.required()];
    type Params = DocLengthsParams;

    fn params(&self, _: &config::LoadedConfig) -> DocLengthsParams {
        DocLengthsParams { scale: self.scale }
    }

    fn inputs(&self, _: &PlanContext<'_>) -> Result<Vec<Input>, PipelineError> {
        Ok(vec![Input::Output(Vocab::DOC_TOKENS)])
    }

    fn run(&self, cx: &RunContext<'_>) -> Result<Built, PipelineError> {
        let dt = textgcn_pipeline::tables::get_doc_tokens(cx.store, cx.input(Vocab::DOC_TOKENS)?)?;
        let lengths: Vec<i64> = dt.offsets.windows(2).map(|w| (w[1] - w[0]) as i64 * self.scale).collect();
        let mut out = Built { summary: serde_json::json!({"documents": lengths.len()}), ..Built::default() };
        Self::LENGTHS.put(&mut out, RowPtr::publish(cx.store, lengths)?);
        Ok(out)
    }
}

fn corpus(dir: &std::path::Path) -> config::LoadedConfig {
    std::fs::write(dir.join("c.txt"), "apple pie sweet cream\nbanana split sweet\ncar engine loud road\ntruck engine loud\npie cream apple\nroad truck car\n").unwrap();
    std::fs::write(dir.join("m.txt"), "a\ttrain\tfood\nb\ttest\tfood\nc\ttrain\tcar\nd\ttest\tcar\ne\ttrain\tfood\nf\ttrain\tcar\n").unwrap();
    let path = dir.join("t.toml");
    std::fs::write(&path, format!("name = \"t\"\ndata_dir = \"{}\"\n[ingest]\ncorpus = \"c.txt\"\nmeta = \"m.txt\"\n[vocab]\nmin_freq = 1\nstopwords = \"none\"\n", dir.display())).unwrap();
    config::load(&path).unwrap()
}

#[test]
fn a_sixth_stage_needs_one_type_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = corpus(dir.path());
    let store = Store::open(dir.path().join("store"), OpenMode::Write).unwrap();

    let standard = Pipeline::standard().build(&store, &cfg, |_| {}).unwrap();
    // The registration: one line.
    let six = Pipeline::standard().with(DocLengths { scale: 2 });
    assert_eq!(six.names(), ["ingest", "tokenize", "vocab", "graph", "splits", "doc_lengths"]);

    let report = six.build(&store, &cfg, |_| {}).unwrap();
    let states: Vec<StageState> = report.stages.iter().map(|s| s.status).collect();
    assert_eq!(states, [StageState::Fresh, StageState::Fresh, StageState::Fresh, StageState::Fresh, StageState::Fresh, StageState::Rebuilt]);
    for (a, b) in standard.stages.iter().zip(&report.stages) {
        assert_eq!((&a.stage, &a.fingerprint), (&b.stage, &b.fingerprint), "a new stage changed an old one's fingerprint");
    }

    // Read back through the typed API: lengths 4, 3, 4, 3, 3, 3 tokens, doubled.
    let built = BuiltRef::open_with(&store, "t", &six).unwrap();
    let lengths = RowPtr::open(&store, built.object(DocLengths::LENGTHS).unwrap()).unwrap();
    assert_eq!(lengths.values(), [8, 6, 8, 6, 6, 6]);
    assert_eq!(built.summary("doc_lengths").unwrap()["documents"], 6);

    // Cached: nothing reruns; a changed param reruns that stage alone, and says why.
    assert!(six.status(&store, &cfg).unwrap().iter().all(|s| s.status == StageState::Fresh && s.why.is_none()));
    let st = Pipeline::standard().with(DocLengths { scale: 3 }).status(&store, &cfg).unwrap();
    assert_eq!(st.iter().filter(|s| s.status == StageState::Stale).map(|s| s.stage.as_str()).collect::<Vec<_>>(), ["doc_lengths"]);
    assert_eq!(st[5].why.as_deref(), Some("scale changed 2 → 3"));

    // The trainer's reader wants the standard five stages and says so.
    let e = BuiltRef::open(&store, "t").unwrap_err().to_string();
    assert!(e.contains("its stages are [ingest, tokenize, vocab, graph, splits, doc_lengths], expected [ingest, tokenize, vocab, graph, splits]"), "{e}");
}

//! `textgcn-train predict`: classify new documents with a trained run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use textgcn_artifacts::{OpenMode, Store};
use textgcn_pipeline::config::{self, Encoding, Format};
use textgcn_cli::store_dir;
use textgcn_pipeline::{ingest, stages};
use textgcn_trainer::run::PredictionRows;
use textgcn_trainer::{Prediction, Predictor};

/// Options of `predict`.
#[derive(clap::Args)]
pub struct PredictArgs {
    /// Training run directory (runs/<name>/seed-<n>).
    #[arg(long)]
    model: PathBuf,
    /// Documents: plain text (one per line) or CSV/TSV/Parquet/NDJSON.
    #[arg(long)]
    input: PathBuf,
    /// Input format (default: from the file extension; anything else is
    /// text).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Encoding of text/CSV input.
    #[arg(long, value_enum, default_value = "utf-8")]
    encoding: Encoding,
    /// Tabular input: the text column.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Tabular input: a column of true labels (default: `label` when
    /// present); accuracy is reported when there is one.
    #[arg(long)]
    label_column: Option<String>,
    /// Tabular input: a column of document names.
    #[arg(long)]
    name_column: Option<String>,
    /// Output file: .csv, .parquet, .json or .ndjson/.jsonl (default: CSV
    /// on stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Contributing words reported per document.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// A pipeline config to check the model against: its tokenizer
    /// settings and its built vocabulary must be the model's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store of that config's artifacts (default: $TEXTGCN_STORE, else
    /// ./.textgcn-store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout (needs --output).
    #[arg(long)]
    json: bool,
}

/// `--format`, else the format the file extension names, else text.
fn input_format(args: &PredictArgs) -> Format {
    use clap::ValueEnum;
    args.format.unwrap_or_else(|| {
        let ext = args.input.extension().and_then(|e| e.to_str()).unwrap_or("");
        Format::from_str(ext, true).unwrap_or(Format::Textgcn)
    })
}

/// Refuses a model whose pipeline differs from `config`'s built one.
fn check_pipeline(pred: &Predictor, config_path: &Path, store: Option<&Path>) -> Result<()> {
    let cfg = config::load_for_artifacts(config_path)?;
    let m = &pred.meta().source;
    let t = &cfg.config.tokenize;
    if t.rules != m.rules || t.lowercase != m.lowercase {
        bail!(
            "model/pipeline mismatch: the model was trained with tokenizer rules {:?}, lowercase {}; {} has rules {:?}, lowercase {}",
            m.rules,
            m.lowercase,
            config_path.display(),
            t.rules,
            t.lowercase
        );
    }
    let store_path = store_dir(store);
    let store = Store::open(&store_path, OpenMode::Read).with_context(|| format!("opening the store {}", store_path.display()))?;
    let vocab = stages::BuiltRef::open(&store, &cfg.config.name)?.object(stages::Vocab::VOCAB)?.to_string();
    if vocab != m.vocab_object {
        bail!(
            "model/pipeline mismatch: the model was trained on vocabulary {} (of {}), but {} built vocabulary {}; retrain, or predict without --config",
            &m.vocab_object[..12],
            m.dataset,
            cfg.config.name,
            &vocab[..12.min(vocab.len())]
        );
    }
    Ok(())
}

/// Runs `predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    if args.json && args.output.is_none() {
        bail!("--json prints the summary on stdout, so the predictions need --output FILE");
    }
    let t0 = Instant::now();
    let pred = Predictor::load(&args.model)?;
    if let Some(c) = &args.config {
        check_pipeline(&pred, c, args.store.as_deref())?;
    }
    let docs = ingest::read_new_documents(&args.input, input_format(&args), args.encoding, &args.text_column, args.label_column.as_deref(), args.name_column.as_deref()).map_err(|e| match e {
        // The pipeline's message names the config key; here the flag is the way out.
        ingest::IngestError::InvalidUtf8 { path, line, offset, byte } => {
            anyhow::anyhow!("{}:{line}: invalid UTF-8 at byte offset {offset} (byte 0x{byte:02x}); use --encoding latin-1 or --encoding utf-8-lossy", path.display())
        }
        e => e.into(),
    })?;
    let t = Instant::now();
    let preds = pred.predict_all(&docs.texts, args.top);
    let seconds = t.elapsed().as_secs_f64();
    let no_words = preds.iter().filter(|p| p.label.is_none()).count();
    let unknown: usize = preds.iter().map(|p| p.unknown_tokens).sum();
    let known: usize = preds.iter().map(|p| p.known_tokens).sum();
    // Label sets: the share of documents whose predicted set is their true set.
    let accuracy = docs.labels.as_ref().map(|labels| labels.iter().zip(&preds).filter(|(l, p)| pred.is_right(l, p)).count() as f64 / labels.len() as f64);
    write_predictions(&args, &pred, &docs, &preds)?;
    let summary = serde_json::json!({
        "model": args.model.to_string_lossy(),
        "dataset": pred.meta().source.dataset,
        "documents": preds.len(),
        "without_known_words": no_words,
        "known_tokens": known,
        "unknown_tokens": unknown,
        "accuracy": accuracy,
        "documents_per_second": preds.len() as f64 / seconds.max(1e-9),
        "seconds": t0.elapsed().as_secs_f64(),
    });
    eprintln!(
        "{} documents classified with {} in {:.3}s ({:.0} documents/s); {} without any known word; {} of {} tokens unknown (ignored){}",
        preds.len(),
        args.model.display(),
        seconds,
        preds.len() as f64 / seconds.max(1e-9),
        no_words,
        unknown,
        known + unknown,
        accuracy.map_or(String::new(), |a| format!("; accuracy {a:.4}"))
    );
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

fn write_predictions(args: &PredictArgs, pred: &Predictor, docs: &ingest::NewDocuments, preds: &[Prediction]) -> Result<()> {
    let ext = args.output.as_ref().and_then(|o| o.extension()).and_then(|e| e.to_str()).unwrap_or("csv").to_ascii_lowercase();
    let label_of = |i: usize| docs.labels.as_ref().map_or("", |l| l[i].as_str());
    let top = |p: &Prediction| p.top_words.iter().map(|w| format!("{}:{:.4}", w.word, w.share)).collect::<Vec<_>>().join(" ");
    let bytes: Vec<u8> = match ext.as_str() {
        "parquet" => {
            let mut rows = PredictionRows::default();
            for (i, p) in preds.iter().enumerate() {
                rows.push(&docs.names[i], "new", label_of(i), p.label.as_deref(), &p.probabilities);
            }
            rows.to_parquet(pred.labels())?
        }
        "json" | "ndjson" | "jsonl" => {
            let objs: Vec<serde_json::Value> = preds
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut o = serde_json::json!({"document": docs.names[i], "prediction": p});
                    if let Some(l) = &docs.labels {
                        o["true_label"] = serde_json::json!(l[i]);
                    }
                    o
                })
                .collect();
            if ext == "json" {
                serde_json::to_vec_pretty(&objs)?
            } else {
                objs.iter().flat_map(|o| format!("{o}\n").into_bytes()).collect()
            }
        }
        "csv" => {
            let mut w = csv_line(["document", "true_label", "predicted_label", "note", "top_words", "known_tokens", "unknown_tokens"].iter().map(|s| s.to_string()).chain(pred.labels().iter().map(|l| format!("p_{l}"))));
            for (i, p) in preds.iter().enumerate() {
                let fields = [docs.names[i].clone(), label_of(i).to_owned(), p.label.clone().unwrap_or_default(), p.note.unwrap_or("").to_owned(), top(p), p.known_tokens.to_string(), p.unknown_tokens.to_string()];
                w.extend(csv_line(fields.into_iter().chain(p.probabilities.iter().map(|x| format!("{x:.6}")))));
            }
            w
        }
        other => bail!("--output: unknown extension {other:?}; use .csv, .parquet, .json, .ndjson or .jsonl"),
    };
    match &args.output {
        None => std::io::stdout().lock().write_all(&bytes).context("writing the predictions to stdout")?,
        Some(path) => textgcn_cli::write_atomic(path, &bytes)?,
    }
    Ok(())
}

/// One CSV record (RFC 4180 quoting where needed), newline-terminated.
fn csv_line(fields: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut out = String::new();
    for (k, f) in fields.into_iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push('\n');
    out.into_bytes()
}

//! `textgcn`: build, inspect and maintain TextGCN artifacts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use textgcn_artifacts::{EdgeAttr, EdgeIndex, ObjectId, OpenMode, Store};
use textgcn_pipeline::{config, stages, store_dir, tables};

/// Turn text corpora into TextGCN graphs, incrementally.
#[derive(Parser)]
#[command(name = "textgcn", version, about, after_help = "Examples:\n  textgcn build --config configs/R8.toml\n  textgcn status --config configs/R8.toml\n  textgcn inspect R8 --json\n  textgcn export-clean --config configs/R8.toml > R8.clean.txt")]
struct Cli {
    /// Store directory (default: $TEXTGCN_STORE, else ./.textgcn-store).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every stale stage and point the config's ref at the result.
    Build {
        /// Run config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Say what a build would rerun and why, without running.
    Status {
        /// Run config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Sizes and statistics of a build (a ref name, a config file, or an object id).
    Inspect {
        /// Ref name, config path, or object id.
        target: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print the cleaned corpus in the reference's `.clean.txt` form.
    ExportClean {
        /// Run config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Re-hash every object; report any mismatch.
    Verify,
    /// Remove what no ref reaches.
    Gc,
}

fn main() -> ExitCode {
    textgcn_pipeline::cli_main::<Cli>(run)
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting up threads")?;
    }
    let store_path = store_dir(cli.store.as_deref());
    match cli.cmd {
        Cmd::Build { config, json } => {
            let cfg = config::load(&config)?;
            let store = Store::open(&store_path, OpenMode::Write).with_context(|| format!("opening store {}", store_path.display()))?;
            let report = stages::build(&store, &cfg, |r| {
                if !json {
                    let why = r.why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default();
                    eprintln!("{:>9} {:<8} {:>7.3}s{}", r.stage, r.status, r.seconds, why);
                }
            })
            .with_context(|| format!("building {}", cfg.config.name))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let bytes: u64 = report.stages.iter().flat_map(|s| s.outputs.values().map(|o| o.1)).sum();
                eprintln!("built {} in {:.3}s ({:.1} MB of artifacts)", report.name, report.seconds, bytes as f64 / 1e6);
            }
        }
        Cmd::Status { config, json } => {
            let cfg = config::load(&config)?;
            let st = match Store::open(&store_path, OpenMode::Read) {
                Ok(store) => stages::status(&store, &cfg)?,
                Err(_) => stages::STAGES.iter().map(|s| stages::StageStatus { stage: (*s).into(), status: "stale", why: Some("no store yet".into()) }).collect(),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                for s in st {
                    println!("{:>9} {}{}", s.stage, s.status, s.why.map(|w| format!(" ({w})")).unwrap_or_default());
                }
            }
        }
        Cmd::Inspect { target, json } => {
            let store = Store::open(&store_path, OpenMode::Read)?;
            let v = inspect(&store, &target)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_human(&v, 0);
            }
        }
        Cmd::ExportClean { config } => {
            let cfg = config::load(&config)?;
            let store = Store::open(&store_path, OpenMode::Read)?;
            let text = stages::export_clean(&store, &cfg.config.name)?;
            use std::io::Write;
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
        Cmd::Verify => {
            let store = Store::open(&store_path, OpenMode::Read)?;
            let rep = store.verify()?;
            for p in &rep.problems {
                eprintln!("problem: {p}");
            }
            println!("verified {} objects and {} records: {} problem(s)", rep.objects_checked, rep.records_checked, rep.problems.len());
            if !rep.problems.is_empty() {
                bail!("store {} has {} problem(s)", store_path.display(), rep.problems.len());
            }
        }
        Cmd::Gc => {
            let store = Store::open(&store_path, OpenMode::Read)?;
            let rep = store.gc()?;
            println!("removed {} objects and {} records ({:.1} MB); kept {} objects", rep.objects_removed, rep.records_removed, rep.bytes_freed as f64 / 1e6, rep.objects_kept);
        }
    }
    Ok(())
}

fn print_human(v: &serde_json::Value, indent: usize) {
    if let Some(m) = v.as_object() {
        for (k, x) in m {
            if x.is_object() || x.is_array() && x.as_array().is_some_and(|a| a.iter().any(|e| e.is_object())) {
                println!("{:indent$}{k}:", "");
                print_human(x, indent + 2);
            } else {
                println!("{:indent$}{k}: {x}", "");
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a {
            print_human(x, indent);
            println!();
        }
    }
}

fn stats(xs: impl Iterator<Item = f64>) -> serde_json::Value {
    let mut v: Vec<f64> = xs.collect();
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({"min": v[0], "median": v[v.len() / 2], "mean": mean, "max": v[v.len() - 1]})
}

fn inspect(store: &Store, target: &str) -> Result<serde_json::Value> {
    if let Ok(id) = ObjectId::parse(target) {
        let path = store.object_path(&id);
        let bytes = store.read_verified(&id)?;
        let kind = if let Ok(e) = EdgeIndex::open(store, &id) {
            json!({"kind": "edge_index", "edges": e.num_edges(), "nodes": e.num_nodes()})
        } else if let Ok(a) = EdgeAttr::open(store, &id) {
            json!({"kind": "edge_attr", "edges": a.values().len(), "weight": stats(a.values().iter().map(|&x| x as f64))})
        } else if let Ok(t) = textgcn_artifacts::read_table(store, &id) {
            json!({"kind": "parquet table", "rows": t.num_rows(), "columns": t.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()})
        } else {
            json!({"kind": "unknown"})
        };
        return Ok(json!({"object": target, "path": path, "bytes": bytes.len(), "content": kind}));
    }
    let name = if target.ends_with(".toml") { config::load(target.as_ref())?.config.name } else { target.to_owned() };
    let recs = stages::ref_records(store, &name)?;
    let g = &recs["graph"];
    let ei = EdgeIndex::open(store, &g.outputs["edge_index"])?;
    let ea = EdgeAttr::open(store, &g.outputs["edge_attr"])?;
    let n = ei.num_nodes();
    let mut deg = vec![0u32; n];
    for &r in ei.rows() {
        deg[r as usize] += 1;
    }
    let vocab = tables::get_vocab(store, &recs["vocab"].outputs["vocab"])?;
    let top: Vec<_> = vocab.words.iter().zip(&vocab.freq).take(20).map(|(w, f)| json!([w, f])).collect();
    let mut sizes = serde_json::Map::new();
    let mut total = 0u64;
    for rec in recs.values() {
        for (k, id) in &rec.outputs {
            let b = std::fs::metadata(store.object_path(id)).map(|m| m.len()).unwrap_or(0);
            total += b;
            sizes.insert(format!("{}.{k}", rec.stage), json!(b));
        }
    }
    Ok(json!({
        "ref": name,
        "documents": recs["ingest"].summary["documents"],
        "train_documents": recs["ingest"].summary["train"],
        "test_documents": recs["ingest"].summary["test"],
        "classes": recs["ingest"].summary["classes"],
        "vocabulary": recs["vocab"].summary["vocabulary"],
        "avg_doc_length": recs["vocab"].summary["avg_doc_length"],
        "empty_documents": recs["vocab"].summary["empty_documents"],
        "nodes": n,
        "edges": ei.num_edges(),
        "graph": g.summary,
        "splits": recs["splits"].summary,
        "degree": stats(deg.iter().map(|&d| d as f64)),
        "weight": stats(ea.values().iter().map(|&x| x as f64)),
        "top_words": top,
        "bytes": sizes,
        "total_bytes": total,
    }))
}

//! `textgcn-train`: train the GCN on prebuilt artifacts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tch::Device;
use textgcn_cli::ui::{self, Verbosity};
use textgcn_cli::store_dir;
use textgcn_pipeline::config::{self, DeviceChoice, ModelKind};
use textgcn_trainer::{Hyper, cuda_library, graph, run};

mod predict_cmd;

/// Train the TextGCN model on artifacts built by `textgcn build`, or
/// classify new documents with a trained run (`predict`).
#[derive(Parser)]
#[command(
    name = "textgcn-train",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  textgcn-train --config configs/R8.toml\n  textgcn-train --config configs/mr.toml --runs 5 --json\n  textgcn-train --config configs/20ng.toml --device cuda --epochs 100\n  textgcn-train predict --model runs/R8/seed-0 --input new.txt"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run config (TOML); its `[train]` section gives the defaults.
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    /// Store directory (default: $TEXTGCN_STORE, else ./.textgcn-store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Seed (same seed, same device: identical metrics).
    #[arg(long)]
    seed: Option<u64>,
    /// Train this many seeds (seed, seed+1, ...) and report mean ± std.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where to train (default: the config's `train.device`).
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// Model: gcn (default), sgc, ssgc, tfidf-lr (default: the config's
    /// `train.model`).
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    /// L-BFGS iterations of a linear model (sgc, ssgc, tfidf-lr).
    #[arg(long)]
    iterations: Option<usize>,
    /// Maximum epochs (gcn).
    #[arg(long)]
    epochs: Option<usize>,
    /// Hidden units (gcn).
    #[arg(long)]
    hidden: Option<usize>,
    /// Dropout on the hidden layer (gcn).
    #[arg(long)]
    dropout: Option<f64>,
    /// Adam learning rate (gcn).
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay: the gcn's on its first layer, a linear model's L2
    /// penalty (`train.<model>.weight_decay`).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Early-stopping window (gcn; 0: off).
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Train on label sets (`train.multi_label`): each document's label
    /// field holds several labels joined by the separator.
    #[arg(long)]
    multi_label: bool,
    /// What joins the labels of a label field (`train.label_separator`;
    /// needs multi-label training).
    #[arg(long)]
    label_separator: Option<String>,
    /// Run directory (default: runs/<name>/seed-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CPU threads, for libtorch and for the trainer's own kernels
    /// (default: all cores). A run's results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    /// Print final metrics as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No per-epoch lines, no progress bar.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail on stderr (-v: steps, -vv: timings inside an epoch).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Classify new documents with a trained run, without rebuilding the
    /// graph or retraining.
    #[command(after_help = "Examples:\n  textgcn-train predict --model runs/R8/seed-0 --input new.txt\n  textgcn-train predict --model runs/R8/seed-0 --input new.csv --text-column body --output out.parquet\n  textgcn-train predict --model runs/R8/seed-0 --input new.txt --config configs/R8.toml --json")]
    Predict(predict_cmd::PredictArgs),
}

fn main() -> ExitCode {
    passive_openmp();
    textgcn_cli::cli_main::<Cli>(real_main)
}

/// libtorch's OpenMP workers spin-wait after each parallel op by default,
/// taking the cores the native sparse kernel (a rayon pool) needs next:
/// measured on 20ng, 3.8 s per epoch with `OMP_WAIT_POLICY=ACTIVE` against
/// 3.0 s with `PASSIVE`. libgomp reads the variable when it is loaded,
/// before `main`, so unless the user chose a policy, re-execute once with
/// `PASSIVE` set (if that fails, carry on as we are).
fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE").exec();
    }
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = if xs.len() > 1 { xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64 } else { 0.0 };
    (m, v.sqrt())
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn real_main(cli: Cli) -> Result<()> {
    if let Some(Command::Predict(args)) = cli.command {
        return predict_cmd::run(args);
    }
    let config_path = cli.config.clone().expect("clap requires --config without a subcommand");
    let v = Verbosity::from_flags(cli.verbose, cli.quiet);
    ui::init_logging(v);
    if std::env::var("TEXTGCN_MALLOC").as_deref() != Ok("default") {
        textgcn_trainer::alloc::reuse_large_allocations();
    }
    let cfg = config::load_for_artifacts(&config_path)?;
    if v.shows_results() {
        for (key, p) in &cfg.missing {
            eprintln!("note: `{key}` file {} not found; using the artifacts as they were built from it", p.display());
        }
    }
    if let Some(n) = cli.threads {
        tch::set_num_threads(n);
        rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global().context("--threads: the thread pool was already started")?;
    }
    // The flags override the config's [train] values, and are checked by
    // the same rules.
    let mut checked = cfg.config.clone();
    let o = &mut checked.train;
    o.model = cli.model.unwrap_or(o.model);
    // A flag of one model beside another model would do nothing: refuse it.
    let gcn_flags = [("--hidden", cli.hidden.is_some()), ("--dropout", cli.dropout.is_some()), ("--lr", cli.lr.is_some()), ("--epochs", cli.epochs.is_some()), ("--early-stopping", cli.early_stopping.is_some())];
    if o.model != ModelKind::Gcn
        && let Some((flag, _)) = gcn_flags.iter().find(|(_, given)| *given)
    {
        bail!("{flag} is a setting of the gcn model, but the model is {}; its settings are in [{}] (and --weight-decay, --iterations)", o.model.as_str(), o.model.table().unwrap_or("train"));
    }
    if o.model == ModelKind::Gcn && cli.iterations.is_some() {
        bail!("--iterations is a setting of the linear models (sgc, ssgc, tfidf-lr); the gcn trains for --epochs");
    }
    o.hidden = cli.hidden.unwrap_or(o.hidden);
    o.dropout = cli.dropout.unwrap_or(o.dropout);
    o.learning_rate = cli.lr.unwrap_or(o.learning_rate);
    match o.model {
        ModelKind::Gcn => o.weight_decay = cli.weight_decay.unwrap_or(o.weight_decay),
        ModelKind::Sgc => (o.sgc.weight_decay, o.sgc.iterations) = (cli.weight_decay.unwrap_or(o.sgc.weight_decay), cli.iterations.unwrap_or(o.sgc.iterations)),
        ModelKind::Ssgc => (o.ssgc.weight_decay, o.ssgc.iterations) = (cli.weight_decay.unwrap_or(o.ssgc.weight_decay), cli.iterations.unwrap_or(o.ssgc.iterations)),
        ModelKind::TfidfLr => (o.tfidf_lr.weight_decay, o.tfidf_lr.iterations) = (cli.weight_decay.unwrap_or(o.tfidf_lr.weight_decay), cli.iterations.unwrap_or(o.tfidf_lr.iterations)),
    }
    o.epochs = cli.epochs.unwrap_or(o.epochs);
    o.early_stopping = cli.early_stopping.unwrap_or(o.early_stopping);
    o.seed = cli.seed.unwrap_or(o.seed);
    o.device = cli.device.unwrap_or(o.device);
    o.multi_label |= cli.multi_label;
    if let Some(sep) = &cli.label_separator {
        if !o.multi_label {
            bail!("--label-separator is read only for multi-label training; add --multi-label (or set `train.multi_label = true`)");
        }
        o.label_separator = sep.clone();
    }
    checked.validate().map_err(|(k, m)| anyhow::anyhow!("option for `{k}`: {m}"))?;
    let hyper: Hyper = checked.train;
    let device = match hyper.device {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => {
            cuda_library::load().map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            if !tch::Cuda::is_available() {
                bail!("--device cuda: no CUDA device is visible to libtorch");
            }
            Device::Cuda(0)
        }
        DeviceChoice::Auto => {
            // Without an NVIDIA driver there is no device to find, and the
            // CUDA library (~400 MB resident) stays unloaded.
            let loaded = cuda_library::driver_present()
                && cuda_library::load()
                    .map_err(|e| {
                        if v.shows_results() {
                            eprintln!("note: an NVIDIA driver is loaded, but {e}");
                        }
                    })
                    .is_ok();
            if loaded && tch::Cuda::is_available() {
                Device::Cuda(0)
            } else {
                if v.shows_results() {
                    eprintln!("note: no CUDA device found; training on the CPU");
                }
                Device::Cpu
            }
        }
    };
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let store = store_dir(cli.store.as_deref());
    let mut data = graph::load(&store, &cfg, device).with_context(|| format!("loading the artifacts of {}", cfg.config.name))?;
    if hyper.multi_label {
        data.use_label_sets(&hyper.label_separator).with_context(|| format!("reading the label sets of {} (train.multi_label)", cfg.config.name))?;
    }
    let say = |line: String| {
        if v.shows_results() {
            eprintln!("{line}");
        }
    };
    say(format!(
        "{}: {} nodes ({} documents, {} {}), {} edges; train/val/test {}/{}/{}; model {}; device {:?}",
        cfg.config.name,
        data.num_nodes,
        data.num_docs,
        data.num_classes(),
        if data.targets.is_multi() { "labels in sets" } else { "classes" },
        data.num_edges,
        data.split_lists[0].len(),
        data.split_lists[1].len(),
        data.split_lists[2].len(),
        hyper.model.as_str(),
        device
    ));
    let run_dir = |seed: u64| match &cli.out {
        Some(d) if cli.runs == 1 => d.clone(),
        Some(d) => d.join(format!("seed-{seed}")),
        None => PathBuf::from("runs").join(&cfg.config.name).join(format!("seed-{seed}")),
    };
    // Before any training: every run directory can be written, and the
    // model fits in memory.
    for k in 0..cli.runs {
        textgcn_trainer::run_dir::check_target(&run_dir(hyper.seed + k as u64))?;
    }
    match textgcn_trainer::linear::Spec::of(&hyper) {
        None => textgcn_trainer::model::check_fits(data.num_nodes, hyper.hidden, data.num_classes(), data.num_docs, device)?,
        Some(spec) => {
            let params = if spec.kind == ModelKind::TfidfLr { data.num_nodes - data.num_docs } else { data.num_nodes };
            textgcn_trainer::model::check_bytes_fit(
                textgcn_trainer::linear::training_bytes(params, data.num_nodes, data.num_classes(), data.num_docs, spec.iterations),
                &format!("{} parameter rows × {} classes with L-BFGS ({} documents)", params, data.num_classes(), data.num_docs),
                device,
            )?
        }
    }
    let mut results = Vec::new();
    for k in 0..cli.runs {
        let h = Hyper { seed: hyper.seed + k as u64, ..hyper.clone() };
        let steps = textgcn_trainer::linear::Spec::of(&h).map_or(h.epochs, |s| s.iterations);
        let pb = ui::bar(v, steps as u64, format!("seed {}", h.seed));
        let step = if h.model == ModelKind::Gcn { "epoch" } else { "iteration" };
        let trained = run::train_run(&data, &h, |e| {
            pb.inc(1);
            pb.set_message(format!("val loss {:.4} acc {:.4}", e.val_loss, e.val_acc));
            if v.shows_results() {
                ui::println(&pb, &format!("{step} {:>3}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  {:.3}s", e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.seconds));
            }
        });
        pb.finish_and_clear();
        let dir = run_dir(h.seed);
        run::write_outputs(&dir, &data, &trained)?;
        let res = trained.result;
        if let Some(ind) = &res.inductive {
            say(format!(
                "held-out test documents classified inductively: {} ({} without a known word, {} with a label unseen in training), {:.0} documents/s",
                ind.documents, ind.no_known_words, ind.unseen_labels, ind.documents_per_second
            ));
        }
        if let Some(m) = &res.multi_label {
            let at: Vec<String> = m.precision_at.iter().map(|p| format!("P@{} {:.4}", p.k, p.precision)).collect();
            say(format!(
                "seed {}: threshold {:.4} (chosen on validation: micro F1 {:.4}); test micro P/R/F1 {:.4}/{:.4}/{:.4}, Hamming loss {:.4}, {}",
                res.seed, m.threshold, m.validation_micro_f1, m.micro_precision, m.micro_recall, m.micro_f1, m.hamming_loss, at.join(", ")
            ));
        }
        say(format!(
            "seed {}: test {} {:.4}, macro P/R/F1 {:.4}/{:.4}/{:.4}, {} epochs, median {:.3}s/epoch -> {}",
            res.seed,
            if res.multi_label.is_some() { "subset accuracy" } else { "accuracy" },
            res.test_accuracy,
            res.macro_precision,
            res.macro_recall,
            res.macro_f1,
            res.epochs_run,
            res.median_epoch_seconds,
            dir.display()
        ));
        results.push(res);
        textgcn_trainer::alloc::release_free_memory();
    }
    let last = results.last().expect("at least one run");
    let m = &last.memory;
    say(format!("\n{:<28} {:>9} {:>9} {:>9} {:>8}", if last.multi_label.is_some() { "label" } else { "class" }, "precision", "recall", "f1", "support"));
    for r in &last.per_class {
        say(format!("{:<28} {:>9.4} {:>9.4} {:>9.4} {:>8}", r.label, r.precision, r.recall, r.f1, r.support));
    }
    say(format!(
        "memory: peak RSS {:.0} MB = mapped graph {:.0} MB (of {:.0} MB on disk) + other {:.0} MB; peak anonymous {:.0} MB",
        mb(m.peak_rss),
        mb(m.mapped_graph_rss),
        mb(m.mapped_graph_bytes),
        mb(m.other_peak),
        mb(m.peak_anon)
    ));
    let accs: Vec<f64> = results.iter().map(|r| r.test_accuracy).collect();
    let (mean, std) = mean_std(&accs);
    if cli.runs > 1 {
        say(format!("test accuracy over {} seeds: {:.4} ± {:.4}", cli.runs, mean, std));
    }
    if cli.json {
        let f1: Vec<f64> = results.iter().map(|r| r.macro_f1).collect();
        let out = serde_json::json!({
            "dataset": cfg.config.name,
            "model": last.model,
            "val_accuracy": last.val_accuracy,
            "train_seconds": last.train_seconds,
            "test_accuracy": last.test_accuracy,
            "macro_precision": last.macro_precision,
            "macro_recall": last.macro_recall,
            "macro_f1": last.macro_f1,
            "epochs_run": last.epochs_run,
            "median_epoch_seconds": last.median_epoch_seconds,
            "seed": last.seed,
            "device": last.device,
            "memory": last.memory,
            "inductive": last.inductive,
            "per_class": last.per_class,
            "multi_label": last.multi_label,
            "runs": results.len(),
            "test_accuracy_mean": mean,
            "test_accuracy_std": std,
            "macro_f1_mean": mean_std(&f1).0,
            "per_run": results.iter().map(|r| serde_json::json!({"seed": r.seed, "val_accuracy": r.val_accuracy, "train_seconds": r.train_seconds, "test_accuracy": r.test_accuracy, "macro_f1": r.macro_f1, "micro_f1": r.multi_label.as_ref().map(|m| m.micro_f1), "epochs_run": r.epochs_run, "median_epoch_seconds": r.median_epoch_seconds})).collect::<Vec<_>>(),
        });
        textgcn_cli::outln!("{}", serde_json::to_string(&out)?)?;
    }
    Ok(())
}

//! The trainer on real artifacts: it learns (far above chance), the same
//! seed gives identical metrics, and it refuses stale or damaged artifacts.

use std::path::Path;

use textgcn_e2e::*;

#[test]
fn r8_learns_and_is_reproducible() {
    let (dir, store, cfg) = built_r8();
    // Three threads, then one: a run's floats must not depend on how many
    // threads share the work (libtorch's dW1 product once did, so a loaded
    // machine could change a validation loss in its 7th digit).
    let a = json_of(&train_json(&store, &cfg, &dir.path().join("a"), &["--epochs", "25", "--seed", "7", "--threads", "3"]));
    // R8's largest class is 49% of the test set; chance is far below 0.85.
    let acc = a["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "R8 test accuracy {acc} after 25 epochs");
    assert_eq!(a["seed"], 7);
    assert_eq!(a["epochs_run"], 25);
    let b = json_of(&train_json(&store, &cfg, &dir.path().join("b"), &["--epochs", "25", "--seed", "7", "--threads", "1"]));
    for k in ["test_accuracy", "macro_precision", "macro_recall", "macro_f1"] {
        assert_eq!(a[k], b[k], "{k} differs between two runs with one seed (3 threads, then 1)");
    }
    let ea = std::fs::read_to_string(dir.path().join("a/epochs.csv")).unwrap();
    let eb = std::fs::read_to_string(dir.path().join("b/epochs.csv")).unwrap();
    let losses = |s: &str| s.lines().map(|l| l.rsplit_once(',').unwrap().0.to_owned()).collect::<Vec<_>>();
    assert_eq!(losses(&ea), losses(&eb), "per-epoch losses differ");
    for f in ["metrics.json", "epochs.csv", "predictions.parquet", "model.safetensors"] {
        assert!(dir.path().join("a").join(f).is_file(), "{f} missing");
    }
    let other = json_of(&train_json(&store, &cfg, &dir.path().join("c"), &["--epochs", "25", "--seed", "8"]));
    assert_ne!(other["macro_f1"], a["macro_f1"], "a different seed gave identical metrics");
}

#[test]
fn stale_missing_or_corrupt_artifacts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = data_dir();
    // Never built.
    let cfg = write_config(dir.path(), "mrt", &data, "mr/mr.txt", "mr/mr.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n");
    let o = train_json(&store, &cfg, &dir.path().join("r"), &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("make pipeline CONFIG="), "{}", text(&o));
    build_json(&store, &cfg, &[]);
    // Stale: a parameter changed since the build.
    let cfg2 = write_config(dir.path(), "mrt", &data, "mr/mr.txt", "mr/mr.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[graph]\nwindow_size = 10\n");
    let o = train_json(&store, &cfg2, &dir.path().join("r"), &["--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("stage graph would rerun (window_size changed 20 → 10)") && t.contains("make pipeline CONFIG="), "{t}");
    // Corrupt: one flipped byte in the mapped weights.
    let report = build_json(&store, &cfg, &[]);
    let graph = report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "graph").unwrap();
    let id = graph["outputs"]["edge_attr"][0].as_str().unwrap();
    let path = store.join("objects").join(&id[..2]).join(&id[2..]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let o = train_json(&store, &cfg, &dir.path().join("r"), &["--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("object {id} is corrupt")) && t.contains("expected hash"), "{t}");
}

#[test]
fn a_copied_store_trains_without_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("mr")).unwrap();
    for f in ["mr.txt", "mr.meta.txt"] {
        std::fs::copy(data_dir().join("mr").join(f), data.join("mr").join(f)).unwrap();
    }
    let extra = "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n";
    let cfg = write_config(dir.path(), "mrc", &data, "mr/mr.txt", "mr/mr.meta.txt", extra);
    let built = dir.path().join("built");
    build(&built, &cfg);
    // The store goes to another machine; the corpus does not.
    let copied = dir.path().join("copied");
    assert!(std::process::Command::new("cp").arg("-a").arg(&built).arg(&copied).status().unwrap().success());
    let export = |store: &Path| {
        let mut c = textgcn(store);
        c.arg("export-clean").arg("--config").arg(&cfg);
        ok(c)
    };
    let clean = export(&built);
    std::fs::remove_dir_all(&data).unwrap();
    assert_eq!(export(&copied), clean, "export-clean from the copied store");
    assert_eq!(clean.lines().count(), 10662);
    let m = json_of(&train_json(&copied, &cfg, &dir.path().join("r"), &["--epochs", "2"]));
    assert_eq!(m["epochs_run"], 2);
    // Without -q it says what it trusted.
    let mut c = std::process::Command::new(bin("textgcn-train"));
    c.arg("--store").arg(&copied).arg("--config").arg(&cfg).arg("--out").arg(dir.path().join("r2")).args(["--epochs", "1", "--json"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("note: `ingest.corpus` file") && text(&o).contains("using the artifacts as they were built"), "{}", text(&o));
    // Parameters are still checked against the build.
    let cfg2 = write_config(dir.path(), "mrc", &data, "mr/mr.txt", "mr/mr.meta.txt", &format!("{extra}[graph]\nwindow_size = 10\n"));
    let o = train_json(&copied, &cfg2, &dir.path().join("r3"), &["--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("stage graph would rerun (window_size changed 20 → 10)"), "{t}");
    // A store without a build of the config cannot vouch for the files.
    let other = dir.path().join("other");
    assert!(std::process::Command::new("cp").arg("-a").arg(&copied).arg(&other).status().unwrap().success());
    std::fs::remove_file(other.join("refs/mrc.json")).unwrap();
    let o = train_json(&other, &cfg, &dir.path().join("r4"), &["--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("key `ingest.corpus`: file") && t.contains("mr/mr.txt not found, and no build of mrc in the store read it"), "{t}");
    // A build needs the files.
    let mut c = textgcn(&copied);
    c.arg("build").arg("--config").arg(&cfg);
    let o = run(c);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("key `ingest.corpus`") && t.contains("not found"), "{t}");
}

/// A corpus of 200,000 classes (one document each): training would need
/// hundreds of GB for the logits alone. It is refused before anything is
/// allocated, naming the shapes (libtorch aborted on a 4 TB allocation).
#[test]
fn a_model_that_cannot_fit_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000;
    let mut corpus = String::new();
    let mut meta = String::new();
    for i in 0..n {
        corpus.push_str(&format!("w{} w{} common\n", i % 97, i % 89));
        meta.push_str(&format!("d{i}\t{}\tc{i}\n", if i % 3 == 0 { "test" } else { "train" }));
    }
    std::fs::write(dir.path().join("c.txt"), corpus).unwrap();
    std::fs::write(dir.path().join("c.meta.txt"), meta).unwrap();
    let cfg = write_config(dir.path(), "many", dir.path(), "c.txt", "c.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n");
    let store = dir.path().join("store");
    build(&store, &cfg);
    let o = train_json(&store, &cfg, &dir.path().join("r"), &["--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("the model does not fit") && t.contains("200000 classes") && !t.contains("panicked"), "{t}");
    assert!(!dir.path().join("r").exists(), "a run directory was written");
}

/// A cgroup with a memory limit, removed on drop (its processes have
/// ended by then); `None` where no memory controller can be written
/// (cgroup v2's `memory.max`, else v1's `memory.limit_in_bytes`).
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn new(limit: u64) -> Option<Cgroup> {
        let name = format!("textgcn-test-{}", std::process::id());
        let (dir, file) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (Path::new("/sys/fs/cgroup").join(name), "memory.max")
        } else {
            (Path::new("/sys/fs/cgroup/memory").join(name), "memory.limit_in_bytes")
        };
        std::fs::create_dir(&dir).ok()?;
        let cg = Cgroup(dir);
        std::fs::write(cg.0.join(file), limit.to_string()).ok()?;
        Some(cg)
    }

    /// `program` with `args`, started inside the cgroup.
    fn command(&self, program: &Path, args: &[&std::ffi::OsStr]) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(format!("echo $$ > '{}/cgroup.procs' && exec \"$0\" \"$@\"", self.0.display())).arg(program).args(args);
        c
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// In a cgroup whose memory limit (600 MiB) is far below what the machine
/// has available, a model that needs about 2 GB is refused before
/// anything is allocated, naming the memory the limit leaves: the limit,
/// not the machine's `MemAvailable`, is what the trainer can have (the
/// kernel killed it midway before). Where no cgroup can be made (not
/// root, no memory controller), or swap would be counted beside it, it
/// says so and checks nothing.
#[test]
fn a_model_larger_than_the_cgroup_limit_is_refused() {
    // With swap the trainer may count on more than the cgroup's limit.
    let swap = std::fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().any(|l| l.starts_with("SwapFree:") && l.split_whitespace().nth(1) != Some("0"));
    if swap {
        eprintln!("skipped: this machine has swap, which the cgroup's limit does not bound");
        return;
    }
    let Some(cg) = Cgroup::new(600 << 20) else {
        eprintln!("skipped: no writable cgroup memory controller here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut corpus, mut meta) = (String::new(), String::new());
    for i in 0..3000 {
        corpus.push_str(&format!("w{} w{} common\n", i % 97, i % 89));
        meta.push_str(&format!("d{i}\t{}\tc{}\n", if i % 3 == 0 { "test" } else { "train" }, i % 3));
    }
    std::fs::write(dir.path().join("c.txt"), corpus).unwrap();
    std::fs::write(dir.path().join("c.meta.txt"), meta).unwrap();
    let cfg = write_config(dir.path(), "wide", dir.path(), "c.txt", "c.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n");
    let store = dir.path().join("store");
    build(&store, &cfg);
    let out = dir.path().join("r");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--store".as_ref(), store.as_os_str(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), out.as_os_str(),
        "--device".as_ref(), "cpu".as_ref(), "--hidden".as_ref(), "23000".as_ref(), "--epochs".as_ref(), "1".as_ref(), "-q".as_ref(),
    ];
    let o = run(cg.command(&bin("textgcn-train"), &args));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("the model does not fit") && t.contains("23000 hidden units") && t.contains("GB of memory is available"), "{t}");
    let avail: f64 = t.split(" GB of memory is available").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(avail < 0.63, "the limit's room, not the machine's: {t}");
    assert!(!out.exists(), "a run directory was written");
}

//! Hostile inputs and damaged stores, as a user would meet them (issue 12):
//! a store never touches what is not its own, gc never removes what a ref
//! reaches, damage is found by every reader and `build --repair` ends
//! byte-identical to a clean build, nothing panics, and a killed training
//! run leaves no half-written run directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use textgcn_artifacts::{StageRecord, Store, OpenMode};
use textgcn_e2e::*;

fn textgcn_in(store: &Path) -> Command {
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir());
    c
}

fn trainer(store: &Path, cfg: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin("textgcn-train"));
    c.arg("--store").arg(store).arg("--config").arg(cfg).arg("--out").arg(out).args(["-q", "--epochs", "3"]).env("TEXTGCN_DATA_DIR", data_dir());
    c
}

/// Fails with the output when the command did not exit 1 with an `error:`
/// line, or when anything panicked; returns the output's text.
fn fails_cleanly(o: &Output, what: &str) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1, got {:?}: {t}", o.status);
    assert!(t.contains("error:") && !t.contains("panicked"), "{what}: {t}");
    t
}

fn object_path(store: &Path, id: &str) -> PathBuf {
    store.join("objects").join(&id[..2]).join(&id[2..])
}

/// The graph stage's fingerprint and the id of output `name`, from the ref.
fn graph_output(store: &Path, ref_name: &str, name: &str) -> (String, String) {
    let s = Store::open(store, OpenMode::Read).unwrap();
    let r = s.get_ref(ref_name).unwrap();
    let entry = r.stage("graph").unwrap();
    let rec = s.get_record(&entry.fingerprint).unwrap().unwrap();
    (entry.fingerprint.clone(), rec.outputs[name].id.to_string())
}

fn record_path(store: &Path, fp: &str) -> PathBuf {
    store.join("records").join(format!("{fp}.json"))
}

fn writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_build_never_adopts_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(proj.join("tmp/exp")).unwrap();
    std::fs::write(proj.join("tmp/notes.txt"), "n\n").unwrap();
    let mut c = textgcn_in(Path::new("."));
    c.current_dir(&proj).arg("build").arg("--config").arg(repo().join("configs/mr.toml"));
    let t = fails_cleanly(&run(c), "build --store . in a project directory");
    assert!(t.contains("refusing to use . as a store") && t.contains("not empty"), "{t}");
    assert_eq!(std::fs::read_to_string(proj.join("tmp/notes.txt")).unwrap(), "n\n");
    assert!(proj.join("tmp/exp").is_dir());
    let left: Vec<String> = std::fs::read_dir(&proj).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["tmp"], "the build left files in the project directory");
}

#[test]
fn damage_is_found_by_every_reader_and_build_repair_restores_a_clean_build() {
    let dir = tempfile::tempdir().unwrap();
    let mr = repo().join("configs/mr.toml");
    // mr, and mr with another window under another name: a second valid
    // graph in the same store.
    let mr15 = dir.path().join("mr15.toml");
    std::fs::write(&mr15, std::fs::read_to_string(&mr).unwrap().replace("name = \"mr\"", "name = \"mr15\"").replace("window_size = 20", "window_size = 15")).unwrap();
    assert!(std::fs::read_to_string(&mr15).unwrap().contains("window_size = 15"), "configs/mr.toml changed shape");
    let fresh = |name: &str| {
        let store = dir.path().join(name);
        build(&store, &mr);
        build(&store, &mr15);
        store
    };
    let reference = store_content(&fresh("reference"));
    let verify_fails = |store: &Path, what: &str| {
        let mut c = textgcn_in(store);
        c.arg("verify");
        fails_cleanly(&run(c), what)
    };
    let repair_and_compare = |store: &Path, what: &str| {
        let mut c = textgcn_in(store);
        c.args(["build", "--repair", "--config"]).arg(&mr);
        ok(c);
        let mut c = textgcn_in(store);
        c.arg("verify");
        ok(c);
        assert!(store_content(store) == reference, "{what}: the repaired store differs from a clean build");
    };

    // 1. A flipped bit in the mapped weights: verify and training say so,
    //    a plain build does not heal it, build --repair does.
    let store = fresh("flip");
    let (_, attr) = graph_output(&store, "mr", "edge_attr");
    let p = object_path(&store, &attr);
    writable(&p);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&p, bytes).unwrap();
    assert!(verify_fails(&store, "flip").contains(&format!("object {attr} is corrupt")));
    let t = fails_cleanly(&run(trainer(&store, &mr, &dir.path().join("run-flip"))), "training on a corrupt graph");
    assert!(t.contains("corrupt") && t.contains("--repair"), "{t}");
    repair_and_compare(&store, "flip");

    // 2. An object replaced by a link to another object's bytes.
    let store = fresh("link");
    let (_, attr) = graph_output(&store, "mr", "edge_attr");
    let (_, other) = graph_output(&store, "mr15", "edge_attr");
    std::fs::remove_file(object_path(&store, &attr)).unwrap();
    std::os::unix::fs::symlink(object_path(&store, &other), object_path(&store, &attr)).unwrap();
    assert!(verify_fails(&store, "link").contains("not a regular file"));
    fails_cleanly(&run(trainer(&store, &mr, &dir.path().join("run-link"))), "training through a link");
    repair_and_compare(&store, "link");

    // 3. A record whose object is missing: status says so, a plain build
    //    rebuilds the stage once and replaces the record.
    let store = fresh("missing");
    let (_, attr) = graph_output(&store, "mr", "edge_attr");
    std::fs::remove_file(object_path(&store, &attr)).unwrap();
    let mut c = textgcn_in(&store);
    c.args(["status", "--config"]).arg(&mr);
    let st = ok(c);
    assert!(st.contains("graph stale") && st.contains("record is damaged") && st.contains("missing"), "{st}");
    let report = build_json(&store, &mr, &[]);
    let graph = report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "graph").unwrap();
    assert_eq!(graph["status"], "rebuilt");
    assert!(graph["why"].as_str().unwrap().contains("quarantine"), "{graph}");
    assert!(statuses(&build_json(&store, &mr, &[])).iter().all(|(_, s)| s == "fresh"), "the next build is fresh");
    let mut c = textgcn_in(&store);
    c.arg("gc");
    ok(c); // removes the quarantined record
    assert!(store_content(&store) == reference, "the rebuilt store differs from a clean build");

    // 4. The graph record's outputs swapped for the other valid graph (an
    //    edit that keeps the digest): no reader uses it.
    let store = fresh("swap");
    let (fp, _) = graph_output(&store, "mr", "edge_index");
    let other: StageRecord = {
        let s = Store::open(&store, OpenMode::Read).unwrap();
        s.get_record(&s.get_ref("mr15").unwrap().stage("graph").unwrap().fingerprint).unwrap().unwrap()
    };
    let rp = record_path(&store, &fp);
    writable(&rp);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rp).unwrap()).unwrap();
    v["record"]["outputs"] = serde_json::to_value(&other.outputs).unwrap();
    std::fs::write(&rp, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    assert!(verify_fails(&store, "swap").contains("does not match its digest"));
    let mut c = textgcn_in(&store);
    c.args(["inspect", "mr"]);
    fails_cleanly(&run(c), "inspect of a swapped graph");
    let t = fails_cleanly(&run(trainer(&store, &mr, &dir.path().join("run-swap"))), "training on a swapped graph");
    assert!(t.contains("digest"), "{t}");
    let mut c = textgcn_in(&store);
    c.arg("gc");
    let t = fails_cleanly(&run(c), "gc with a damaged record");
    assert!(t.contains("nothing was removed"), "{t}");
    repair_and_compare(&store, "swap");

    // 5. A record and ref consistent in every hash, naming the tokens table
    //    as the weights: verify decodes every output as its kind.
    let store = fresh("kind");
    {
        let s = Store::open(&store, OpenMode::Read).unwrap();
        let mut r = s.get_ref("mr").unwrap();
        let tokens = s.get_record(&r.stage("tokenize").unwrap().fingerprint).unwrap().unwrap().outputs["tokens"].clone();
        let k = r.stages.iter().position(|e| e.stage == "graph").unwrap();
        let mut rec = s.get_record(&r.stages[k].fingerprint).unwrap().unwrap();
        let kind = rec.outputs["edge_attr"].kind;
        rec.outputs.insert("edge_attr".into(), textgcn_artifacts::Output { kind, ..tokens });
        let rp = record_path(&store, &rec.fingerprint);
        writable(&rp);
        std::fs::write(&rp, serde_json::to_vec(&serde_json::json!({"digest": rec.digest(), "record": rec})).unwrap()).unwrap();
        r.stages[k] = textgcn_artifacts::RefStage::of(&rec);
        std::fs::write(store.join("refs/mr.json"), serde_json::to_vec(&r).unwrap()).unwrap();
    }
    let t = verify_fails(&store, "kind");
    assert!(t.contains("output `edge_attr` is recorded as a edge_attr, but"), "{t}");
    fails_cleanly(&run(trainer(&store, &mr, &dir.path().join("run-kind"))), "training on tokens as weights");
    repair_and_compare(&store, "kind");

    // 6. A ref whose stages are swapped or missing: errors, never a panic.
    let store = fresh("ref");
    let rp = store.join("refs/mr.json");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rp).unwrap()).unwrap();
    for (what, stages) in [("swapped", { let mut s = r["stages"].as_array().unwrap().clone(); s.swap(1, 3); s }), ("missing", r["stages"].as_array().unwrap()[..2].to_vec())] {
        std::fs::write(&rp, serde_json::to_vec(&serde_json::json!({"name": "mr", "stages": stages})).unwrap()).unwrap();
        let mut c = textgcn_in(&store);
        c.args(["inspect", "mr"]);
        let t = fails_cleanly(&run(c), &format!("inspect, stages {what}"));
        assert!(t.contains("ref mr"), "{t}");
        fails_cleanly(&run(trainer(&store, &mr, &dir.path().join("run-ref"))), &format!("training, stages {what}"));
        let mut c = textgcn_in(&store);
        c.arg("export-clean").arg("--config").arg(&mr);
        fails_cleanly(&run(c), &format!("export-clean, stages {what}"));
    }
    repair_and_compare(&store, "ref");
}

#[test]
fn quiet_means_quiet_and_an_up_to_date_read_only_store_builds() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("c.txt"), "apple pie sweet\nbanana split sweet\ncar engine loud\ntruck engine loud\n").unwrap();
    std::fs::write(data.join("c.meta.txt"), "a\ttrain\tfood\nb\ttest\tfood\nc\ttrain\tcar\nd\ttest\tcar\n").unwrap();
    let cfg = write_config(dir.path(), "tiny", &data, "c.txt", "c.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[splits]\nval_fraction = 0.0\n");
    let store = dir.path().join("store");
    build(&store, &cfg);
    for cmd in ["verify", "gc"] {
        let mut c = textgcn(&store);
        c.args(["-q", cmd]);
        let o = run(c);
        assert!(o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(), "-q {cmd}: {}", text(&o));
    }
    // The same build by a user who cannot write the store: nothing to do,
    // so it succeeds (it was refused before); a stale one is refused.
    let as_other_user = |args: &[&str], config: &Path| {
        let exe = dir.path().join("textgcn");
        if !exe.exists() {
            std::fs::copy(bin("textgcn"), &exe).unwrap();
        }
        let mut c = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&exe);
            c
        } else {
            std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o555)).unwrap();
            Command::new(&exe)
        };
        c.arg("--store").arg(&store).args(args).arg("--config").arg(config);
        run(c)
    };
    let o = as_other_user(&["build", "--json"], &cfg);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(statuses(&report).iter().all(|(_, s)| s == "fresh"), "{report}");
    let stale = write_config(dir.path(), "tiny", &data, "c.txt", "c.meta.txt", "[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[splits]\nval_fraction = 0.0\n[graph]\nwindow_size = 2\n");
    let t = fails_cleanly(&as_other_user(&["build"], &stale), "a stale build on a read-only store");
    assert!(t.contains("cannot be written") && t.contains("graph would rerun"), "{t}");
}

/// Whether this process runs as root (who may write anything, so another
/// user stands in for a read-only store).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

#[test]
fn a_killed_training_run_leaves_no_run_directory_and_the_rerun_cleans_up() {
    let (dir, store, cfg) = built_r8();
    let runs = dir.path().join("runs");
    let out = runs.join("seed-0");
    // Killed after every file is written, before the directory is renamed
    // into place (the last moment a kill can interrupt).
    let mut c = trainer(&store, &cfg, &out);
    c.env("TEXTGCN_FAILPOINT", "before-run-publish");
    let o = run(c);
    assert!(!o.status.success(), "the fail-point did not stop the run: {}", text(&o));
    assert!(!out.exists(), "a killed run left {}", out.display());
    let staged: Vec<String> = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(staged.len() == 1 && staged[0].starts_with(".seed-0.tmp-"), "{staged:?}");
    // The rerun publishes the whole directory and removes the leftover.
    ok(trainer(&store, &cfg, &out));
    let left: Vec<String> = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["seed-0"]);
    let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["curves.png", "epochs.csv", "metrics.json", "model.safetensors", "predictions.parquet", "predictor.json", "predictor.safetensors"]);
    // A run directory holding the user's files is refused before training.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let t = fails_cleanly(&run(trainer(&store, &cfg, &out)), "a run into a directory with other files");
    assert!(t.contains("notes.txt"), "{t}");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}

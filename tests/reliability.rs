//! Reliability of whole `textgcn build` processes: killed anywhere, run
//! concurrently, traced for the order of their publishing system calls.
//! The figures these tests reach are in docs/reliability.md.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use textgcn_e2e::*;

fn build_cmd(store: &Path, cfg: &Path) -> Command {
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).arg("build").arg("--config").arg(cfg).stdout(Stdio::null()).stderr(Stdio::null());
    c
}


/// Checks every object file under `store/objects` not seen before: its
/// bytes must hash to its name. Returns how many it checked.
fn check_new_objects(store: &Path, seen: &mut HashSet<PathBuf>) -> usize {
    let mut n = 0;
    for f in files_under(&store.join("objects")) {
        let p = store.join("objects").join(&f);
        if seen.contains(&p) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else { continue }; // removed meanwhile
        let name: String = f.chars().filter(|c| *c != '/').collect();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), name, "a reader saw an incomplete or wrong object {f}");
        seen.insert(p);
        n += 1;
    }
    n
}

const FAILPOINTS: [(&str, u32); 6] = [("after-temp-write", 10), ("after-fsync", 10), ("after-rename", 10), ("before-record", 5), ("after-record", 5), ("before-ref", 1)];

#[test]
fn builds_killed_anywhere_complete_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repo().join("configs/mr.toml");
    let reference = dir.path().join("reference");
    assert!(build_cmd(&reference, &cfg).status().unwrap().success());
    let want = store_content(&reference);
    // A reader that checks every object as soon as it appears.
    let current = Arc::new(std::sync::Mutex::new(PathBuf::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (current, stop, checked) = (current.clone(), stop.clone(), checked.clone());
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            while !stop.load(Ordering::SeqCst) {
                let store = current.lock().unwrap().clone();
                if !store.as_os_str().is_empty() {
                    checked.fetch_add(check_new_objects(&store, &mut seen), Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let (mut killed, mut at_failpoint, mut failpoint_runs, mut leftovers) = (0, 0, 0, 0);
    let kills = 100;
    for i in 0..kills {
        let store = dir.path().join(format!("s{i}"));
        *current.lock().unwrap() = store.clone();
        let mut c = build_cmd(&store, &cfg);
        let status = if i % 2 == 1 {
            // A named fail-point at its k-th pass.
            let (fp, max) = FAILPOINTS[(i / 2) % FAILPOINTS.len()];
            c.env("TEXTGCN_FAILPOINT", format!("{fp}:{}", rng.random_range(1..=max)));
            let s = c.status().unwrap();
            failpoint_runs += 1;
            at_failpoint += (!s.success()) as usize;
            s
        } else {
            let mut child = c.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap()
        };
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "run {i}: the build failed instead of being killed: {status:?}");
            killed += 1;
        }
        if store.join("tmp").exists() && !files_under(&store.join("tmp")).is_empty() {
            leftovers += 1;
        }
        // Rerun to completion: the result is the uninterrupted build's.
        let o = run({
            let mut c = build_cmd(&store, &cfg);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c
        });
        assert!(o.status.success(), "run {i}: rerun failed: {}", text(&o));
        assert!(files_under(&store.join("tmp")).is_empty(), "run {i}: temp files left after a complete run");
        let got = store_content(&store);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "run {i}: files differ from the uninterrupted build");
        assert!(got == want, "run {i}: bytes differ from the uninterrupted build");
        let mut v = textgcn(&store);
        v.arg("verify");
        ok(v);
        *current.lock().unwrap() = PathBuf::new();
        std::fs::remove_dir_all(&store).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    eprintln!(
        "{kills} builds: {killed} killed ({at_failpoint} at named fail-points), {leftovers} left temp files behind (all swept), {} objects checked by the concurrent reader",
        checked.load(Ordering::SeqCst)
    );
    // Deterministic: a mr build passes each named point at least as often
    // as the largest pass asked for, so every fail-point run dies there,
    // and those after a temporary write and before its rename leave temp
    // files. (Kills at random moments vary with the machine's speed; they
    // are counted above, not asserted.)
    assert_eq!(at_failpoint, failpoint_runs, "a fail-point run was not killed at its point");
    assert!(leftovers > 0, "no kill ever interrupted a publish");
    assert!(checked.load(Ordering::SeqCst) > 0, "the reader never saw an object");
}

#[test]
fn concurrent_builds_on_one_store_compute_each_stage_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    let mr = repo().join("configs/mr.toml");
    let r8 = repo().join("configs/R8.toml");
    let mr10 = write_config(dir.path(), "mr10", &data, "mr/mr.txt", "mr/mr.meta.txt", "encoding = \"latin-1\"\n[vocab]\nmin_freq = 1\nstopwords = \"none\"\n[graph]\nwindow_size = 10\n");
    let configs = [&mr, &mr, &r8, &mr10];
    for round in 0..20 {
        let store = dir.path().join(format!("s{round}"));
        let n = 2 + round % 3; // 2, 3 or 4 builds at once
        let children: Vec<_> = configs[..n]
            .iter()
            .map(|cfg| {
                let mut c = textgcn(&store);
                c.env("TEXTGCN_DATA_DIR", &data).arg("build").arg("--config").arg(cfg).arg("--json").stdout(Stdio::piped()).stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        let mut rebuilt: HashMap<String, usize> = HashMap::new();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: a concurrent build failed: {}", text(&o));
            let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for s in rep["stages"].as_array().unwrap() {
                if s["status"] == "rebuilt" {
                    *rebuilt.entry(s["fingerprint"].as_str().unwrap().to_owned()).or_default() += 1;
                }
            }
        }
        assert!(rebuilt.values().all(|&k| k == 1), "round {round}: a stage was computed twice: {rebuilt:?}");
        // Every stage of every config was computed by someone.
        assert_eq!(rebuilt.len(), files_under(&store.join("records")).len(), "round {round}");
        let mut v = textgcn(&store);
        v.arg("verify");
        ok(v);
        std::fs::remove_dir_all(&store).unwrap();
    }
}

#[test]
fn a_killed_lock_holder_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let cfg = repo().join("configs/mr.toml");
    // Killed while holding the store lock and the ingest stage's lock.
    let mut c = build_cmd(&store, &cfg);
    c.env("TEXTGCN_FAILPOINT", "after-temp-write:1");
    assert!(!c.status().unwrap().success());
    // Every lock it held is free at once (the kernel dropped them).
    let mut locks: Vec<PathBuf> = files_under(&store.join("locks")).iter().map(|f| store.join("locks").join(f)).collect();
    locks.push(store.join("store.lock"));
    assert!(locks.len() >= 2, "{locks:?}");
    for l in &locks {
        let f = std::fs::OpenOptions::new().write(true).open(l).unwrap();
        let t = Instant::now();
        f.try_lock().unwrap_or_else(|e| panic!("{} is still locked: {e}", l.display()));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let o = run({
        let mut c = build_cmd(&store, &cfg);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    });
    assert!(o.status.success(), "{}", text(&o));
}

/// One traced system call: thread, name, the rest of the line.
struct Call {
    name: String,
    line: String,
}

/// Parses `strace -f -y` output, joining `<unfinished ...>` and
/// `<... resumed>` halves.
fn parse_strace(text: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for l in text.lines() {
        let (pid, rest) = l.split_once(' ').unwrap_or(("", l));
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_owned(), head.to_owned());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map(|x| x.1).unwrap_or("");
            pending.remove(pid).unwrap_or_default() + tail
        } else {
            rest.to_owned()
        };
        let name = full.split('(').next().unwrap_or("").to_owned();
        out.push(Call { name, line: full });
    }
    out
}

/// The quoted path arguments of a call, and paths shown by `-y` in `<...>`.
fn quoted(line: &str) -> Vec<String> {
    line.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

fn fd_path(line: &str) -> Option<String> {
    let a = line.find('<')?;
    let b = line[a..].find('>')? + a;
    Some(line[a + 1..b].to_owned())
}

#[test]
fn publishing_follows_write_fsync_rename_fsync_dir_and_records_come_last() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(strace.is_ok_and(|o| o.status.success()), "this test needs strace (apt install strace)");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let trace = dir.path().join("trace.txt");
    let cfg = repo().join("configs/mr.toml");
    let o = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", "trace=openat,open,creat,rename,renameat,renameat2,link,linkat,fsync,fdatasync,truncate,ftruncate"])
        .arg("-o")
        .arg(&trace)
        .arg(bin("textgcn"))
        .arg("--store")
        .arg(&store)
        .args(["build", "--config"])
        .arg(&cfg)
        .env("TEXTGCN_DATA_DIR", data_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let calls = parse_strace(&std::fs::read_to_string(&trace).unwrap());
    let root = store.canonicalize().unwrap().display().to_string();
    let published = |p: &str| ["objects/", "records/", "refs/"].iter().any(|d| p.starts_with(&format!("{root}/{d}")));
    let mut fsynced: HashSet<String> = HashSet::new();
    let mut renamed_at: HashMap<String, usize> = HashMap::new();
    let mut awaiting_dir_sync: Vec<(String, String)> = Vec::new(); // (final path, parent)
    let mut publishes = 0;
    for (k, c) in calls.iter().enumerate() {
        match c.name.as_str() {
            "open" | "openat" | "creat" => {
                let path = quoted(&c.line).pop().unwrap_or_default();
                let writing = c.name == "creat" || c.line.contains("O_WRONLY") || c.line.contains("O_RDWR") || c.line.contains("O_TRUNC");
                assert!(!(writing && published(&path)), "a published path was opened for writing: {}", c.line);
            }
            "truncate" | "ftruncate" => {
                let path = quoted(&c.line).pop().or_else(|| fd_path(&c.line)).unwrap_or_default();
                assert!(!published(&path), "a published file was truncated: {}", c.line);
            }
            "fsync" | "fdatasync" => {
                let p = fd_path(&c.line).unwrap_or_default();
                awaiting_dir_sync.retain(|(_, parent)| *parent != p);
                fsynced.insert(p);
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => {
                let q = quoted(&c.line);
                let (from, to) = (q[0].clone(), q[1].clone());
                if published(&to) {
                    assert!(fsynced.contains(&from), "{to} was published from {from}, which was never fsynced: {}", c.line);
                    let parent = Path::new(&to).parent().unwrap().display().to_string();
                    awaiting_dir_sync.push((to.clone(), parent));
                    renamed_at.insert(to, k);
                    publishes += 1;
                }
            }
            _ => {}
        }
    }
    assert!(awaiting_dir_sync.is_empty(), "published without fsyncing the directory afterwards: {awaiting_dir_sync:?}");
    // Records after their outputs, the ref after every record.
    let mut last_record = 0;
    for f in files_under(&store.join("records")) {
        let path = format!("{root}/records/{f}");
        let at = renamed_at[&path];
        last_record = last_record.max(at);
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for out in rec["record"]["outputs"].as_object().unwrap().values() {
            let id = out["id"].as_str().unwrap();
            let obj = format!("{root}/objects/{}/{}", &id[..2], &id[2..]);
            assert!(renamed_at[&obj] < at, "record {f} was published before its output {id}");
        }
    }
    let ref_at = renamed_at[&format!("{root}/refs/mr.json")];
    assert!(ref_at > last_record, "the ref was published before a record");
    assert!(publishes >= 15, "only {publishes} publishes traced");
    eprintln!("{publishes} publishes traced in {} system calls, all in order", calls.len());
}

//! The `ballista` engine (issue 15): a cluster started by the test on
//! 127.0.0.1 (one `textgcn-ballista scheduler`, two executors) builds
//! graphs with the very objects of the native engine, and a build that
//! loses an executor midway either completes with them or fails saying
//! so, publishing nothing; a rerun succeeds.
//!
//! These tests need `textgcn` and `textgcn-ballista` built with the crate
//! feature `ballista` (`make test` builds them so).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use textgcn_e2e::*;

/// A free port on 127.0.0.1 (bound, then released for a child to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `port` on 127.0.0.1 accepts connections, or `child`
/// exits (then panics with its log).
fn wait_listening(child: &mut Child, port: u16, log: &Path) {
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{} exited ({status}) before listening on {port}:\n{}", log.display(), std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A scheduler and its executors, killed when dropped.
struct Cluster {
    dir: PathBuf,
    scheduler_port: u16,
    scheduler: Child,
    executors: Vec<(Child, PathBuf)>,
}

impl Cluster {
    /// A scheduler (an executor is taken for dead after 6 s without a
    /// heartbeat) and `n` executors of two task slots each, each with
    /// `memory_pool` (e.g. "256MiB").
    fn start(dir: &Path, n: usize, memory_pool: &str) -> Cluster {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let log = dir.join("scheduler.log");
        let mut c = Command::new(bin("textgcn-ballista"));
        c.args(["scheduler", "--executor-timeout", "6", "--bind", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
        let mut scheduler = c.spawn().expect("textgcn-ballista not built with the `ballista` feature? make test builds it");
        wait_listening(&mut scheduler, port, &log);
        let mut cluster = Cluster { dir: dir.to_path_buf(), scheduler_port: port, scheduler, executors: Vec::new() };
        for _ in 0..n {
            cluster.add_executor(memory_pool);
        }
        cluster
    }

    /// Starts one more executor; waits until it serves.
    fn add_executor(&mut self, memory_pool: &str) {
        let k = self.executors.len();
        let (port, grpc) = (free_port(), free_port());
        let work = self.dir.join(format!("executor-{k}"));
        let log = self.dir.join(format!("executor-{k}.log"));
        let mut c = Command::new(bin("textgcn-ballista"));
        c.args(["executor", "--slots", "2", "--heartbeat", "2", "--memory-pool", memory_pool])
            .arg("--scheduler")
            .arg(format!("127.0.0.1:{}", self.scheduler_port))
            .args(["--port", &port.to_string(), "--grpc-port", &grpc.to_string()])
            .arg("--work-dir")
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = c.spawn().unwrap();
        wait_listening(&mut child, grpc, &log);
        self.executors.push((child, work));
    }

    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler_port)
    }

    /// The logs of every process, for a failing assertion.
    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
            all += &format!("--- {}\n{}\n", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (c, _) in &mut self.executors {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

/// `textgcn build --engine ballista --cluster URL --json` of `config`.
fn ballista_build(store: &Path, config: &Path, cluster: &Cluster) -> Command {
    let mut c = textgcn(store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--json", "--engine", "ballista", "--cluster", &cluster.url(), "--config"]).arg(config);
    c
}

/// Runs a build that must succeed and returns its report.
fn report(c: Command, cluster: &Cluster) -> serde_json::Value {
    let o = run(c);
    assert!(o.status.success(), "{}\n{}", text(&o), cluster.logs());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A generated corpus (12,000 documents of ~60 tokens: several
/// partitions of the `docs` table) and its config.
fn generated(dir: &Path) -> PathBuf {
    let mut c = Command::new(bin("textgcn"));
    c.args(["generate", "--docs", "12000", "--classes", "5", "--mean-length", "60", "--seed", "11", "--json", "--out"]).arg(dir.join("corpus"));
    let got: serde_json::Value = serde_json::from_str(&ok(c)).unwrap();
    PathBuf::from(got["config"].as_str().unwrap())
}

/// R8 and mr on a two-executor cluster: every stage's fingerprint and
/// record digest (so every object id) is the one recorded for the native
/// build, and the graph stage names the engine; then a generated corpus
/// of several partitions, large enough that the executors' shuffle
/// writers spill, equals its native build. The store's tmp/ is empty
/// after each build.
#[test]
fn ballista_publishes_the_native_objects() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("cluster"), 2, "256MiB");
    let expected = std::fs::read_to_string(repo().join("tests/expected/benchmark-builds.txt")).unwrap();
    for ds in ["R8", "mr"] {
        let store = dir.path().join(ds);
        let r = report(ballista_build(&store, &repo().join(format!("configs/{ds}.toml")), &cluster), &cluster);
        assert_eq!(r["stages"][3]["engine"], "ballista", "{ds}");
        let theirs: Vec<&str> = expected.lines().filter(|l| l.starts_with(&format!("{ds} "))).collect();
        assert_eq!(ref_lines(&store, ds), theirs, "{ds}: the Ballista build differs from the native one recorded");
        assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "scratch files left behind");
    }
    let config = generated(dir.path());
    let native = native_build(&dir.path().join("native"), &config);
    let store = dir.path().join("generated");
    let mut c = ballista_build(&store, &config, &cluster);
    c.arg("-v");
    let o = run(c);
    assert!(o.status.success(), "{}\n{}", text(&o), cluster.logs());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The cluster gave its sorted partitions, which this process merged.
    let log = String::from_utf8_lossy(&o.stderr);
    let runs: usize = log.split("runs, merged here").next().and_then(|head| head.rsplit(" in ").next()).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no merge of sorted runs reported: {log}"));
    assert!(runs >= 4, "{runs} sorted runs: the cluster merged its partitions itself? {log}");
    assert_eq!(r["stages"][3]["outputs"], native["stages"][3]["outputs"]);
    assert_eq!(r["stages"][3]["summary"], native["stages"][3]["summary"]);
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "scratch files left behind");
    // Its 4 partitions' pairs outgrow a task's 64 MiB shuffle buffer.
    assert!(cluster.logs().contains("Sort shuffle spill"), "no executor spilled: {}", cluster.logs());
}

/// The native build of `config` into `store`, rows held in memory.
fn native_build(store: &Path, config: &Path) -> serde_json::Value {
    let mut c = textgcn(store);
    c.args(["build", "--json", "--memory-limit", "8GiB", "--config"]).arg(config);
    serde_json::from_str(&ok(c)).unwrap()
}

/// Whether `dir` holds a file, at any depth.
fn holds_a_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|d| d.flatten().any(|e| if e.path().is_dir() { holds_a_file(&e.path()) } else { true })).unwrap_or(false)
}

/// One of the two executors is killed as soon as it has written its
/// first shuffle output: the build either completes (Ballista runs the
/// lost tasks again) with the native graph, or fails with an error
/// naming the engine and commits no graph; a rerun, with an executor
/// added back, succeeds with the native graph.
#[test]
fn a_killed_executor_is_survived_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path());
    let native = native_build(&dir.path().join("native"), &config);
    let mut cluster = Cluster::start(&dir.path().join("cluster"), 2, "512MiB");
    let store = dir.path().join("store");
    let mut build = ballista_build(&store, &config, &cluster).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Kill the first executor once it holds a task's output (the build
    // cannot end before every map task has written one).
    let victim = cluster.executors[0].1.clone();
    let mut killed = false;
    while build.try_wait().unwrap().is_none() {
        if holds_a_file(&victim) {
            cluster.executors[0].0.kill().unwrap();
            cluster.executors[0].0.wait().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = build.wait_with_output().unwrap();
    let out = text(&o);
    eprintln!("the build {} after the kill", if o.status.success() { "completed".to_owned() } else { format!("failed: {}", out.trim().lines().last().unwrap_or("")) });
    if o.status.success() {
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["stages"][3]["outputs"], native["stages"][3]["outputs"], "completed after the kill, with another graph");
    } else {
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.contains("ballista engine"), "the error does not say what failed: {out}");
        assert!(!store.join("refs/synthetic-12000.json").exists() || !std::fs::read_to_string(store.join("refs/synthetic-12000.json")).unwrap().contains("\"graph\""), "a failed build committed a graph");
        assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "scratch files left behind");
    }
    assert!(killed, "the executor to kill never ran a task: {out}\n{}", cluster.logs());
    cluster.add_executor("512MiB");
    let again = report(ballista_build(&store, &config, &cluster), &cluster);
    assert_eq!(again["stages"][3]["outputs"], native["stages"][3]["outputs"], "{}", cluster.logs());
}

/// `--engine ballista` without a scheduler is a usage error, and a
/// malformed address is refused with the key or flag named; nothing is
/// built.
#[test]
fn ballista_needs_a_well_formed_cluster_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r8 = repo().join("configs/R8.toml");
    let mut c = textgcn(&store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--engine", "ballista", "--config"]).arg(&r8);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--cluster"), "{}", text(&o));
    let mut c = textgcn(&store);
    c.env("TEXTGCN_DATA_DIR", data_dir()).args(["build", "--engine", "ballista", "--cluster", "http://x:1", "--config"]).arg(&r8);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("df://HOST:PORT"), "{}", text(&o));
    let o = build_r8_with(&store, "\n[build]\nengine = \"ballista\"\ncluster = \"df://nohost\"\n");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("build.cluster") && text(&o).contains("port"), "{}", text(&o));
    assert!(has_no_ref(&store));
}

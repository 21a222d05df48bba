//! Store tests: zero-copy round trip, corruption detection, kill safety,
//! concurrent publishers.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use textgcn_artifacts::*;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), OpenMode::Write).unwrap();
    (dir, store)
}

#[test]
fn ten_million_edges_round_trip_zero_copy() {
    let (_d, store) = temp_store();
    let e = 10_000_000usize;
    let n = 1_000_003i64;
    let mut idx = Vec::with_capacity(2 * e);
    idx.extend((0..e as i64).map(|i| i % n));
    idx.extend((0..e as i64).map(|i| (i * 7919) % n));
    let attr: Vec<f32> = (0..e).map(|i| (i as f32).sqrt() * 0.5).collect();
    let idx_id = EdgeIndex::publish(&store, idx.clone(), n as usize).unwrap();
    let attr_id = EdgeAttr::publish(&store, attr.clone()).unwrap();

    let ei = EdgeIndex::open(&store, &idx_id).unwrap();
    let ea = EdgeAttr::open(&store, &attr_id).unwrap();
    assert_eq!(ei.num_edges(), e);
    assert_eq!(ei.num_nodes(), n as usize);
    assert!(ei.data() == &idx[..], "edge_index values differ");
    assert!(ea.values() == &attr[..], "edge_attr values differ");
    // Zero-copy: the slices point into the file mappings.
    for (ptr, len, range) in [
        (ei.data().as_ptr() as usize, ei.data().len() * 8, ei.column().mapping_range()),
        (ea.values().as_ptr() as usize, ea.values().len() * 4, ea.column().mapping_range()),
    ] {
        assert!(range.start <= ptr && ptr + len <= range.end, "slice {ptr:#x}+{len} outside mapping {range:?}");
    }
    assert_eq!(ei.data().as_ptr() as usize % 64, 0, "64-byte aligned");
    // Published objects are read-only.
    let mode = fs::metadata(store.object_path(&idx_id)).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "published object is writable: {mode:o}");
    // Same bytes -> same id, no second copy.
    assert_eq!(EdgeAttr::publish(&store, attr).unwrap(), attr_id);
}

fn small_objects(store: &Store) -> (ObjectId, ObjectId) {
    let a = EdgeIndex::publish(store, (0..2000).collect(), 1000).unwrap();
    let b = EdgeAttr::publish(store, (0..1000).map(|i| i as f32).collect()).unwrap();
    (a, b)
}

fn damage(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

fn assert_corrupt_named(err: StoreError, id: &ObjectId) {
    match &err {
        StoreError::Corrupt { id: got, expected, actual, .. } => {
            assert_eq!(got, id.as_str());
            assert_eq!(expected, id.as_str());
            assert_ne!(actual, expected);
            let msg = err.to_string();
            assert!(msg.contains(id.as_str()) && msg.contains(actual.as_str()), "{msg}");
        }
        other => panic!("expected Corrupt for {id}, got {other:?}"),
    }
}

#[test]
fn flipped_truncated_and_swapped_objects_are_detected() {
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 3] = [
        ("flip", |b| {
            let i = b.len() / 2;
            b[i] ^= 0x01
        }),
        ("truncate", |b| b.truncate(b.len() - 7)),
        ("extend", |b| b.push(0)),
    ];
    for (what, f) in cases {
        let (_d, store) = temp_store();
        let (a, _b) = small_objects(&store);
        damage(&store.object_path(&a), f);
        let rep = store.verify().unwrap();
        assert_eq!(rep.problems.len(), 1, "{what}: {:?}", rep.problems);
        assert_corrupt_named(rep.problems.into_iter().next().unwrap().error, &a);
        assert_corrupt_named(EdgeIndex::open(&store, &a).unwrap_err(), &a);
    }
    // Swap: two valid objects exchanged.
    let (_d, store) = temp_store();
    let (a, b) = small_objects(&store);
    let (pa, pb) = (store.object_path(&a), store.object_path(&b));
    let tmp = pa.with_extension("x");
    fs::rename(&pa, &tmp).unwrap();
    fs::rename(&pb, &pa).unwrap();
    fs::rename(&tmp, &pb).unwrap();
    let rep = store.verify().unwrap();
    assert_eq!(rep.problems.len(), 2);
    assert_corrupt_named(EdgeIndex::open(&store, &a).unwrap_err(), &a);
    assert_corrupt_named(EdgeAttr::open(&store, &b).unwrap_err(), &b);
}

#[test]
fn a_valid_object_of_the_wrong_kind_is_a_format_error() {
    let (_d, store) = temp_store();
    let (_a, b) = small_objects(&store);
    match EdgeIndex::open(&store, &b) {
        Err(StoreError::Format { id, .. }) => assert_eq!(id, b.as_str()),
        other => panic!("expected Format error, got {other:?}"),
    }
    let junk = store.publish_bytes(b"not arrow at all").unwrap();
    assert!(matches!(EdgeAttr::open(&store, &junk), Err(StoreError::Format { .. })));
}

const CHILD_ENV: &str = "TEXTGCN_TEST_CHILD_STORE";

/// Child body: publishes objects of random sizes in a loop until killed.
/// Runs only when spawned by the kill test.
#[test]
#[ignore = "helper process for kill tests"]
fn child_publisher() {
    let Ok(root) = std::env::var(CHILD_ENV) else { return };
    let store = Store::open(&root, OpenMode::Write).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
    let seed: u64 = std::env::var("TEXTGCN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for k in 0.. {
        let len = rng.random_range(1..400_000usize);
        let v: Vec<f32> = (0..len).map(|i| (i as u64 ^ seed ^ k) as f32).collect();
        EdgeAttr::publish(&store, v).unwrap();
    }
}

fn spawn_child(root: &Path, seed: u64, failpoint: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "child_publisher", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .env("TEXTGCN_TEST_SEED", seed.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(fp) = failpoint {
        cmd.env("TEXTGCN_FAILPOINT", fp);
    }
    cmd.spawn().unwrap()
}

fn tmp_entries(root: &Path) -> usize {
    fs::read_dir(root.join("tmp")).unwrap().count()
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_wrong_object() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("store");
    Store::open(&root, OpenMode::Write).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut leftovers_seen = 0;
    let kills = 60;
    for i in 0..kills {
        // Every 4th run stops at a named fail-point instead of a random time.
        let fp = ["after-temp-write", "after-fsync", "after-rename"];
        let mut child = if i % 4 == 3 {
            spawn_child(&root, i, Some(fp[(i as usize / 4) % 3]))
        } else {
            spawn_child(&root, i, None)
        };
        if i % 4 != 3 {
            std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
        if tmp_entries(&root) > 0 {
            leftovers_seen += 1;
        }
        // The next open sweeps temp files of the dead writer ...
        let store = Store::open(&root, OpenMode::Write).unwrap();
        assert_eq!(tmp_entries(&root), 0, "run {i}: temp files left after reopening");
        // ... and every object under a final name has the right content.
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "run {i}: {:?}", rep.problems);
    }
    let store = Store::open(&root, OpenMode::Read).unwrap();
    let rep = store.verify().unwrap();
    assert!(rep.objects_checked > kills as usize, "children published too little: {}", rep.objects_checked);
    // Sanity: the kills did interrupt publishes at least sometimes.
    assert!(leftovers_seen > 0, "no kill ever interrupted a publish");
}

const STAGE_ENV: &str = "TEXTGCN_TEST_STAGE_STORE";

#[test]
#[ignore = "helper process for the concurrent stage test"]
fn child_stage_builder() {
    let Ok(root) = std::env::var(STAGE_ENV) else { return };
    let store = Store::open(&root, OpenMode::Write).unwrap();
    let inputs: BTreeMap<String, String> = [("corpus".to_owned(), "abc".to_owned())].into();
    let (rec, outcome) = store
        .get_or_build("graph", 1, serde_json::json!({"window": 20}), inputs, |s| {
            // Count builds, and stay inside long enough for the other process to queue.
            let count = Path::new(&root).join("builds");
            fs::OpenOptions::new().create(true).append(true).open(&count).unwrap();
            let mut f = fs::OpenOptions::new().append(true).open(&count).unwrap();
            std::io::Write::write_all(&mut f, b"x").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let id = EdgeAttr::publish(s, (0..100_000).map(|i| i as f32).collect())?;
            Ok::<_, StoreError>(Built { outputs: [("edge_attr".to_owned(), (id, ObjectKind::EdgeAttr))].into(), summary: serde_json::json!({}) })
        })
        .unwrap();
    println!("OUTCOME {outcome:?} {}", rec.outputs["edge_attr"].id);
}

#[test]
fn two_processes_building_the_same_stage_both_succeed_with_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root, OpenMode::Write).unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_stage_builder", "--nocapture", "--test-threads=1"])
            .env(STAGE_ENV, &root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&oa, &ob] {
        assert!(o.status.success(), "child failed: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    let outs: Vec<String> = [oa, ob].iter().map(|o| String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.find("OUTCOME").map(|i| l[i..].to_owned())).expect("child printed its outcome")).collect();
    assert!(outs.iter().any(|l| l.contains("Built")) && outs.iter().any(|l| l.contains("Fresh")), "{outs:?}");
    assert_eq!(outs[0].split(' ').nth(2), outs[1].split(' ').nth(2));
    assert_eq!(fs::read(root.join("builds")).unwrap().len(), 1, "stage built more than once");
    let store = Store::open(&root, OpenMode::Read).unwrap();
    let rep = store.verify().unwrap();
    assert_eq!(rep.objects_checked, 1, "expected exactly one object");
    assert_eq!(rep.records_checked, 1);
    assert!(rep.problems.is_empty());
}

/// A record of stage `s` with params `{"k": k}` and one output `o`, the
/// object `id` of `kind`.
fn rec(store: &Store, k: u32, id: &ObjectId, kind: ObjectKind) -> StageRecord {
    let bytes = fs::metadata(store.object_path(id)).unwrap().len();
    let params = serde_json::json!({"k": k});
    StageRecord {
        stage: "s".into(),
        fingerprint: fingerprint("s", 1, &params, &BTreeMap::new()),
        code_version: 1,
        params,
        inputs: BTreeMap::new(),
        outputs: [("o".to_owned(), Output { id: id.clone(), kind, bytes })].into(),
        summary: serde_json::json!({}),
    }
}

#[test]
fn records_refs_and_gc() {
    let (_d, store) = temp_store();
    let (a, b) = small_objects(&store);
    let (ra, rb) = (rec(&store, 1, &a, ObjectKind::EdgeIndex), rec(&store, 2, &b, ObjectKind::EdgeAttr));
    let (fpa, fpb) = (ra.fingerprint.clone(), rb.fingerprint.clone());
    assert_ne!(fpa, fpb);
    store.put_record(&ra).unwrap();
    store.put_record(&rb).unwrap();
    assert_eq!(store.get_record(&fpa).unwrap().unwrap().outputs["o"].id, a);
    store.put_ref(&Ref { name: "R8".into(), stages: vec![RefStage::of(&ra)] }).unwrap();
    assert!(matches!(store.put_ref(&Ref { name: "../x".into(), stages: vec![] }), Err(StoreError::BadRefName(_))));
    assert!(matches!(store.get_ref("nope"), Err(StoreError::NoSuchRef { .. })));
    drop(store);
    let store = Store::open(_d.path().join("store"), OpenMode::Read).unwrap();
    let rep = store.gc().unwrap();
    assert_eq!((rep.objects_removed, rep.records_removed, rep.objects_kept), (1, 1, 1));
    assert!(store.has_object(&a) && !store.has_object(&b));
    assert!(store.get_record(&fpb).unwrap().is_none());
    assert!(store.verify().unwrap().problems.is_empty());
}

/// Rolls `store` back on another thread; the receiver hears when it is done,
/// the handle gives the store back.
/// Events of the store's observable waits ([`textgcn_artifacts::observe`])
/// in store `root`, from now on: tests order their threads by these
/// instead of by sleeps.
fn store_events(root: &Path) -> std::sync::mpsc::Receiver<&'static str> {
    use std::sync::Mutex;
    type Listeners = Mutex<Vec<(PathBuf, std::sync::mpsc::Sender<&'static str>)>>;
    static LISTENERS: Listeners = Mutex::new(Vec::new());
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        assert!(textgcn_artifacts::observe(|event, root| {
            for (r, tx) in LISTENERS.lock().unwrap().iter() {
                if r == root {
                    let _ = tx.send(event);
                }
            }
        }));
    });
    let (tx, rx) = std::sync::mpsc::channel();
    LISTENERS.lock().unwrap().push((root.to_path_buf(), tx));
    rx
}

fn roll_back_in_background(store: Store) -> (std::thread::JoinHandle<Store>, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let rolling = std::thread::spawn(move || {
        store.roll_back().unwrap();
        tx.send(()).unwrap();
        store
    });
    (rolling, rx)
}

/// A failed build takes back what it made, except what another build
/// found and points its ref at: build A publishes an object and a record,
/// build B (another handle, so another `flock` holder, as another process)
/// reuses both and publishes its ref while A is still running, then A fails.
/// A's roll-back must wait for B to finish and keep both; what only A made
/// goes.
#[test]
fn a_roll_back_keeps_what_another_build_reuses() {
    let (d, a) = temp_store();
    let root = d.path().join("store");
    a.start_transaction();
    let shared = EdgeAttr::publish(&a, vec![1.0, 2.0]).unwrap();
    let only_a = EdgeAttr::publish(&a, vec![3.0]).unwrap();
    let rec_shared = rec(&a, 1, &shared, ObjectKind::EdgeAttr);
    let rec_only_a = rec(&a, 2, &only_a, ObjectKind::EdgeAttr);
    let (fp_shared, fp_only_a) = (rec_shared.fingerprint.clone(), rec_only_a.fingerprint.clone());
    a.put_record(&rec_shared).unwrap();
    a.put_record(&rec_only_a).unwrap();

    // B runs: it finds A's record and the same bytes, so it creates neither.
    let b = Store::open(&root, OpenMode::Write).unwrap();
    b.start_transaction();
    assert_eq!(EdgeAttr::publish(&b, vec![1.0, 2.0]).unwrap(), shared);
    assert!(b.get_record(&fp_shared).unwrap().is_some());
    // A fails while B still runs: its roll-back closes the gate and waits
    // for the store lock, which B holds, so it cannot have run yet.
    let events = store_events(&root);
    let (rolling, rx) = roll_back_in_background(a);
    assert_eq!(events.recv().unwrap(), "roll-back-closed-gate");
    assert!(rx.try_recv().is_err(), "the roll-back ran while another build held the store");
    b.put_ref(&Ref { name: "B".into(), stages: vec![RefStage::of(&rec_shared)] }).unwrap();
    drop(b);
    rx.recv().expect("the roll-back finishes once the other build is done");
    let a = rolling.join().unwrap();

    assert!(a.has_object(&shared) && a.get_record(&fp_shared).unwrap().is_some(), "B's build lost its record or object");
    assert!(!a.has_object(&only_a) && a.get_record(&fp_only_a).unwrap().is_none(), "A's own leftovers were kept");
    assert!(a.verify().unwrap().problems.is_empty());
    // The handle is back to the shared lock: another writer can open at once.
    let c = Store::open(&root, OpenMode::Write).unwrap();
    c.publish_bytes(b"after").unwrap();
}

#[test]
fn a_corrupt_existing_object_is_replaced_by_a_new_publish() {
    let (_d, store) = temp_store();
    let (_a, b) = small_objects(&store);
    damage(&store.object_path(&b), |v| v[100] ^= 0xff);
    let again = EdgeAttr::publish(&store, (0..1000).map(|i| i as f32).collect()).unwrap();
    assert_eq!(again, b);
    assert!(EdgeAttr::open(&store, &b).is_ok());
}

/// Inputs that once crashed the `artifact` fuzz target (fuzz/regressions/):
/// decoding them must give an error, never a panic.
#[test]
fn fuzz_regressions_decode_to_errors() {
    use arrow_array::types::{Float32Type, Int64Type};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/artifact");
    let id = ObjectId::parse(&"0".repeat(64)).unwrap();
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let data = fs::read(e.unwrap().path()).unwrap();
        let Some((&which, rest)) = data.split_first() else { continue };
        let bytes = bytes::Bytes::from(rest.to_vec());
        let r = std::panic::catch_unwind(|| match which % 4 {
            0 => textgcn_artifacts::decode_column::<Int64Type>(bytes, &id, "edge_index").is_ok(),
            1 => textgcn_artifacts::decode_column::<Float32Type>(bytes, &id, "edge_attr").is_ok(),
            2 => textgcn_artifacts::decode_column::<Int64Type>(bytes, &id, "row_ptr").is_ok(),
            _ => textgcn_artifacts::decode_table(bytes, &id, None).is_ok(),
        });
        assert!(r.is_ok(), "a regression input panicked the decoder");
        n += 1;
    }
    assert!(n >= 1, "no regression inputs in {}", dir.display());
}

/// A relay of builds, each opening the store before the one before it
/// ends, so that the shared store lock is never free: a roll-back must
/// still get its exclusive turn (the gate queues new openers behind it),
/// and the builds go on after it. Ordered by the store's observable waits,
/// with no sleeps: a starving roll-back fails the bounded relay.
#[test]
fn a_roll_back_is_not_starved_by_a_stream_of_builds() {
    enum Ev {
        Opened(Store),
        Event(&'static str),
        RolledBack(Store),
    }
    let (d, a) = temp_store();
    let root = d.path().join("store");
    a.start_transaction();
    let only_a = a.publish_bytes(b"made by the failing build").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let events = store_events(&root);
    let forward = tx.clone();
    std::thread::spawn(move || events.into_iter().for_each(|e| drop(forward.send(Ev::Event(e)))));
    let open_next = || {
        let (root, tx) = (root.clone(), tx.clone());
        std::thread::spawn(move || drop(tx.send(Ev::Opened(Store::open(&root, OpenMode::Write).unwrap()))));
    };
    let mut current = Some(Store::open(&root, OpenMode::Write).unwrap());
    let (mut a, mut rolled_back) = (Some(a), None);
    let (mut swaps, mut after) = (0, 0);
    open_next();
    while after < 5 {
        assert!(swaps < 10_000, "the roll-back did not get its turn in {swaps} overlapping builds");
        match rx.recv().unwrap() {
            // The next build opened while the current one held the store.
            Ev::Opened(next) => {
                current = Some(next);
                swaps += 1;
                if swaps == 5 {
                    let (a, tx) = (a.take().unwrap(), tx.clone());
                    std::thread::spawn(move || {
                        a.roll_back().unwrap();
                        tx.send(Ev::RolledBack(a)).unwrap();
                    });
                }
                after += rolled_back.is_some() as usize;
                open_next();
            }
            // A roll-back closed the gate and the next build waits there:
            // the current one ends, so the roll-back runs, then the gate opens.
            Ev::Event("opener-waits-at-gate") => current = None,
            Ev::Event(_) => {}
            Ev::RolledBack(a) => rolled_back = Some(a),
        }
    }
    drop(current);
    let a = rolled_back.unwrap();
    assert!(!a.has_object(&only_a), "the roll-back did not remove what it made");
}

/// Issue 12, item 1: a build adopted any directory and emptied its `tmp/`,
/// following a symbolic link out of the store.
#[test]
fn a_store_touches_nothing_that_is_not_its_own() {
    let d = tempfile::tempdir().unwrap();
    // A project directory with a tmp/ of the user's: refused, untouched.
    let proj = d.path().join("proj");
    fs::create_dir_all(proj.join("tmp/exp")).unwrap();
    fs::write(proj.join("tmp/notes.txt"), b"n").unwrap();
    match Store::open(&proj, OpenMode::Write) {
        Err(e @ StoreError::NotAStore { .. }) => assert!(e.to_string().contains("not empty") && e.to_string().contains("\"tmp\""), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(fs::read(proj.join("tmp/notes.txt")).unwrap(), b"n");
    assert!(proj.join("tmp/exp").is_dir() && !proj.join("STORE").exists() && !proj.join("objects").exists());
    // A file is not a directory.
    fs::write(d.path().join("file"), b"f").unwrap();
    assert!(matches!(Store::open(d.path().join("file"), OpenMode::Write), Err(StoreError::NotAStore { .. })));
    // An empty directory becomes a store.
    let empty = d.path().join("empty");
    fs::create_dir(&empty).unwrap();
    Store::open(&empty, OpenMode::Write).unwrap();
    assert!(empty.join("STORE").is_file());
    // A directory with a log the shell redirected into it becomes a store,
    // the log untouched (`textgcn build --store d 2>d/err`); one with a
    // subdirectory, a link, or a file named like the store's own is refused.
    let logged = d.path().join("logged");
    fs::create_dir(&logged).unwrap();
    fs::write(logged.join("err"), b"log").unwrap();
    let s = Store::open(&logged, OpenMode::Write).unwrap();
    s.publish_bytes(b"x").unwrap();
    drop(s);
    assert_eq!(fs::read(logged.join("err")).unwrap(), b"log");
    assert!(Store::open(&logged, OpenMode::Write).is_ok() && logged.join("STORE").is_file());
    for (name, make) in [("sub", 0), ("link", 1), ("objects", 2)] {
        let dir = d.path().join(format!("with-{name}"));
        fs::create_dir(&dir).unwrap();
        match make {
            0 => fs::create_dir(dir.join(name)).unwrap(),
            1 => std::os::unix::fs::symlink(d.path().join("file"), dir.join(name)).unwrap(),
            _ => fs::write(dir.join(name), b"f").unwrap(),
        }
        match Store::open(&dir, OpenMode::Write) {
            Err(e @ StoreError::NotAStore { .. }) => assert!(e.to_string().contains(&format!("{name:?}")), "{e}"),
            other => panic!("{name}: expected NotAStore, got {other:?}"),
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "{name}: the refused directory was changed");
    }

    // In a store, the sweep removes only the store's own temporary names.
    let (sd, store) = temp_store();
    let root = sd.path().join("store");
    drop(store);
    fs::write(root.join("tmp/.obj-leftover"), b"x").unwrap();
    fs::write(root.join("tmp/.meta-leftover"), b"x").unwrap();
    fs::write(root.join("tmp/mine.txt"), b"keep").unwrap();
    fs::create_dir(root.join("tmp/.obj-dir")).unwrap();
    // A killed build's scratch directory (an engine's spill files) goes
    // with its files; a link named like one is removed, not followed.
    fs::create_dir_all(root.join("tmp/.scratch-dead/datafusion-x")).unwrap();
    fs::write(root.join("tmp/.scratch-dead/datafusion-x/.tmp1"), b"spill").unwrap();
    let keep = d.path().join("keep");
    fs::create_dir(&keep).unwrap();
    fs::write(keep.join("file"), b"k").unwrap();
    std::os::unix::fs::symlink(&keep, root.join("tmp/.scratch-link")).unwrap();
    let store = Store::open(&root, OpenMode::Write).unwrap();
    assert!(!root.join("tmp/.obj-leftover").exists() && !root.join("tmp/.meta-leftover").exists());
    assert!(root.join("tmp/mine.txt").exists() && root.join("tmp/.obj-dir").is_dir());
    assert!(!root.join("tmp/.scratch-dead").exists());
    assert_eq!(fs::read(keep.join("file")).unwrap(), b"k");
    // A live scratch directory is the store's, gone when dropped.
    let scratch = store.scratch_dir().unwrap();
    assert!(scratch.path().starts_with(root.join("tmp")) && scratch.path().is_dir());
    let path = scratch.path().to_path_buf();
    drop(scratch);
    assert!(!path.exists());
    drop(store);

    // tmp/ as a link to another directory: neither open nor gc follows it.
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join(".obj-victim"), b"v").unwrap();
    fs::remove_dir_all(root.join("tmp")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("tmp")).unwrap();
    let e = Store::open(&root, OpenMode::Write).unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");
    let e = Store::open(&root, OpenMode::Read).unwrap().gc().unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");
    assert_eq!(fs::read(outside.join(".obj-victim")).unwrap(), b"v");

    // objects/ab as a link to another directory: gc does not enter it.
    fs::remove_file(root.join("tmp")).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    let prefix = "ab";
    let victim = "c".repeat(62);
    fs::write(outside.join(&victim), b"v").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("objects").join(prefix)).unwrap();
    Store::open(&root, OpenMode::Read).unwrap().gc().unwrap();
    assert_eq!(fs::read(outside.join(&victim)).unwrap(), b"v");
}

/// A store of records `s1` (object a) and `s2` (object b), both pinned by
/// ref `R`, and an unreached record `s3` (object c).
fn store_with_ref() -> (tempfile::TempDir, PathBuf, [StageRecord; 3], [ObjectId; 3]) {
    let (d, store) = temp_store();
    let root = d.path().join("store");
    let (a, b) = small_objects(&store);
    let c = EdgeAttr::publish(&store, vec![7.0; 10]).unwrap();
    let recs = [rec(&store, 1, &a, ObjectKind::EdgeIndex), rec(&store, 2, &b, ObjectKind::EdgeAttr), rec(&store, 3, &c, ObjectKind::EdgeAttr)];
    for r in &recs {
        store.put_record(r).unwrap();
    }
    store.put_ref(&Ref { name: "R".into(), stages: vec![RefStage::of(&recs[0]), RefStage::of(&recs[1])] }).unwrap();
    (d, root, recs, [a, b, c])
}

fn record_file(root: &Path, r: &StageRecord) -> PathBuf {
    root.join("records").join(format!("{}.json", r.fingerprint))
}

/// Rewrites a record file through `f` on its JSON (keeping the digest, as
/// a hand edit would).
fn edit_record(root: &Path, r: &StageRecord, f: impl FnOnce(&mut serde_json::Value)) {
    let p = record_file(root, r);
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn all_objects_present(root: &Path, ids: &[ObjectId]) -> bool {
    ids.iter().all(|id| root.join("objects").join(&id.as_str()[..2]).join(&id.as_str()[2..]).is_file())
}

/// Issue 12, item 2: gc deleted the live objects of a ref whose record was
/// damaged (`{not json`) or held another fingerprint's content.
#[test]
fn gc_removes_nothing_while_a_ref_reaches_a_record_it_cannot_trust() {
    type Damage = fn(&Path, &[StageRecord; 3]);
    let cases: [(&str, Damage); 5] = [
        ("not json", |root, r| fs::write(record_file(root, &r[0]), b"{not json").unwrap()),
        ("another fingerprint's record", |root, r| fs::copy(record_file(root, &r[2]), record_file(root, &r[0])).map(|_| ()).unwrap()),
        ("missing", |root, r| fs::remove_file(record_file(root, &r[1])).unwrap()),
        ("outputs swapped, digest kept", |root, r| edit_record(root, &r[1], |v| v["record"]["outputs"]["o"]["id"] = r[2].outputs["o"].id.to_string().into())),
        ("a link to another record", |root, r| {
            let p = record_file(root, &r[0]);
            fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(record_file(root, &r[2]), &p).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let (_d, root, recs, ids) = store_with_ref();
        damage(&root, &recs);
        let store = Store::open(&root, OpenMode::Read).unwrap();
        match store.gc() {
            Err(e @ StoreError::Refused { .. }) => assert!(e.to_string().contains("ref R") && e.to_string().contains("verify --repair"), "{what}: {e}"),
            other => panic!("{what}: gc should refuse, got {other:?}"),
        }
        assert!(all_objects_present(&root, &ids), "{what}: gc removed an object");
        assert!(!store.verify().unwrap().problems.is_empty(), "{what}: verify found nothing");
        // After repair, gc runs and keeps what the ref still reaches.
        let rep = store.repair().unwrap();
        assert!(rep.refs_to_rebuild == ["R"], "{what}: {rep:?}");
        assert!(store.verify().unwrap().problems.is_empty(), "{what}: verify after repair: {:?}", store.verify().unwrap().problems);
        store.gc().unwrap();
    }
    // Undamaged: gc removes exactly the unreached record and its object.
    let (_d, root, recs, ids) = store_with_ref();
    let store = Store::open(&root, OpenMode::Read).unwrap();
    let rep = store.gc().unwrap();
    assert_eq!((rep.records_removed, rep.objects_removed, rep.objects_kept), (1, 1, 2));
    assert!(all_objects_present(&root, &ids[..2]) && !record_file(&root, &recs[2]).exists());
}

/// Issue 12, item 4: records and refs are tamper-evident, verify checks
/// them, and repair moves every damaged file aside.
#[test]
fn records_and_refs_are_checked_and_repair_quarantines_damage() {
    // A hand edit of a record (outputs swapped for another valid object of
    // the same kind): every reader refuses it, not only verify.
    let (_d, root, recs, _ids) = store_with_ref();
    edit_record(&root, &recs[1], |v| v["record"]["outputs"]["o"]["id"] = recs[2].outputs["o"].id.to_string().into());
    let store = Store::open(&root, OpenMode::Read).unwrap();
    let e = store.get_record(&recs[1].fingerprint).unwrap_err().to_string();
    assert!(e.contains("does not match its digest"), "{e}");
    let r = store.get_ref("R").unwrap();
    assert!(store.pinned_record("R", &r.stages[1]).is_err());

    // A record re-sealed by hand with a new digest: the ref pins the old one.
    let (_d, root, recs, _ids) = store_with_ref();
    let mut forged = recs[1].clone();
    forged.outputs.get_mut("o").unwrap().id = recs[2].outputs["o"].id.clone();
    forged.outputs.get_mut("o").unwrap().bytes = recs[2].outputs["o"].bytes;
    fs::write(record_file(&root, &recs[1]), serde_json::to_vec(&serde_json::json!({"digest": forged.digest(), "record": forged})).unwrap()).unwrap();
    let store = Store::open(&root, OpenMode::Read).unwrap();
    assert!(store.get_record(&recs[1].fingerprint).unwrap().is_some(), "the forged record is self-consistent");
    let e = store.pinned_record("R", &store.get_ref("R").unwrap().stages[1]).unwrap_err().to_string();
    assert!(e.contains("pins digest"), "{e}");
    let problems = store.verify().unwrap().problems;
    assert!(problems.len() == 1 && problems[0].part == Part::Ref, "{problems:?}");

    // A record (and ref) consistent in every hash, naming an object of the
    // wrong kind: verify decodes each output as its recorded kind.
    let (_d, root, _recs, _ids) = store_with_ref();
    let store = Store::open(&root, OpenMode::Write).unwrap();
    let index = EdgeIndex::publish(&store, (0..20).collect(), 10).unwrap();
    let wrong = rec(&store, 9, &index, ObjectKind::EdgeAttr);

    store.put_record(&wrong).unwrap();
    store.put_ref(&Ref { name: "W".into(), stages: vec![RefStage::of(&wrong)] }).unwrap();
    drop(store);
    let store = Store::open(&root, OpenMode::Read).unwrap();
    let problems = store.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.part == Part::Record && p.to_string().contains("recorded as a edge_attr")), "{problems:?}");

    // A flipped bit and an object replaced by a link to other bytes: repair
    // moves the objects, the records listing them and the refs reaching
    // those to quarantine/, and then verify is clean.
    let (_d, root, recs, ids) = store_with_ref();
    damage(&root.join("objects").join(&ids[0].as_str()[..2]).join(&ids[0].as_str()[2..]), |b| b[10] ^= 1);
    let pb = root.join("objects").join(&ids[1].as_str()[..2]).join(&ids[1].as_str()[2..]);
    fs::remove_file(&pb).unwrap();
    std::os::unix::fs::symlink(root.join("objects").join(&ids[2].as_str()[..2]).join(&ids[2].as_str()[2..]), &pb).unwrap();
    let store = Store::open(&root, OpenMode::Read).unwrap();
    assert!(matches!(store.map_verified(&ids[1]), Err(StoreError::Damaged { .. })), "a link is never mapped");
    let rep = store.verify().unwrap();
    let parts: Vec<Part> = rep.problems.iter().map(|p| p.part).collect();
    assert_eq!(parts, [Part::Object, Part::Object, Part::Record, Part::Record, Part::Ref], "{:?}", rep.problems);
    let rep = store.repair().unwrap();
    assert_eq!(rep.quarantined.len(), 5, "{rep:?}");
    assert!(rep.quarantined.iter().all(|(_, _, to)| to.starts_with(root.join("quarantine"))));
    assert!(store.verify().unwrap().problems.is_empty());
    assert!(fs::symlink_metadata(&pb).is_err() && !record_file(&root, &recs[0]).exists());
    assert!(root.join("objects").join(&ids[2].as_str()[..2]).join(&ids[2].as_str()[2..]).is_file(), "a link's target is never moved");
    let g = store.gc().unwrap();
    assert_eq!(g.quarantined_removed, 5);
}

/// A damaged record found by a build is quarantined and rebuilt, and the
/// new record replaces it (it used to be "rebuilt" on every build, never
/// replaced).
#[test]
fn a_build_replaces_a_damaged_record() {
    let (_d, store) = temp_store();
    let build = |store: &Store| {
        store.get_or_build("s", 1, serde_json::json!({}), BTreeMap::new(), |s| {
            let mut b = Built::default();
            b.add("o", ObjectKind::EdgeAttr, EdgeAttr::publish(s, vec![1.0, 2.0, 3.0])?);
            Ok::<_, StoreError>(b)
        })
    };
    let (r1, o1) = build(&store).unwrap();
    assert_eq!(o1, Outcome::Built);
    fs::remove_file(store.object_path(&r1.outputs["o"].id)).unwrap();
    let (r2, o2) = build(&store).unwrap();
    assert!(matches!(&o2, Outcome::Repaired(why) if why.contains("missing")), "{o2:?}");
    assert_eq!(r1, r2);
    assert_eq!(build(&store).unwrap().1, Outcome::Fresh, "the second build after the damage is fresh");
    assert!(store.verify().unwrap().problems.is_empty());
}

/// A store of layout 1 (records without digests) is refused by readers
/// with a pointer to the upgrade, and upgraded by the first writer: its
/// records and refs go to quarantine/, its objects stay, gc cleans up.
#[test]
fn a_layout_1_store_is_upgraded_by_the_first_build() {
    let (_d, root, recs, ids) = store_with_ref();
    fs::write(root.join("STORE"), "textgcn-store 1\n").unwrap();
    let e = Store::open(&root, OpenMode::Read).unwrap_err().to_string();
    assert!(e.contains("layout 1") && e.contains("run `textgcn build` once to upgrade it"), "{e}");
    let store = Store::open(&root, OpenMode::Write).unwrap();
    assert_eq!(fs::read_to_string(root.join("STORE")).unwrap(), format!("textgcn-store {LAYOUT_VERSION}\n"));
    assert!(store.get_record(&recs[0].fingerprint).unwrap().is_none() && matches!(store.get_ref("R"), Err(StoreError::NoSuchRef { .. })));
    assert!(all_objects_present(&root, &ids), "the upgrade removed an object");
    let moved: Vec<_> = fs::read_dir(root.join("quarantine")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(moved.len() == 1 && moved[0].starts_with("layout-1-"), "{moved:?}");
    assert!(root.join("quarantine").join(&moved[0]).join("records").join(format!("{}.json", recs[0].fingerprint)).is_file());
    drop(store);
    let rep = Store::open(&root, OpenMode::Read).unwrap().gc().unwrap();
    assert_eq!((rep.quarantined_removed, rep.objects_removed), (1, 3));
    assert!(fs::read_dir(root.join("quarantine")).unwrap().next().is_none());
}

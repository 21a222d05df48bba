//! The store: immutable content-addressed objects, stage records, refs,
//! locks, `verify` and `gc`.
//!
//! Layout of a store directory:
//!
//! ```text
//! STORE                  marker with the layout version
//! store.lock             shared by every writer, exclusive for gc and temp sweeps
//! gate.lock              shared by a writer while it opens; exclusive while gc or
//!                        a roll-back waits for store.lock (so new writers wait too)
//! objects/ab/cdef…       published objects, named by BLAKE3 hash, mode 0444
//! records/<fp>.json      stage records: fingerprint -> output objects
//! refs/<name>.json       named refs: the latest build of a config
//! locks/<fp>.lock        one lock file per stage fingerprint being computed
//! provenance/<fp>.json   timings and host facts; never hashed
//! tmp/                   temporary files of publishes in progress
//! ```
//!
//! # Commit protocol
//! An object is written to a fresh temporary file in `tmp/` while it is
//! hashed, the file is fsynced and made read-only, renamed to its final name
//! *without replacing* (`renameat2(RENAME_NOREPLACE)` or link+unlink), and
//! the directory is fsynced. A stage record is published the same way, after
//! all its outputs; a ref is replaced by rename last. A crash at any point
//! leaves either nothing or a complete object under a final name, plus at
//! worst temporary files that the next exclusive open sweeps away.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::mapped::{Mmap, map_readonly};


/// Version of the on-disk layout, written to `STORE`.
pub const LAYOUT_VERSION: u32 = 1;

/// Name of an object: the lowercase hex BLAKE3 hash of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Parses a 64-digit lowercase hex id.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(ObjectId(s.to_owned()))
        } else {
            Err(StoreError::BadId(s.to_owned()))
        }
    }
    /// The id of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        ObjectId(hash_bytes(bytes).to_hex().to_string())
    }
    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A short prefix for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for ObjectId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self> {
        ObjectId::parse(&s)
    }
}
impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

/// BLAKE3 of a byte slice, multi-threaded for large inputs.
pub fn hash_bytes(bytes: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    if bytes.len() >= 1 << 20 {
        h.update_rayon(bytes);
    } else {
        h.update(bytes);
    }
    h.finalize()
}

/// BLAKE3 of a file's contents read with read(2) in large chunks.
fn hash_reader(mut f: &File) -> io::Result<String> {
    use std::io::Read;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if n >= 1 << 20 {
            h.update_rayon(&buf[..n]);
        } else {
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Crash-test hook: when the environment variable `TEXTGCN_FAILPOINT` is
/// `name` (or `name:N`), the process kills itself with SIGKILL at this
/// point (at its N-th pass, default the first). Used by the kill tests to
/// stop a build at exactly the named step of any publish. Fail-points:
/// `after-temp-write`, `after-fsync`, `after-rename` (objects),
/// `before-record`, `after-record`, `before-ref`.
pub fn failpoint(name: &str) {
    static WANTED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let wanted = WANTED.get_or_init(|| {
        let v = std::env::var("TEXTGCN_FAILPOINT").ok()?;
        Some(match v.split_once(':') {
            Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1).max(1)),
            None => (v, 1),
        })
    });
    if let Some((want, nth)) = wanted
        && want == name
        && HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *nth
    {
        crate::mapped::kill_self();
    }
}

/// A stage record: what one run of a stage with a given fingerprint produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage name ("ingest", "tokenize", ...).
    pub stage: String,
    /// Fingerprint (hex BLAKE3) of stage, code version, params and inputs.
    pub fingerprint: String,
    /// The stage implementation's version; bump it when its output changes.
    pub code_version: u32,
    /// The canonical parameters the stage read.
    pub params: serde_json::Value,
    /// Input name -> content hash (objects of earlier stages or raw files).
    pub inputs: BTreeMap<String, String>,
    /// Output name -> object.
    pub outputs: BTreeMap<String, ObjectId>,
    /// Deterministic facts about the outputs (counts, sizes) for `inspect`.
    pub summary: serde_json::Value,
}

/// Computes a stage fingerprint. Paths and times never enter it: only the
/// stage name, its code version, its canonical params and its inputs' hashes.
pub fn fingerprint(
    stage: &str,
    code_version: u32,
    params: &serde_json::Value,
    inputs: &BTreeMap<String, String>,
) -> String {
    // serde_json::Value maps are BTreeMaps (sorted keys), so this is canonical.
    let canon = serde_json::json!({
        "stage": stage,
        "code_version": code_version,
        "params": params,
        "inputs": inputs,
    });
    let bytes = serde_json::to_vec(&canon).expect("JSON values always serialise");
    blake3::hash(&bytes).to_hex().to_string()
}

/// A named ref: the stages of the latest build of one config, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ref {
    /// The ref's name (usually the config's dataset name).
    pub name: String,
    /// Stage name -> fingerprint of its record, in pipeline order.
    pub stages: Vec<(String, String)>,
}

/// How a store handle is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the store if needed and hold the shared store lock while the
    /// handle lives (builds).
    Write,
    /// The store must exist; no lock is held (trainers, inspection, verify).
    Read,
}

/// A handle on a store directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: Option<File>,
    /// Objects and records this handle created (not found existing), so a
    /// failed build can take back exactly what it added.
    created: std::sync::Mutex<Created>,
}

#[derive(Debug, Default)]
struct Created {
    objects: Vec<ObjectId>,
    records: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects re-hashed.
    pub objects_checked: usize,
    /// Records read.
    pub records_checked: usize,
    /// Every problem found, each naming the object and both hashes.
    pub problems: Vec<StoreError>,
}

/// What `gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Objects no ref reaches, removed.
    pub objects_removed: usize,
    /// Records no ref reaches, removed.
    pub records_removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Objects kept.
    pub objects_kept: usize,
}

/// How [`Store::get_or_build`] satisfied a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A record with this fingerprint already existed: nothing ran.
    Fresh,
    /// The stage ran and its record was published.
    Built,
}

/// What a stage build returns: its outputs and a deterministic summary.
pub struct Built {
    /// Output name -> published object.
    pub outputs: BTreeMap<String, ObjectId>,
    /// Deterministic facts about the outputs.
    pub summary: serde_json::Value,
}

/// An exclusive lock on one stage fingerprint; released on drop (or when the
/// process dies, since it is an `flock`).
#[derive(Debug)]
pub struct StageLock {
    _file: File,
}

const DIRS: [&str; 6] = ["objects", "records", "refs", "locks", "provenance", "tmp"];

impl Store {
    /// Opens (and in [`OpenMode::Write`] creates) the store at `root`.
    ///
    /// In write mode the handle holds a shared lock on `store.lock`. If no
    /// other process holds it, leftover temporary files of crashed runs are
    /// removed first.
    pub fn open(root: impl AsRef<Path>, mode: OpenMode) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let marker = root.join("STORE");
        match mode {
            OpenMode::Read => {
                if !marker.is_file() {
                    return Err(StoreError::Io {
                        op: "opening store",
                        path: root,
                        source: io::Error::new(io::ErrorKind::NotFound, "not a textgcn store (no STORE file); run `textgcn build` first"),
                    });
                }
                check_marker(&marker)?;
                Ok(Store { root, _lock: None, created: Default::default() })
            }
            OpenMode::Write => {
                fs::create_dir_all(&root).ctx("creating store", &root)?;
                // Through the gate first: while gc or a roll-back waits
                // for the exclusive store lock, new writers queue here
                // instead of keeping the store lock shared for ever. Then
                // the store lock: nothing may write a temporary file before
                // holding it, since a process that holds it alone sweeps the
                // temporary directory.
                let gate = Gate::shared(&root)?;
                let lock_path = root.join("store.lock");
                let lock = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&lock_path)
                    .ctx("opening", &lock_path)?;
                let alone = lock.try_lock().is_ok();
                if !alone {
                    lock.lock_shared().ctx("locking (shared)", &lock_path)?;
                }
                for d in DIRS {
                    let p = root.join(d);
                    fs::create_dir_all(&p).ctx("creating", &p)?;
                }
                if alone {
                    // Nobody else is using the store: sweep leftovers of crashes.
                    sweep_tmp(&root.join("tmp"))?;
                }
                if !marker.exists() {
                    write_atomic(&root, &marker, format!("textgcn-store {LAYOUT_VERSION}\n").as_bytes(), true)?;
                } else {
                    check_marker(&marker)?;
                }
                if alone {
                    // Downgrade; in the gap another opener may sweep, but this
                    // process has no temporary file at this point.
                    lock.unlock().ctx("unlocking", &lock_path)?;
                    lock.lock_shared().ctx("locking (shared)", &lock_path)?;
                }
                drop(gate);
                Ok(Store { root, _lock: Some(lock), created: Default::default() })
            }
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object `id` lies (it may not exist).
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join("objects").join(&id.0[..2]).join(&id.0[2..])
    }

    /// Whether the object `id` exists (not verified).
    pub fn has_object(&self, id: &ObjectId) -> bool {
        self.object_path(id).is_file()
    }

    /// Publishes an object whose bytes `write` produces, following the
    /// commit protocol (temp, fsync, read-only, no-replace rename, fsync dir).
    /// Returns its id; publishing bytes that already exist is a no-op.
    pub fn publish(&self, write: impl FnOnce(&mut (dyn Write + Send)) -> io::Result<()>) -> Result<ObjectId> {
        let tmp_dir = self.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix(".obj-")
            .tempfile_in(&tmp_dir)
            .ctx("creating temporary file in", &tmp_dir)?;
        let tmp_path = tmp.path().to_path_buf();
        let mut hw = HashWriter { inner: crate::direct::DirectWriter::new(tmp.as_file(), &tmp_path), hasher: blake3::Hasher::new() };
        write(&mut hw).ctx("writing", &tmp_path)?;
        hw.inner.finish().ctx("writing", &tmp_path)?;
        let id = ObjectId(hw.hasher.finalize().to_hex().to_string());
        drop(hw);
        failpoint("after-temp-write");
        tmp.as_file().sync_all().ctx("fsyncing", &tmp_path)?;
        failpoint("after-fsync");
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .ctx("making read-only", &tmp_path)?;
        let dest = self.object_path(&id);
        let parent = dest.parent().expect("object paths have a parent");
        if !parent.is_dir() {
            fs::create_dir_all(parent).ctx("creating", parent)?;
            sync_dir(&self.root.join("objects"))?;
        }
        match tmp.persist_noclobber(&dest) {
            Ok(_) => self.created.lock().expect("not poisoned").objects.push(id.clone()),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                // Same name, so the same bytes, unless the existing file was
                // damaged: then replace it with the good copy.
                if self.hash_file(&dest).map(|h| h != id.0).unwrap_or(true) {
                    e.file.persist(&dest).map_err(|e| StoreError::Io { op: "replacing corrupt object", path: dest.clone(), source: e.error })?;
                }
            }
            Err(e) => return Err(StoreError::Io { op: "renaming temporary file to", path: dest, source: e.error }),
        }
        failpoint("after-rename");
        sync_dir(parent)?;
        Ok(id)
    }

    /// Publishes a byte slice as an object.
    pub fn publish_bytes(&self, bytes: &[u8]) -> Result<ObjectId> {
        self.publish(|w| w.write_all(bytes))
    }

    fn hash_file(&self, path: &Path) -> Result<String> {
        let f = File::open(path).ctx("opening", path)?;
        hash_reader(&f).ctx("reading", path)
    }

    /// Maps an object read-only after checking that its bytes hash to its
    /// id. Any damage (bit flip, truncation, extension, swap) is reported as
    /// [`StoreError::Corrupt`] naming the object and both hashes.
    pub fn map_verified(&self, id: &ObjectId) -> Result<Mmap> {
        let path = self.object_path(id);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { id: id.0.clone(), path });
            }
            Err(e) => return Err(StoreError::Io { op: "opening", path, source: e }),
        };
        // Hash with read(2), not through the mapping: the bytes pass through
        // the page cache only, so verifying a large graph does not make it
        // resident in this process; the mapping then faults in only the
        // parts that are used.
        let actual = hash_reader(&f).ctx("reading", &path)?;
        if actual != id.0 {
            return Err(StoreError::Corrupt { id: id.0.clone(), path, expected: id.0.clone(), actual });
        }
        map_readonly(&f).ctx("mapping", &path)
    }

    /// Reads a verified object as reference-counted bytes backed by the
    /// mapping (no copy).
    pub fn read_verified(&self, id: &ObjectId) -> Result<bytes::Bytes> {
        Ok(bytes::Bytes::from_owner(self.map_verified(id)?))
    }

    fn record_path(&self, fp: &str) -> PathBuf {
        self.root.join("records").join(format!("{fp}.json"))
    }

    /// Publishes a stage record (after its outputs). Records are immutable:
    /// the same fingerprint always maps to the same outputs.
    pub fn put_record(&self, rec: &StageRecord) -> Result<()> {
        failpoint("before-record");
        let bytes = serde_json::to_vec_pretty(rec).expect("records serialise");
        let path = self.record_path(&rec.fingerprint);
        if write_atomic(&self.root, &path, &bytes, false)? {
            self.created.lock().expect("not poisoned").records.push(rec.fingerprint.clone());
        }
        failpoint("after-record");
        Ok(())
    }

    /// The record of fingerprint `fp`, if there is one whose outputs all
    /// exist. A damaged record is an error, not a silent miss.
    pub fn get_record(&self, fp: &str) -> Result<Option<StageRecord>> {
        let path = self.record_path(fp);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { op: "reading", path, source: e }),
        };
        let rec: StageRecord = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::BadMetadata { path: path.clone(), what: "stage record", detail: e.to_string() })?;
        if rec.fingerprint != fp {
            return Err(StoreError::BadMetadata { path, what: "stage record", detail: format!("holds fingerprint {}", rec.fingerprint) });
        }
        if rec.outputs.values().all(|id| self.has_object(id)) {
            Ok(Some(rec))
        } else {
            Ok(None)
        }
    }

    /// Takes the exclusive lock of one stage fingerprint, waiting for another
    /// process computing the same stage. A dead holder's lock is released by
    /// the kernel, so it never blocks.
    pub fn lock_stage(&self, fp: &str) -> Result<StageLock> {
        let path = self.root.join("locks").join(format!("{fp}.lock"));
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).ctx("opening", &path)?;
        f.lock().ctx("locking", &path)?;
        Ok(StageLock { _file: f })
    }

    /// Returns the record of a stage with these inputs, building it first if
    /// there is none. Concurrent callers with the same fingerprint serialise
    /// on the stage lock: the first builds, the others find its record.
    /// The record is published only after every output is.
    pub fn get_or_build<E: From<StoreError>>(
        &self,
        stage: &str,
        code_version: u32,
        params: serde_json::Value,
        inputs: BTreeMap<String, String>,
        build: impl FnOnce(&Store) -> std::result::Result<Built, E>,
    ) -> std::result::Result<(StageRecord, Outcome), E> {
        let fp = fingerprint(stage, code_version, &params, &inputs);
        if let Some(rec) = self.get_record(&fp)? {
            return Ok((rec, Outcome::Fresh));
        }
        let _lock = self.lock_stage(&fp)?;
        if let Some(rec) = self.get_record(&fp)? {
            return Ok((rec, Outcome::Fresh));
        }
        let built = build(self)?;
        let rec = StageRecord {
            stage: stage.to_owned(),
            fingerprint: fp,
            code_version,
            params,
            inputs,
            outputs: built.outputs,
            summary: built.summary,
        };
        self.put_record(&rec)?;
        Ok((rec, Outcome::Built))
    }

    fn ref_path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty()
            || name.starts_with('.')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(StoreError::BadRefName(name.to_owned()));
        }
        Ok(self.root.join("refs").join(format!("{name}.json")))
    }

    /// Points ref `r.name` at a build (atomic replace).
    pub fn put_ref(&self, r: &Ref) -> Result<()> {
        failpoint("before-ref");
        let path = self.ref_path(&r.name)?;
        let bytes = serde_json::to_vec_pretty(r).expect("refs serialise");
        write_atomic(&self.root, &path, &bytes, true).map(|_| ())
    }

    /// Reads ref `name`.
    pub fn get_ref(&self, name: &str) -> Result<Ref> {
        let path = self.ref_path(name)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchRef { name: name.to_owned(), store: self.root.clone() });
            }
            Err(e) => return Err(StoreError::Io { op: "reading", path, source: e }),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata { path, what: "ref", detail: e.to_string() })
    }

    /// Names of all refs, sorted.
    pub fn ref_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join("refs");
        let mut names = Vec::new();
        for e in fs::read_dir(&dir).ctx("listing", &dir)? {
            let e = e.ctx("listing", &dir)?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".json") {
                if !stem.starts_with('.') {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Writes a provenance file (timings, host): never hashed, never read by
    /// the build; for people.
    pub fn put_provenance(&self, fp: &str, value: &serde_json::Value) -> Result<()> {
        let path = self.root.join("provenance").join(format!("{fp}.json"));
        write_atomic(&self.root, &path, &serde_json::to_vec_pretty(value).expect("json"), true).map(|_| ())
    }

    /// Forgets what this handle created so far (start of a build).
    pub fn start_transaction(&self) {
        let mut c = self.created.lock().expect("not poisoned");
        c.objects.clear();
        c.records.clear();
    }

    /// Takes back every record and object this handle created since
    /// [`Store::start_transaction`] that no ref reaches: records first (so
    /// nothing points at a removed object), then objects, then their
    /// provenance. Objects that existed before are never touched. Used when
    /// a build fails, so bad input leaves nothing behind.
    ///
    /// Another build may have found one of these records or objects (the
    /// same stage, the same bytes) and be about to point its ref at it, so
    /// the shared store lock is first turned exclusive: this waits until no
    /// other build runs, as `gc` does. Then only the refs can reach what
    /// this handle made, and whatever they reach is kept.
    ///
    /// The order avoids both deadlock and starvation: the shared lock is
    /// let go first (so two failing builds never wait for each other), the
    /// gate is closed (so builds that start now wait), and then the
    /// exclusive lock is awaited, which the builds already running give up
    /// as they end.
    pub fn roll_back(&self) -> Result<()> {
        let c = std::mem::take(&mut *self.created.lock().expect("not poisoned"));
        if c.records.is_empty() && c.objects.is_empty() {
            return Ok(());
        }
        let lock_path = self.root.join("store.lock");
        let Some(lock) = &self._lock else {
            return self.remove_unreached(&c);
        };
        lock.unlock().ctx("unlocking", &lock_path)?;
        let gate = Gate::exclusive(&self.root)?;
        lock.lock().ctx("locking (exclusive)", &lock_path)?;
        let result = self.remove_unreached(&c);
        lock.lock_shared().ctx("locking (shared)", &lock_path)?;
        drop(gate);
        result
    }

    /// Removes the records and objects of `c` that no ref reaches (call
    /// with the store lock held exclusively).
    fn remove_unreached(&self, c: &Created) -> Result<()> {
        let (live_records, live_objects) = self.reachable()?;
        for fp in c.records.iter().filter(|fp| !live_records.contains(*fp)) {
            let p = self.record_path(fp);
            fs::remove_file(&p).or_else(ignore_missing).ctx("removing", &p)?;
            let _ = fs::remove_file(self.root.join("provenance").join(format!("{fp}.json")));
        }
        for id in c.objects.iter().filter(|id| !live_objects.contains(*id)) {
            let p = self.object_path(id);
            fs::remove_file(&p).or_else(ignore_missing).ctx("removing", &p)?;
            if let Some(parent) = p.parent() {
                let _ = fs::remove_dir(parent); // only if now empty
            }
        }
        sync_dir(&self.root.join("records"))?;
        sync_dir(&self.root.join("objects"))
    }

    /// The records the refs name and the objects those records list.
    /// A damaged record that a ref names is reachable; its objects are
    /// unknown.
    fn reachable(&self) -> Result<(BTreeSet<String>, BTreeSet<ObjectId>)> {
        let mut records = BTreeSet::new();
        for name in self.ref_names()? {
            for (_, fp) in self.get_ref(&name)?.stages {
                records.insert(fp);
            }
        }
        let mut objects = BTreeSet::new();
        for (path, rec) in self.all_records()? {
            let fp = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            if let (true, Ok(rec)) = (records.contains(&fp), rec) {
                objects.extend(rec.outputs.into_values());
            }
        }
        Ok((records, objects))
    }

    fn all_records(&self) -> Result<Vec<(PathBuf, Result<StageRecord>)>> {
        let dir = self.root.join("records");
        let mut out = Vec::new();
        let mut entries: Vec<_> = fs::read_dir(&dir).ctx("listing", &dir)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.extension().is_some_and(|x| x == "json") && !is_hidden(&path) {
                let rec = fs::read(&path).ctx("reading", &path).and_then(|b| {
                    serde_json::from_slice::<StageRecord>(&b)
                        .map_err(|e| StoreError::BadMetadata { path: path.clone(), what: "stage record", detail: e.to_string() })
                });
                out.push((path, rec));
            }
        }
        Ok(out)
    }

    fn all_objects(&self) -> Result<Vec<(ObjectId, PathBuf)>> {
        let dir = self.root.join("objects");
        let mut out = Vec::new();
        for sub in fs::read_dir(&dir).ctx("listing", &dir)? {
            let sub = sub.ctx("listing", &dir)?.path();
            if !sub.is_dir() {
                continue;
            }
            let prefix = sub.file_name().unwrap_or_default().to_string_lossy().into_owned();
            for e in fs::read_dir(&sub).ctx("listing", &sub)? {
                let p = e.ctx("listing", &sub)?.path();
                let name = format!("{prefix}{}", p.file_name().unwrap_or_default().to_string_lossy());
                if let Ok(id) = ObjectId::parse(&name) {
                    out.push((id, p));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes every object and checks that every record's outputs exist.
    /// Problems are collected, not returned early, so one run reports all.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let objects = self.all_objects()?;
        for (id, path) in &objects {
            rep.objects_checked += 1;
            match self.hash_file(path) {
                Ok(actual) if actual == id.0 => {}
                Ok(actual) => rep.problems.push(StoreError::Corrupt { id: id.0.clone(), path: path.clone(), expected: id.0.clone(), actual }),
                Err(e) => rep.problems.push(e),
            }
        }
        for (path, rec) in self.all_records()? {
            rep.records_checked += 1;
            match rec {
                Ok(rec) => {
                    for id in rec.outputs.values() {
                        if !self.has_object(id) {
                            rep.problems.push(StoreError::Missing { id: id.0.clone(), path: self.object_path(id) });
                        }
                    }
                }
                Err(e) => {
                    let _ = path;
                    rep.problems.push(e)
                }
            }
        }
        for name in self.ref_names()? {
            match self.get_ref(&name) {
                Ok(r) => {
                    for (stage, fp) in &r.stages {
                        if !self.record_path(fp).is_file() {
                            rep.problems.push(StoreError::BadMetadata {
                                path: self.ref_path(&name)?,
                                what: "ref",
                                detail: format!("stage {stage} points at missing record {fp}"),
                            });
                        }
                    }
                }
                Err(e) => rep.problems.push(e),
            }
        }
        Ok(rep)
    }

    /// Removes every object and record that no ref reaches. Takes the store
    /// lock exclusively, so it waits for running builds and they wait for
    /// it. Mapped objects stay readable by their mappers (unlink only).
    pub fn gc(&self) -> Result<GcReport> {
        let lock_path = self.root.join("store.lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).ctx("opening", &lock_path)?;
        if self._lock.is_some() {
            return Err(StoreError::Io {
                op: "collecting garbage in",
                path: self.root.clone(),
                source: io::Error::other("gc needs a read-mode handle (a write handle holds the shared lock)"),
            });
        }
        let gate = Gate::exclusive(&self.root)?;
        lock.lock().ctx("locking (exclusive)", &lock_path)?;
        drop(gate);
        let (live_records, live_objects) = self.reachable()?;
        let mut rep = GcReport::default();
        for (path, _) in self.all_records()? {
            let fp = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            // Live records stay, damaged ones too (kept for inspection).
            if !live_records.contains(&fp) {
                fs::remove_file(&path).ctx("removing", &path)?;
                let _ = fs::remove_file(self.root.join("provenance").join(format!("{fp}.json")));
                let _ = fs::remove_file(self.root.join("locks").join(format!("{fp}.lock")));
                rep.records_removed += 1;
            }
        }
        for (id, path) in self.all_objects()? {
            if live_objects.contains(&id) {
                rep.objects_kept += 1;
            } else {
                rep.bytes_freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).ctx("removing", &path)?;
                rep.objects_removed += 1;
            }
        }
        sweep_tmp(&self.root.join("tmp"))?;
        sync_dir(&self.root.join("records"))?;
        Ok(rep)
    }
}

/// `gate.lock`: writers pass it (shared) while they open, gc and roll-backs
/// hold it (exclusive) while they wait for the exclusive store lock. `flock`
/// grants a shared lock whenever only shared locks are held, so without the
/// gate a steady stream of overlapping builds would keep an exclusive
/// waiter waiting for ever. Released on drop, or by the kernel when the
/// process dies.
struct Gate {
    _file: File,
}

impl Gate {
    /// Passes the gate: waits while gc or a roll-back holds it.
    fn shared(root: &Path) -> Result<Gate> {
        let (file, path) = Self::file(root)?;
        file.lock_shared().ctx("locking (shared)", &path)?;
        Ok(Gate { _file: file })
    }

    /// Closes the gate: waits for openers in progress, then holds new ones.
    fn exclusive(root: &Path) -> Result<Gate> {
        let (file, path) = Self::file(root)?;
        file.lock().ctx("locking (exclusive)", &path)?;
        Ok(Gate { _file: file })
    }

    fn file(root: &Path) -> Result<(File, PathBuf)> {
        let path = root.join("gate.lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).ctx("opening", &path)?;
        Ok((file, path))
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn check_marker(marker: &Path) -> Result<()> {
    let text = fs::read_to_string(marker).ctx("reading", marker)?;
    let want = format!("textgcn-store {LAYOUT_VERSION}");
    if text.trim() != want {
        return Err(StoreError::BadMetadata { path: marker.to_path_buf(), what: "store marker", detail: format!("expected {want:?}, found {:?}", text.trim()) });
    }
    Ok(())
}

/// Removes everything in the temp directory (call only with the store lock
/// held exclusively).
fn sweep_tmp(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).ctx("listing", dir)? {
        let p = e.ctx("listing", dir)?.path();
        let r = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { op: "removing leftover", path: p, source: e }),
        }
    }
    Ok(())
}

/// fsyncs a directory so that renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsyncing directory", dir)
}

/// Writes small metadata (a record, a ref, the marker) atomically: temp file
/// in the store's `tmp/`, fsync, rename (replacing when `replace`), fsync dir.
/// Returns whether `dest` was created (false: it existed and `replace` was off).
fn write_atomic(root: &Path, dest: &Path, bytes: &[u8], replace: bool) -> Result<bool> {
    let tmp_dir = root.join("tmp");
    let mut tmp = tempfile::Builder::new().prefix(".meta-").tempfile_in(&tmp_dir).ctx("creating temporary file in", &tmp_dir)?;
    tmp.write_all(bytes).ctx("writing", tmp.path().to_path_buf())?;
    tmp.as_file().sync_all().ctx("fsyncing", tmp.path().to_path_buf())?;
    let r = if replace { tmp.persist(dest).map(|_| ()) } else { tmp.persist_noclobber(dest).map(|_| ()) };
    let created = match r {
        Ok(()) => true,
        Err(e) if !replace && e.error.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(StoreError::Io { op: "renaming into", path: dest.to_path_buf(), source: e.error }),
    };
    sync_dir(dest.parent().expect("store paths have parents"))?;
    Ok(created)
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write + Send> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= 1 << 20 {
            // Large buffers: hash on one core while the other copies and
            // writes (measured faster than hashing on both, then writing).
            let (hasher, inner) = (&mut self.hasher, &mut self.inner);
            let (_, written) = rayon::join(|| hasher.update(buf), || inner.write_all(buf));
            written?;
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

//! The store: publishing immutable content-addressed objects, stage
//! records and refs, building a stage once (`get_or_build`), and rolling a
//! failed build back. Beside it: object names and hashing (`id`), the
//! layout, marker and temp sweep (`layout`), the locks (`lock`), link-safe
//! opens (`nofollow`), atomic files ([`crate::atomic`]), crash-test hooks
//! (`failpoint`), `verify`/`repair`/`gc` ([`crate::maintain`]) and the
//! record and ref formats ([`crate::record`]).
//!
//! Layout of a store directory:
//!
//! ```text
//! STORE                  marker with the layout version (written first)
//! store.lock             shared by every writer, exclusive for gc, repair and temp sweeps
//! gate.lock              shared by a writer while it opens; exclusive while gc, repair
//!                        or a roll-back waits for store.lock (so new writers wait too)
//! objects/ab/cdef…       published objects, named by BLAKE3 hash, mode 0444
//! records/<fp>.json      stage records: fingerprint -> output objects, with a digest
//! refs/<name>.json       named refs: the latest build of a config, pinning record digests
//! locks/<fp>.lock        one lock file per stage fingerprint being computed
//! provenance/<fp>.json   timings and host facts; never hashed
//! quarantine/            damaged files moved aside by a build or `verify --repair`
//! tmp/                   temporary files of publishes in progress
//! ```
//!
//! # What the store may touch
//! A store is only created in a new directory, or one holding nothing but
//! plain files whose names it never uses (a redirected log); any other
//! directory without `STORE` (subdirectories, links) is refused. The store only ever
//! removes names it creates (`.obj-*` and `.meta-*` temporary files in
//! `tmp/`, objects, records, quarantined files) and never follows a symbolic
//! link out of its own directories.
//!
//! # Commit protocol
//! An object is written to a fresh temporary file in `tmp/` while it is
//! hashed, the file is fsynced and made read-only, renamed to its final name
//! *without replacing* (`renameat2(RENAME_NOREPLACE)` or link+unlink), and
//! the directory is fsynced. A stage record is published the same way, after
//! all its outputs; a ref is replaced by rename last. A crash at any point
//! leaves either nothing or a complete object under a final name, plus at
//! worst temporary files that the next exclusive open sweeps away.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use crate::atomic::sync_dir;
use crate::atomic;
use crate::failpoint::failpoint;
use crate::id::{HashWriter, ObjectId, hash_reader};
use crate::layout::{DIRS, check_can_host, marker_version, remove_marker_temporaries, sweep_tmp, upgrade_layout_1, write_marker_file, LAYOUT_VERSION};
use crate::lock::{Gate, StageLock};
pub(crate) use crate::nofollow::{ignore_missing, is_symlink_error, open_no_follow, read_no_follow};
use crate::error::{IoContext, Result, StoreError};
use crate::mapped::{Mmap, map_readonly};
use crate::record::{ObjectKind, Output, Ref, RecordFile, StageRecord, fingerprint, short};
pub use crate::maintain::{GcReport, VerifyReport};


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
    pub(crate) root: PathBuf,
    pub(crate) lock: Option<File>,
    /// Objects and records this handle created (not found existing), so a
    /// failed build can take back exactly what it added.
    created: std::sync::Mutex<Created>,
}

#[derive(Debug, Default)]
struct Created {
    objects: Vec<ObjectId>,
    records: Vec<String>,
}

/// How [`Store::get_or_build`] satisfied a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A valid record with this fingerprint already existed: nothing ran.
    Fresh,
    /// The stage ran and its record was published.
    Built,
    /// The record with this fingerprint was damaged (the reason is given):
    /// it was moved to `quarantine/`, the stage ran and a new record was
    /// published.
    Repaired(String),
}

/// What a stage build returns: its outputs and a deterministic summary.
#[derive(Debug, Default)]
pub struct Built {
    /// Output name -> published object and its kind.
    pub outputs: BTreeMap<String, (ObjectId, ObjectKind)>,
    /// Deterministic facts about the outputs.
    pub summary: serde_json::Value,
}

impl Built {
    /// Adds output `name`.
    pub fn add(&mut self, name: &str, kind: ObjectKind, id: ObjectId) {
        self.outputs.insert(name.to_owned(), (id, kind));
    }
}

/// What the record file of a fingerprint holds.
#[derive(Debug)]
pub enum RecordState {
    /// There is no record file.
    Missing,
    /// A record whose digest, fingerprint and outputs (present, regular
    /// files of the recorded size) check out.
    Valid(StageRecord),
    /// A record file that cannot be trusted; the error says why.
    Damaged(StoreError),
}

impl Store {
    /// Opens (and in [`OpenMode::Write`] creates) the store at `root`.
    ///
    /// A store is created only where [`check_can_host`] allows: a new or
    /// empty directory. In write mode the handle holds a shared lock on
    /// `store.lock`. If no other process holds it, leftover temporary files
    /// of crashed runs are removed first, and a layout-1 store is upgraded.
    pub fn open(root: impl AsRef<Path>, mode: OpenMode) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let marker = root.join("STORE");
        match mode {
            OpenMode::Read => {
                match marker_version(&marker)? {
                    None => Err(StoreError::NotAStore { path: root, reason: "there is no STORE marker; run `textgcn build` first".into() }),
                    Some(LAYOUT_VERSION) => Ok(Store { root, lock: None, created: Default::default() }),
                    Some(1) => Err(StoreError::NotAStore { path: root, reason: "it has layout 1, written by an older textgcn; run `textgcn build` once to upgrade it".into() }),
                    Some(v) => Err(StoreError::NotAStore { path: root, reason: format!("it has layout {v}, written by a newer textgcn (this one reads layout {LAYOUT_VERSION})") }),
                }
            }
            OpenMode::Write => Self::open_write(root),
        }
    }

    fn open_write(root: PathBuf) -> Result<Self> {
        let marker = root.join("STORE");
        check_can_host(&root)?;
        fs::create_dir_all(&root).ctx("creating store", &root)?;
        // Through the gate first: while gc or a roll-back waits for the
        // exclusive store lock, new writers queue here instead of keeping
        // the store lock shared for ever. Then the store lock: nothing may
        // write a temporary file before holding it, since a process that
        // holds it alone sweeps the temporary directory.
        let gate = Gate::shared(&root)?;
        let lock_path = root.join("store.lock");
        let lock = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).ctx("opening", &lock_path)?;
        let mut alone = lock.try_lock().is_ok();
        if !alone {
            lock.lock_shared().ctx("locking (shared)", &lock_path)?;
            if marker_version(&marker)? != Some(LAYOUT_VERSION) {
                // Creating or upgrading needs the store to itself.
                lock.unlock().ctx("unlocking", &lock_path)?;
                lock.lock().ctx("locking (exclusive)", &lock_path)?;
                alone = true;
            }
        }
        if alone {
            match marker_version(&marker)? {
                None => {
                    // Checked again under the lock: nothing but lock files
                    // may have appeared meanwhile.
                    check_can_host(&root)?;
                    remove_marker_temporaries(&root)?;
                    write_marker_file(&root, false)?;
                }
                Some(1) => upgrade_layout_1(&root)?,
                Some(LAYOUT_VERSION) => {}
                Some(v) => {
                    return Err(StoreError::NotAStore { path: root, reason: format!("it has layout {v}, written by a newer textgcn (this one writes layout {LAYOUT_VERSION})") });
                }
            }
        }
        for d in DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("creating", &p)?;
        }
        if alone {
            // Nobody else is using the store: sweep leftovers of crashes.
            sweep_tmp(&root)?;
            // Downgrade; in the gap another opener may sweep, but this
            // process has no temporary file at this point.
            lock.unlock().ctx("unlocking", &lock_path)?;
            lock.lock_shared().ctx("locking (shared)", &lock_path)?;
        }
        drop(gate);
        Ok(Store { root, lock: Some(lock), created: Default::default() })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's directory for temporary files (on the same file system
    /// as its objects). Stages may put unnamed scratch files there, such
    /// as spilled graph rows; named ones are swept by the store.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new directory for a stage's named scratch files (an engine's spill
    /// files), `tmp/.scratch-*`: removed when the handle is dropped, and by
    /// the store's sweep of `tmp/` after a crash or a kill.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let tmp = self.tmp_dir();
        tempfile::Builder::new().prefix(crate::layout::SCRATCH_PREFIX).tempdir_in(&tmp).map_err(|error| StoreError::Io { op: "creating a scratch directory in", path: tmp, error })
    }

    /// Where the object `id` lies (it may not exist).
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join("objects").join(&id.as_str()[..2]).join(&id.as_str()[2..])
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
        let direct = crate::direct::DirectWriter::new(tmp.as_file(), &tmp_path).ctx("allocating a write buffer for", &tmp_path)?;
        let mut hw = HashWriter { inner: direct, hasher: blake3::Hasher::new() };
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
                    e.file.persist(&dest).map_err(|e| StoreError::Io { op: "replacing corrupt object", path: dest.clone(), error: e.error })?;
                }
            }
            Err(e) => return Err(StoreError::Io { op: "renaming temporary file to", path: dest, error: e.error }),
        }
        failpoint("after-rename");
        sync_dir(parent)?;
        Ok(id)
    }

    /// Publishes a byte slice as an object.
    pub fn publish_bytes(&self, bytes: &[u8]) -> Result<ObjectId> {
        self.publish(|w| w.write_all(bytes))
    }

    pub(crate) fn hash_file(&self, path: &Path) -> Result<String> {
        let f = open_no_follow(path).ctx("opening", path)?;
        hash_reader(&f).ctx("reading", path)
    }

    /// Maps an object read-only after checking that its bytes hash to its
    /// id. Any damage (bit flip, truncation, extension, swap) is reported as
    /// [`StoreError::Corrupt`] naming the object and both hashes.
    pub fn map_verified(&self, id: &ObjectId) -> Result<Mmap> {
        let f = self.open_verified(id)?;
        map_readonly(&f).ctx("mapping", self.object_path(id))
    }

    /// Opens an object after checking that its bytes hash to its id (as
    /// [`Store::map_verified`]), for reading it in pieces; the file is
    /// positioned at its start.
    pub fn open_verified(&self, id: &ObjectId) -> Result<File> {
        let path = self.object_path(id);
        let mut f = match open_no_follow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { id: id.0.clone(), path });
            }
            Err(e) if is_symlink_error(&e) => return Err(StoreError::Damaged { path, detail: "a symbolic link, not an object file".into() }),
            Err(e) => return Err(StoreError::Io { op: "opening", path, error: e }),
        };
        // Hash with read(2), not through a mapping: the bytes pass through
        // the page cache only, so verifying a large graph does not make it
        // resident in this process; a mapping then faults in only the parts
        // that are used.
        let actual = hash_reader(&f).ctx("reading", &path)?;
        if actual != id.0 {
            return Err(StoreError::Corrupt { id: id.0.clone(), path, expected: id.0.clone(), actual });
        }
        io::Seek::rewind(&mut f).ctx("reading", &path)?;
        Ok(f)
    }

    /// Reads a verified object as reference-counted bytes backed by the
    /// mapping (no copy).
    pub fn read_verified(&self, id: &ObjectId) -> Result<bytes::Bytes> {
        Ok(bytes::Bytes::from_owner(self.map_verified(id)?))
    }

    pub(crate) fn record_path(&self, fp: &str) -> PathBuf {
        self.root.join("records").join(format!("{fp}.json"))
    }

    /// Publishes a stage record (after its outputs), with its digest.
    /// Records are immutable: the same fingerprint always maps to the same
    /// outputs.
    pub fn put_record(&self, rec: &StageRecord) -> Result<()> {
        failpoint("before-record");
        let file = RecordFile { digest: rec.digest(), record: rec.clone() };
        let bytes = serde_json::to_vec_pretty(&file).expect("records serialise");
        let path = self.record_path(&rec.fingerprint);
        if write_atomic(&self.root, &path, &bytes, false)? {
            self.created.lock().expect("not poisoned").records.push(rec.fingerprint.clone());
        }
        failpoint("after-record");
        Ok(())
    }

    /// Reads and checks the record file of fingerprint `fp`: it must parse,
    /// its digest must match its content, it must hold fingerprint `fp`,
    /// and every output must be a regular file of the recorded size (the
    /// objects' hashes are checked when they are opened, and by `verify`).
    /// Only an I/O failure other than a missing file is an `Err`.
    pub fn load_record(&self, fp: &str) -> Result<RecordState> {
        let path = self.record_path(fp);
        let bytes = match read_no_follow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RecordState::Missing),
            Err(e) if is_symlink_error(&e) => return Ok(RecordState::Damaged(bad_record(&path, "it is a symbolic link, not a record file".into()))),
            Err(e) => return Err(StoreError::Io { op: "reading", path, error: e }),
        };
        let file: RecordFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => return Ok(RecordState::Damaged(bad_record(&path, e.to_string()))),
        };
        let rec = file.record;
        let digest = rec.digest();
        if digest != file.digest {
            return Ok(RecordState::Damaged(bad_record(&path, format!("its content does not match its digest (recorded {}, content {})", short(&file.digest), short(&digest)))));
        }
        if rec.fingerprint != fp {
            return Ok(RecordState::Damaged(bad_record(&path, format!("it holds the record of fingerprint {}", short(&rec.fingerprint)))));
        }
        // The fingerprint (the file's name) pins the stage, its code
        // version, parameters and inputs; the digest pins the rest.
        if fingerprint(&rec.stage, rec.code_version, &rec.params, &rec.inputs) != fp {
            return Ok(RecordState::Damaged(bad_record(&path, "its stage, code version, parameters and inputs do not hash to its fingerprint".into())));
        }
        for (name, out) in &rec.outputs {
            if let Err(e) = self.check_output_file(out) {
                return Ok(RecordState::Damaged(bad_record(&path, format!("output `{name}`: {e}"))));
            }
        }
        Ok(RecordState::Valid(rec))
    }

    /// Whether an output's object is a regular file of the recorded size.
    fn check_output_file(&self, out: &Output) -> Result<()> {
        let path = self.object_path(&out.id);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Missing { id: out.id.to_string(), path }),
            Err(e) => Err(StoreError::Io { op: "examining", path, error: e }),
            Ok(m) if !m.file_type().is_file() => Err(StoreError::Damaged { path, detail: "not a regular file".into() }),
            Ok(m) if m.len() != out.bytes => Err(StoreError::Damaged { path, detail: format!("{} bytes, the record says {}", m.len(), out.bytes) }),
            Ok(_) => Ok(()),
        }
    }

    /// The valid record of fingerprint `fp`, if there is one; a damaged
    /// record is an error, not a silent miss.
    pub fn get_record(&self, fp: &str) -> Result<Option<StageRecord>> {
        match self.load_record(fp)? {
            RecordState::Missing => Ok(None),
            RecordState::Valid(r) => Ok(Some(r)),
            RecordState::Damaged(e) => Err(e),
        }
    }

    /// The record a ref's stage entry pins: it must exist, be valid and
    /// have the digest the ref names.
    pub fn pinned_record(&self, ref_name: &str, entry: &crate::record::RefStage) -> Result<StageRecord> {
        let path = self.record_path(&entry.fingerprint);
        let rec = self.get_record(&entry.fingerprint)?.ok_or_else(|| StoreError::BadMetadata {
            path: self.ref_path(ref_name).unwrap_or_default(),
            what: "ref",
            detail: format!("stage {} points at record {}, which is missing", entry.stage, short(&entry.fingerprint)),
        })?;
        if rec.digest() != entry.record {
            return Err(bad_record(&path, format!("ref {ref_name} pins digest {} for it, its content has digest {}", short(&entry.record), short(&rec.digest()))));
        }
        if rec.stage != entry.stage {
            return Err(bad_record(&path, format!("ref {ref_name} names it as stage {}, it records stage {}", entry.stage, rec.stage)));
        }
        Ok(rec)
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
    /// The record is published only after every output is. A damaged
    /// record of this fingerprint is moved to `quarantine/` and the stage
    /// rebuilt ([`Outcome::Repaired`]).
    pub fn get_or_build<E: From<StoreError>>(
        &self,
        stage: &str,
        code_version: u32,
        params: serde_json::Value,
        inputs: BTreeMap<String, String>,
        build: impl FnOnce(&Store) -> std::result::Result<Built, E>,
    ) -> std::result::Result<(StageRecord, Outcome), E> {
        let fp = fingerprint(stage, code_version, &params, &inputs);
        if let RecordState::Valid(rec) = self.load_record(&fp)? {
            return Ok((rec, Outcome::Fresh));
        }
        let _lock = self.lock_stage(&fp)?;
        let damaged = match self.load_record(&fp)? {
            RecordState::Valid(rec) => return Ok((rec, Outcome::Fresh)),
            RecordState::Missing => None,
            RecordState::Damaged(e) => {
                self.quarantine(&self.record_path(&fp), "record")?;
                Some(e.to_string())
            }
        };
        let built = build(self)?;
        let mut outputs = BTreeMap::new();
        for (name, (id, kind)) in built.outputs {
            let path = self.object_path(&id);
            let bytes = fs::symlink_metadata(&path).ctx("examining", &path)?.len();
            outputs.insert(name, Output { id, kind, bytes });
        }
        let rec = StageRecord { stage: stage.to_owned(), fingerprint: fp, code_version, params, inputs, outputs, summary: built.summary };
        self.put_record(&rec)?;
        Ok((rec, damaged.map_or(Outcome::Built, Outcome::Repaired)))
    }

    pub(crate) fn ref_path(&self, name: &str) -> Result<PathBuf> {
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

    /// Reads ref `name`; it must parse and carry its own name.
    pub fn get_ref(&self, name: &str) -> Result<Ref> {
        let path = self.ref_path(name)?;
        let bytes = match read_no_follow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchRef { name: name.to_owned(), store: self.root.clone() });
            }
            Err(e) if is_symlink_error(&e) => return Err(StoreError::BadMetadata { path, what: "ref", detail: "it is a symbolic link, not a ref file".into() }),
            Err(e) => return Err(StoreError::Io { op: "reading", path, error: e }),
        };
        let r: Ref = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata { path: path.clone(), what: "ref", detail: e.to_string() })?;
        if r.name != name {
            return Err(StoreError::BadMetadata { path, what: "ref", detail: format!("it holds the ref named {:?}", r.name) });
        }
        Ok(r)
    }

    /// Names of all refs, sorted.
    pub fn ref_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join("refs");
        let mut names = Vec::new();
        for e in fs::read_dir(&dir).ctx("listing", &dir)? {
            let e = e.ctx("listing", &dir)?;
            let n = e.file_name().to_string_lossy().into_owned();
            // Only names a ref can have; anything else in refs/ is not ours.
            if let Some(stem) = n.strip_suffix(".json")
                && self.ref_path(stem).is_ok()
            {
                names.push(stem.to_owned());
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

    /// The provenance file of record `fp`, when there is a readable one
    /// (it is for people: a missing or damaged one is `None`, never an
    /// error).
    pub fn provenance(&self, fp: &str) -> Option<serde_json::Value> {
        let bytes = fs::read(self.root.join("provenance").join(format!("{fp}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
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
        let Some(lock) = &self.lock else {
            return self.remove_unreached(&c);
        };
        lock.unlock().ctx("unlocking", &lock_path)?;
        let gate = Gate::exclusive(&self.root)?;
        crate::failpoint::reached("roll-back-closed-gate", &self.root);
        lock.lock().ctx("locking (exclusive)", &lock_path)?;
        let result = self.remove_unreached(&c);
        lock.lock_shared().ctx("locking (shared)", &lock_path)?;
        drop(gate);
        result
    }

    /// Removes the records and objects of `c` that no ref reaches (call
    /// with the store lock held exclusively). When a ref cannot be read or
    /// reaches a damaged record, what is live is unknown: nothing is removed.
    fn remove_unreached(&self, c: &Created) -> Result<()> {
        let Ok(live) = self.reachable()? else {
            return Ok(());
        };
        for fp in c.records.iter().filter(|fp| !live.records.contains(*fp)) {
            let p = self.record_path(fp);
            fs::remove_file(&p).or_else(ignore_missing).ctx("removing", &p)?;
            let _ = fs::remove_file(self.root.join("provenance").join(format!("{fp}.json")));
        }
        for id in c.objects.iter().filter(|id| !live.objects.contains(*id)) {
            let p = self.object_path(id);
            fs::remove_file(&p).or_else(ignore_missing).ctx("removing", &p)?;
            if let Some(parent) = p.parent() {
                let _ = fs::remove_dir(parent); // only if now empty
            }
        }
        sync_dir(&self.root.join("records"))?;
        sync_dir(&self.root.join("objects"))
    }

    /// Moves `path` (a file or link of this store) into `quarantine/`, under
    /// a new name that says what it was; returns that name. Renaming moves a
    /// symbolic link itself, never its target.
    pub(crate) fn quarantine(&self, path: &Path, what: &str) -> Result<PathBuf> {
        let dir = self.root.join("quarantine");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let dest = dir.join(format!("{what}-{name}-{stamp}-{}", std::process::id()));
        fs::rename(path, &dest).ctx("moving to quarantine", path)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        sync_dir(&dir)?;
        Ok(dest)
    }
}

pub(crate) fn bad_record(path: &Path, detail: String) -> StoreError {
    StoreError::BadMetadata { path: path.to_path_buf(), what: "stage record", detail }
}

/// Writes small metadata (a record, a ref, provenance) atomically through
/// the store's `tmp/` ([`atomic::land`]). Immutable files (records) are
/// made read-only (0444), the others 0644, so that other users can read a
/// store whatever the umask. Returns whether `dest` was created (false: it
/// existed and `replace` was off).
fn write_atomic(root: &Path, dest: &Path, bytes: &[u8], replace: bool) -> Result<bool> {
    let mut tmp = atomic::temp_in(&root.join("tmp"), ".meta-", "")?;
    tmp.write_all(bytes).ctx("writing", tmp.path())?;
    atomic::land(tmp, dest, if replace { 0o644 } else { 0o444 }, replace)
}


//! Looking after a store: `verify` (every object, record and ref checked),
//! `repair` (what is damaged moved to `quarantine/`, so the next build
//! recomputes it) and `gc` (what no ref reaches removed, refused while
//! anything a ref reaches cannot be trusted).
//!
//! None of them follows a symbolic link out of the store: directory entries
//! are examined with `lstat`, files opened with `O_NOFOLLOW`, and only the
//! store's own names are ever removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use arrow_array::types::{Float32Type, Int64Type};
use serde::Serialize;

use crate::error::{IoContext, Result, StoreError};
use crate::record::{ObjectKind, short};
use crate::atomic::sync_dir;
use crate::id::ObjectId;
use crate::layout::sweep_tmp;
use crate::lock::Gate;
use crate::nofollow::ignore_missing;
use crate::store::{RecordState, Store};

/// Which part of the store a [`Problem`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// A file under `objects/`.
    Object,
    /// A file under `records/`.
    Record,
    /// A file under `refs/`.
    Ref,
}

/// One thing `verify` found wrong, and the file it is in.
#[derive(Debug)]
pub struct Problem {
    /// Where the problem is.
    pub part: Part,
    /// The file (what `repair` moves to `quarantine/`).
    pub path: PathBuf,
    /// What is wrong.
    pub error: StoreError,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects re-hashed.
    pub objects_checked: usize,
    /// Records read.
    pub records_checked: usize,
    /// Refs read.
    pub refs_checked: usize,
    /// Every problem found, each naming its file.
    pub problems: Vec<Problem>,
}

/// What `repair` moved aside.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Objects, records and refs checked.
    pub checked: usize,
    /// `(part, original path, where it lies now in quarantine/)`.
    pub quarantined: Vec<(Part, PathBuf, PathBuf)>,
    /// Refs whose build must be redone (`textgcn build` of their config).
    pub refs_to_rebuild: Vec<String>,
}

/// What `gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Objects no ref reaches, removed.
    pub objects_removed: usize,
    /// Records no ref reaches, removed.
    pub records_removed: usize,
    /// Quarantined files removed.
    pub quarantined_removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Objects kept.
    pub objects_kept: usize,
}

/// The records and objects the refs reach.
pub(crate) struct Reach {
    pub records: BTreeSet<String>,
    pub objects: BTreeSet<ObjectId>,
}

/// Whether `name` is a record file name of this store (`<64 hex>.json`).
fn record_fp(name: &str) -> Option<&str> {
    name.strip_suffix(".json").filter(|fp| ObjectId::parse(fp).is_ok())
}

impl Store {
    /// Every object file: `(id, path, is a regular file)`. Only real
    /// subdirectories of `objects/` named by two hex digits are entered.
    fn all_objects(&self) -> Result<Vec<(ObjectId, PathBuf, bool)>> {
        let dir = self.root.join("objects");
        let mut out = Vec::new();
        for sub in fs::read_dir(&dir).ctx("listing", &dir)? {
            let sub = sub.ctx("listing", &dir)?;
            if !sub.file_type().ctx("examining", sub.path())?.is_dir() {
                continue;
            }
            let prefix = sub.file_name().to_string_lossy().into_owned();
            for e in fs::read_dir(sub.path()).ctx("listing", sub.path())? {
                let e = e.ctx("listing", sub.path())?;
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                if let Ok(id) = ObjectId::parse(&name) {
                    let regular = e.file_type().ctx("examining", e.path())?.is_file();
                    out.push((id, e.path(), regular));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Fingerprints of every record file (`records/<fp>.json`), sorted.
    fn all_record_fps(&self) -> Result<Vec<String>> {
        let dir = self.root.join("records");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx("listing", &dir)? {
            let e = e.ctx("listing", &dir)?;
            if let Some(fp) = record_fp(&e.file_name().to_string_lossy()) {
                out.push(fp.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The records every ref pins and the objects they list, or (as the
    /// inner `Err`) why that cannot be known: a ref that cannot be read, or
    /// one that reaches a record that is missing, damaged or not the one it
    /// pins.
    pub(crate) fn reachable(&self) -> Result<std::result::Result<Reach, Vec<String>>> {
        let mut reach = Reach { records: BTreeSet::new(), objects: BTreeSet::new() };
        let mut problems = Vec::new();
        for name in self.ref_names()? {
            let r = match self.get_ref(&name) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            for entry in &r.stages {
                match self.pinned_record(&name, entry) {
                    Ok(rec) => {
                        reach.records.insert(rec.fingerprint.clone());
                        reach.objects.extend(rec.outputs.into_values().map(|o| o.id));
                    }
                    Err(e) => {
                        // Keep the record file all the same: it may be the
                        // one the ref means.
                        reach.records.insert(entry.fingerprint.clone());
                        problems.push(format!("ref {name}: {e}"));
                    }
                }
            }
        }
        Ok(if problems.is_empty() { Ok(reach) } else { Err(problems) })
    }

    /// Re-hashes every object; checks every record (digest, fingerprint,
    /// each output present, of the recorded size and decoding as its
    /// recorded kind) and every ref (it parses, carries its name, and pins
    /// valid records by digest). Problems are collected, not returned early,
    /// so one run reports all.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let mut good: BTreeMap<ObjectId, PathBuf> = BTreeMap::new();
        for (id, path, regular) in self.all_objects()? {
            rep.objects_checked += 1;
            if !regular {
                rep.problems.push(Problem { part: Part::Object, path: path.clone(), error: StoreError::Damaged { path, detail: "not a regular file".into() } });
                continue;
            }
            match self.hash_file(&path) {
                Ok(actual) if actual == id.as_str() => {
                    good.insert(id, path);
                }
                // Removed meanwhile (verify takes no lock; gc may run).
                Err(StoreError::Io { error: source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Ok(actual) => rep.problems.push(Problem {
                    part: Part::Object,
                    path: path.clone(),
                    error: StoreError::Corrupt { id: id.to_string(), path, expected: id.to_string(), actual },
                }),
                Err(e) => rep.problems.push(Problem { part: Part::Object, path, error: e }),
            }
        }
        // Each (object, kind) pair is decoded once: an object may be
        // recorded by several records, and only those naming its true kind
        // are right.
        let mut kinds_checked: BTreeMap<(ObjectId, ObjectKind), std::result::Result<(), String>> = BTreeMap::new();
        let mut valid_records: BTreeMap<String, String> = BTreeMap::new(); // fp -> digest
        let listed: BTreeSet<String> = self.all_record_fps()?.into_iter().collect();
        for fp in listed.iter().cloned() {
            rep.records_checked += 1;
            let path = self.record_path(&fp);
            let rec = match self.load_record(&fp) {
                Ok(RecordState::Valid(rec)) => rec,
                Ok(RecordState::Missing) => continue, // removed meanwhile
                Ok(RecordState::Damaged(e)) | Err(e) => {
                    rep.problems.push(Problem { part: Part::Record, path, error: e });
                    continue;
                }
            };
            let mut ok = true;
            for (name, out) in &rec.outputs {
                // An object published after the listing above (by a build
                // running beside this verify) is hashed now.
                if !good.contains_key(&out.id) {
                    let path = self.object_path(&out.id);
                    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) && self.hash_file(&path).is_ok_and(|h| h == out.id.as_str()) {
                        good.insert(out.id.clone(), path);
                    }
                }
                let detail = match good.get(&out.id) {
                    None => Some(format!("output `{name}`: object {} is missing or damaged", out.id.short())),
                    Some(obj) => kinds_checked
                        .entry((out.id.clone(), out.kind))
                        .or_insert_with(|| check_kind(obj, &out.id, out.kind).map_err(|e| e.to_string()))
                        .clone()
                        .err()
                        .map(|e| format!("output `{name}` is recorded as a {}, but: {e}", out.kind)),
                };
                if let Some(detail) = detail {
                    rep.problems.push(Problem { part: Part::Record, path: path.clone(), error: crate::store::bad_record(&path, detail) });
                    ok = false;
                    break;
                }
            }
            if ok {
                valid_records.insert(fp, rec.digest());
            }
        }
        for name in self.ref_names()? {
            rep.refs_checked += 1;
            let path = self.ref_path(&name)?;
            let r = match self.get_ref(&name) {
                Ok(r) => r,
                Err(e) => {
                    rep.problems.push(Problem { part: Part::Ref, path, error: e });
                    continue;
                }
            };
            for entry in &r.stages {
                let detail = match valid_records.get(&entry.fingerprint) {
                    // Published after the listing above: checked now.
                    None if !listed.contains(&entry.fingerprint) && self.pinned_record(&name, entry).is_ok() => continue,
                    None => format!("stage {} points at record {}, which is missing or damaged", entry.stage, short(&entry.fingerprint)),
                    Some(d) if *d != entry.record => format!("stage {} pins record digest {}, the record's is {}", entry.stage, short(&entry.record), short(d)),
                    Some(_) => match self.pinned_record(&name, entry) {
                        Ok(_) => continue,
                        Err(e) => e.to_string(),
                    },
                };
                rep.problems.push(Problem { part: Part::Ref, path: path.clone(), error: StoreError::BadMetadata { path: path.clone(), what: "ref", detail } });
                break;
            }
        }
        Ok(rep)
    }

    /// Runs [`Store::verify`] with the store to itself and moves every file
    /// with a problem into `quarantine/`: damaged objects, records that are
    /// damaged or list a damaged object, refs that are damaged or reach a
    /// damaged record. Afterwards `verify` is clean, `gc` is safe, and
    /// `textgcn build` of each config in `refs_to_rebuild` recomputes what
    /// was moved, ending byte-identical to a clean build. Needs a read-mode
    /// handle (it takes the store lock exclusively, like `gc`).
    pub fn repair(&self) -> Result<RepairReport> {
        let _held = self.lock_exclusively("repairing")?;
        let rep = self.verify()?;
        let mut out = RepairReport { checked: rep.objects_checked + rep.records_checked + rep.refs_checked, ..Default::default() };
        let mut seen = BTreeSet::new();
        for p in rep.problems {
            if !seen.insert(p.path.clone()) || fs::symlink_metadata(&p.path).is_err() {
                continue;
            }
            let what = match p.part {
                Part::Object => "object",
                Part::Record => "record",
                Part::Ref => "ref",
            };
            let dest = self.quarantine(&p.path, what)?;
            if p.part == Part::Ref {
                out.refs_to_rebuild.push(p.path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
            }
            out.quarantined.push((p.part, p.path, dest));
        }
        Ok(out)
    }

    /// Takes the store to itself: closes the gate (new writers wait), then
    /// waits for the exclusive store lock (running writers end). Only for
    /// read-mode handles; released when the returned guard drops.
    fn lock_exclusively(&self, op: &'static str) -> Result<std::fs::File> {
        if self.lock.is_some() {
            return Err(StoreError::Io { op, path: self.root.clone(), error: io::Error::other("needs a read-mode handle (a write handle holds the shared lock)") });
        }
        let lock_path = self.root.join("store.lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).ctx("opening", &lock_path)?;
        let gate = Gate::exclusive(&self.root)?;
        lock.lock().ctx("locking (exclusive)", &lock_path)?;
        drop(gate);
        Ok(lock)
    }

    /// Removes every object and record that no ref reaches, and the
    /// quarantined files. Takes the store lock exclusively, so it waits for
    /// running builds and they wait for it. Refused, removing nothing,
    /// while any ref cannot be read or reaches a record that is missing,
    /// damaged or not the one it pins: then what is live is not known.
    /// Mapped objects stay readable by their mappers (unlink only).
    pub fn gc(&self) -> Result<GcReport> {
        let _held = self.lock_exclusively("collecting garbage in")?;
        sweep_tmp(&self.root)?;
        let live = self.reachable()?.map_err(|problems| StoreError::Refused {
            op: "gc",
            detail: format!("{}; run `textgcn verify --repair`, then rebuild the refs it names", problems.join("; ")),
        })?;
        let mut rep = GcReport::default();
        for fp in self.all_record_fps()? {
            if !live.records.contains(&fp) {
                let path = self.record_path(&fp);
                fs::remove_file(&path).or_else(ignore_missing).ctx("removing", &path)?;
                let _ = fs::remove_file(self.root.join("provenance").join(format!("{fp}.json")));
                let _ = fs::remove_file(self.root.join("locks").join(format!("{fp}.lock")));
                rep.records_removed += 1;
            }
        }
        for (id, path, _) in self.all_objects()? {
            if live.objects.contains(&id) {
                rep.objects_kept += 1;
            } else {
                rep.bytes_freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).or_else(ignore_missing).ctx("removing", &path)?;
                rep.objects_removed += 1;
            }
        }
        let q = self.root.join("quarantine");
        if fs::symlink_metadata(&q).is_ok_and(|m| m.is_dir()) {
            for e in fs::read_dir(&q).ctx("listing", &q)? {
                let e = e.ctx("listing", &q)?;
                let name = e.file_name().to_string_lossy().into_owned();
                let is_dir = e.file_type().ctx("examining", e.path())?.is_dir();
                // Only the names `quarantine` and the layout upgrade give.
                if is_dir && name.starts_with("layout-1-") {
                    rep.bytes_freed += dir_size(&e.path());
                    fs::remove_dir_all(e.path()).ctx("removing", e.path())?;
                } else if !is_dir && ["object-", "record-", "ref-"].iter().any(|p| name.starts_with(p)) {
                    rep.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(e.path()).or_else(ignore_missing).ctx("removing", e.path())?;
                } else {
                    continue;
                }
                rep.quarantined_removed += 1;
            }
        }
        sync_dir(&self.root.join("records"))?;
        Ok(rep)
    }
}

/// Bytes of the regular files under `dir` (not following links).
fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Checks that the (already hashed) object at `path` decodes as `kind`.
fn check_kind(path: &Path, id: &ObjectId, kind: ObjectKind) -> Result<()> {
    let f = crate::store::open_no_follow(path).ctx("opening", path)?;
    let bytes = bytes::Bytes::from_owner(crate::mapped::map_readonly(&f).ctx("mapping", path)?);
    match kind {
        ObjectKind::EdgeIndex => crate::columnar::decode_column::<Int64Type>(bytes, id, "edge_index").and_then(crate::EdgeIndex::from_column).map(|_| ()),
        ObjectKind::EdgeAttr => crate::columnar::decode_column::<Float32Type>(bytes, id, "edge_attr").map(|_| ()),
        ObjectKind::RowPtr => crate::columnar::decode_column::<Int64Type>(bytes, id, "row_ptr").map(|_| ()),
        ObjectKind::Table => crate::table::check_table(bytes, id),
    }
}

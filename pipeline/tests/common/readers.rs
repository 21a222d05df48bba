//! A small built store whose metadata (records, refs) is damaged at random,
//! and every reader of that metadata: shared by the `store_json` test and
//! the `store_json` fuzz target (fuzz/fuzz_targets/store_json.rs).

use std::path::{Path, PathBuf};

use textgcn_artifacts::{OpenMode, StageRecord, Store};
use textgcn_pipeline::{config, stages};

/// A built store and the metadata files to damage.
pub struct Fixture {
    /// Holds the corpus, config and store (removed on drop).
    pub _dir: tempfile::TempDir,
    /// The store.
    pub store: PathBuf,
    /// The config it was built from.
    pub cfg: config::LoadedConfig,
    /// Every record file, then the ref file.
    pub files: Vec<PathBuf>,
    /// Their bytes as built.
    pub originals: Vec<Vec<u8>>,
}

/// Builds the fixture: six documents, two classes.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    std::fs::write(d.join("c.txt"), "apple pie sweet cream\nbanana split sweet\ncar engine loud road\ntruck engine loud\npie cream apple\nroad truck car\n").unwrap();
    std::fs::write(d.join("m.txt"), "a\ttrain\tfood\nb\ttest\tfood\nc\ttrain\tcar\nd\ttest\tcar\ne\ttrain\tfood\nf\ttrain\tcar\n").unwrap();
    let cfg_path = d.join("t.toml");
    std::fs::write(&cfg_path, format!("name = \"t\"\ndata_dir = \"{}\"\n[ingest]\ncorpus = \"c.txt\"\nmeta = \"m.txt\"\n[vocab]\nmin_freq = 1\nstopwords = \"none\"\n", d.display())).unwrap();
    let cfg = config::load(&cfg_path).expect("fixture config");
    let store = d.join("store");
    let s = Store::open(&store, OpenMode::Write).expect("fixture store");
    stages::build(&s, &cfg, |_| {}).expect("fixture build");
    let mut files: Vec<PathBuf> = std::fs::read_dir(store.join("records")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.push(store.join("refs/t.json"));
    let originals = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    Fixture { _dir: dir, store, cfg, files, originals }
}

impl Fixture {
    /// Puts every file back as built.
    pub fn restore(&self) {
        for (f, b) in self.files.iter().zip(&self.originals) {
            write(f, b);
        }
    }

    /// Writes `bytes` into metadata file `k`; when they parse as a record
    /// (or a ref), also re-seals it (its digest, and the ref's pin of it),
    /// so that the damage reaches the readers behind the digest checks.
    pub fn damage(&self, k: usize, bytes: &[u8], reseal: bool) {
        let f = &self.files[k];
        let is_ref = k == self.files.len() - 1;
        if reseal
            && !is_ref
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
            && let Ok(rec) = serde_json::from_value::<StageRecord>(v["record"].clone())
        {
            let digest = rec.digest();
            write(f, &serde_json::to_vec(&serde_json::json!({"digest": digest, "record": v["record"]})).unwrap());
            let fp = f.file_stem().unwrap().to_string_lossy().into_owned();
            let ref_file = &self.files[self.files.len() - 1];
            if let Ok(mut r) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(ref_file).unwrap())
                && let Some(stages) = r["stages"].as_array_mut()
            {
                for s in stages.iter_mut().filter(|s| s["fingerprint"] == fp.as_str()) {
                    s["record"] = digest.clone().into();
                }
                write(ref_file, &serde_json::to_vec(&r).unwrap());
            }
            return;
        }
        write(f, bytes);
    }

    /// Runs every reader of records and refs; each returns a value or an
    /// error (a panic propagates to the caller). Returns how many succeeded.
    pub fn run_readers(&self) -> usize {
        let Ok(store) = Store::open(&self.store, OpenMode::Read) else { return 0 };
        let mut ok = 0;
        ok += store.get_ref("t").is_ok() as usize;
        for f in &self.files {
            let fp = f.file_stem().unwrap().to_string_lossy().into_owned();
            ok += store.load_record(&fp).is_ok() as usize;
        }
        ok += store.verify().is_ok_and(|r| r.problems.is_empty()) as usize;
        ok += stages::status(&store, &self.cfg).is_ok() as usize;
        ok += stages::stale_stages(&store, &self.cfg).is_ok() as usize;
        if let Ok(b) = stages::BuiltRef::open(&store, "t") {
            ok += 1;
            for r in b.records() {
                for o in r.outputs.values() {
                    ok += textgcn_artifacts::read_table(&store, &o.id).is_ok() as usize;
                }
            }
        }
        ok += stages::export_clean(&store, "t").is_ok() as usize;
        ok
    }
}

fn write(f: &Path, bytes: &[u8]) {
    // Records are read-only (0444); a hand edit (or damage) rewrites them.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644));
    std::fs::write(f, bytes).unwrap();
}

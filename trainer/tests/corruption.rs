//! Damaged stores never load silently: for every artifact kind, many trials
//! of a flipped bit, a truncation, a one-byte extension, a swap of two
//! objects and a stale object from an older build are each detected by
//! `verify` and by the open path the trainer uses, with a typed error naming
//! the object and both hashes. And a trainer holding the graph mapped while
//! a new build publishes and `gc` unlinks the old objects keeps working.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};
use textgcn_artifacts::{ObjectId, OpenMode, Store, StoreError};
use textgcn_pipeline::{config, stages, tables};
use textgcn_trainer::graph;

/// A small two-class corpus; `edit` changes one document (an "older build").
fn write_corpus(dir: &Path, edit: bool) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let words: Vec<String> = (0..150).map(|i| format!("w{i}")).collect();
    let mut corpus = String::new();
    let mut meta = String::new();
    for d in 0..240 {
        let label = d % 2;
        let len = rng.random_range(5..40);
        let doc: Vec<&str> = (0..len).map(|_| words[rng.random_range(0..75) + 75 * (label * rng.random_range(0..2))].as_str()).collect();
        let text = if edit && d == 7 { "w1 w2 w3 w4 w5 w6".to_owned() } else { doc.join(" ") };
        corpus.push_str(&text);
        corpus.push('\n');
        meta.push_str(&format!("d{d}\t{}\tc{label}\n", if d % 4 == 0 { "test" } else { "train" }));
    }
    std::fs::write(dir.join("c.txt"), corpus).unwrap();
    std::fs::write(dir.join("m.txt"), meta).unwrap();
    let cfg = dir.join("t.toml");
    std::fs::write(&cfg, format!("name = \"t\"\ndata_dir = \"{}\"\n[ingest]\ncorpus = \"c.txt\"\nmeta = \"m.txt\"\n[vocab]\nmin_freq = 1\nstopwords = \"none\"\n", dir.display())).unwrap();
    cfg
}

fn build(store: &Path, cfg: &Path) -> BTreeMap<String, ObjectId> {
    let cfg = config::load(cfg).unwrap();
    let s = Store::open(store, OpenMode::Write).unwrap();
    stages::build(&s, &cfg, |_| {}).unwrap();
    let built = stages::BuiltRef::open(&s, "t").unwrap();
    built.records().iter().flat_map(|r| r.outputs.iter().map(move |(name, o)| (format!("{}.{name}", r.stage), o.id.clone()))).collect()
}

fn rewrite(path: &Path, bytes: &[u8]) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
}

/// The open path a kind goes through: the trainer's for what it maps and
/// reads, the pipeline's table readers for the rest.
fn open_kind(kind: &str, store_path: &Path, cfg: &config::LoadedConfig, id: &ObjectId) -> anyhow::Result<()> {
    let store = Store::open(store_path, OpenMode::Read)?;
    match kind {
        "ingest.documents" => drop(tables::get_documents(&store, id)?),
        "tokenize.tokens" => {
            let (_, batches) = tables::read_string_batches(&store, id, "tokens", 4096)?;
            for b in batches {
                b?;
            }
        }
        "vocab.doc_tokens" => drop(tables::get_doc_tokens(&store, id)?),
        _ => drop(graph::load(store_path, cfg, Device::Cpu)?),
    }
    Ok(())
}

fn names_object_and_hashes(e: &str, id: &ObjectId) -> bool {
    e.contains(&format!("object {id} is corrupt")) && e.contains(&format!("expected hash {id}")) && e.contains("found ")
}

#[test]
fn every_kind_of_damage_to_every_artifact_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let old = build(&store, &write_corpus(dir.path(), true));
    let cfg_path = write_corpus(dir.path(), false);
    let new = build(&store, &cfg_path);
    let cfg = config::load(&cfg_path).unwrap();
    let s = Store::open(&store, OpenMode::Read).unwrap();
    let ids: Vec<ObjectId> = new.values().cloned().collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let trials = 200;
    let mut detected = BTreeMap::<&str, usize>::new();
    let mut stale_kinds = 0;
    for (kind, id) in &new {
        let path = s.object_path(id);
        let good = std::fs::read(&path).unwrap();
        let stale = old.get(kind).filter(|o| *o != id).map(|o| std::fs::read(s.object_path(o)).unwrap());
        stale_kinds += stale.is_some() as usize;
        for damage in ["flip", "truncate", "extend", "swap", "stale"] {
            if damage == "stale" && stale.is_none() {
                continue; // this kind has the same bytes in both builds
            }
            for t in 0..trials {
                let mut other: Option<(PathBuf, Vec<u8>)> = None;
                let bad: Vec<u8> = match damage {
                    "flip" => {
                        let mut b = good.clone();
                        let at = rng.random_range(0..b.len());
                        b[at] ^= 1 << rng.random_range(0..8);
                        b
                    }
                    "truncate" => good[..rng.random_range(0..good.len())].to_vec(),
                    "extend" => {
                        let mut b = good.clone();
                        b.push(rng.random());
                        b
                    }
                    "swap" => {
                        let o = loop {
                            let o = &ids[rng.random_range(0..ids.len())];
                            if o != id {
                                break o;
                            }
                        };
                        let op = s.object_path(o);
                        let ob = std::fs::read(&op).unwrap();
                        rewrite(&op, &good);
                        other = Some((op, ob.clone()));
                        ob
                    }
                    _ => stale.clone().unwrap(),
                };
                rewrite(&path, &bad);
                let rep = s.verify().unwrap();
                let named = rep.problems.iter().any(|p| matches!(&p.error, StoreError::Corrupt { id: i, actual, .. } if i == id.as_str() && actual != i));
                assert!(named, "{kind} {damage} trial {t}: verify missed it: {:?}", rep.problems);
                let e = open_kind(kind, &store, &cfg, id).expect_err(&format!("{kind} {damage} trial {t}: opened a damaged store"));
                let msg = format!("{e:#}");
                // With a swap, the open may stop at the other damaged object
                // first; a change of size is caught before hashing, by the
                // record's size of the object.
                let names_size = |i: &ObjectId| msg.contains(&format!("{}: ", s.object_path(i).display())) && msg.contains("bytes, the record says");
                let ok = names_object_and_hashes(&msg, id)
                    || names_size(id)
                    || other.as_ref().is_some_and(|(op, _)| ids.iter().any(|i| s.object_path(i) == *op && (names_object_and_hashes(&msg, i) || names_size(i))));
                assert!(ok, "{kind} {damage} trial {t}: error does not name the object and both hashes: {msg}");
                rewrite(&path, &good);
                if let Some((op, ob)) = other {
                    rewrite(&op, &ob);
                }
                *detected.entry(damage).or_default() += 1;
            }
        }
    }
    assert!(s.verify().unwrap().problems.is_empty(), "restoring failed");
    assert!(new.len() >= 10 && stale_kinds >= 8, "{} kinds, {stale_kinds} with a stale version", new.len());
    eprintln!("{} artifact kinds; detected by verify and open: {detected:?}", new.len());
}

#[test]
fn a_mapped_graph_survives_a_new_build_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg_path = write_corpus(dir.path(), true);
    let before = build(&store, &cfg_path);
    let cfg = config::load(&cfg_path).unwrap();
    let g = graph::load(&store, &cfg, Device::Cpu).unwrap();
    assert!(g.is_zero_copy());
    let x = Tensor::randn([g.num_nodes as i64, 8], (Kind::Float, Device::Cpu));
    let y1 = g.adj.mm(&x);
    // A new build moves the ref; gc unlinks the old graph while it is mapped.
    let after = build(&store, &write_corpus(dir.path(), false));
    assert_ne!(before["graph.edge_attr"], after["graph.edge_attr"]);
    let s = Store::open(&store, OpenMode::Read).unwrap();
    let rep = s.gc().unwrap();
    assert!(rep.objects_removed >= 3, "{rep:?}");
    for k in ["graph.edge_index", "graph.edge_attr", "graph.row_ptr"] {
        assert!(!s.has_object(&before[k]), "{k} was not removed");
    }
    // Still mapped, still the same bytes: the same product, no fault.
    let y2 = g.adj.mm(&x);
    assert!(g.is_zero_copy());
    assert!(y1.equal(&y2), "the mapped graph changed under the trainer");
    assert!(s.verify().unwrap().problems.is_empty());
}

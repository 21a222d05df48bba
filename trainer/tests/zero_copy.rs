//! The graph is used in place: the tensors view the file mappings, and a
//! training step allocates no buffer of the graph's size.

use tch::{Device, Kind, Tensor};
use textgcn_artifacts::{EdgeAttr, EdgeIndex, OpenMode, RowPtr, Store};
use textgcn_trainer::graph::{Adj, GraphData};
use textgcn_trainer::metrics;
use textgcn_pipeline::config::DeviceChoice;
use textgcn_trainer::model::{self, Adam, Hyper, Model};

/// A dense symmetric graph: small intermediates (N × hidden), big graph.
fn dense_graph(store: &Store, n: usize) -> GraphData {
    let e = n * n;
    let mut idx = Vec::with_capacity(2 * e);
    idx.extend((0..n as i64).flat_map(|r| std::iter::repeat_n(r, n)));
    idx.extend((0..n).flat_map(|_| 0..n as i64));
    let attr: Vec<f32> = (0..e).map(|k| 1.0 / n as f32 + ((k / n + k % n) % 7) as f32 * 1e-4).collect();
    let row_ptr: Vec<i64> = (0..=n as i64).map(|r| r * n as i64).collect();
    let ei = EdgeIndex::publish(store, idx, n).unwrap();
    let ea = EdgeAttr::publish(store, attr).unwrap();
    let rp = RowPtr::publish(store, row_ptr).unwrap();
    let g = GraphData::from_objects(store, &ei, &ea, &rp, Device::Cpu).unwrap();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    let train: Vec<i64> = (0..n as i64).step_by(2).collect();
    g.with_labels(labels, (0..4).map(|c| format!("c{c}")).collect(), (0..n).map(|i| format!("d{i}")).collect(), [train, vec![1], vec![3]])
}

/// The peak RSS is process-wide, so the measurement runs in a process of
/// its own: this test binary again, running only the ignored helper below
/// (other tests of this binary run in parallel threads and would add their
/// allocations to the peak).
#[test]
fn graph_tensors_view_the_mappings_and_steps_allocate_no_graph_sized_buffer() {
    let exe = std::env::current_exe().unwrap();
    let o = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "--test-threads=1", "child_measures_training_steps"])
        .output()
        .unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 passed"), "the helper did not run: {t}");
}

#[test]
#[ignore = "helper process for the peak-RSS test"]
fn child_measures_training_steps() {
    // Every large allocation gets fresh pages, so the peak RSS sees it.
    textgcn_trainer::alloc::large_allocations_via_mmap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), OpenMode::Write).unwrap();
    let n = 2500;
    let g = dense_graph(&store, n);
    assert!(g.is_zero_copy(), "graph tensors must point into the file mappings");
    assert!(matches!(g.adj, Adj::Native { .. }));
    let graph_bytes = (n * n * (4 + 4)) as u64; // u32 columns + values in use
    let h = Hyper { hidden: 16, dropout: 0.5, learning_rate: 0.01, weight_decay: 0.0, epochs: 3, early_stopping: 0, seed: 1, device: DeviceChoice::Cpu, ..Hyper::default() };
    tch::manual_seed(1);
    let mut m = Model::new(n, h.hidden, 4, Device::Cpu);
    let mut opt = Adam::new(&m, h.learning_rate);
    // Warm-up: fault the mapped graph in and let the allocator settle.
    model::train_step(&mut m, &mut opt, &g.adj, None, &g.train, &g.targets, &h);
    let _ = tch::no_grad(|| m.logits(&g.adj));
    for _ in 0..3 {
        let before = metrics::rss_now();
        metrics::reset_peak();
        model::train_step(&mut m, &mut opt, &g.adj, None, &g.train, &g.targets, &h);
        let _ = tch::no_grad(|| model::loss_acc(&m.logits(&g.adj), &g.val, &g.targets));
        let grew = metrics::peak_rss().saturating_sub(before);
        assert!(grew < graph_bytes / 8, "a training step grew RSS by {grew} bytes; the graph is {graph_bytes} bytes");
    }
    assert!(g.is_zero_copy());
    // The kernel reads a u32 copy of the columns: the mapped edge_index
    // (50 MB) is not resident in this process, its values are.
    let resident = |i: usize| metrics::mapped_rss(&g.mapped_paths[i..=i]);
    assert!(resident(0) < 1 << 20, "edge_index: {} bytes resident", resident(0));
    assert!(resident(1) >= (n * n * 4) as u64, "edge_attr: {} bytes resident", resident(1));
}

#[test]
fn native_and_libtorch_products_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), OpenMode::Write).unwrap();
    let g = dense_graph(&store, 300);
    let Adj::Native { cols, narrow: Some(narrow), .. } = &g.adj else { panic!("CPU graphs use the native kernel, with u32 columns where they fit") };
    // Its u32 columns are the mapped i64 ones.
    assert_eq!(narrow.len(), cols.values().len());
    assert!(narrow.iter().zip(cols.values()).all(|(&a, &b)| a as i64 == b));
    let t = g.mapped_csr_tensor();
    let x = Tensor::randn([300, 37], (Kind::Float, Device::Cpu));
    assert!(g.adj.mm(&x).allclose(&t.mm(&x), 1e-5, 1e-5, false));
}

#[test]
fn reusing_the_evaluations_first_layer_changes_nothing() {
    // `train_run` hands the evaluation's Â·W0 to the next step; a loop that
    // recomputes it must see exactly the same losses.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), OpenMode::Write).unwrap();
    let g = dense_graph(&store, 200);
    let h = Hyper { hidden: 8, dropout: 0.5, learning_rate: 0.05, weight_decay: 0.0, epochs: 6, early_stopping: 0, seed: 5, device: DeviceChoice::Cpu, ..Hyper::default() };
    let mut cached = Vec::new();
    let _ = textgcn_trainer::run::train_run(&g, &h, |e| cached.push((e.train_loss, e.val_loss)));
    tch::manual_seed(h.seed as i64);
    let mut m = Model::new(200, h.hidden, 4, Device::Cpu);
    let mut opt = Adam::new(&m, h.learning_rate);
    let mut fresh = Vec::new();
    for _ in 0..h.epochs {
        let (tl, _) = model::train_step(&mut m, &mut opt, &g.adj, None, &g.train, &g.targets, &h);
        let (vl, _) = tch::no_grad(|| model::loss_acc(&m.logits(&g.adj), &g.val, &g.targets));
        fresh.push((tl, vl));
    }
    assert_eq!(cached.len(), h.epochs);
    assert_eq!(cached, fresh);
    assert!(cached[0] != cached[h.epochs - 1], "training must move the losses");
}

/// The products read the u32 copy of the columns where it fits the
/// memory, else the mapped i64 columns: training gives the same losses to
/// the bit either way.
#[test]
fn mapped_and_copied_columns_train_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), OpenMode::Write).unwrap();
    let copied = dense_graph(&store, 200);
    let mut mapped = dense_graph(&store, 200);
    let Adj::Native { narrow, .. } = &mut mapped.adj else { panic!("CPU graphs use the native kernel") };
    assert!(narrow.take().is_some(), "a small graph's columns are copied");
    let h = Hyper { hidden: 8, dropout: 0.5, learning_rate: 0.05, weight_decay: 5e-4, epochs: 5, early_stopping: 0, seed: 3, device: DeviceChoice::Cpu, ..Hyper::default() };
    let mut logs = [Vec::new(), Vec::new()];
    for (g, log) in [&copied, &mapped].into_iter().zip(&mut logs) {
        let _ = textgcn_trainer::run::train_run(g, &h, |e| log.push((e.train_loss.to_bits(), e.val_loss.to_bits(), e.val_acc.to_bits())));
    }
    assert_eq!(logs[0].len(), h.epochs);
    assert_eq!(logs[0], logs[1]);
    assert_eq!(copied.self_loops(0..200), mapped.self_loops(0..200));
}

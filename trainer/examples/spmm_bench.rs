//! Times `Â · X` on a built graph: the native kernel against libtorch's CSR
//! product, for the two widths the model uses (hidden and classes).
//!
//! `cargo run --release -p textgcn-trainer --example spmm_bench -- STORE REF [WIDTHS]`
//! (`WIDTHS`: comma-separated widths of `X`, default `200,20`).

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use textgcn_artifacts::{OpenMode, Store};
use textgcn_trainer::graph::{Adj, GraphData};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let store = Store::open(&args[1], OpenMode::Read)?;
    let r = store.get_ref(&args[2])?;
    let entry = r.stage("graph").ok_or_else(|| anyhow::anyhow!("ref {} has no graph stage", args[2]))?;
    let rec = store.pinned_record(&args[2], entry)?;
    let id = |name: &str| rec.output_id(name).cloned().map_err(anyhow::Error::msg);
    let g = GraphData::from_objects(&store, &id("edge_index")?, &id("edge_attr")?, &id("row_ptr")?, Device::Cpu)?;
    let n = g.num_nodes as i64;
    let torch = match &g.adj {
        Adj::Native { .. } => Adj::Torch(g.mapped_csr_tensor()),
        Adj::Torch(t) => Adj::Torch(t.shallow_clone()),
        Adj::Host { .. } => unreachable!("a graph from objects is mapped, never held"),
    };
    let widths: Vec<i64> = match args.get(3) {
        Some(w) => w.split(',').map(|k| k.trim().parse().map_err(|e| anyhow::anyhow!("width {k:?}: {e}"))).collect::<anyhow::Result<_>>()?,
        None => vec![200, 20],
    };
    for k in widths {
        let x = Tensor::rand([n, k], (Kind::Float, Device::Cpu));
        for (name, a) in [("native", &g.adj), ("torch", &torch)] {
            let _ = a.mm(&x);
            let t = Instant::now();
            let reps = 5;
            let mut out = Tensor::zeros([1], (Kind::Float, Device::Cpu));
            for _ in 0..reps {
                out = a.mm(&x);
            }
            println!("{name:>6} k={k:<4} {:.3} s per product (checksum {:.3})", t.elapsed().as_secs_f64() / reps as f64, out.sum(Kind::Double).double_value(&[]));
        }
    }
    Ok(())
}

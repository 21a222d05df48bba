#!/usr/bin/env python3
"""The PyTorch anchor of `make bench`: the same featureless 2-layer GCN,
trained the way a PyTorch port does it, on the same artifacts.

    torch_baseline.py --store STORE --ref NAME [--epochs 6] [--layout csr|coo]

Reads the published `row_ptr`, `edge_index`, `edge_attr` (memory-mapped
Arrow IPC), the node table's labels and the splits from the store, then
trains `Â·dropout(ReLU(Â·W0))·W1` (hidden 200, dropout 0.5, Glorot
weights, `torch.optim.Adam` at 0.02, cross-entropy on the training
documents) with `torch.sparse.mm` and autograd, and after each step
evaluates the validation documents, as textgcn's epoch does. The first
epoch is a warm-up and is not counted. Prints one JSON object: the median
epoch seconds, the peak RSS (bytes), the layout, torch's version and
thread count.
"""
import argparse
import json
import os
import resource
import statistics
import time
import warnings

import numpy as np
import pyarrow.parquet as pq
import torch

from oracle_graph import mapped_column as column, obj as path, store_outputs as outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--epochs", type=int, default=6, help="epochs, the first a warm-up (at least 2)")
    ap.add_argument("--layout", choices=["csr", "coo"], default="csr")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    # The mapped arrays are read-only (never written here) and CSR support
    # is "beta": the warnings say nothing about this use.
    warnings.filterwarnings("ignore", category=UserWarning)
    if a.epochs < 2:
        ap.error("--epochs must be at least 2 (the first is a warm-up)")
    torch.manual_seed(a.seed)
    o = outputs(a.store, a.ref)
    g = o["graph"]
    ei = column(path(a.store, g["edge_index"]))
    e = len(ei) // 2
    rows, cols = ei[:e], ei[e:]
    vals = column(path(a.store, g["edge_attr"]))
    rp = column(path(a.store, g["row_ptr"]))
    n = len(rp) - 1
    nodes = pq.read_table(path(a.store, g["nodes"]), columns=["kind", "label_id"]).to_pydict()
    docs = sum(1 for k in nodes["kind"] if k == "doc")
    labels = torch.tensor(nodes["label_id"][:docs], dtype=torch.long)
    classes = int(labels.max()) + 1
    sp = pq.read_table(path(a.store, o["splits"]["splits"])).to_pydict()
    split = {s: torch.tensor([x for x, t in zip(sp["node"], sp["split"]) if t == s], dtype=torch.long) for s in ("train", "val")}
    if a.layout == "csr":
        adj = torch.sparse_csr_tensor(torch.from_numpy(rp), torch.from_numpy(cols), torch.from_numpy(vals), (n, n), check_invariants=False)
    else:
        adj = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(vals), (n, n)).coalesce()

    def glorot(r, c):
        b = (6.0 / (r + c)) ** 0.5
        return torch.empty(r, c).uniform_(-b, b).requires_grad_()

    w0, w1 = glorot(n, 200), glorot(200, classes)
    opt = torch.optim.Adam([w0, w1], lr=0.02)
    times = []
    for epoch in range(a.epochs):
        t = time.perf_counter()
        opt.zero_grad()
        h = torch.nn.functional.dropout(torch.relu(torch.sparse.mm(adj, w0)), 0.5, training=True)
        logits = torch.sparse.mm(adj, h @ w1)
        loss = torch.nn.functional.cross_entropy(logits[split["train"]], labels[split["train"]])
        loss.backward()
        opt.step()
        with torch.no_grad():
            z = torch.sparse.mm(adj, torch.relu(torch.sparse.mm(adj, w0)) @ w1)
            val = torch.nn.functional.cross_entropy(z[split["val"]], labels[split["val"]]).item()
        times.append(time.perf_counter() - t)
        del h, logits, loss, z
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"ref": a.ref, "layout": a.layout, "epochs": a.epochs - 1, "median_epoch_seconds": statistics.median(times[1:]),
                      "peak_rss": rss, "last_val_loss": val, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()

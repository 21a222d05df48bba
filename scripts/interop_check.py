#!/usr/bin/env python3
"""Opens a built ref's graph from Python the way a user would, and checks it.

usage: interop_check.py STORE REF

edge_index / edge_attr / row_ptr are memory-mapped with pyarrow (zero-copy
into NumPy), the adjacency is rebuilt as a SciPy CSR matrix, and the tables
(documents, vocabulary, nodes) are read with polars. Checks: shapes against
the tables, node order (documents, then words), symmetry, self loops, and
the normalisation itself: with deg_i = 1 / Â_ii (the self loop of A + I
has weight 1), every row of A + I = D^1/2 Â D^1/2 sums to deg_i.
Prints "INTEROP OK ..." and exits 0, or names the failed check and exits 1.
"""
import json
import os
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse as sp


def main():
    store, ref = sys.argv[1], sys.argv[2]
    obj = lambda oid: os.path.join(store, "objects", oid[:2], oid[2:])
    # A ref pins each stage's record; a record lists its outputs (id, kind, bytes).
    stages = {e["stage"]: e["fingerprint"] for e in json.load(open(os.path.join(store, "refs", f"{ref}.json")))["stages"]}
    rec = {s: {k: o["id"] for k, o in json.load(open(os.path.join(store, "records", f"{fp}.json")))["record"]["outputs"].items()} for s, fp in stages.items()}

    def column(oid):
        table = pa.ipc.open_file(pa.memory_map(obj(oid))).read_all()
        arr = table.column(0).chunk(0).to_numpy(zero_copy_only=True)
        assert not arr.flags.owndata, "a column was copied instead of mapped"
        return arr, json.loads(table.schema.metadata[b"textgcn"])

    ei, ei_meta = column(rec["graph"]["edge_index"])
    ea, _ = column(rec["graph"]["edge_attr"])
    rp, _ = column(rec["graph"]["row_ptr"])
    e = ei_meta["shape"][1]
    n = ei_meta["num_nodes"]
    rows, cols = ei[:e], ei[e:]
    adj = sp.csr_matrix((ea, cols, rp), shape=(n, n))
    coo = sp.coo_matrix((ea, (rows, cols)), shape=(n, n)).tocsr()
    assert (adj != coo).nnz == 0, "row_ptr and the row half of edge_index disagree"

    docs = pl.read_parquet(obj(rec["ingest"]["documents"]))
    vocab = pl.read_parquet(obj(rec["vocab"]["vocab"]))
    nodes = pl.read_parquet(obj(rec["graph"]["nodes"]))
    d, v = docs.height, vocab.height
    assert n == d + v == nodes.height, f"{n} nodes, {d} documents + {v} words, node table {nodes.height}"
    kinds = nodes["kind"].to_list()
    assert kinds[:d] == ["doc"] * d and kinds[d:] == ["word"] * v, "nodes are not documents then words"
    assert nodes["name"].to_list()[d:] == vocab["word"].to_list(), "word nodes are not in vocabulary order"
    assert vocab["word"].n_unique() == v, "vocabulary words repeat"
    freq = vocab["freq"].to_numpy()
    assert (np.diff(freq.astype(np.int64)) <= 0).all(), "vocabulary not sorted by frequency"

    diff = abs(adj - adj.T)
    assert diff.max() <= 1e-6 * abs(adj).max(), "not symmetric"
    diag = adj.diagonal()
    assert (diag > 0).all(), "a node without its self loop"
    deg = 1.0 / diag.astype(np.float64)
    s = np.sqrt(deg)
    a_plus_i = sp.diags(s) @ adj.astype(np.float64) @ sp.diags(s)
    row_sums = np.asarray(a_plus_i.sum(axis=1)).ravel()
    rel = np.abs(row_sums - deg) / deg
    assert rel.max() < 1e-4, f"normalisation: row sums of A+I differ from degrees by {rel.max():.2e}"
    print(f"INTEROP OK nodes={n} documents={d} words={v} edges={e} max_rel_err={rel.max():.1e}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as err:
        print(f"INTEROP FAILED: {err}")
        sys.exit(1)

#!/usr/bin/env python3
"""Independent oracle for the textgcn graph (the reference method in NumPy/SciPy).

Builds A+I and its normalisation from a cleaned corpus the way the original
TextGCN code does (explicit sliding windows, position-pair counts, PMI,
TF-IDF, max-symmetrisation, D^-1/2 (A+I) D^-1/2), then opens textgcn's
edge_index / edge_attr from the store with memory mapping (pyarrow) and
checks that every edge exists in both and every weight agrees within 1e-6
relative. Prints "ORACLE OK edges=N" on success, exits 1 otherwise.
"""
import argparse
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp


def store_outputs(store, ref):
    with open(os.path.join(store, "refs", ref + ".json")) as f:
        stages = {e["stage"]: e["fingerprint"] for e in json.load(f)["stages"]}
    out = {}
    for stage, fp in stages.items():
        with open(os.path.join(store, "records", fp + ".json")) as f:
            out[stage] = {k: o["id"] for k, o in json.load(f)["record"]["outputs"].items()}
    return out


def obj(store, oid):
    return os.path.join(store, "objects", oid[:2], oid[2:])


def mapped_column(path):
    with pa.memory_map(path, "r") as src:
        table = pa.ipc.open_file(src).read_all()
    return table.column(0).to_numpy()


def oracle(docs, window):
    vocab = sorted({w for d in docs for w in d})
    wid = {w: i for i, w in enumerate(vocab)}
    nd, nv = len(docs), len(vocab)
    ids = [np.array([wid[w] for w in d], dtype=np.int64) for d in docs]
    windows = []
    for a in ids:
        if len(a) <= window:
            windows.append(a)
        else:
            for j in range(len(a) - window + 1):
                windows.append(a[j:j + window])
    nw = len(windows)
    wf = np.bincount(np.concatenate([np.unique(w) for w in windows if len(w)] or [np.zeros(0, np.int64)]), minlength=nv)
    tri = {n: np.triu_indices(n, 1) for n in range(window + 1)}
    counts = sp.csr_matrix((nv, nv), dtype=np.float64)
    rows, cols = [], []

    def flush():
        nonlocal counts, rows, cols
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            counts = counts + sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(nv, nv)).tocsr()
            rows, cols = [], []

    for k, w in enumerate(windows):
        p, q = tri[len(w)]
        a, b = w[q], w[p]  # later position i, earlier j, as the reference loops
        m = a != b
        rows += [a[m], b[m]]
        cols += [b[m], a[m]]
        if k % 20000 == 19999:
            flush()
    flush()
    c = counts.tocoo()
    pmi = np.log((c.data / nw) / (wf[c.row].astype(np.float64) * wf[c.col] / (nw * nw)))
    keep = pmi > 0
    ww = sp.coo_matrix((pmi[keep], (c.row[keep] + nd, c.col[keep] + nd)), shape=(nd + nv, nd + nv))
    dr = np.concatenate([np.full(len(a), i) for i, a in enumerate(ids)]) if nd else np.zeros(0)
    dw = sp.coo_matrix((np.ones(len(dr)), (dr, np.concatenate(ids))), shape=(nd, nv)).tocsr()
    dw.sum_duplicates()
    df = np.bincount(dw.indices, minlength=nv)
    idf = np.log(1.0 * nd / df)
    tfidf = dw.tocoo()
    wgt = tfidf.data * idf[tfidf.col]
    dwm = sp.coo_matrix((wgt, (tfidf.row, tfidf.col + nd)), shape=(nd + nv, nd + nv))
    adj = (ww + dwm).tocsr()
    adj.eliminate_zeros()
    adj = adj + adj.T.multiply(adj.T > adj) - adj.multiply(adj.T > adj)
    adj = adj + sp.eye(nd + nv)
    rowsum = np.array(adj.sum(1)).flatten()
    d = sp.diags(np.power(rowsum, -0.5))
    norm = adj.dot(d).transpose().dot(d).tocsr()
    return vocab, norm, nw


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--clean", required=True, help="cleaned corpus (.clean.txt)")
    ap.add_argument("--window", type=int, default=20)
    a = ap.parse_args()
    with open(a.clean, encoding="latin-1") as f:
        docs = [line.split() for line in f.read().split("\n")]
    vocab, norm, nw = oracle(docs, a.window)
    outs = store_outputs(a.store, a.ref)
    ours_words = pq.read_table(obj(a.store, outs["vocab"]["vocab"])).column("word").to_pylist()
    if sorted(ours_words) != vocab:
        print(f"vocabularies differ: ours {len(ours_words)} words, oracle {len(vocab)}")
        return 1
    nd = len(docs)
    our_id = {w: i for i, w in enumerate(ours_words)}
    perm = np.concatenate([np.arange(nd), nd + np.array([our_id[w] for w in vocab], dtype=np.int64)])
    ei = mapped_column(obj(a.store, outs["graph"]["edge_index"]))
    ea = mapped_column(obj(a.store, outs["graph"]["edge_attr"]))
    e = len(ea)
    n = nd + len(vocab)
    ours = sp.csr_matrix((ea.astype(np.float64), (ei[:e], ei[e:])), shape=(n, n))
    o = norm.tocoo()
    want = sp.csr_matrix((o.data, (perm[o.row], perm[o.col])), shape=(n, n))
    if ours.nnz != e:
        print(f"our edge list has duplicates: {e} entries, {ours.nnz} distinct")
        return 1
    if want.nnz != e:
        print(f"edge counts differ: ours {e}, oracle {want.nnz}")
        return 1
    pattern = (ours != 0).astype(np.int8) - (want != 0).astype(np.int8)
    if pattern.count_nonzero():
        print(f"{pattern.count_nonzero()} edges present in only one of the two graphs")
        return 1
    w = want.tocoo()
    ourvals = np.asarray(ours[w.row, w.col]).flatten()
    relerr = np.abs(ourvals - w.data) / np.abs(w.data)
    worst = float(relerr.max())
    if worst > 1e-6:
        k = int(relerr.argmax())
        print(f"weight mismatch at ({w.row[k]},{w.col[k]}): ours {ourvals[k]}, oracle {w.data[k]}, relative error {worst}")
        return 1
    print(f"ORACLE OK edges={e} windows={nw} max_relative_error={worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

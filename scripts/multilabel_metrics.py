#!/usr/bin/env python3
"""Multi-label scores by scikit-learn, to check textgcn's own against.

Two inputs:

  multilabel_metrics.py --json FILE
      FILE holds {"labels": [...], "truth": [[0/1, ...], ...],
      "probs": [[p, ...], ...], "threshold": t}.
  multilabel_metrics.py --parquet RUN/predictions.parquet --split test \
      --threshold t [--separator ,]
      a run's predictions table: the rows of that split, their true label
      fields split at the separator, the p_<label> columns.

Prints one JSON object: micro/macro precision, recall and F1
(`precision_recall_fscore_support`, zero_division=0), subset accuracy
(`accuracy_score`), `hamming_loss`, the per-label table (average=None),
precision at 1, 3, 5 (numpy: each row's k most probable labels, ties to
the lower label index, a label of probability 0 never counted as a hit;
scikit-learn has no P@k for label sets), and `best_micro_f1`: the
highest micro F1 over every threshold that separates the probabilities
(each distinct value tried as the lowest one predicted).
"""

import argparse
import json
import sys

import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support


def scores(labels, truth, probs, threshold):
    truth = np.asarray(truth, dtype=np.int64).reshape(-1, len(labels))
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(labels))
    pred = (probs >= threshold).astype(np.int64)
    out = {"documents": int(truth.shape[0])}
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average=avg, zero_division=0)
        out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = float(p), float(r), float(f)
    out["subset_accuracy"] = float(accuracy_score(truth, pred))
    out["hamming_loss"] = float(hamming_loss(truth, pred))
    p, r, f, s = precision_recall_fscore_support(truth, pred, average=None, zero_division=0, labels=list(range(len(labels))))
    out["per_label"] = [{"label": l, "precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)} for l, a, b, c, d in zip(labels, p, r, f, s)]
    order = np.argsort(-probs, axis=1, kind="stable")
    out["precision_at"] = []
    for k in (1, 3, 5):
        if k > len(labels):
            continue
        top = order[:, :k]
        hits = np.take_along_axis(truth, top, 1) * (np.take_along_axis(probs, top, 1) > 0)
        out["precision_at"].append({"k": k, "precision": float(hits.sum() / (k * truth.shape[0]))})
    best = 0.0
    for t in np.unique(probs):
        _, _, f, _ = precision_recall_fscore_support(truth, (probs >= t).astype(np.int64), average="micro", zero_division=0)
        best = max(best, float(f))
    out["best_micro_f1"] = best
    return out


def from_parquet(path, split, threshold, separator):
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    labels = [c[2:] for c in t if c.startswith("p_")]
    rows = [i for i, s in enumerate(t["split"]) if s == split]
    truth, probs = [], []
    for i in rows:
        field = t["true_label"][i]
        have = {x.strip() for x in field.split(separator)} if field else set()
        truth.append([int(l in have) for l in labels])
        probs.append([t["p_" + l][i] for l in labels])
    return scores(labels, truth, probs, threshold)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--parquet")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--separator", default=",")
    a = ap.parse_args()
    if a.json:
        with open(a.json) as f:
            d = json.load(f)
        out = scores(d["labels"], d["truth"], d["probs"], d["threshold"])
    elif a.parquet and a.threshold is not None:
        out = from_parquet(a.parquet, a.split, a.threshold, a.separator)
    else:
        ap.error("give --json FILE, or --parquet FILE --threshold T")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()

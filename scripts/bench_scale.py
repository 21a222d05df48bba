#!/usr/bin/env python3
"""textgcn scale benchmark: `make bench-scale` runs this.

For each size, generates a synthetic corpus (`textgcn generate`: Zipf words,
a vocabulary growing with the corpus, 20 classes, log-normal lengths around
200 tokens, one third test), builds it into a fresh store under a memory
limit, and trains a few epochs on it. Prints one table, with the load
average next to every timing, and writes it to docs/benchmarks-scale.md.

Build: wall seconds and peak RSS of the process (/usr/bin/time -v), bytes of
graph rows spilled to disk, edges, artifact bytes. Training: median epoch
seconds, peak RSS, peak anonymous memory (sampled from smaps_rollup).

With `--engines native,datafusion` (`make bench-engines`), each size is
built once per engine, each into a fresh store, and the graph objects of
every engine are checked to be the very objects of the first (the row says
so); training runs on the first engine's build only. DataFusion's spill is
its own column.

Sizes whose artifacts would not fit the free disk (estimated from the
largest size already measured, else ~45 KB per document) are skipped and
said so.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BIN, ROOT, load, machine_line, timed, write_doc  # noqa: E402


def spilled_mib(log, what=r"MiB of rows spilled"):
    m = re.search(r"([\d.]+) " + what, log)
    return float(m.group(1)) if m else 0.0


def run_size(n, work, memory_limit, epochs, threads, engine="native", graph=None):
    """Builds (and trains, with epochs) size n on engine; `graph` is the
    first engine's graph outputs, which this build must equal."""
    corpus = os.path.join(work, "corpora")
    cfg = os.path.join(corpus, f"synthetic-{n}.toml")
    ld = load()
    gen_out, gen_wall, _, _, _, _ = timed([os.path.join(BIN, "textgcn"), "--threads", str(threads), "generate", "--docs", str(n), "--out", corpus, "--json"])
    tokens = json.loads(gen_out)["tokens"]
    store = tempfile.mkdtemp(prefix=f"scale-{n}-{engine}-", dir=work)
    try:
        bld = load()
        out, wall, rss, _, _, err = timed([os.path.join(BIN, "textgcn"), "--store", store, "--threads", str(threads), "-v", "build", "--config", cfg, "--memory-limit", memory_limit, "--engine", engine, "--json"])
        rep = json.loads(out)
        size = sum(o[1] for s in rep["stages"] for o in s["outputs"].values())
        stage = {s["stage"]: s["seconds"] for s in rep["stages"]}
        outputs = next(s["outputs"] for s in rep["stages"] if s["stage"] == "graph")
        if graph is not None and outputs != graph:
            sys.exit(f"synthetic-{n}: the {engine} engine's graph differs from the first engine's: {outputs} vs {graph}")
        ins = json.loads(subprocess.check_output([os.path.join(BIN, "textgcn"), "--store", store, "inspect", f"synthetic-{n}", "--json"]))
        row = dict(docs=n, tokens=tokens, gen_wall=gen_wall, gen_load=ld, vocab=ins["vocabulary"], edges=ins["edges"], build_wall=wall, build_rss=rss, build_load=bld,
                   stages=stage, spilled=spilled_mib(err), engine_spilled=spilled_mib(err, r"MiB to \S+ \(memory pool"), artifacts=size, engine=engine, graph=outputs,
                   same="first" if graph is None else "yes")
        if epochs:
            tld = load()
            out, twall, trss, tanon, _, _ = timed(
                [os.path.join(BIN, "textgcn-train"), "--store", store, "--config", cfg, "--epochs", str(epochs), "--early-stopping", "0", "--json", "-q", "--out", os.path.join(store, "runs")],
                sample=True,
            )
            j = json.loads(out.strip().splitlines()[-1])
            # The first epoch also fills the page cache with the mapped graph
            # and touches fresh memory: the epoch time is the median of the
            # others (the first is shown beside it).
            with open(os.path.join(store, "runs", "epochs.csv")) as f:
                secs = [float(l.split(",")[-1]) for l in f.read().splitlines()[1:] if l]
            warm = sorted(secs[1:] or secs)
            row.update(epoch=warm[len(warm) // 2], first_epoch=secs[0], train_rss=trss, train_anon=tanon, mapped=j["memory"]["mapped_graph_rss"] / 1e6, train_load=tld)
        return row
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000", help="documents, comma-separated (e.g. 20000,100000,400000,1000000)")
    ap.add_argument("--memory-limit", default="2GiB", help="the build's --memory-limit")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per size (0: no training)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "scale"), help="where corpora and stores go")
    ap.add_argument("--engines", default="native", help="build engines, comma-separated (native,datafusion: needs a textgcn with the feature)")
    ap.add_argument("--doc", default="benchmarks-scale.md", help="the file under docs/ the table is written to")
    ap.add_argument("--no-write", action="store_true", help="do not write the doc")
    a = ap.parse_args()
    engines = a.engines.split(",")
    os.makedirs(a.work, exist_ok=True)
    lines = []
    p = lambda s="": (print(s, flush=True), lines.append(s))
    p(machine_line(f" Build memory limit: {a.memory_limit}; {a.threads} threads."))
    p()
    p("| documents | engine | same graph | tokens | vocabulary | edges | artifacts MB | build wall s | graph stage s | build peak RSS MB | rows spilled MiB | engine spilled MiB | load | epoch s (first) | train peak RSS MB | train peak anon MB | load |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    per_doc = 45e3
    for n in [int(x) for x in a.sizes.split(",")]:
        free = shutil.disk_usage(a.work).free
        need = n * per_doc * 1.3
        if need > free:
            p(f"| {n:,} | skipped: needs about {need / 1e9:.0f} GB of disk, {free / 1e9:.0f} GB free | | | | | | | | | | | | | | | |")
            continue
        graph = None
        for k, engine in enumerate(engines):
            r = run_size(n, a.work, a.memory_limit, a.epochs if k == 0 else 0, a.threads, engine, graph)
            graph = graph or r["graph"]
            per_doc = r["artifacts"] / n
            train = (f"{r['epoch']:.2f} ({r['first_epoch']:.2f}) | {r['train_rss']:.0f} | {r['train_anon']:.0f} | {r['train_load']:.2f}" if "epoch" in r else "- | - | - | -")
            p(f"| {n:,} | {engine} | {r['same']} | {r['tokens']:,} | {r['vocab']:,} | {r['edges']:,} | {r['artifacts'] / 1e6:,.0f} | {r['build_wall']:.1f} | {r['stages']['graph']:.1f} | {r['build_rss']:.0f} | "
              f"{r['spilled']:,.0f} | {r['engine_spilled']:,.0f} | {r['build_load']:.2f} | {train} |")
    p()
    p("Build peak RSS counts what the process touched, mapped file pages included; rows spilled MiB is the graph rows written to "
      "the store's tmp/ because they did not fit the limit (0: all held); engine spilled MiB what DataFusion's operators spilled. "
      "Same graph: the engine's graph objects are those of the first engine's build (checked). Generation time is not included. Epoch s is the "
      "median of the epochs after the first; the first (in brackets) also fills the page cache with the mapped graph. "
      "Train peak RSS counts the mapped graph's resident pages; anon is the trainer's own memory.")
    if not a.no_write:
        write_doc(a.doc, "Scale benchmark", f"The latest `scripts/bench_scale.py {' '.join(sys.argv[1:])}` output (`make bench-scale`, `make bench-engines`): synthetic corpora "
                  "from `textgcn generate`, each built into a fresh store (once per engine) and trained for a few epochs. The load average is given next to every timing.", lines)


if __name__ == "__main__":
    main()

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

With `ballista` among the engines, the script starts a cluster on this
machine for each such build (one `textgcn-ballista scheduler`, `--executors`
executors of 2 task slots), each executor under a cgroup (v1 or v2) memory
limit of `--executor-memory` when given, and reports the peak RSS of every
process (VmHWM) and the bytes the executors shuffled (the files in their
work directories when the build ends).

Sizes whose artifacts and corpus would not fit the free disk (estimated from the
largest size already measured, else ~45 KB per document) are skipped and
said so.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BIN, ROOT, load, machine_line, timed, write_doc  # noqa: E402


def spilled_mib(log, what=r"MiB of rows spilled"):
    m = re.search(r"([\d.]+) " + what, log)
    return float(m.group(1)) if m else 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, log):
    while True:
        if proc.poll() is not None:
            sys.exit(f"{log} exited before listening on {port}:\n" + open(log).read()[-3000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def limit_memory(pid, name, limit):
    """Puts pid in a new cgroup of `limit` bytes (v2, else v1); returns its path."""
    for root, file in (("/sys/fs/cgroup", "memory.max"), ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")):
        if os.path.exists(os.path.join(root, file if root.endswith("memory") else "cgroup.controllers")):
            path = os.path.join(root, f"textgcn-bench-{name}-{os.getpid()}")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, file), "w") as f:
                f.write(str(limit))
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            return path
    sys.exit("--executor-memory: no writable cgroup memory controller here")


class Cluster:
    """A scheduler and executors of textgcn-ballista on 127.0.0.1."""

    def __init__(self, work, executors, executor_memory, slots=2):
        self.dir = tempfile.mkdtemp(prefix="cluster-", dir=work)
        self.port = free_port()
        self.procs, self.work_dirs, self.cgroups = [], [], []
        self._start("scheduler", ["scheduler", "--bind", f"127.0.0.1:{self.port}"], self.port)
        for k in range(executors):
            port, grpc = free_port(), free_port()
            wd = os.path.join(self.dir, f"executor-{k}")
            self.work_dirs.append(wd)
            args = ["executor", "--scheduler", f"127.0.0.1:{self.port}", "--port", str(port), "--grpc-port", str(grpc), "--slots", str(slots), "--work-dir", wd]
            if executor_memory:
                # The pool spills at half of the cgroup's limit; the rest is
                # the process, its buffers and what no pool accounts for
                # (the UDFs' output batches, Flight and Parquet buffers).
                args += ["--memory-pool", str(executor_memory // 2)]
            p = self._start(f"executor-{k}", args, grpc)
            if executor_memory:
                self.cgroups.append(limit_memory(p.pid, f"executor-{k}", executor_memory))

    def _start(self, name, args, port):
        log = os.path.join(self.dir, f"{name}.log")
        p = subprocess.Popen([os.path.join(BIN, "textgcn-ballista")] + args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        self.procs.append((name, p))
        wait_listening(p, port, log)
        return p

    def url(self):
        return f"df://127.0.0.1:{self.port}"

    def peaks(self):
        """Peak RSS (VmHWM) of each process, MB."""
        out = {}
        for name, p in self.procs:
            with open(f"/proc/{p.pid}/status") as f:
                out[name] = int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1)) / 1024
        return out

    def shuffled(self):
        return sum(os.path.getsize(os.path.join(d, f)) for wd in self.work_dirs for d, _, fs in os.walk(wd) for f in fs)

    def stop(self):
        for _, p in self.procs:
            p.kill()
            p.wait()
        for c in self.cgroups:
            try:
                os.rmdir(c)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def run_size(n, work, memory_limit, epochs, threads, engine="native", graph=None, executors=2, executor_memory=None, slots=2):
    """Builds (and trains, with epochs) size n on engine; `graph` is the
    first engine's graph outputs, which this build must equal. `n` is a
    number of documents to generate, or a benchmark config's name (its
    corpus from TEXTGCN_DATA_DIR)."""
    ld = load()
    if isinstance(n, str):
        cfg, name, tokens, gen_wall = os.path.join(ROOT, "configs", f"{n}.toml"), n, None, 0.0
    else:
        corpus = os.path.join(work, "corpora")
        cfg, name = os.path.join(corpus, f"synthetic-{n}.toml"), f"synthetic-{n}"
        gen_out, gen_wall, _, _, _, _ = timed([os.path.join(BIN, "textgcn"), "--threads", str(threads), "generate", "--docs", str(n), "--out", corpus, "--json"])
        tokens = json.loads(gen_out)["tokens"]
    store = tempfile.mkdtemp(prefix=f"scale-{n}-{engine}-", dir=work)
    try:
        cluster = Cluster(work, executors, executor_memory, slots) if engine == "ballista" else None
        extra = ["--cluster", cluster.url()] if cluster else []
        bld = load()
        try:
            out, wall, rss, _, _, err = timed([os.path.join(BIN, "textgcn"), "--store", store, "--threads", str(threads), "-v", "build", "--config", cfg, "--memory-limit", memory_limit, "--engine", engine, "--json"] + extra)
            peaks = cluster.peaks() if cluster else {}
            shuffled = cluster.shuffled() if cluster else None
        finally:
            if cluster:
                cluster.stop()
        rep = json.loads(out)
        size = sum(o[1] for s in rep["stages"] for o in s["outputs"].values())
        stage = {s["stage"]: s["seconds"] for s in rep["stages"]}
        outputs = next(s["outputs"] for s in rep["stages"] if s["stage"] == "graph")
        if graph is not None and outputs != graph:
            sys.exit(f"{name}: the {engine} engine's graph differs from the first engine's: {outputs} vs {graph}")
        ins = json.loads(subprocess.check_output([os.path.join(BIN, "textgcn"), "--store", store, "inspect", name, "--json"]))
        row = dict(docs=n, tokens=tokens, gen_wall=gen_wall, gen_load=ld, vocab=ins["vocabulary"], edges=ins["edges"], build_wall=wall, build_rss=rss, build_load=bld,
                   stages=stage, spilled=spilled_mib(err), engine_spilled=spilled_mib(err, r"MiB to \S+ \(memory pool"), artifacts=size, engine=engine, graph=outputs,
                   same="first" if graph is None else "yes", peaks=peaks, shuffled=shuffled)
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
    ap.add_argument("--datasets", default="", help="benchmark configs built before the sizes, comma-separated (e.g. 20ng: configs/20ng.toml)")
    ap.add_argument("--memory-limit", default="2GiB", help="the build's --memory-limit")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per size (0: no training)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "scale"), help="where corpora and stores go")
    ap.add_argument("--engines", default="native", help="build engines, comma-separated (native,datafusion,ballista: a textgcn with the features)")
    ap.add_argument("--executors", type=int, default=2, help="ballista: executors started on this machine")
    ap.add_argument("--executor-slots", type=int, default=2, help="ballista: tasks each executor runs at once")
    ap.add_argument("--executor-memory", help="ballista: each executor's cgroup memory limit, e.g. 1GiB (default: none)")
    ap.add_argument("--doc", default="benchmarks-scale.md", help="the file under docs/ the table is written to")
    ap.add_argument("--no-write", action="store_true", help="do not write the doc")
    a = ap.parse_args()
    engines = a.engines.split(",")
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    m = re.fullmatch(r"(\d+)\s*([kmg]?)i?b?", (a.executor_memory or "0").lower())
    if not m:
        sys.exit(f"--executor-memory {a.executor_memory}: give a size such as 1GiB")
    executor_memory = int(m.group(1)) * units[m.group(2)] or None
    os.makedirs(a.work, exist_ok=True)
    lines = []
    p = lambda s="": (print(s, flush=True), lines.append(s))
    cluster_line = f" Ballista: {a.executors} executors of {a.executor_slots} task slots on this machine" + (f", each in a cgroup of {a.executor_memory}" if executor_memory else "") + "." if "ballista" in engines else ""
    p(machine_line(f" Build memory limit: {a.memory_limit}; {a.threads} threads.{cluster_line}"))
    p()
    p("| documents | engine | same graph | tokens | vocabulary | edges | artifacts MB | build wall s | graph stage s | build peak RSS MB | cluster peak RSS MB | shuffled MB | rows spilled MiB | engine spilled MiB | load | epoch s (first) | train peak RSS MB | train peak anon MB | load |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    per_doc = 45e3
    for n in [d for d in a.datasets.split(",") if d] + [int(x) for x in a.sizes.split(",") if x]:
        free = shutil.disk_usage(a.work).free
        # The artifacts (the rows spilled beyond the memory limit give
        # their space back as the artifacts are written from them), the
        # corpus (~1.3 KB a document) and a margin.
        need = 0 if isinstance(n, str) else n * (per_doc + 1.3e3) * 1.1
        if need > free:
            p(f"| {n:,} | skipped: needs about {need / 1e9:.0f} GB of disk, {free / 1e9:.0f} GB free | | | | | | | | | | | | | | | |")
            continue
        graph = None
        for k, engine in enumerate(engines):
            r = run_size(n, a.work, a.memory_limit, a.epochs if k == 0 else 0, a.threads, engine, graph, a.executors, executor_memory, a.executor_slots)
            graph = graph or r["graph"]
            per_doc = r["artifacts"] / n if isinstance(n, int) else per_doc
            train = (f"{r['epoch']:.2f} ({r['first_epoch']:.2f}) | {r['train_rss']:.0f} | {r['train_anon']:.0f} | {r['train_load']:.2f}" if "epoch" in r else "- | - | - | -")
            peaks = ", ".join(f"{k} {v:.0f}" for k, v in r["peaks"].items()) or "-"
            shuffled = f"{r['shuffled'] / 1e6:,.0f}" if r["shuffled"] is not None else "-"
            tokens = f"{r['tokens']:,}" if r["tokens"] is not None else "-"
            p(f"| {n if isinstance(n, str) else f'{n:,}'} | {engine} | {r['same']} | {tokens} | {r['vocab']:,} | {r['edges']:,} | {r['artifacts'] / 1e6:,.0f} | {r['build_wall']:.1f} | {r['stages']['graph']:.1f} | {r['build_rss']:.0f} | {peaks} | {shuffled} | "
              f"{r['spilled']:,.0f} | {r['engine_spilled']:,.0f} | {r['build_load']:.2f} | {train} |")
    p()
    p("Build peak RSS counts what the process touched, mapped file pages included; rows spilled MiB is the graph rows written to "
      "the store's tmp/ because they did not fit the limit (0: all held); engine spilled MiB what DataFusion's operators spilled in process. "
      "For ballista, build peak RSS is the client (it assembles the graph); cluster peak RSS is each cluster process's VmHWM and shuffled MB "
      "the files the executors wrote for one another (every job of the build). "
      "Same graph: the engine's graph objects are those of the first engine's build (checked). Generation time is not included. Epoch s is the "
      "median of the epochs after the first; the first (in brackets) also fills the page cache with the mapped graph. "
      "Train peak RSS counts the mapped graph's resident pages; anon is the trainer's own memory.")
    if not a.no_write:
        write_doc(a.doc, "Scale benchmark", f"The latest `scripts/bench_scale.py {' '.join(sys.argv[1:])}` output (`make bench-scale`, `make bench-engines`): synthetic corpora "
                  "from `textgcn generate`, each built into a fresh store (once per engine) and trained for a few epochs. The load average is given next to every timing.", lines)


if __name__ == "__main__":
    main()

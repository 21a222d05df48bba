"""textgcn: TextGCN graphs from text corpora, for notebooks, PyTorch and PyG.

Build a config into an artifact store, then open the graph without copying it::

    import textgcn
    report = textgcn.build("configs/R8.toml")          # progress on stderr
    g = textgcn.open(config="configs/R8.toml")         # or textgcn.open(store, "R8")
    g.edge_index, g.edge_attr, g.row_ptr               # NumPy views of the mapped files
    adj = g.to_torch()                                 # torch.sparse_csr_tensor, same memory
    data = g.to_pyg()                                  # torch_geometric.data.Data
    vocab = g.table("vocabulary")                      # pyarrow.Table (polars=True for polars)

The store is the one the CLI uses (`store=None`: ``$TEXTGCN_STORE``, else
``.textgcn-store``), so ``textgcn build``, ``textgcn-train`` and this package
share builds. Only the pipeline is wrapped, not the trainer: nothing here
links libtorch; ``to_torch``/``to_pyg`` use the torch you have.

Errors are subclasses of :class:`TextgcnError` carrying where the problem is
(``path``, ``line``, ``object``, ``stage``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _textgcn
from ._textgcn import (
    ConfigError,
    DamagedError,
    InputError,
    RefNotFoundError,
    StaleError,
    StoreError,
    TextgcnError,
)

__version__: str = _textgcn.__version__

__all__ = [
    "build",
    "status",
    "refs",
    "open",
    "Graph",
    "BuildReport",
    "StageReport",
    "StageStatus",
    "TextgcnError",
    "ConfigError",
    "InputError",
    "StoreError",
    "DamagedError",
    "RefNotFoundError",
    "StaleError",
]

PathLike = Union[str, "os.PathLike[str]"]
ProgressEvent = Dict[str, Any]


@dataclass(frozen=True)
class StageReport:
    """One stage of a build: ``fresh`` (reused) or ``rebuilt``, and why."""

    stage: str
    status: str
    why: Optional[str]
    seconds: float
    outputs: Dict[str, Tuple[str, int]]
    """Output name -> (object id, bytes)."""


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build` did: the ref it points at, per stage, in order."""

    name: str
    stages: List[StageReport]
    seconds: float
    table: str
    """The report as the CLI prints it."""

    def __str__(self) -> str:
        return self.table


@dataclass(frozen=True)
class StageStatus:
    """What a build would do to one stage: ``fresh`` or ``stale``, and why."""

    stage: str
    status: str
    why: Optional[str]


def _print_progress(stream: Any) -> Callable[[ProgressEvent], None]:
    """The default progress of a build whose stderr is no terminal (a
    notebook, a log): a line per finished stage and per tenth of a long
    phase, on ``stream``."""
    last: Dict[str, int] = {}

    def show(e: ProgressEvent) -> None:
        if e["event"] == "stage":
            why = f" ({e['why']})" if e.get("why") else ""
            print(f"{e['stage']} {e['status']} in {e['seconds']:.3f}s{why}", file=stream, flush=True)
        else:
            total = e["total"] or 1
            tenth = e["done"] * 10 // total
            key = f"{e['stage']}/{e['phase']}"
            if last.get(key) != tenth:
                last[key] = tenth
                print(f"{e['stage']}: {e['phase']} {e['done']:,}/{e['total']:,}", file=stream, flush=True)

    return show


def build(
    config: PathLike,
    store: Optional[PathLike] = None,
    *,
    memory_limit: Union[str, int, None] = None,
    repair: bool = False,
    progress: Union[bool, Callable[[ProgressEvent], None]] = True,
) -> BuildReport:
    """Builds ``config`` into ``store``, rerunning only the stale stages, and
    points the config's ref at the result (what ``textgcn build`` does).

    ``memory_limit``: what the build may use (``"2GiB"`` or bytes; default
    the config's ``build.memory_limit``, else half of the machine's memory).
    ``repair``: first move whatever in the store is damaged to quarantine/.
    ``progress``: ``True`` shows it on stderr (the CLI's bar on a terminal,
    a line per stage and per tenth otherwise), ``False`` nothing, or a
    callable receiving each event as a dict (``{"event": "stage", "stage",
    "status", "seconds", "why", "next"}`` or ``{"event": "progress", "stage",
    "phase", "done", "total"}``).

    Raises :class:`ConfigError`, :class:`InputError` (the file and line of
    bad input), :class:`DamagedError` or :class:`StoreError`; nothing is
    published by a build that fails.
    """
    if progress is True and not _isatty(sys.stderr):
        progress = _print_progress(sys.stderr)
    raw = json.loads(
        _textgcn.build(
            os.fspath(config),
            None if store is None else os.fspath(store),
            memory_limit,
            repair,
            progress if progress is not False else None,
        )
    )
    stages = [
        StageReport(
            s["stage"],
            s["status"],
            s.get("why"),
            s["seconds"],
            {k: (v[0], v[1]) for k, v in s["outputs"].items()},
        )
        for s in raw["stages"]
    ]
    return BuildReport(raw["name"], stages, raw["seconds"], raw["table"])


def status(config: PathLike, store: Optional[PathLike] = None) -> List[StageStatus]:
    """What :func:`build` would do for ``config``, stage by stage."""
    raw = json.loads(_textgcn.status(os.fspath(config), None if store is None else os.fspath(store)))
    return [StageStatus(s["stage"], s["status"], s.get("why")) for s in raw]


def refs(store: Optional[PathLike] = None) -> List[str]:
    """The names of the builds (refs) in ``store``."""
    return _textgcn.refs(None if store is None else os.fspath(store))


def open(  # noqa: A001 - the package's verb, as in textgcn.open(store, ref)
    store: Optional[PathLike] = None,
    ref: Optional[str] = None,
    *,
    config: Optional[PathLike] = None,
) -> "Graph":
    """Opens a built graph: ref ``ref`` of ``store``, or the ref of
    ``config``. With ``config``, a build older than the config (a parameter
    or data file changed since) raises :class:`StaleError`, as the trainer
    does. Every object is verified against its hash on the way (a damaged
    one raises :class:`DamagedError`), and the graph's structure checked.
    """
    native = _textgcn.open(
        None if store is None else os.fspath(store),
        ref,
        None if config is None else os.fspath(config),
    )
    return Graph(native)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Graph:
    """A built TextGCN graph: ``Â = D^-1/2 (A + I) D^-1/2`` over documents
    (nodes ``0..num_docs``) and words (the rest), with labels and splits.

    ``edge_index`` (``int64[2, E]``), ``edge_attr`` (``float32[E]``) and
    ``row_ptr`` (``int64[N + 1]``) are read-only NumPy views of the store's
    memory-mapped files: no copy is made, and each array keeps the mapping
    alive. The rows of ``edge_index`` are sorted, so ``(edge_attr,
    edge_index[1], row_ptr)`` is ``Â`` in CSR form.
    """

    def __init__(self, native: "_textgcn.Graph") -> None:
        self._native = native

    def __repr__(self) -> str:
        return repr(self._native)

    @property
    def name(self) -> str:
        """The ref's name (the config's ``name``)."""
        return self._native.name

    @property
    def store(self) -> str:
        """The store's directory."""
        return os.fspath(self._native.store)

    @property
    def num_nodes(self) -> int:
        """Documents plus words."""
        return self._native.num_nodes

    @property
    def num_docs(self) -> int:
        """Document nodes (``0..num_docs``)."""
        return self._native.num_docs

    @property
    def num_words(self) -> int:
        """Word nodes (``num_docs..num_nodes``)."""
        return self._native.num_nodes - self._native.num_docs

    @property
    def num_edges(self) -> int:
        """Non-zeros of ``Â``, self-loops included."""
        return self._native.num_edges

    @property
    def num_classes(self) -> int:
        """Labels."""
        return len(self._native.label_names)

    @property
    def edge_index(self) -> np.ndarray:
        """``int64[2, E]``: row and column of each non-zero (a mapped view)."""
        return self._native.edge_index

    @property
    def edge_attr(self) -> np.ndarray:
        """``float32[E]``: the weight of each non-zero (a mapped view)."""
        return self._native.edge_attr

    @property
    def row_ptr(self) -> np.ndarray:
        """``int64[N + 1]``: CSR row offsets (a mapped view)."""
        return self._native.row_ptr

    @property
    def zero_copy(self) -> bool:
        """Whether the three columns are views of the mapped files."""
        return self._native.zero_copy

    @property
    def labels(self) -> np.ndarray:
        """``int64[num_docs]``: the label id of each document node."""
        return self._native.labels

    @property
    def label_names(self) -> List[str]:
        """Label names by id."""
        return self._native.label_names

    @property
    def doc_names(self) -> List[str]:
        """Document names by node."""
        return self._native.doc_names

    def split_nodes(self, which: str) -> np.ndarray:
        """The document nodes of ``"train"``, ``"val"`` or ``"test"``."""
        return self._native.split_nodes(which)

    def mask(self, which: str) -> np.ndarray:
        """``bool[num_nodes]``, true on the document nodes of split ``which``
        (``"train"``, ``"val"``, ``"test"``), as PyG's masks are."""
        m = np.zeros(self.num_nodes, dtype=bool)
        m[self.split_nodes(which)] = True
        return m

    @property
    def train_mask(self) -> np.ndarray:
        """:meth:`mask` of ``"train"``."""
        return self.mask("train")

    @property
    def val_mask(self) -> np.ndarray:
        """:meth:`mask` of ``"val"``."""
        return self.mask("val")

    @property
    def test_mask(self) -> np.ndarray:
        """:meth:`mask` of ``"test"``."""
        return self.mask("test")

    def objects(self) -> Dict[str, Tuple[str, str, str]]:
        """Every output of the build: ``"stage.name"`` -> (object id, kind,
        path in the store)."""
        return {k: (i, kind, os.fspath(p)) for k, (i, kind, p) in self._native.objects().items()}

    def summary(self, stage: str) -> Mapping[str, Any]:
        """The facts stage ``stage`` recorded (counts, sizes)."""
        return json.loads(self._native.summary(stage))

    def table(self, name: str, *, polars: bool = False) -> Any:
        """Table ``name`` of the build as a ``pyarrow.Table`` (or a
        ``polars.DataFrame`` with ``polars=True``), verified against its
        hash: ``documents``, ``tokens``, ``vocabulary``, ``doc_tokens``,
        ``nodes``, ``labels``, ``splits``, or ``held_out`` (``None`` when the
        build held no documents out)."""
        raw = self._native.table_bytes(name)
        if raw is None:
            return None
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(raw))
        if polars:
            import polars as pl

            return pl.from_arrow(t)
        return t

    def to_scipy(self) -> Any:
        """``Â`` as a ``scipy.sparse.csr_array`` over the mapped columns (no
        copy; read-only)."""
        import scipy.sparse as sp

        n = self.num_nodes
        m = sp.csr_array((n, n), dtype=np.float32)
        # Assigned, not passed to the constructor: it would narrow the
        # int64 indices to int32 (a copy) when they fit.
        m.data, m.indices, m.indptr = self.edge_attr, self.edge_index[1], self.row_ptr
        return m

    def to_torch(self, layout: str = "csr") -> Any:
        """``Â`` as a sparse ``torch.Tensor``: ``"csr"`` (default) shares the
        mapped memory; ``"coo"`` shares it too (indices ``edge_index``,
        marked coalesced: rows are sorted and unique per column)."""
        import torch

        n = self.num_nodes
        with warnings.catch_warnings():
            # torch warns that the arrays are read-only: they are, and the
            # tensors are for reading.
            warnings.simplefilter("ignore", UserWarning)
            values = torch.from_numpy(self.edge_attr)
            if layout == "csr":
                return torch.sparse_csr_tensor(torch.from_numpy(self.row_ptr), torch.from_numpy(self.edge_index[1]), values, (n, n), check_invariants=False)
            if layout == "coo":
                return torch.sparse_coo_tensor(torch.from_numpy(self.edge_index), values, (n, n), is_coalesced=True, check_invariants=False)
        raise ValueError(f"layout {layout!r}: give 'csr' or 'coo'")

    def to_pyg(self) -> Any:
        """A ``torch_geometric.data.Data`` over the mapped columns:
        ``edge_index``, ``edge_weight`` (``Â``'s weights, so use
        ``GCNConv(normalize=False)``), ``adj_t`` (``Â`` as a sparse CSR
        tensor, :meth:`to_torch`; ``Â`` is symmetric, so it is its own
        transpose, and ``conv(x, data.adj_t)`` takes PyG's sparse-product
        path), ``y`` (label of each document node, -1 on words),
        ``train_mask``/``val_mask``/``test_mask`` and ``num_nodes``. All
        graph tensors share the mapped memory. The graph is featureless:
        give the first layer an embedding of ``num_nodes`` rows (what
        ``X = I`` means)."""
        import torch
        from torch_geometric.data import Data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            edge_index = torch.from_numpy(self.edge_index)
            edge_weight = torch.from_numpy(self.edge_attr)
        y = torch.full((self.num_nodes,), -1, dtype=torch.long)
        y[: self.num_docs] = torch.from_numpy(self.labels)
        return Data(
            edge_index=edge_index,
            edge_weight=edge_weight,
            adj_t=self.to_torch(),
            y=y,
            train_mask=torch.from_numpy(self.train_mask),
            val_mask=torch.from_numpy(self.val_mask),
            test_mask=torch.from_numpy(self.test_mask),
            num_nodes=self.num_nodes,
        )

"""Quick start: build R8, open its graph without copying it, and train the
two-layer featureless GCN of the TextGCN paper in plain PyTorch.

Run as a script (after `make wheel` and installing the wheel, or `make test`
which does both)::

    TEXTGCN_DATA_DIR=../shared/data python examples/quickstart.py
    python examples/quickstart.py --config configs/mr.toml --epochs 50

or cell by cell in a notebook. The accuracy it prints is the test split's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import textgcn

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--config", default="configs/R8.toml")
ap.add_argument("--store", default=None, help="the artifact store (default: $TEXTGCN_STORE, else .textgcn-store)")
ap.add_argument("--epochs", type=int, default=200)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

# 1. Build (only what is stale reruns; a second run takes milliseconds).
report = textgcn.build(args.config, args.store)
print(report)

# 2. Open: edge_index / edge_attr / row_ptr are NumPy views of the mapped
#    files, and to_torch() wraps the same memory as a sparse CSR tensor.
g = textgcn.open(args.store, config=args.config)
print(g, "zero-copy:", g.zero_copy)
adj = g.to_torch()  # Â = D^-1/2 (A + I) D^-1/2, symmetric
labels = torch.from_numpy(g.labels)
train, val, test = (torch.from_numpy(g.split_nodes(s)) for s in ("train", "val", "test"))


class Propagate(torch.autograd.Function):
    """Â @ x, with the gradient Âᵀ @ g = Â @ g (Â is symmetric), so the
    backward pass needs no transposed copy of the graph."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return adj @ grad


class TextGCN(torch.nn.Module):
    """logits = Â · ReLU(Â · X · W0) · W1 with X = I, so Â · X · W0 = Â · W0:
    the identity is never built."""

    def __init__(self, nodes: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.w0 = torch.nn.Parameter(torch.empty(nodes, hidden))
        self.w1 = torch.nn.Parameter(torch.empty(hidden, classes))
        torch.nn.init.xavier_uniform_(self.w0)
        torch.nn.init.xavier_uniform_(self.w1)

    def forward(self) -> torch.Tensor:
        h = torch.relu(Propagate.apply(self.w0))
        h = torch.nn.functional.dropout(h, 0.5, self.training)
        return Propagate.apply(h @ self.w1)


# 3. Train with the paper's settings: 200 hidden units, dropout 0.5, Adam at
#    0.02, early stopping when the validation loss exceeds the mean of the
#    last 10.
torch.manual_seed(args.seed)
model = TextGCN(g.num_nodes, 200, g.num_classes)
opt = torch.optim.Adam(model.parameters(), lr=0.02)
losses: list[float] = []
start = time.perf_counter()
for epoch in range(1, args.epochs + 1):
    model.train()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model()[train], labels[train])
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        val_loss = torch.nn.functional.cross_entropy(model()[val], labels[val]).item()
    if len(losses) >= 10 and val_loss > np.mean(losses[-10:]):
        print(f"early stop at epoch {epoch}")
        break
    losses.append(val_loss)
seconds = time.perf_counter() - start

model.eval()
with torch.no_grad():
    pred = model().argmax(1)
accuracy = (pred[test] == labels[test]).float().mean().item()
print(f"{g.name}: test accuracy {accuracy:.4f} after {epoch} epochs ({seconds / epoch:.2f} s per epoch)")

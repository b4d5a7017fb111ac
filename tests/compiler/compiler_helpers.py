"""Helpers for compiler tests: small IR graphs built without torch."""

from __future__ import annotations

import numpy as np

from compiler import ir


def mlp_graph(sizes: list[int], *, kind: str = "IF", threshold: float = 1.0, seed: int = 0, scale: float = 0.3,
              tau_mem: float | None = None, tau_syn: float | None = None) -> ir.Graph:
    """Input(sizes[0]) → [Dense → Neuron] × len(sizes)-1 → Output, random weights."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    g.add(ir.Input("input", (), shape=(sizes[0],)))
    prev = "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        g.add(ir.Dense(f"fc{i}", (prev,), weight=rng.normal(0, scale, (b, a)), bias=None))
        g.add(ir.Neuron(f"n{i}", (f"fc{i}",), kind=kind, threshold=threshold, tau_mem=tau_mem, tau_syn=tau_syn))
        prev = f"n{i}"
    g.add(ir.Output("output", (prev,)))
    return g

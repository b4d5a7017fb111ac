"""The reference engine: the living definition of every target family.

Plain Python integers, one neuron at a time, one axon at a time, in the order the chip
works. Slow on purpose: it must be obviously right. The fast engine is tested against it.

One time step ``t``, per batch element:

1. spikes arrive at axons: an input route delivers channel counts sent at ``t - delay``,
   a neuron route delivers the spike count its source emitted at step ``t - delay``;
2. synaptic accumulation through the crossbar (the family's);
3. – 7. the neuron update: current, voltage, refractory, spike test, reset;
8. spikes are recorded, to enter the routes.

Step 2 onward is the family's: ``families.get(program.family).datapath.reference_step`` (its
module's docstring gives the equations). This module only moves spikes.

A Program with plastic projections learns after each step (:class:`emulator.learning.epoch.ReferenceLearning`,
the definition of on-chip learning): every batch element keeps its own weights, and the family's
step runs over them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .engine import Wiring
from .learning.epoch import ReferenceLearning
from .learning.wiring import has_plasticity

__all__ = ["ReferenceEngine"]


class ReferenceEngine:
    """Runs a Program step by step with Python integers; keeps state between :meth:`run` calls."""

    name = "reference"

    def __init__(self, wiring: Wiring, batch: int, seed: int) -> None:
        self.w = wiring
        self.batch = batch
        self.seed = seed
        self.registers = (*wiring.state_names, *wiring.datapath.HIDDEN)
        self.step = wiring.datapath.reference_step(wiring, seed)
        self.learning = ReferenceLearning(wiring, batch, seed) if has_plasticity(wiring.program) else None
        self.reset()

    def reset(self) -> None:
        w = self.w
        n = w.n_neurons
        self.t = 0
        self.state = [{k: [0] * n for k in self.registers} for _ in range(self.batch)]
        # history[b][k] = spike counts of step t-1-k (k < max_delay)
        self.neuron_hist = [[[0] * n for _ in range(w.max_delay)] for _ in range(self.batch)]
        self.input_hist = [[[0] * w.n_channels for _ in range(w.max_input_delay + 1)] for _ in range(self.batch)]
        if self.learning is not None:
            self.learning.reset()

    def step_bytes(self, probes: dict[str, tuple[str, str]]) -> int:
        """Bytes per step and sample of :meth:`run`: its int64 spike and state records, the
        populations' and probes' copies, the input."""
        w = self.w
        return 8 * (w.n_channels + w.n_neurons * (2 + len(w.state_names)) + 2 * len(probes) * w.n_neurons)

    def run(self, inputs: NDArray[np.int64], probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.int64]], NDArray[np.int64]]:
        """``inputs`` ``[B, T, channels]`` (all ports concatenated) → spikes per population
        ``{pop: [B, T, n]}``, probed values ``{probe: [B, T, n]}`` and synaptic operations ``[B, T]``."""
        b_n, t_n, _ = inputs.shape
        w = self.w
        spikes = np.zeros((b_n, t_n, w.n_neurons), dtype=np.int64)
        states = {key: np.zeros((b_n, t_n, w.n_neurons), dtype=np.int64) for key in w.state_names}
        synops = np.zeros((b_n, t_n), dtype=np.int64)
        step = self.step
        learning = self.learning
        pops = w.program.populations
        learned: dict[str, list[list[int]]] = {name: [] for name, (pop, _) in probes.items() if pop not in pops}
        for t in range(t_n):
            for b in range(b_n):
                self.input_hist[b].insert(0, [int(c) for c in inputs[b, t]])
                self.input_hist[b].pop()
                counts, ops = self._arrivals(b)
                synops[b, t] = ops
                if learning is not None:
                    step = learning.step(b)
                out = step(self.state[b], counts, self.t)
                spikes[b, t] = out
                for key in w.state_names:
                    states[key][b, t] = self.state[b][key]
                if learning is not None:
                    learning.observe(b, self.input_hist[b][0], out, self.t)
                    for name in learned:
                        learned[name].append(learning.probe(b, *probes[name]))
                self.neuron_hist[b].insert(0, out)
                self.neuron_hist[b].pop()
            self.t += 1
        by_pop = {name: spikes[:, :, pop.neurons] for name, pop in pops.items()}
        probed = {name: (spikes if var == "spikes" else states[var])[:, :, pops[pop].neurons]
                  for name, (pop, var) in probes.items() if pop in pops}
        for name, rows in learned.items():  # rows in (t, b) order: [T, B, ...] -> [B, T, ...]
            assert learning is not None
            shape = (t_n, b_n, *learning.probe_shape(*probes[name]))
            probed[name] = np.ascontiguousarray(np.moveaxis(np.array(rows, dtype=np.int64).reshape(shape), 0, 1))
        return by_pop, probed, synops

    # ------------------------------------------------------------------ step 1
    def _arrivals(self, b: int) -> tuple[list[int], int]:
        """Spike count at every axon this step, and the synaptic operations they cause."""
        w = self.w
        lists = w.lists
        counts = [0] * w.n_axons
        for axon, kind, src, delay in lists.axon_sources:
            if kind == 0:
                c = self.input_hist[b][delay][src]
            else:
                c = self.neuron_hist[b][delay - 1][src]
            counts[axon] += c
        ops = 0
        for axon, c in enumerate(counts):
            if c:
                ops += c * lists.axon_fanout[axon]
        return counts, ops

"""Input spikes of a run, checked once and handed to an engine chunk by chunk.

A run's input is ``[batch, time, channels]`` spike counts per input port (a 2-D ``[time,
channels]`` array means batch 1). :func:`check` validates every port's array where the caller
passed it — integers, not negative, at most the chip's ``max_input_count`` per channel and step
(clipped where the chip clips) — without a wide copy, and :meth:`Inputs.chunk` builds the
engine's ``[batch, steps, all channels]`` array of the narrowest integer dtype for one range of
steps, the ports concatenated in their order and missing steps zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hw_specs import HwSpec
from spikeforge.errors import EmulatorError

__all__ = ["Inputs", "check"]


@dataclass(frozen=True)
class Inputs:
    """Checked input spikes: ``arrays[port]`` ``[batch, T_port, n]`` in the caller's integer dtype
    (``T_port <= steps``); ``ports`` every port's channel count, in order."""

    arrays: Mapping[str, NDArray[Any]]
    ports: Mapping[str, int]
    batch: int
    steps: int
    dtype: np.dtype[Any]

    @property
    def channels(self) -> int:
        return max(1, int(sum(self.ports.values())))

    def chunk(self, t0: int, t1: int, b0: int = 0, b1: int | None = None) -> NDArray[Any]:
        """Steps ``[t0, t1)`` of samples ``[b0, b1)`` as one ``[b, t1 - t0, channels]`` array."""
        b1 = self.batch if b1 is None else b1
        out = np.zeros((b1 - b0, t1 - t0, self.channels), dtype=self.dtype)
        first = 0
        for name, size in self.ports.items():
            a = self.arrays.get(name)
            if a is not None and t0 < a.shape[1]:
                stop = min(t1, a.shape[1])
                out[:, : stop - t0, first:first + size] = a[b0:b1, t0:stop]
            first += size
        return out

    def samples(self, b0: int, b1: int) -> Inputs:
        """Samples ``[b0, b1)`` only (views)."""
        return Inputs({k: v[b0:b1] for k, v in self.arrays.items()}, self.ports, b1 - b0, self.steps, self.dtype)


def check(spikes: ArrayLike | Mapping[str, ArrayLike] | None, steps: int | None, ports: Mapping[str, int],
          batch: int, spec: HwSpec, owner: str = "program") -> Inputs:
    """Validate ``spikes`` for ``ports`` (module docstring); ``steps`` defaults to the longest
    input. ``owner`` names what has the ports in messages (``"program"``, ``"netlist"``)."""
    if spikes is None:
        spikes = {}
    if not isinstance(spikes, Mapping):
        if len(ports) != 1:
            raise EmulatorError(f"the {owner} has input ports {list(ports)}; pass a dict port -> spikes")
        spikes = {next(iter(ports)): spikes}
    unknown = sorted(set(spikes) - set(ports))
    if unknown:
        raise EmulatorError(f"unknown input port(s) {unknown}; the {owner} has {list(ports)}")
    chip = spec.chip
    limit = int(chip.max_input_count)
    arrays: dict[str, NDArray[Any]] = {}
    length = 0
    for name, raw in spikes.items():
        arr = np.asarray(raw)
        if arr.ndim == 2 and batch == 1:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[2] != ports[name]:
            raise EmulatorError(f"input {name!r}: spikes have shape {arr.shape}; expected [batch={batch}, time, "
                                f"channels={ports[name]}]")
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise EmulatorError(f"input {name!r}: spike counts must be integers")
        elif arr.dtype.kind not in "iub":
            raise EmulatorError(f"input {name!r}: spike counts must be integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "b":
            arr = arr.view(np.uint8)
        if arr.size and arr.min() < 0:
            raise EmulatorError(f"input {name!r}: negative spike count {int(arr.min())}")
        if arr.size and arr.max() > limit:
            if not chip.clip_input_counts:
                raise EmulatorError(
                    f"input {name!r}: a channel receives {int(arr.max())} spikes in one step; target "
                    f"{spec.name} accepts at most {limit} ({spec.where()}: chip.max_input_count); "
                    "pass 0/1 spikes or bin events more finely")
            arr = np.minimum(arr, limit)  # the chip clips (XyloSim MAX_NUM_INP_SPIKES)
        arrays[name] = arr
        length = max(length, arr.shape[1])
    if steps is None:
        steps = length
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise EmulatorError(f"steps = {steps!r}; expected a non-negative integer")
    if length > steps:
        raise EmulatorError(f"input spans {length} steps but steps={steps}; pass steps >= the input length")
    # counts are at most max_input_count: the narrowest dtype keeps the engine's copies small
    dtype = np.dtype(np.int8 if limit < 1 << 7 else np.int16 if limit < 1 << 15 else np.int64)
    return Inputs(arrays, dict(ports), batch, steps, dtype)

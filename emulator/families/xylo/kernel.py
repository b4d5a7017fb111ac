"""Optional compiled Xylo datapath (numba), used by the fast engine when numba is installed.

Install with the ``fast`` extra (``pip install "spikeforge[fast]"``); without numba, or with
``SPIKEFORGE_EMULATOR_JIT=0``, the numpy path of :mod:`.datapath` runs instead. Both are tested
against the reference engine for identical integers.

The kernel is the reference Xylo step (:func:`.datapath.reference_step`) compiled: axons in
ascending order, every spike a saturating addition into its synaptic state, then the bit-shift
decays, the membrane update and the subtractive multi-spike reset. Its saturation and decay are
:func:`emulator.fixed.saturate` and :func:`emulator.fixed.shift_decay` themselves, compiled by
numba; the register widths are parameters (``syn_lo``/``syn_hi`` per synaptic state,
``v_lo``/``v_hi``), read from the spec. Following the chip's order directly needs no saturation
proof, so a busy or saturating network costs the same as a quiet one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from emulator import fixed

from . import datapath

if TYPE_CHECKING:
    from emulator.engine import Wiring

__all__ = ["load", "kernel", "Runner"]

numba: Any
try:
    import numba
except ImportError:  # the optional [fast] extra: the numpy path runs instead
    numba = None

kernel: Callable[..., Any] | None = None


def _njit(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``numba.njit(**options)``, or (without numba) a decorator that leaves the function as is."""
    if numba is None:
        return lambda f: f
    return numba.njit(**options)


# the primitives of emulator.fixed, compiled as they are (inlined into the kernel)
_sat = _njit(inline="always", cache=True)(fixed.saturate)
_decay = _njit(inline="always", cache=True)(fixed.shift_decay)


@_njit(cache=True, nogil=True)
def _run(in_ext, sp_ext, din, dmax, ax_ptr, ax_kind, ax_src, ax_delay, syn_ptr, syn_neuron, syn_inc,
        axon_syn, dash_syn, dash_syn2, dash_mem, bias, threshold, max_spikes, readout,
        syn_lo, syn_hi, v_lo, v_hi, syn_state, vmem, rec, record, synops):  # pragma: no cover - compiled
    """Advance every batch element by ``T = sp_ext.shape[1] - dmax`` steps.

    in_ext ``[B, din + T, C]`` input counts (history first); sp_ext ``[B, dmax + T, N]`` spike
    counts (history filled, the rest written here); syn_state ``[B, 2, N]``, vmem ``[B, N]``
    (updated in place); rec ``[3, B, T, N]`` isyn, isyn2, vmem after each step when ``record``;
    synops ``[B, T]``; ``syn_lo``/``syn_hi`` ``[2]`` and ``v_lo``/``v_hi`` the register bounds.
    """
    n_b = sp_ext.shape[0]
    t_n = sp_ext.shape[1] - dmax
    n_axons = ax_ptr.shape[0] - 1
    n = vmem.shape[1]
    counts = np.zeros(n_axons, dtype=np.int64)
    for b in range(n_b):
        for t in range(t_n):
            ops = 0
            for a in range(n_axons):
                c = 0
                for k in range(ax_ptr[a], ax_ptr[a + 1]):
                    if ax_kind[k] == 0:
                        c += in_ext[b, din + t - ax_delay[k], ax_src[k]]
                    else:
                        c += sp_ext[b, dmax + t - ax_delay[k], ax_src[k]]
                counts[a] = c
                ops += c * (syn_ptr[a + 1] - syn_ptr[a])
            synops[b, t] = ops
            for a in range(n_axons):
                c = counts[a]
                if c == 0:
                    continue
                s = axon_syn[a]
                lo = syn_lo[s]
                hi = syn_hi[s]
                for k in range(syn_ptr[a], syn_ptr[a + 1]):
                    nid = syn_neuron[k]
                    w = syn_inc[k]
                    x = syn_state[b, s, nid]
                    for _ in range(c):
                        x = _sat(x + w, lo, hi)
                    syn_state[b, s, nid] = x
            for i in range(n):
                total = 0
                n_syn = 1 if readout[i] else 2
                for s in range(n_syn):
                    x = syn_state[b, s, i]
                    x -= _decay(x, dash_syn[i] if s == 0 else dash_syn2[i])
                    syn_state[b, s, i] = x
                    total += x
                v = vmem[b, i]
                dv = _sat(total - _decay(v, dash_mem[i]), v_lo, v_hi)
                dv = _sat(dv + bias[i], v_lo, v_hi)
                v = _sat(v + dv, v_lo, v_hi)
                th = threshold[i]
                k_sp = v // th
                if k_sp < 0:
                    k_sp = 0
                if k_sp > max_spikes[i]:
                    k_sp = max_spikes[i]
                v -= k_sp * th
                vmem[b, i] = v
                sp_ext[b, dmax + t, i] = k_sp
                if record:
                    rec[0, b, t, i] = syn_state[b, 0, i]
                    rec[1, b, t, i] = syn_state[b, 1, i]
                    rec[2, b, t, i] = v


def load() -> bool:
    """Compile on first use; False when numba is missing or ``SPIKEFORGE_EMULATOR_JIT=0``."""
    global kernel
    if os.environ.get("SPIKEFORGE_EMULATOR_JIT", "1") == "0" or numba is None:
        return False
    kernel = _run
    return True


def tables(wiring: Wiring) -> dict[str, NDArray[Any]]:
    """The Program as the flat int64 tables the kernel reads (CSR by axon, per-neuron registers)."""
    p = wiring.program
    n_axons = wiring.n_axons
    dst = np.concatenate([p.in_dst, p.route_dst]).astype(np.int64)
    kind = np.concatenate([np.zeros(p.in_dst.size, np.int64), np.ones(p.route_dst.size, np.int64)])
    src = np.concatenate([wiring.in_channel_global, p.route_src.astype(np.int64)])
    delay = np.concatenate([p.in_delay, p.route_delay]).astype(np.int64)
    order = np.argsort(dst, kind="stable")
    ax_ptr = np.zeros(n_axons + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=n_axons), out=ax_ptr[1:])
    syn_ptr = np.zeros(n_axons + 1, np.int64)
    np.cumsum(np.bincount(p.syn_axon, minlength=n_axons), out=syn_ptr[1:])
    reg = wiring.registers
    slot = np.array([datapath.slot(pr) for pr in wiring.projection_params] or [0], dtype=np.int64)
    syn_lim = [fixed.limits(wiring.spec.state[k].bits) for k in datapath.SYNAPTIC]
    v_lo, v_hi = fixed.limits(wiring.spec.state["vmem"].bits)
    return {
        "ax_ptr": ax_ptr, "ax_kind": kind[order], "ax_src": src[order], "ax_delay": delay[order],
        "syn_ptr": syn_ptr, "syn_neuron": p.syn_neuron.astype(np.int64),
        "syn_inc": wiring.syn_increment.astype(np.int64),
        "axon_syn": slot[np.maximum(wiring.axon_projection, 0)],
        "dash_syn": reg["dash_syn"], "dash_syn2": reg["dash_syn2"], "dash_mem": reg["dash_mem"],
        "bias": reg["bias"], "threshold": reg["threshold"],
        "max_spikes": wiring.max_spikes.astype(np.int64), "readout": wiring.readout.astype(np.bool_),
        "syn_lo": np.array([lim[0] for lim in syn_lim], dtype=np.int64),
        "syn_hi": np.array([lim[1] for lim in syn_lim], dtype=np.int64),
        "v_lo": np.int64(v_lo), "v_hi": np.int64(v_hi),
    }


#: the order of the kernel's table arguments
_ARGS = ("ax_ptr", "ax_kind", "ax_src", "ax_delay", "syn_ptr", "syn_neuron", "syn_inc", "axon_syn", "dash_syn",
         "dash_syn2", "dash_mem", "bias", "threshold", "max_spikes", "readout", "syn_lo", "syn_hi", "v_lo", "v_hi")
#: where each probe-able state is recorded in the kernel's ``rec``
_RECORDED = {"isyn": 0, "isyn2": 1, "vmem": 2}


class Runner:
    """A whole Program on the kernel, with the state it carries between :meth:`run` calls."""

    def __init__(self, wiring: Wiring, batch: int) -> None:
        self.wiring = wiring
        self.batch = batch
        self.tables = tables(wiring)
        self.din = wiring.max_input_delay
        self.dmax = wiring.max_delay
        self.reset()

    def reset(self) -> None:
        b, n = self.batch, self.wiring.n_neurons
        self.syn = np.zeros((b, 2, n), dtype=np.int64)
        self.vmem = np.zeros((b, n), dtype=np.int64)
        self.in_hist = np.zeros((b, self.din, self.wiring.n_channels), dtype=np.int64)
        self.sp_hist = np.zeros((b, self.dmax, n), dtype=np.int64)

    def step_bytes(self, probes: dict[str, tuple[str, str]]) -> int:
        """Bytes per step and sample of :meth:`run`: int64 input and spike records, the three
        recorded states when a state is probed, the populations' and probes' copies."""
        w = self.wiring
        record = any(var != "spikes" for _, var in probes.values())
        return 8 * (2 * w.n_channels + w.n_neurons * (2 + (3 if record else 0) + len(probes)) + 1)

    def run(self, inputs: NDArray[Any], probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[Any]], dict[str, NDArray[np.int64]], NDArray[np.int64]]:
        """As :meth:`emulator.fast.FastEngine.run`."""
        assert kernel is not None
        w = self.wiring
        b_n, t_n, _ = inputs.shape
        in_ext = np.concatenate([self.in_hist, inputs[:, :, : w.n_channels].astype(np.int64)], axis=1)
        sp_ext = np.zeros((b_n, self.dmax + t_n, w.n_neurons), dtype=np.int64)
        sp_ext[:, : self.dmax] = self.sp_hist
        record = bool(probes) and any(var != "spikes" for _, var in probes.values())
        rec = np.zeros((3, b_n, t_n, w.n_neurons) if record else (3, 1, 1, 1), dtype=np.int64)
        synops = np.zeros((b_n, t_n), dtype=np.int64)
        tb = self.tables
        kernel(in_ext, sp_ext, self.din, self.dmax, *(tb[k] for k in _ARGS), self.syn, self.vmem, rec, record,
               synops)
        self.in_hist = in_ext[:, in_ext.shape[1] - self.din:].copy()
        self.sp_hist = sp_ext[:, sp_ext.shape[1] - self.dmax:].copy()
        spikes = sp_ext[:, self.dmax:]
        pops = w.program.populations
        by_pop = {name: spikes[:, :, pop.neurons] for name, pop in pops.items()}
        probed: dict[str, NDArray[np.int64]] = {}
        for name, (pop, var) in probes.items():
            ids = pops[pop].neurons
            probed[name] = by_pop[pop] if var == "spikes" else rec[_RECORDED[var]][:, :, ids]
        return by_pop, probed, synops

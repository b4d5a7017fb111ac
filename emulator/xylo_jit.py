"""Optional compiled Xylo datapath (numba), used by the fast engine when numba is installed.

Install with the ``fast`` extra (``pip install "spikeforge[fast]"``); without numba, or with
``SPIKEFORGE_EMULATOR_JIT=0``, the numpy path of :mod:`emulator.fast` runs instead. Both are tested
against the reference engine for identical integers.

The kernel is the reference engine's Xylo step (see :mod:`emulator.reference`) compiled: axons in
ascending order, every spike a saturating 16-bit addition into its synaptic state, then the
bit-shift decays, the membrane update and the subtractive multi-spike reset. Following the chip's
order directly needs no saturation proof, so a busy or saturating network costs the same as a
quiet one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

kernel: Callable[..., Any] | None = None


def _build() -> Callable[..., Any] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=True, nogil=True)
    def run(in_ext, sp_ext, din, dmax, ax_ptr, ax_kind, ax_src, ax_delay, syn_ptr, syn_neuron, syn_inc,
            axon_syn, dash_syn, dash_syn2, dash_mem, bias, threshold, max_spikes, readout,
            syn_state, vmem, rec, record, synops):  # pragma: no cover - compiled
        """Advance every batch element by ``T = sp_ext.shape[1] - dmax`` steps.

        in_ext ``[B, din + T, C]`` input counts (history first); sp_ext ``[B, dmax + T, N]`` spike
        counts (history filled, the rest written here); syn_state ``[B, 2, N]``, vmem ``[B, N]``
        (updated in place); rec ``[3, B, T, N]`` isyn, isyn2, vmem after each step when ``record``;
        synops ``[B, T]``.
        """
        lo = -32768
        hi = 32767
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
                    for k in range(syn_ptr[a], syn_ptr[a + 1]):
                        nid = syn_neuron[k]
                        w = syn_inc[k]
                        x = syn_state[b, s, nid]
                        for _ in range(c):
                            x += w
                            if x > hi:
                                x = hi
                            elif x < lo:
                                x = lo
                        syn_state[b, s, nid] = x
                for i in range(n):
                    total = 0
                    n_syn = 1 if readout[i] else 2
                    for s in range(n_syn):
                        x = syn_state[b, s, i]
                        d = x >> (dash_syn[i] if s == 0 else dash_syn2[i])
                        if d == 0 and x > 0:
                            d = 1
                        x -= d
                        syn_state[b, s, i] = x
                        total += x
                    v = vmem[b, i]
                    d = v >> dash_mem[i]
                    if d == 0 and v > 0:
                        d = 1
                    dv = min(hi, max(lo, total - d))
                    dv = min(hi, max(lo, dv + bias[i]))
                    v = min(hi, max(lo, v + dv))
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

    return run


def load() -> bool:
    """Compile on first use; False when numba is missing or ``SPIKEFORGE_EMULATOR_JIT=0``."""
    global kernel
    if os.environ.get("SPIKEFORGE_EMULATOR_JIT", "1") == "0":
        return False
    if kernel is None:
        kernel = _build()
    return kernel is not None


def tables(wiring: Any) -> dict[str, np.ndarray]:
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
    reg = wiring.reg_np
    return {
        "ax_ptr": ax_ptr, "ax_kind": kind[order], "ax_src": src[order], "ax_delay": delay[order],
        "syn_ptr": syn_ptr, "syn_neuron": p.syn_neuron.astype(np.int64),
        "syn_inc": wiring.syn_increment.astype(np.int64),
        "axon_syn": wiring.synapse_index_np.astype(np.int64),
        "dash_syn": reg["dash_syn"], "dash_syn2": reg["dash_syn2"], "dash_mem": reg["dash_mem"],
        "bias": reg["bias"], "threshold": reg["threshold"],
        "max_spikes": wiring.max_spikes_np.astype(np.int64), "readout": wiring.readout_np.astype(np.bool_),
    }

"""Optional compiled Loihi update over a whole chunk (numba), used by the fast engine when numba
is installed.

Install with the ``fast`` extra (``pip install "spikeforge[fast]"``); without numba, or with
``SPIKEFORGE_EMULATOR_JIT=0``, the numpy step of :mod:`.datapath` runs instead. Both are tested
against the reference engine for identical integers.

For a population whose drive over a chunk is known before the chunk runs (no recurrence inside
its group: the fast engine's layer-major case), :func:`run_chunk` advances every neuron of every
sample through every step in one pass: the per-neuron update of :func:`.datapath.reference_step`
with the integer primitives of :mod:`emulator.fixed` compiled as they are (``mul_shift_trunc``,
``wrap``, ``saturate``), on int64 — no float temporaries, one read of the drive, one write of the
spikes. The register arrays are the population's (``[n]`` each, uniform ones broadcast).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emulator import fixed

__all__ = ["load", "run_chunk"]

numba: Any
try:
    import numba
except ImportError:  # the optional [fast] extra: the numpy path runs instead
    numba = None


def _njit(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``numba.njit(**options)``, or (without numba) a decorator that leaves the function as is."""
    if numba is None:
        return lambda f: f
    return numba.njit(**options)


_mul_shift_trunc = _njit(inline="always", cache=True)(fixed.mul_shift_trunc)
_wrap = _njit(inline="always", cache=True)(fixed.wrap)
_saturate = _njit(inline="always", cache=True)(fixed.saturate)


@_njit(cache=True, nogil=True)
def _chunk(drive, u, v, ref, du_m, dv_m, bias, vth, vmin, vmax, refractory, bits_u, spikes,
           rec_u, rec_v, record_u, record_v):  # pragma: no cover - compiled
    """``T = drive.shape[0]`` steps of ``[B, n]`` neurons; ``drive`` ``[T, B, n]`` is ``a`` (the
    summed, exponent-shifted synaptic input); ``du_m = 4096 - du - 1``, ``dv_m = 4096 - dv``,
    ``vth`` already ``<< 6``. Updates ``u``, ``v``, ``ref`` in place; writes ``spikes`` ``[T, B, n]``
    and, when asked, the states after each step into ``rec_u`` / ``rec_v``."""
    t_n, b_n, n = drive.shape
    for t in range(t_n):  # time outermost: the drive and spikes are read and written in order
        for b in range(b_n):
            for i in range(n):
                un = _wrap(_mul_shift_trunc(np.int64(u[b, i]), du_m[i], 12) + np.int64(drive[t, b, i]) * 64, bits_u)
                vn = _saturate(_mul_shift_trunc(np.int64(v[b, i]), dv_m[i], 12) + un + bias[i], vmin[i], vmax[i])
                s = 0
                if ref[b, i] > 0:
                    vn = 0
                    ref[b, i] -= 1
                elif vn > vth[i]:
                    s = 1
                    vn = 0
                    ref[b, i] = refractory[i]
                u[b, i] = un
                v[b, i] = vn
                spikes[t, b, i] = s
                if record_u:
                    rec_u[t, b, i] = un
                if record_v:
                    rec_v[t, b, i] = vn


def load() -> bool:
    """Whether the compiled update is available: numba installed and ``SPIKEFORGE_EMULATOR_JIT``
    not ``0``."""
    return numba is not None and os.environ.get("SPIKEFORGE_EMULATOR_JIT", "1") != "0"


_NONE = np.zeros((1, 1, 1), dtype=np.int64)


def run_chunk(drive: NDArray[Any], state: dict[str, NDArray[Any]], registers: dict[str, NDArray[np.int64]],
              bits_u: int, spikes: NDArray[Any], record: dict[str, NDArray[np.int64]]) -> None:
    """Advance ``state`` (``u``, ``v``: ``[B, n]`` integer-valued float64; ``refractory`` int64)
    through ``drive`` ``[T, B, n]``; ``registers`` ``[n]`` int64 each (``du_m``, ``dv_m``,
    ``bias``, ``vth``, ``vmin``, ``vmax``, ``refractory``: :func:`_chunk`). ``record`` maps
    ``"u"``/``"v"`` to ``[T, B, n]`` int64 arrays to fill."""
    r = registers
    _chunk(drive, state["u"], state["v"], state["refractory"], r["du_m"], r["dv_m"], r["bias"], r["vth"],
           r["vmin"], r["vmax"], r["refractory"], bits_u, spikes, record.get("u", _NONE), record.get("v", _NONE),
           "u" in record, "v" in record)

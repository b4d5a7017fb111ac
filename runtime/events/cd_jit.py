"""Optional compiled loops (numba) for the EVT 2.0 and DAT decoders.

Used by ``evt2.Decoder`` and ``dat.Decoder`` when numba is installed (the ``fast`` extra) and
``SPIKEFORGE_EVENTS_JIT`` is not ``0``; the numpy decoders stay the tested fallback and both give
identical events and errors. Each loop reads the words once and writes the 16-byte output records
(``t`` int64, then ``x | y << 16 | p << 32``) directly: one pass instead of a dozen array passes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from spikeforge.errors import MissingExtra

#: EVT 2.0 state vector: last time-high (-1 before the first), wrap count, time offset (µs),
#: CD words dropped before the first time-high
TH, LOOPS, T_OFFSET, DROPPED = range(4)

evt2_count: Callable[..., Any] | None = None
evt2_decode: Callable[..., Any] | None = None
dat_decode: Callable[..., Any] | None = None


def _build() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=True, nogil=True)
    def count2(w: np.ndarray, th: int, defined: int) -> tuple[int, int]:  # pragma: no cover - compiled
        """(CD events in ``w`` before its first undefined word, index of that word or -1)."""
        n_ev = 0
        started = th >= 0
        for i in range(len(w)):
            typ = int(w[i]) >> 28
            if typ <= 1:
                if started:
                    n_ev += 1
            elif typ == 8:
                started = True
            elif (defined >> typ) & 1 == 0:
                return n_ev, i
        return n_ev, -1

    @numba.njit(cache=True, nogil=True)
    def decode2(w: np.ndarray, state: np.ndarray, out: np.ndarray, max_ts: int, threshold: int,
                loop_us: int) -> int:  # pragma: no cover - compiled
        """Decode ``w`` (no undefined words) into ``out`` (int64, shape (n, 2)); update ``state``."""
        th, loops, t_offset, dropped = state[TH], state[LOOPS], state[T_OFFSET], state[DROPPED]
        base = (th << 6) + loops * loop_us + t_offset
        k = 0
        for i in range(len(w)):
            word = int(w[i])
            typ = word >> 28
            if typ <= 1:
                if th < 0:
                    dropped += 1
                    continue
                out[k, 0] = base + ((word >> 22) & 63)
                out[k, 1] = ((word >> 11) & 0x7FF) | ((word & 0x7FF) << 16) | (typ << 32)
                k += 1
            elif typ == 8:
                h = word & 0x0FFFFFFF
                if th >= 0 and (th - h) * 64 >= max_ts - threshold:
                    loops += 1
                th = h
                base = (th << 6) + loops * loop_us + t_offset
        state[TH], state[LOOPS], state[DROPPED] = th, loops, dropped
        return k

    @numba.njit(cache=True, nogil=True)
    def decode_dat(rec: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        """DAT records (uint64: t in bits 31..0, x 45..32, y 59..46, p 63..60) into ``out`` (int64,
        (n, 2)); ``state`` = [previous t (-1 before the first), wrap count, time offset]."""
        prev, loops, t_offset = state[0], state[1], state[2]
        half = 1 << 31
        for i in range(len(rec)):
            r = rec[i]
            t = np.int64(r & np.uint64(0xFFFFFFFF))
            if prev >= 0 and t < prev - half:
                loops += 1
            prev = t
            out[i, 0] = t + (loops << 32) + t_offset
            hi = np.int64(r >> np.uint64(32))
            p = 1 if (hi >> 28) != 0 else 0
            out[i, 1] = (hi & 0x3FFF) | (((hi >> 14) & 0x3FFF) << 16) | (p << 32)
        state[0], state[1] = prev, loops

    return count2, decode2, decode_dat


def load(required: bool = False) -> bool:
    """Compile (or load from numba's cache) once; False if numba is missing or disabled by
    ``SPIKEFORGE_EVENTS_JIT=0`` (read when a decoder is created).

    ``required`` (a decoder asked for ``jit=True``): a missing numba raises ``MissingExtra`` naming the
    ``fast`` extra instead of falling back to numpy.
    """
    global evt2_count, evt2_decode, dat_decode
    if os.environ.get("SPIKEFORGE_EVENTS_JIT", "1") == "0":
        return False
    if evt2_decode is None:
        built = _build()
        if built is None:
            if required:
                raise MissingExtra.needs("the compiled EVT 2.0/DAT decoder (jit=True)", "numba", "fast")
            return False
        evt2_count, evt2_decode, dat_decode = built
    return True

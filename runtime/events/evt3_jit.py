"""Optional compiled EVT 3.0 word loop (numba), used by ``evt3.Decoder`` when numba is installed.

Install with the ``fast`` extra (``pip install "spikeforge[fast]"``); without numba, or with
``SPIKEFORGE_EVENTS_JIT=0``, the numpy decoder in ``evt3`` runs instead. Both give identical events
and errors (tests decode the same streams with both). The loop is the word-by-word state machine of
the format (see ``evt3``'s module docstring) in two passes: count the events of a block, so that
the caller allocates exactly, then decode straight into the 16-byte output records.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from spikeforge.errors import MissingExtra

#: state vector layout shared with ``evt3.Decoder``
HIGH, LOOPS, LOW, Y, ROW_CD, BASE, POL, T_OFFSET = range(8)

count_events: Callable[..., Any] | None = None
decode_words: Callable[..., Any] | None = None


def _build() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=True, nogil=True)
    def count(w: np.ndarray, row_cd: int) -> tuple[int, int]:  # pragma: no cover - compiled
        """(events in ``w`` before its first undefined word, index of that word or -1)."""
        n_ev = 0
        cd = row_cd
        for i in range(len(w)):
            word = int(w[i])
            typ = word >> 12
            if typ <= 1:
                cd = 1 - typ
            elif typ == 2:
                n_ev += cd
            elif typ == 4 or typ == 5:
                if cd:
                    mask = word & (0xFFF if typ == 4 else 0xFF)
                    while mask:
                        mask &= mask - 1
                        n_ev += 1
            elif typ == 9 or typ == 11 or typ == 12:
                return n_ev, i
        return n_ev, -1

    @numba.njit(cache=True, nogil=True)
    def decode(w: np.ndarray, state: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover - compiled
        """Decode ``w`` (no undefined words) into ``out`` (uint64, shape (n, 2)); update ``state``."""
        high, loops, low = state[HIGH], state[LOOPS], state[LOW]
        y, cd, base, pol, t_offset = state[Y], state[ROW_CD], state[BASE], state[POL], state[T_OFFSET]
        t = (((high + (loops << 12)) << 12) + low) + t_offset
        k = 0
        for i in range(len(w)):
            word = int(w[i])
            typ = word >> 12
            if typ <= 1:
                y = word & 0x7FF
                cd = 1 - typ
            elif typ == 2:
                if cd:
                    out[k, 0] = t
                    out[k, 1] = (word & 0x7FF) | (y << 16) | (((word >> 11) & 1) << 32)
                    k += 1
            elif typ == 3:
                base = word & 0x7FF
                pol = (word >> 11) & 1
            elif typ == 4 or typ == 5:
                if cd:
                    mask = word & (0xFFF if typ == 4 else 0xFF)
                    rest = (y << 16) | (pol << 32)
                    bit = 0
                    while mask:
                        if mask & 1:
                            out[k, 0] = t
                            out[k, 1] = ((base + bit) & 0xFFFF) | rest
                            k += 1
                        mask >>= 1
                        bit += 1
                base += 12 if typ == 4 else 8
            elif typ == 6:
                low = word & 0xFFF
                t = (((high + (loops << 12)) << 12) + low) + t_offset
            elif typ == 8:
                h = word & 0xFFF
                if high >= h + 2048:
                    loops += 1
                if h != high:
                    low = 0
                high = h
                t = (((high + (loops << 12)) << 12) + low) + t_offset
        state[HIGH], state[LOOPS], state[LOW] = high, loops, low
        state[Y], state[ROW_CD], state[BASE], state[POL] = y, cd, base, pol
        return k

    return count, decode


def load(required: bool = False) -> bool:
    """Compile (or load from numba's cache) the loops once; False if numba is unavailable or disabled.

    ``SPIKEFORGE_EVENTS_JIT=0`` disables the loops for decoders created while it is set. ``required`` (a
    decoder asked for ``jit=True``): a missing numba raises ``MissingExtra`` naming the ``fast`` extra
    instead of falling back to numpy.
    """
    global count_events, decode_words
    if os.environ.get("SPIKEFORGE_EVENTS_JIT", "1") == "0":
        return False
    if count_events is None:
        built = _build()
        if built is None:
            if required:
                raise MissingExtra.needs("the compiled EVT 3.0 decoder (jit=True)", "numba", "fast")
            return False
        count_events, decode_words = built
    return True

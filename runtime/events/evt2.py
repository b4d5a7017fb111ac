"""Prophesee EVT 2.0 (``.raw``): 32-bit little-endian words after a ``%`` header.

Word layout (bits 31..28 = type):

* ``0x0`` CD_OFF / ``0x1`` CD_ON: bits 27..22 = t[5:0], bits 21..11 = x, bits 10..0 = y.
* ``0x8`` EVT_TIME_HIGH: bits 27..0 = t[33:6].
* ``0xA`` EXT_TRIGGER, ``0xD`` IMU, ``0xE`` OTHERS, ``0xF`` CONTINUED: skipped.
* ``0x2``-``0x7``, ``0x9``, ``0xB``, ``0xC`` are undefined and reported as corruption.

Time (µs) = time-high << 6 | t[5:0], plus 2^34 per wrap of the 34-bit counter. As in openeb, a wrap
is a time-high decrease of at least (2^28 - 1)·64 - 10000 µs, and CD words before the first
time-high word have no time and are dropped.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events import cd_jit, prophesee_header
from runtime.events.dtype import alloc_events
from runtime.events.reader import BaseDecoder, Header, format_error
from runtime.events.timecode import check_writable, high_words, interleave

NAME = "evt2"
GRANULE = 4
BYTES_PER_EVENT = 4.2
LOOP_US = 1 << 34
_MAX_TS = ((1 << 28) - 1) << 6
_LOOP_THRESHOLD_US = 10_000
#: bit i set = word type i is defined
_DEFINED_TYPES = 0xE503
#: keep-alive spacing of time-high words (in 64 µs units), well below the wrap threshold
_KEEPALIVE = 128


def read_header(fh: BinaryIO) -> Header:
    return prophesee_header.parse(fh, NAME)


def first_undefined(typ: np.ndarray, defined: int) -> int:
    """Index of the first word whose 4-bit type is not set in the ``defined`` bit mask, or -1."""
    bad = (np.right_shift(np.uint32(defined), typ) & 1) == 0
    return int(np.argmax(bad)) if bad.any() else -1


def max_events(nbytes: int) -> int:
    """Upper bound on the events in ``nbytes`` of EVT 2.0 data (one per word)."""
    return nbytes // 4


def fill_cd(
    out: np.ndarray, cdw: np.ndarray, t_base: np.ndarray, work: tuple[np.ndarray, np.ndarray] | None = None
) -> None:
    """Decode CD words ``cdw`` (uint32, type 0/1) into ``out`` with ``t = t_base + t[5:0]``.

    Writes go through uint32/int64 views of the 16-byte records, one store per field group, so
    each output cache line is touched by as few passes as possible. ``work`` is two uint32 scratch
    arrays of ``len(cdw)`` (fresh ones if not given).
    """
    n = len(cdw)
    rec32 = out.view(np.uint32).reshape(n, 4)
    lo, hi = work if work is not None else (np.empty(n, np.uint32), np.empty(n, np.uint32))
    np.right_shift(cdw, 28, out=rec32[:, 3])  # p, and zeroes the padding
    np.right_shift(cdw, 11, out=lo)
    lo &= 0x7FF
    np.left_shift(cdw, 16, out=hi)
    hi &= 0x07FF0000
    np.bitwise_or(lo, hi, out=rec32[:, 2])  # x | y << 16
    np.right_shift(cdw, 22, out=lo)
    lo &= 63
    np.add(t_base, lo, out=out.view(np.int64).reshape(n, 2)[:, 0])


class TimeHighState:
    """The EVT 2.x time base: last time-high value, wrap count and the header's time offset."""

    def __init__(self, header: Header) -> None:
        self.t_offset = prophesee_header.t_offset(header)
        self.th = -1  # last time-high value (28 bits), -1 before the first
        self.loops = 0
        self.dropped = 0  # CD words before the first time-high word

    def split(self, w: np.ndarray, is_cd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Split words ``w`` (uint32 view, type in bits 31..28) into CD words and their time base.

        Returns ``(is_cd, t_base, skip, bad)``: the CD mask over ``w``, the time base (µs, int64) of
        every CD word (``t = t_base + t[5:0]``), how many leading CD words have no time yet (drop
        them), and the index of the first word of an undefined type (-1 if none). With ``bad >= 0``
        nothing is decoded: the caller decodes ``w[:bad]`` and reports the defect. State advances.
        """
        n = len(w)
        is_cd = np.less(w, 0x20000000, out=is_cd)  # ``is_cd``: optional bool work array of len(w)
        other = np.flatnonzero(w >= 0x20000000)  # few: time-high, triggers, ...
        other_typ = w[other] >> 28
        is_th = other_typ == 8
        th_idx = other[is_th]
        n_cd = n - len(other)
        if len(th_idx) != len(other):
            bad = first_undefined(other_typ, _DEFINED_TYPES)
            if bad >= 0:
                return is_cd, np.zeros(0, np.int64), 0, int(other[bad])
            # CD words before each time-high = its index minus the non-CD words before it
            counts = np.diff(th_idx - np.flatnonzero(is_th), prepend=0, append=n_cd)
        else:
            counts = np.diff(th_idx, prepend=-1, append=n) - 1

        th = (w[th_idx] & 0x0FFFFFFF).astype(np.int64)
        prev = np.empty(len(th), dtype=np.int64)
        if len(th):
            prev[0] = self.th if self.th >= 0 else th[0]
            prev[1:] = th[:-1]
        wraps = (prev - th) * 64 >= _MAX_TS - _LOOP_THRESHOLD_US
        loops = np.cumsum(wraps) + self.loops
        bases = np.empty(len(th) + 1, dtype=np.int64)
        bases[0] = (self.th << 6) + self.loops * LOOP_US + self.t_offset
        bases[1:] = (th << 6) + loops * LOOP_US + self.t_offset
        skip = 0
        if self.th < 0:
            skip = int(counts[0])
            self.dropped += skip
            counts[0] = 0
        if len(th):
            self.th = int(th[-1])
            self.loops = int(loops[-1])
        return is_cd, np.repeat(bases, counts), skip, -1


class Decoder(BaseDecoder):
    """Stateful EVT 2.0 decoder: the last time-high word and the wrap count carry across blocks."""

    record = "32-bit EVT 2.0 word"

    def __init__(self, header: Header, jit: bool | None = None) -> None:
        super().__init__()
        self.time = TimeHighState(header)
        #: use the compiled loop of ``cd_jit`` (default: when numba is installed and not disabled;
        #: ``jit=True`` without numba raises ``MissingExtra``)
        self.jit = False if jit is False else cd_jit.load(required=jit is True)

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 4
        if n == 0:
            return alloc_events(0), 0
        w = np.frombuffer(data, dtype="<u4", count=n)
        if self.jit:
            return self._decode_jit(w, offset), 4 * n
        return self._decode(w, offset), 4 * n

    def _decode_jit(self, w: np.ndarray, offset: int) -> np.ndarray:
        """``_decode`` by the compiled loop of ``cd_jit``: same events, state and errors."""
        assert cd_jit.evt2_count is not None and cd_jit.evt2_decode is not None
        tm = self.time
        n_ev, bad = cd_jit.evt2_count(w, tm.th, _DEFINED_TYPES)
        out = self.alloc(n_ev)
        state = np.array([tm.th, tm.loops, tm.t_offset, tm.dropped], dtype=np.int64)
        words = w if bad < 0 else w[:bad]
        cd_jit.evt2_decode(words, state, out.view(np.int64).reshape(n_ev, 2), _MAX_TS, _LOOP_THRESHOLD_US, LOOP_US)
        tm.th, tm.loops, tm.dropped = int(state[cd_jit.TH]), int(state[cd_jit.LOOPS]), int(state[cd_jit.DROPPED])
        if bad >= 0:
            raise format_error(
                f"EVT 2.0: undefined word type 0x{int(w[bad]) >> 28:X} (word 0x{int(w[bad]):08X})",
                offset + 4 * bad,
                out,
            )
        return out

    def _decode(self, w: np.ndarray, offset: int) -> np.ndarray:
        is_cd, t_base, skip, bad = self.time.split(w, self.scratch("is_cd", len(w), np.bool_))
        if bad >= 0:
            events = self._decode(w[:bad], offset)
            raise format_error(
                f"EVT 2.0: undefined word type 0x{int(w[bad]) >> 28:X} (word 0x{int(w[bad]):08X})",
                offset + 4 * bad,
                events,
            )
        n_cd = len(t_base) + skip
        if n_cd == len(w):  # CD words only: no compaction
            cdw = w[skip:]
        else:
            cdw = w[is_cd][skip:]  # mostly-true mask: boolean indexing copies runs, faster than compress
        n = len(cdw)
        out = self.alloc(n)
        fill_cd(out, cdw, t_base, (self.scratch("lo", n, np.uint32), self.scratch("hi", n, np.uint32)))
        return out


class Writer:
    """Stream events into an EVT 2.0 file: CD words with a time-high word at every change of t >> 6.

    If the first timestamp is beyond the 34-bit range, a multiple of 2^34 µs goes into the header key
    ``spikeforge_t_offset`` (other readers then see times modulo 2^34 µs, as a camera would give).
    """

    def __init__(self, fh: BinaryIO, width: int | None = None, height: int | None = None) -> None:
        self.fh, self.width, self.height = fh, width, height
        self.started = False
        self.prev_high: int | None = None
        self.last_t: int | None = None
        self.t_offset = 0

    def _start(self, t0: int) -> None:
        self.t_offset = (t0 // LOOP_US) * LOOP_US
        self.fh.write(prophesee_header.build("EVT2", "2.0", self.width, self.height, self.t_offset))
        self.started = True

    def write(self, events: np.ndarray) -> None:
        if not len(events):
            return
        check_writable(events, "EVT 2.0", 2047, 2047)
        t = events["t"]
        if self.last_t is not None and int(t[0]) < self.last_t:
            raise format_error(f"EVT 2.0 writer: chunk starts at t={t[0]} before the previous t={self.last_t}", None)
        if not self.started:
            self._start(int(t[0]))
        tr = t - self.t_offset
        high = tr >> 6
        count, values, _ = high_words(high, self.prev_high, _KEEPALIVE)
        words = (events["p"].astype(np.uint32) & 1) << 28
        words |= (tr & 63).astype(np.uint32) << 22
        words |= events["x"].astype(np.uint32) << 11
        words |= events["y"].astype(np.uint32)
        th = ((values & 0x0FFFFFFF) | 0x80000000).astype(np.uint32)
        self.fh.write(interleave(words, count, th).astype("<u4", copy=False).tobytes())
        self.prev_high = int(high[-1])
        self.last_t = int(t[-1])

    def close(self) -> None:
        if not self.started:
            self._start(0)

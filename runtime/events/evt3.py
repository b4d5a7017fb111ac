"""Prophesee EVT 3.0 (``.raw``): 16-bit little-endian stateful words after a ``%`` header.

Word layout (bits 15..12 = type):

* ``0x0`` EVT_ADDR_Y: y in bits 10..0 (bit 11 = master/slave), sets the current row.
* ``0x1`` EVT_ADDR_Y of an EM (exposure) row: the following pixel words are not CD events; dropped.
* ``0x2`` EVT_ADDR_X: polarity in bit 11, x in bits 10..0; one event at (x, y, t).
* ``0x3`` VECT_BASE_X: polarity in bit 11, x in bits 10..0; sets the vector base and polarity.
* ``0x4`` VECT_12 / ``0x5`` VECT_8: valid mask in bits 11..0 / 7..0; one event at ``base + i`` per
  set bit ``i`` (ascending), then ``base += 12`` / ``8``.
* ``0x6`` EVT_TIME_LOW: t[11:0]. ``0x8`` EVT_TIME_HIGH: t[23:12]; a change of time-high resets
  time-low to 0 (openeb).
* ``0x7`` CONTINUED_4, ``0xA`` EXT_TRIGGER, ``0xD`` IMU, ``0xE`` OTHERS, ``0xF`` CONTINUED_12:
  skipped. ``0x9``, ``0xB``, ``0xC`` are undefined and reported as corruption.

Time (µs) = time-high << 12 | time-low plus 2^24 per wrap of the 24-bit counter; a wrap is a
time-high decrease of at least 2^11 (openeb). Words before the first time-high word are skipped.
All state (row, time, vector base, polarity, wrap count) carries across blocks.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events import prophesee_header
from runtime.events.dtype import empty_events
from runtime.events.stream import BaseDecoder, Header, format_error
from runtime.events.timecode import check_writable, high_words

NAME = "evt3"
GRANULE = 2
BYTES_PER_EVENT = 2.5
LOOP_US = 1 << 24
_KEEPALIVE = 1024  # time-high units (4096 µs) between keep-alive words, half the wrap threshold

# word classes, looked up from the 4-bit type; numbered so that pixel words are ``cls <= _VECT``
# and row/time words ``cls >= _ROW`` (undefined types are rejected before)
_ADDR_X, _BASE, _VECT, _OTHER, _ROW, _TIME, _BAD = range(7)
_CLASS = np.array(
    [_ROW, _ROW, _ADDR_X, _BASE, _VECT, _VECT, _TIME, _OTHER]
    + [_TIME, _BAD, _OTHER, _BAD, _BAD, _OTHER, _OTHER, _OTHER],
    dtype=np.uint8,
)


# per pixel-word type: x advance after a vector word, and the valid-mask bits
_STEP = np.zeros(16, dtype=np.int16)
_STEP[0x4], _STEP[0x5] = 12, 8
_MASK = np.zeros(16, dtype="<u2")
_MASK[0x4], _MASK[0x5] = 0xFFF, 0xFF


def _bit_table() -> tuple[np.ndarray, np.ndarray]:
    """For every 12-bit mask, its set bit numbers in ascending order, concatenated, and offsets."""
    masks = np.arange(1 << 12, dtype=np.uint16)
    bits = np.unpackbits(masks.view(np.uint8).reshape(-1, 2), axis=1, bitorder="little")
    at = np.cumsum(bits.sum(axis=1)) - bits.sum(axis=1)
    return (np.flatnonzero(bits) & 15).astype(np.uint16), at.astype(np.int64)


_BITS, _BITS_AT = _bit_table()


def _select_mask(cond: np.ndarray) -> np.ndarray:
    """``0xFFFF`` where ``cond`` else 0, as uint16 (for branch-free selection)."""
    return np.negative(cond.view(np.int8), dtype=np.int16).view(np.uint16)


def _blend(pick: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` where ``pick`` has all bits set, else ``b`` (same integer dtype as ``pick``).

    Bit selection instead of ``np.where``/``copyto(where=)``, which branch per element and run
    ~10x slower on the unpredictable masks of a pixel-word stream.
    """
    out = np.bitwise_and(a, pick)
    rest = np.invert(pick)
    rest &= b
    out |= rest
    return out


def read_header(fh: BinaryIO) -> Header:
    return prophesee_header.parse(fh, NAME)


def max_events(nbytes: int) -> int:
    """Arena size for a whole-file read: one event per word (vectors beyond that fall back)."""
    return nbytes // 2


class Decoder(BaseDecoder):
    """Stateful EVT 3.0 decoder."""

    record = "16-bit EVT 3.0 word"

    def __init__(self, header: Header) -> None:
        super().__init__()
        self.t_offset = prophesee_header.t_offset(header)
        self.started = False
        self.high = 0  # last time-high (12 bits)
        self.loops = 0
        self.low = 0
        self.y = 0
        self.row_cd = True
        self.base = 0
        self.pol = 0

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 2
        if n == 0:
            return empty_events(0), 0
        w = np.frombuffer(data, dtype="<u2", count=n)
        skip = 0
        if not self.started:
            th = np.flatnonzero((w >> 12) == 8)
            skip = int(th[0]) if len(th) else n
            bad = np.flatnonzero(_CLASS[w[:skip] >> 12] == _BAD)
            if len(bad):
                word = int(w[bad[0]])
                raise format_error(
                    f"EVT 3.0: undefined word type 0x{word >> 12:X} (word 0x{word:04X})",
                    offset + 2 * int(bad[0]),
                )
            if not len(th):
                return empty_events(0), 2 * n
            self.started = True
            self.high = int(w[skip]) & 0xFFF
        return self._decode(w[skip:], offset + 2 * skip), 2 * n

    def _decode(self, w: np.ndarray, offset: int) -> np.ndarray:
        cls = _CLASS.take(w >> 12)
        if len(cls) and cls.max() == _BAD:
            bad = int(np.flatnonzero(cls == _BAD)[0])
            events = self._decode(w[:bad], offset)
            raise format_error(
                f"EVT 3.0: undefined word type 0x{int(w[bad]) >> 12:X} (word 0x{int(w[bad]):04X})",
                offset + 2 * bad,
                events,
            )
        # Row and time words set state; pixel words (ADDR_X, VECT_BASE_X, VECT_12, VECT_8) use
        # it. Each pixel word is given the index of the last state word before it (0 = the
        # state carried in), and row/time state is resolved on the short list of state words.
        is_set = cls >= _ROW
        spos = np.flatnonzero(is_set)
        pos = np.flatnonzero(cls <= _VECT)
        s_at = np.cumsum(is_set, dtype=np.intp).take(pos)
        y_s, cd_s, t_s = self._state(w.take(spos))
        y_px = y_s.take(s_at)
        keep = cd_s.take(s_at)
        t_px = t_s.take(s_at)
        pw = w.take(pos)
        base, pol, mask = self._pixels(pw)
        if not keep.all():  # pixel words of EM rows are not CD events
            mask[~keep] = 0
        counts = np.bitwise_count(mask)
        live = np.flatnonzero(counts)  # VECT_BASE_X words and dropped rows have no events
        mask, counts = mask.take(live), counts.take(live).astype(np.int64)
        n = int(counts.sum())
        out = self.alloc(n)
        y_w = y_px.take(live)
        t_w = t_px.take(live)
        base, pol = base.take(live), pol.take(live)
        if n == len(live):  # one event per word (ADDR_X, single-bit vectors): no expansion
            np.add(base, _BITS[_BITS_AT[mask]], out=out["x"])
            out["p"], out["y"], out["t"] = pol, y_w, t_w
            return out
        # event k belongs to word ``word[k]``; np.repeat is slow for counts this small, so the
        # word index comes from a cumulative sum of word-start markers and values are gathered
        first = np.cumsum(counts)
        first -= counts
        marker = np.zeros(n, dtype=np.int8)
        marker[first[1:]] = 1
        word = np.cumsum(marker, dtype=np.intp)
        # bit numbers of the set bits come from a table of every 12-bit mask:
        # event k is entry k - first[word] + _BITS_AT[mask[word]] of _BITS
        start = _BITS_AT[mask]
        start -= first
        bit = np.take(start, word, mode="clip")
        bit += np.arange(n, dtype=np.int64)
        x = np.take(base, word, mode="clip")
        x += np.take(_BITS, bit, mode="clip")
        out["x"] = x
        np.take(pol, word, out=out["p"], mode="clip")
        np.take(y_w, word, out=out["y"], mode="clip")
        np.take(t_w, word, out=out["t"], mode="clip")
        return out

    def _state(self, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row y, CD-row flag and absolute time (µs) after each state word ``sw`` (rows and times).

        Each array has ``len(sw) + 1`` entries; index 0 is the state carried in from the last block.
        """
        is_row = sw < 0x2000
        rows = np.compress(is_row, sw)
        y_of = np.empty(len(rows) + 1, dtype=np.uint16)
        y_of[0] = self.y
        np.bitwise_and(rows, 0x7FF, out=y_of[1:])
        cd_of = np.empty(len(rows) + 1, dtype=bool)
        cd_of[0] = self.row_cd
        np.less(rows, 0x1000, out=cd_of[1:])
        if len(rows):
            self.y, self.row_cd = int(y_of[-1]), bool(cd_of[-1])
        ridx = np.empty(len(sw) + 1, dtype=np.intp)
        ridx[0] = 0
        np.cumsum(is_row, out=ridx[1:])
        is_time = ~is_row
        times = self._times(np.compress(is_time, sw))
        tidx = np.empty(len(sw) + 1, dtype=np.intp)
        tidx[0] = 0
        np.cumsum(is_time, out=tidx[1:])
        return y_of.take(ridx), cd_of.take(ridx), times.take(tidx)

    def _times(self, tw: np.ndarray) -> np.ndarray:
        """Absolute time (µs) after each time word ``tw``, with the carried-in time at index 0."""
        is_high = tw >= 0x8000
        val = (tw & 0xFFF).astype(np.int64)
        high = np.compress(is_high, val)
        prev = np.empty(len(high), dtype=np.int64)
        if len(high):
            prev[0] = self.high
            prev[1:] = high[:-1]
        loops = np.cumsum(prev >= high + 2048) + self.loops
        high_abs = np.empty(len(high) + 1, dtype=np.int64)
        high_abs[0] = self.high + (self.loops << 12)
        high_abs[1:] = high + (loops << 12)
        setter = ~is_high
        setter[is_high] = prev != high
        lows = np.empty(int(np.count_nonzero(setter)) + 1, dtype=np.int64)
        lows[0] = self.low
        lows[1:] = np.compress(setter, np.where(is_high, 0, val))
        times = np.empty(len(tw) + 1, dtype=np.int64)
        times[0] = (high_abs[0] << 12) + self.low + self.t_offset
        times[1:] = (high_abs.take(np.cumsum(is_high)) << 12) + lows.take(np.cumsum(setter)) + self.t_offset
        if len(high):
            self.high, self.loops = int(high[-1]), int(loops[-1])
        self.low = int(lows[-1])
        return times

    def _pixels(self, pw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel word: x base (uint16), polarity (int8) and valid mask (``<u2``).

        ADDR_X: its own x, polarity and mask 1. VECT_BASE_X: mask 0 (no event), it sets the base.
        VECT_12/VECT_8: the current base, advanced by 12/8 per vector word since the last
        VECT_BASE_X, and the polarity of that VECT_BASE_X.
        """
        typ = pw >> 12
        is_addr = typ == 2
        is_base = typ == 3
        step = _STEP.take(typ)
        # int32 is ample: a block holds far fewer than 2^31 / 12 vector words
        before = np.cumsum(step, dtype=np.int32)
        before -= step
        bpos = np.flatnonzero(is_base)
        bases = np.empty(len(bpos) + 1, dtype=np.int32)
        bases[0] = self.base
        bases[1:] = pw[bpos] & 0x7FF
        bases[1:] -= before[bpos]
        pols = np.empty(len(bpos) + 1, dtype=np.int8)
        pols[0] = self.pol
        np.right_shift(pw[bpos], 11, out=pols[1:], casting="unsafe")
        pols[1:] &= 1
        if len(pw):
            self.base = int(bases[-1]) + int(before[-1]) + int(step[-1])
            self.pol = int(pols[-1])
        # forward fill of the last VECT_BASE_X by gathering (np.repeat is slow for short runs)
        which = np.cumsum(is_base, dtype=np.intp)
        base = np.take(bases, which, mode="clip")
        base += before
        pick = _select_mask(is_addr)
        base16 = _blend(pick, pw & 0x7FF, base.astype(np.uint16))
        pol = np.take(pols, which, mode="clip")
        own_pol = ((pw >> 11) & 1).astype(np.int8)
        pol = _blend(pick.view(np.int16).astype(np.int8), own_pol, pol)
        mask = pw & _MASK.take(typ)
        mask |= is_addr
        return base16, pol, mask


class Writer:
    """Stream events into an EVT 3.0 file.

    Per event: time-high words when t >> 12 changes (plus keep-alives every 2^22 µs of silence),
    a time-low word when t changes, an ADDR_Y word when y changes, then either an ADDR_X word or,
    for a run of events with equal t, y, p, increasing x within one 12-pixel block, a VECT_BASE_X
    plus VECT_12 pair. A first timestamp beyond 2^24 µs goes to header key ``spikeforge_t_offset``
    as a multiple of 2^24.
    """

    def __init__(self, fh: BinaryIO, width: int | None = None, height: int | None = None) -> None:
        self.fh, self.width, self.height = fh, width, height
        self.started = False
        self.prev_high: int | None = None
        self.last: tuple[int, int, int, int] | None = None  # t - t_offset, y, p, x of the last event
        self.last_t = -1
        self.t_offset = 0

    def write(self, events: np.ndarray) -> None:
        n = len(events)
        if not n:
            return
        check_writable(events, "EVT 3.0", 2047, 2047)
        t = events["t"].astype(np.int64)
        if int(t[0]) < self.last_t:
            raise format_error(f"EVT 3.0 writer: chunk starts at t={t[0]} before the previous t={self.last_t}", None)
        if not self.started:
            self.t_offset = (int(t[0]) >> 24) << 24
            self.fh.write(prophesee_header.build("EVT3", "3.0", self.width, self.height, self.t_offset))
            self.started = True
        tr = t - self.t_offset
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        p = (events["p"] != 0).astype(np.int64)

        high = tr >> 12
        n_th, th_vals, th_group = high_words(high, self.prev_high, _KEEPALIVE)
        prev_t, prev_y, prev_p, prev_x = (-1, -1, -1, -1) if self.last is None else self.last
        t_prev = np.concatenate(([prev_t], tr[:-1]))
        y_prev = np.concatenate(([prev_y], y[:-1]))
        p_prev = np.concatenate(([prev_p], p[:-1]))
        x_prev = np.concatenate(([prev_x], x[:-1]))
        new_t = (tr != t_prev) | (n_th > 0)
        new_y = (y != y_prev) | (n_th > 0)
        block = x // 12
        start = new_t | new_y | (p != p_prev) | (block != x_prev // 12) | (x <= x_prev)
        if self.last is not None:
            start[0] = True  # never continue a vector across chunks
        starts = np.flatnonzero(start)
        size = np.diff(starts, append=n)
        vec_start = np.zeros(n, dtype=bool)
        vec_start[starts[size > 1]] = True
        single = start & ~vec_start
        masks = np.bitwise_or.reduceat(np.left_shift(1, x - block * 12), starts)

        per_event = n_th + new_t + new_y + single + 2 * vec_start
        first = np.cumsum(per_event) - per_event
        words = np.empty(int(per_event.sum()), dtype=np.uint16)
        within = np.arange(len(th_vals)) - np.repeat(np.cumsum(n_th[n_th > 0]) - n_th[n_th > 0], n_th[n_th > 0])
        words[first[th_group] + within] = 0x8000 | (th_vals & 0xFFF)
        at = first + n_th
        words[at[new_t]] = 0x6000 | (tr[new_t] & 0xFFF)
        at = at + new_t
        words[at[new_y]] = y[new_y]
        at = at + new_y
        words[at[single]] = 0x2000 | (p[single] << 11) | x[single]
        vs = vec_start
        words[at[vs]] = 0x3000 | (p[vs] << 11) | (block[vs] * 12)
        words[at[vs] + 1] = 0x4000 | masks[size > 1]
        self.fh.write(words.astype("<u2", copy=False).tobytes())
        self.prev_high = int(high[-1])
        self.last = (int(tr[-1]), int(y[-1]), int(p[-1]), int(x[-1]))
        self.last_t = int(t[-1])

    def close(self) -> None:
        if not self.started:
            self.fh.write(prophesee_header.build("EVT3", "3.0", self.width, self.height, 0))
            self.started = True

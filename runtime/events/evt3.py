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

from runtime.events import evt3_jit, prophesee_header
from runtime.events.dtype import alloc_events, concat_events
from runtime.events.reader import BaseDecoder, Header, format_error
from runtime.events.timecode import check_writable, high_words
from spikeforge.errors import EventFormatError

NAME = "evt3"
GRANULE = 2
BYTES_PER_EVENT = 2.5
LOOP_US = 1 << 24
_KEEPALIVE = 1024  # time-high units (4096 µs) between keep-alive words, half the wrap threshold

#: bit i set = word type i is undefined (0x9, 0xB, 0xC)
_UNDEFINED = 0x1A00
# per word type, the increments of three counters packed in one int64 so that a single cumulative
# sum counts them all: row words (bits 0..20), time words (21..41), VECT_BASE_X words (42..62)
_ROW_UNIT, _TIME_UNIT, _BASE_UNIT = 1, 1 << 21, 1 << 42
_FIELD = (1 << 21) - 1
_COUNTERS = np.zeros(16, dtype=np.int64)
_COUNTERS[[0x0, 0x1]] = _ROW_UNIT
_COUNTERS[[0x6, 0x8]] = _TIME_UNIT
_COUNTERS[0x3] = _BASE_UNIT
#: largest block, in words, whose counts fit the packed fields
MAX_BLOCK_WORDS = _FIELD


def _bit_table() -> tuple[np.ndarray, np.ndarray]:
    """For every 12-bit mask, its set bit numbers in ascending order, concatenated, and offsets."""
    masks = np.arange(1 << 12, dtype=np.uint16)
    bits = np.unpackbits(masks.view(np.uint8).reshape(-1, 2), axis=1, bitorder="little")
    at = np.cumsum(bits.sum(axis=1)) - bits.sum(axis=1)
    return (np.flatnonzero(bits) & 15).astype(np.uint16), at.astype(np.int64)


_BITS, _BITS_AT = _bit_table()


def read_header(fh: BinaryIO) -> Header:
    return prophesee_header.parse(fh, NAME)


def max_events(nbytes: int) -> int:
    """Arena size for a whole-file read: one event per word (vectors beyond that fall back)."""
    return nbytes // 2


class Decoder(BaseDecoder):
    """Stateful EVT 3.0 decoder."""

    record = "16-bit EVT 3.0 word"

    def __init__(self, header: Header, jit: bool | None = None) -> None:
        super().__init__()
        #: use the compiled loop of ``evt3_jit`` (default: when numba is installed and not disabled;
        #: ``jit=True`` without numba raises ``MissingExtra``)
        self.jit = False if jit is False else evt3_jit.load(required=jit is True)
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
            return alloc_events(0), 0
        w = np.frombuffer(data, dtype="<u2", count=n)
        skip = 0
        if not self.started:
            th = np.flatnonzero((w >> 12) == 8)
            skip = int(th[0]) if len(th) else n
            bad = np.flatnonzero((np.right_shift(np.uint16(_UNDEFINED), w[:skip] >> 12) & 1) != 0)
            if len(bad):
                word = int(w[bad[0]])
                raise format_error(
                    f"EVT 3.0: undefined word type 0x{word >> 12:X} (word 0x{word:04X})",
                    offset + 2 * int(bad[0]),
                )
            if not len(th):
                return alloc_events(0), 2 * n
            self.started = True
            self.high = int(w[skip]) & 0xFFF
        return self._decode(w[skip:], offset + 2 * skip), 2 * n

    def _decode(self, w: np.ndarray, offset: int) -> np.ndarray:
        if self.jit:
            return self._decode_jit(w, offset)
        if len(w) > MAX_BLOCK_WORDS:  # keep the packed counters within their fields
            half = len(w) // 2
            first = self._decode(w[:half], offset)
            try:
                second = self._decode(w[half:], offset + 2 * half)
            except EventFormatError as err:
                err.events = concat_events([first, err.events])  # type: ignore[attr-defined]
                raise
            return concat_events([first, second])
        n = len(w)
        typ = self.scratch("typ", n, np.uint16)
        np.right_shift(w, 12, out=typ)
        flag = self.scratch("flag", n, np.uint16)
        np.right_shift(np.uint16(_UNDEFINED), typ, out=flag)
        flag &= 1
        if flag.any():
            bad = int(np.argmax(flag))
            events = self._decode(w[:bad], offset)
            raise format_error(
                f"EVT 3.0: undefined word type 0x{int(w[bad]) >> 12:X} (word 0x{int(w[bad]):04X})",
                offset + 2 * bad,
                events,
            )
        # Row and time words set state, pixel words (ADDR_X, VECT_BASE_X, VECT_12, VECT_8) use it.
        # One cumulative sum of packed counters gives every pixel word the number of row, time and
        # VECT_BASE_X words before it, i.e. its index in each list of values (0 = carried in).
        count = self.scratch("count", n, np.int64)
        np.take(_COUNTERS, typ, out=count, mode="clip")
        np.cumsum(count, out=count)
        np.subtract(typ, 2, out=flag)  # pixel words: type 2..5 (the subtraction wraps below 2)
        is_px = self.scratch("is_px", n, np.bool_)
        np.less(flag, 4, out=is_px)
        pos = np.flatnonzero(is_px)
        m = len(pos)
        pw = np.take(w, pos, out=self.scratch("pw", m, np.uint16), mode="clip")
        pc = np.take(count, pos, out=self.scratch("pc", m, np.int64), mode="clip")
        # list values: rows as their words (y = word & 0x7FF, EM row if bit 12), absolute times
        np.less(w, 0x2000, out=is_px)
        rows = self.scratch("rows", int(np.count_nonzero(is_px)) + 1, np.uint16)
        rows[0] = self.y | (0 if self.row_cd else 0x1000)
        np.compress(is_px, w, out=rows[1:])
        if len(rows) > 1:
            self.y, self.row_cd = int(rows[-1]) & 0x7FF, int(rows[-1]) < 0x1000
        np.equal(typ, 6, out=is_px)
        is_high = self.scratch("is_high", n, np.bool_)
        np.equal(typ, 8, out=is_high)
        is_px |= is_high
        times = self._times(np.compress(is_px, w))
        if not m:
            return alloc_events(0)
        # per pixel word: row word, time, and the fields below
        idx = self.scratch("idx", m, np.int64)
        np.bitwise_and(pc, _FIELD, out=idx)
        row = np.take(rows, idx, out=self.scratch("row", m, np.uint16), mode="clip")
        np.right_shift(pc, 21, out=idx)
        idx &= _FIELD
        t_px = np.take(times, idx, out=self.scratch("t_px", m, np.int64), mode="clip")
        np.right_shift(pc, 42, out=idx)
        x, pol, mask = self._pixels(pw, idx)
        # no events from pixel words in EM rows
        cd = self.scratch("cd", m, np.uint16)
        np.less(row, 0x1000, out=cd)
        np.negative(cd.view(np.int16), out=cd.view(np.int16))
        mask &= cd
        # each pixel word's first event as the two uint64 of a 16-byte record: t, x | y << 16 | p << 32
        # (x as uint16: a vector base beyond 16 bits wraps as a uint16 x does)
        rec = self.scratch("rec", 2 * m, np.uint64).reshape(m, 2)
        rec[:, 0] = t_px.view(np.uint64)
        lo = self.scratch("lo", m, np.uint64)
        hi = self.scratch("hi", m, np.uint64)
        np.bitwise_and(x, 0xFFFF, out=lo, casting="unsafe")
        np.bitwise_and(row, 0x7FF, out=hi, casting="unsafe")
        hi <<= 16
        lo |= hi
        np.copyto(hi, pol, casting="unsafe")
        hi <<= 32
        np.bitwise_or(lo, hi, out=rec[:, 1])
        # each set bit of a mask is one event at x + bit number
        counts = np.bitwise_count(mask, out=self.scratch("counts", m, np.uint8))
        live = np.flatnonzero(np.not_equal(mask, 0, out=self.scratch("live", m, np.bool_)))
        n_ev = int(counts.sum(dtype=np.int64))
        out = self.alloc(n_ev)
        o64 = out.view(np.uint64).reshape(n_ev, 2)
        if n_ev == len(live):  # one event per word (ADDR_X, single-bit vectors): no expansion
            np.take(rec, live, axis=0, out=o64, mode="clip")
            bit = _BITS.take(_BITS_AT.take(mask.take(live)))
            np.add(out["x"], bit, out=out["x"])
            return out
        # event k belongs to pixel word pix[k]: a cumulative sum over events of markers placed at
        # each live word's first event, holding the distance to the previous live word
        first = self.scratch("first", m, np.int64)
        np.cumsum(counts, out=first)
        first -= counts
        first_l = np.take(first, live, out=self.scratch("first_l", len(live), np.int64), mode="clip")
        marker = self.scratch("marker", n_ev, np.intp)
        marker.fill(0)
        gaps = self.scratch("gaps", len(live), np.intp)
        gaps[0] = live[0]
        np.subtract(live[1:], live[:-1], out=gaps[1:])
        marker[first_l] = gaps
        pix = np.cumsum(marker, out=marker)
        np.take(rec, pix, axis=0, out=o64, mode="clip")
        # bit number of event k: entry k - first[pix] + _BITS_AT[mask[pix]] of _BITS
        start = np.take(_BITS_AT, mask, out=self.scratch("start", m, np.int64), mode="clip")
        start -= first
        bit_at = np.take(start, pix, out=self.scratch("bit_at", n_ev, np.int64), mode="clip")
        bit_at += self._arange(n_ev)
        bit = np.take(_BITS, bit_at, out=self.scratch("bit", n_ev, np.uint16), mode="clip")
        np.add(out["x"], bit, out=out["x"])
        return out

    def _arange(self, n: int) -> np.ndarray:
        """``np.arange(n)`` (int64) as a view of an array kept by this decoder (read-only use)."""
        have = self._scratch.get("arange")
        if have is None or len(have) < n:
            self._scratch["arange"] = have = np.arange(n, dtype=np.int64)
        return have[:n]

    def _decode_jit(self, w: np.ndarray, offset: int) -> np.ndarray:
        """``_decode`` by the compiled loop of ``evt3_jit``: same events, state and errors."""
        assert evt3_jit.count_events is not None and evt3_jit.decode_words is not None
        n_ev, bad = evt3_jit.count_events(w, int(self.row_cd))
        out = self.alloc(n_ev)
        state = np.array(
            [self.high, self.loops, self.low, self.y, int(self.row_cd), self.base, self.pol, self.t_offset],
            dtype=np.int64,
        )
        evt3_jit.decode_words(w[: bad if bad >= 0 else len(w)], state, out.view(np.uint64).reshape(n_ev, 2))
        self.high, self.loops, self.low, self.y = (int(v) for v in state[:4])
        self.row_cd, self.base, self.pol = bool(state[4]), int(state[5]), int(state[6])
        if bad >= 0:
            raise format_error(
                f"EVT 3.0: undefined word type 0x{int(w[bad]) >> 12:X} (word 0x{int(w[bad]):04X})",
                offset + 2 * bad,
                out,
            )
        return out

    def _times(self, tw: np.ndarray) -> np.ndarray:
        """Absolute time (µs) after each time word ``tw``, with the carried-in time at index 0.

        A time-high word that changes time-high sets time-low to 0; one that repeats it changes
        nothing. So times are ``high_abs[highs before] << 12 + lows[low setters before]``.
        """
        k = len(tw)
        times = np.empty(k + 1, dtype=np.int64)
        hpos = np.flatnonzero(tw >= 0x8000)
        carried = ((self.high + (self.loops << 12)) << 12) + self.t_offset
        times[0] = carried + self.low
        if not len(hpos):  # time-low words only
            np.bitwise_and(tw, 0xFFF, out=times[1:], casting="unsafe")
            times[1:] += carried
            self.low = int(times[-1] - carried)
            return times
        high = (tw.take(hpos) & 0xFFF).astype(np.int64)
        prev = np.empty(len(high), dtype=np.int64)
        prev[0] = self.high
        prev[1:] = high[:-1]
        loops = np.cumsum(prev >= high + 2048, dtype=np.int64)
        loops += self.loops
        high_abs = np.empty(len(high) + 1, dtype=np.int64)
        high_abs[0] = carried - self.t_offset
        np.left_shift(loops, 12, out=high_abs[1:])
        high_abs[1:] += high
        high_abs[1:] <<= 12
        high_abs += self.t_offset
        # low setters: time-low words with their value, changing time-high words with 0
        val = (tw & 0xFFF).astype(np.int64)
        setter = np.ones(k, dtype=np.bool_)
        setter[hpos] = prev != high
        val[hpos] = 0
        lows = np.empty(int(np.count_nonzero(setter)) + 1, dtype=np.int64)
        lows[0] = self.low
        np.compress(setter, val, out=lows[1:])
        is_high = np.zeros(k, dtype=np.int64)
        is_high[hpos] = 1
        np.cumsum(is_high, out=is_high)
        np.take(high_abs, is_high, out=times[1:], mode="clip")
        np.cumsum(setter, out=is_high)
        times[1:] += lows.take(is_high)
        self.high, self.loops = int(high[-1]), int(loops[-1])
        self.low = int(lows[-1])
        return times

    def _pixels(self, pw: np.ndarray, base_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel word ``pw``: x of its first bit and polarity (int32), and its valid mask (uint16).

        ADDR_X: its own x and polarity, mask 1. VECT_BASE_X: mask 0 (no event), it sets the base.
        VECT_12/VECT_8: the current base, advanced by 12/8 per vector word since the last
        VECT_BASE_X, and the polarity of that VECT_BASE_X. ``base_idx`` is the number of
        VECT_BASE_X words before each word in the block.
        """
        m = len(pw)
        typ = self.scratch("ptyp", m, np.uint16)
        np.right_shift(pw, 12, out=typ)
        # x advance of a vector word: 12 (VECT_12, type 4), 8 (VECT_8, type 5), else 0
        step = self.scratch("step", m, np.int32)
        tmp = self.scratch("ptmp", m, np.uint16)
        np.left_shift(typ, 2, out=tmp)
        np.subtract(28, tmp, out=tmp)
        np.right_shift(typ, 2, out=step, casting="unsafe")
        step *= tmp
        # int32 is ample: a block holds far fewer than 2^31 / 12 vector words
        before = self.scratch("before", m, np.int32)
        np.cumsum(step, out=before)
        end = int(before[-1])
        before -= step
        bpos = np.flatnonzero(np.equal(typ, 3, out=self.scratch("is_base", m, np.bool_)))
        bw = pw.take(bpos)
        # per base (index 0 = carried in): (x - steps before it) << 1 | polarity
        bases = np.empty(len(bpos) + 1, dtype=np.int32)
        bases[0] = (self.base << 1) | self.pol
        np.bitwise_and(bw, 0x7FF, out=bases[1:], casting="unsafe")
        bases[1:] -= before.take(bpos)
        bases[1:] <<= 1
        bases[1:] |= (bw >> 11) & 1
        last = int(bases[-1])
        self.base, self.pol = (last >> 1) + end, last & 1
        x = np.take(bases, base_idx, out=self.scratch("x", m, np.int32), mode="clip")
        pol = self.scratch("pol", m, np.int32)
        np.bitwise_and(x, 1, out=pol)
        x >>= 1
        x += before
        # ADDR_X (type 2): its own x and polarity, by a branch-free blend on the type test
        is_addr = self.scratch("is_addr", m, np.int32)
        np.equal(typ, 2, out=is_addr, casting="unsafe")
        own = self.scratch("own", m, np.int32)
        np.bitwise_and(pw, 0x7FF, out=own, casting="unsafe")
        own -= x
        own *= is_addr
        x += own
        np.right_shift(pw, 11, out=own, casting="unsafe")
        own &= 1
        own -= pol
        own *= is_addr
        pol += own
        # valid mask: 0xFFF (VECT_12), 0xFF (VECT_8), 1 (ADDR_X), 0 (VECT_BASE_X)
        mask = self.scratch("mask", m, np.uint16)
        np.bitwise_and(typ, 1, out=tmp)
        tmp *= 0xF00
        np.subtract(0xFFF, tmp, out=tmp)
        np.right_shift(typ, 2, out=mask)
        mask *= tmp
        mask &= pw
        np.bitwise_or(mask, is_addr, out=mask, casting="unsafe")
        return x, pol, mask


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

"""The vectorised decoders against plain per-word reference loops, block by block.

EVT 3.0 has two implementations (numpy, and the optional numba loop of ``evt3_jit``); both must give
the events of a straightforward Python state machine, with the same errors, for random word
streams cut into random blocks. DAT and EVT 2.0 are checked the same way, and no decoder may hand
out views of the work arrays it reuses between blocks.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from runtime.events import dat, evt2, evt3, evt3_jit
from runtime.events.dtype import alloc_events
from runtime.events.reader import Header
from spikeforge.errors import EventFormatError

HAS_NUMBA = importlib.util.find_spec("numba") is not None
EVT3_PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed"))]
JIT_PATHS = EVT3_PATHS  # EVT 2.0 and DAT: numpy, and the optional loops of ``cd_jit``


def events_of(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    out = alloc_events(len(rows))
    if rows:
        t, x, y, p = (np.array(c) for c in zip(*rows, strict=True))
        out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in ("t", "x", "y", "p"))


def evt3_reference(words: np.ndarray, t_offset: int = 0) -> tuple[np.ndarray, int | None]:
    """EVT 3.0 word by word (openeb's rules as in ``evt3``'s docstring); (events, bad word index)."""
    rows: list[tuple[int, int, int, int]] = []
    high = loops = low = y = base = pol = 0
    cd = started = True
    started = False
    for i, w in enumerate(int(v) for v in words):
        typ = w >> 12
        if typ in (0x9, 0xB, 0xC):
            return events_of(rows), i
        if not started:
            if typ != 8:
                continue
            started, high = True, w & 0xFFF
        t = ((high + (loops << 12)) << 12) + low + t_offset
        if typ <= 1:
            y, cd = w & 0x7FF, typ == 0
        elif typ == 2:
            if cd:
                rows.append((t, w & 0x7FF, y, (w >> 11) & 1))
        elif typ == 3:
            base, pol = w & 0x7FF, (w >> 11) & 1
        elif typ in (4, 5):
            mask = w & (0xFFF if typ == 4 else 0xFF)
            for bit in range(12):
                if cd and mask >> bit & 1:
                    rows.append((t, (base + bit) & 0xFFFF, y, pol))
            base += 12 if typ == 4 else 8
        elif typ == 6:
            low = w & 0xFFF
        elif typ == 8:
            h = w & 0xFFF
            loops += high >= h + 2048
            low = low if h == high else 0
            high = h
    return events_of(rows), None


def random_evt3(rng: np.random.Generator, n: int, bad: bool = False) -> np.ndarray:
    kinds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0xA, 0xD, 0xE, 0xF]
    odds = [0.25, 0.02, 0.15, 0.12, 0.14, 0.05, 0.12, 0.01, 0.06, 0.02, 0.02, 0.02, 0.02]
    typ = rng.choice(kinds, n, p=odds).astype(np.uint16)
    if bad:
        typ[rng.integers(0, n)] = rng.choice([0x9, 0xB, 0xC])
    w = (typ << 12) | rng.integers(0, 1 << 12, n, dtype=np.uint16)
    # time-high mostly creeping forward (repeats, steps, and the occasional wrap)
    high = (np.cumsum(rng.integers(0, 2, n)) + int(rng.integers(0, 4096))) % 4096
    w[typ == 8] = 0x8000 | high[typ == 8].astype(np.uint16)
    return w


def decode_blocks(decoder, data: bytes, block: int) -> np.ndarray:
    """Feed ``data`` in blocks as ``decode_file`` does; keeps every returned array (must not change)."""
    parts, kept, pending, offset = [], [], b"", 0
    try:
        for i in range(0, len(data), block):
            buf = pending + data[i : i + block]
            events, used = decoder.decode(buf, offset)
            parts.append(events)
            kept.append(events.copy())
            offset += used
            pending = buf[used:]
        decoder.finish(pending, offset)
    finally:
        # nothing handed out may be overwritten by a later block (work arrays are reused)
        assert all(same(a, b) for a, b in zip(parts, kept, strict=True))
    return np.concatenate(parts) if parts else alloc_events(0)


@pytest.mark.parametrize("jit", EVT3_PATHS)
@pytest.mark.parametrize("seed", range(24))
def test_evt3_matches_reference_loop(seed, jit):
    rng = np.random.default_rng(seed)
    words = random_evt3(rng, int(rng.integers(1, 4000)), bad=seed % 4 == 0)
    expected, bad = evt3_reference(words, t_offset=1 << 24 if seed % 3 == 0 else 0)
    header = Header("evt3", 0, meta={"spikeforge_t_offset": str(1 << 24)} if seed % 3 == 0 else {})
    decoder = evt3.Decoder(header, jit=jit)
    assert decoder.jit == jit
    block = int(rng.choice([2, 6, 64, 2000, 1 << 16]))
    data = words.astype("<u2").tobytes()
    if bad is None:
        assert same(decode_blocks(decoder, data, block), expected)
        return
    with pytest.raises(EventFormatError) as info:
        got = decode_blocks(decoder, data, block)
    assert info.value.offset == 2 * bad
    assert f"0x{int(words[bad]) >> 12:X}" in str(info.value)
    # the events of the failing block before the defect ride on the error
    got = info.value.events
    assert same(got, expected[len(expected) - len(got) :])


def test_evt3_numpy_splits_blocks_beyond_its_counter_width(monkeypatch):
    rng = np.random.default_rng(7)
    words = random_evt3(rng, 20_000)
    expected, _ = evt3_reference(words)
    monkeypatch.setattr(evt3, "MAX_BLOCK_WORDS", 1000)
    got = decode_blocks(evt3.Decoder(Header("evt3", 0), jit=False), words.astype("<u2").tobytes(), 1 << 20)
    assert same(got, expected)


def test_evt3_jit_can_be_disabled(monkeypatch):
    monkeypatch.setenv("SPIKEFORGE_EVENTS_JIT", "0")
    monkeypatch.setattr(evt3_jit, "count_events", None)
    monkeypatch.setattr(evt3_jit, "decode_words", None)
    assert not evt3.Decoder(Header("evt3", 0)).jit
    assert not evt3.Decoder(Header("evt3", 0), jit=True).jit


def evt2_reference(words: np.ndarray) -> np.ndarray:
    rows, th, loops = [], -1, 0
    for w in (int(v) for v in words):
        typ = w >> 28
        if typ == 8:
            h = w & 0x0FFFFFFF
            if th >= 0 and (th - h) * 64 >= evt2._MAX_TS - evt2._LOOP_THRESHOLD_US:
                loops += 1
            th = h
        elif typ <= 1 and th >= 0:
            rows.append(((th << 6) + ((w >> 22) & 63) + loops * evt2.LOOP_US, (w >> 11) & 0x7FF, w & 0x7FF, typ))
    return events_of(rows)


@pytest.mark.parametrize("jit", JIT_PATHS)
@pytest.mark.parametrize("seed", range(20))
def test_evt2_matches_reference_loop(seed, jit):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    typ = rng.choice([0, 1, 8, 0xA, 0xE], n, p=[0.45, 0.45, 0.06, 0.02, 0.02]).astype(np.uint32)
    words = (typ << 28) | rng.integers(0, 1 << 28, n, dtype=np.uint32)
    high = (np.cumsum(rng.integers(0, 3, n)) + (1 << 28) - 2000) % (1 << 28)  # wraps
    words[typ == 8] = 0x80000000 | high[typ == 8].astype(np.uint32)
    block = int(rng.choice([4, 12, 400, 1 << 16]))
    decoder = evt2.Decoder(Header("evt2", 0), jit=jit)
    assert decoder.jit == jit
    got = decode_blocks(decoder, words.astype("<u4").tobytes(), block)
    assert same(got, evt2_reference(words))


@pytest.mark.parametrize("jit", JIT_PATHS)
def test_evt2_undefined_word_error_and_partial_events(jit):
    rng = np.random.default_rng(3)
    words = np.concatenate([[0x80000010], (np.uint32(1) << 28) | rng.integers(0, 1 << 22, 50, dtype=np.uint32),
                            [0x30000000], [0x10000001]]).astype("<u4")
    decoder = evt2.Decoder(Header("evt2", 0), jit=jit)
    with pytest.raises(EventFormatError) as err:
        decoder.decode(words.tobytes(), 100)
    assert err.value.offset == 100 + 4 * 51
    assert len(err.value.events) == 50
    assert same(err.value.events, evt2_reference(words[:51]))


@pytest.mark.parametrize("jit", JIT_PATHS)
@pytest.mark.parametrize("seed", range(20))
def test_dat_matches_reference_loop(seed, jit):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    start = (1 << 32) - int(rng.integers(0, 3000)) if seed % 2 else int(rng.integers(0, 1 << 32))
    t = (np.cumsum(rng.integers(0, 3, n)) + start) % (1 << 32)
    if seed % 3 == 0:
        t[rng.integers(0, n)] = max(0, int(t[0]) - 5)  # a small step back is not a wrap
    data_word = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    records = (t.astype(np.uint64) | (data_word << 32)).astype("<u8")
    rows, prev, loops = [], -1, 0
    for ti, d in zip(t.tolist(), data_word.tolist(), strict=True):
        loops += prev >= 0 and ti < prev - (1 << 31)
        prev = ti
        rows.append((ti + (loops << 32), d & 0x3FFF, (d >> 14) & 0x3FFF, int(d >> 28 != 0)))
    block = int(rng.choice([8, 24, 800, 1 << 16]))
    decoder = dat.Decoder(Header("dat", 0), jit=jit)
    assert decoder.jit == jit
    got = decode_blocks(decoder, records.tobytes(), block)
    assert same(got, events_of(rows))

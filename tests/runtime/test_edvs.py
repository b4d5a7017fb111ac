"""eDVS UART codec: round trips of every variant, unwrapping, resync after garbage, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.edvs import FORMATS, EdvsDecoder, EdvsFormat, encode_events, get_format
from runtime.transforms import EVENT_DTYPE


def random_events(n: int, seed: int, max_gap: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, 128, n)
    ev["y"] = rng.integers(0, 128, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.cumsum(rng.integers(0, max_gap, n))
    return ev


def assert_events(a: np.ndarray, b: np.ndarray, time: bool = True) -> None:
    for f in ("x", "y", "p") + (("t",) if time else ()):
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_round_trip_every_variant(name: str) -> None:
    fmt = FORMATS[name]
    # gaps below the wrap period of the smallest timestamp, so unwrapping is exact
    ev = random_events(3000, 1, 200 if fmt.ts_bytes else 1)
    data = encode_events(ev, fmt)
    assert len(data) == ev.size * fmt.event_bytes
    dec = EdvsDecoder(fmt)
    out = dec.feed(data, t_host_us=0)
    assert_events(out, ev, time=fmt.ts_bytes > 0)
    assert dec.discarded == 0 and dec.pending == 0 and dec.decoded == ev.size


def test_sixteen_bit_timestamps_unwrap_across_calls() -> None:
    ev = random_events(5000, 2, 60_000)  # spans ~150 s: many 65.536 ms wraps
    data = encode_events(ev, "E2")
    dec = EdvsDecoder("E2")
    out = np.concatenate([dec.feed(data[i : i + 999]) for i in range(0, len(data), 999)])
    np.testing.assert_array_equal(out["t"], ev["t"])


def test_resync_after_garbage_counts_discarded_bytes() -> None:
    fmt = get_format("edvstools-E1")  # 4 bytes: y|0x80, p|x, ts_hi, ts_lo
    ev = random_events(100, 3, 50)
    ev["x"] &= 0x3F  # x bytes without bit 7 (OFF events, x < 64) cannot fake a start byte
    ev["p"] = 0
    ev["t"] &= 0x3FFF
    ev["t"] = np.sort(ev["t"])
    data = bytearray(encode_events(ev, fmt))
    garbage = b"E+\n\x01\x02"  # the device's echo and junk, all without bit 7
    stream = garbage + bytes(data[:40]) + b"\x11\x22\x33" + bytes(data[40:])
    dec = EdvsDecoder(fmt)
    out = dec.feed(stream)
    assert_events(out, ev)
    assert dec.discarded == len(garbage) + 3
    assert dec.resyncs == 2


def test_resync_skips_a_cut_event() -> None:
    ev = random_events(50, 4, 50)
    ev["t"] %= 1 << 15
    ev["t"] = np.sort(ev["t"])
    ev["x"] &= 0x3F
    ev["p"] = 0
    data = encode_events(ev, "E2")
    # drop the last two bytes of event 10: its remains plus event 11 misalign, then resync
    broken = data[: 10 * 4 + 2] + data[11 * 4 :]
    dec = EdvsDecoder("E2")
    out = dec.feed(broken)
    keep = np.r_[0:10, 11:50]
    assert out.size >= 47
    # every event after the damage region is decoded exactly
    np.testing.assert_array_equal(out["x"][-38:], ev["x"][keep][-38:])
    assert dec.discarded > 0


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 600), max_size=8),
    name=st.sampled_from(["E0", "E1", "E2", "E3", "E4", "libcaer-E2"]),
    noise=st.binary(max_size=12),
)
def test_feed_is_chunk_invariant(cuts: list[int], name: str, noise: bytes) -> None:
    fmt = FORMATS[name]
    ev = random_events(100, 5, 100 if fmt.ts_bytes else 1)
    data = noise + encode_events(ev, fmt)
    whole = EdvsDecoder(fmt)
    a = whole.feed(data, t_host_us=7)
    chunked = EdvsDecoder(fmt)
    edges = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    b = np.concatenate(
        [chunked.feed(data[lo:hi], t_host_us=7) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    )
    assert_events(a, b)
    assert whole.discarded == chunked.discarded


def test_layout_options() -> None:
    fmt = EdvsFormat(
        "x", ts_bytes=3, byteorder="little", y_first=False, sync_bit=0, polarity_bit=0, on_value=0
    )
    ev = random_events(200, 6, 1000)
    dec = EdvsDecoder(fmt)
    assert_events(dec.feed(encode_events(ev, fmt)), ev)
    raw = encode_events(ev[:1], fmt)
    assert raw[0] & 1 == 1  # sync bit 0 set on the first byte
    assert raw[0] >> 1 == ev["x"][0]  # x first


def test_get_format_overrides_and_errors() -> None:
    f = get_format("E2", ts_bytes="3", byteorder="little", y_first="false")
    assert (f.ts_bytes, f.byteorder, f.y_first, f.event_bytes) == (3, "little", False, 5)
    with pytest.raises(ValueError, match="unknown eDVS format 'E9'"):
        get_format("E9")
    with pytest.raises(ValueError, match="unknown eDVS format field 'bogus'"):
        get_format("E2", bogus=1)
    with pytest.raises(ValueError, match="ts_bytes=5"):
        EdvsFormat(ts_bytes=5)
    with pytest.raises(ValueError, match="delta"):
        ev = random_events(3, 0, 2)
        ev["t"] = [0, 10, 1000]  # a gap above 255 ticks does not fit one byte
        encode_events(ev, "E1")

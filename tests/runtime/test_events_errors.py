"""Corrupt and truncated files: EventFormatError with a byte offset, and every event before it kept."""

from __future__ import annotations

import struct
import sys
import warnings

import numpy as np
import pytest

from runtime.events import (
    EVENT_DTYPE,
    EventFormatWarning,
    iter_events,
    read_events,
    read_header,
    write_events,
)
from spikeforge.errors import EventFormatError

#: (format, extension, largest record in bytes) of the writable formats
FORMATS = [("evt2", "raw", 4), ("evt3", "raw", 2), ("aedat4", "aedat4", 1 << 20), ("npy", "npy", 16)]


def events(n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(1)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, 300, n)
    ev["y"] = rng.integers(0, 200, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, 100_000, n))
    return ev


def small_packets(monkeypatch) -> None:
    from runtime.events import aedat4

    monkeypatch.setattr(aedat4, "EVENTS_PER_PACKET", 16)


def is_prefix(part: np.ndarray, whole: np.ndarray) -> bool:
    return len(part) <= len(whole) and bool(np.array_equal(part, whole[: len(part)]))


@pytest.mark.parametrize(("fmt", "ext", "record"), FORMATS)
def test_truncation_at_every_byte(tmp_path, monkeypatch, fmt, ext, record):
    small_packets(monkeypatch)
    ev = events(24)
    full = tmp_path / f"full.{ext}"
    write_events(full, ev, format=fmt)
    data = full.read_bytes()
    start = read_header(full).data_offset
    whole = read_events(full)
    cut_path = tmp_path / f"cut.{ext}"
    for cut in range(start, len(data)):
        cut_path.write_bytes(data[:cut])
        try:
            got = read_events(cut_path, format=fmt)
        except EventFormatError as err:
            assert err.offset is not None and cut - record <= err.offset <= cut, (cut, err.offset, str(err))
            assert "truncated" in str(err)
            assert is_prefix(err.events, whole), cut
            if cut % 5:
                continue
            with pytest.warns(EventFormatWarning, match="truncated"):
                kept = read_events(cut_path, format=fmt, on_error="stop")
            np.testing.assert_array_equal(kept, err.events)
        else:
            # a cut on a record boundary of a headerless stream is indistinguishable from the end
            assert fmt in ("evt2", "evt3", "aedat4") and is_prefix(got, whole), cut


@pytest.mark.parametrize(("fmt", "ext", "record"), FORMATS)
def test_truncated_header(tmp_path, fmt, ext, record):
    path = tmp_path / f"h.{ext}"
    write_events(path, events(), format=fmt)
    data = path.read_bytes()
    start = read_header(path).data_offset
    for cut in (1, start // 2, start - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(EventFormatError):
            read_events(path, format=fmt)


@pytest.mark.parametrize(("fmt", "ext", "record"), FORMATS)
def test_iter_events_yields_complete_chunks_then_raises(tmp_path, monkeypatch, fmt, ext, record):
    small_packets(monkeypatch)
    ev = events(200)
    path = tmp_path / f"i.{ext}"
    write_events(path, ev, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1])
    seen: list[np.ndarray] = []
    with pytest.raises(EventFormatError) as info:
        for chunk in iter_events(path, chunk_events=32, format=fmt):
            assert len(chunk) == 32
            seen.append(chunk)
    decoded = np.concatenate(seen + [info.value.events])
    assert is_prefix(decoded, ev) and len(decoded) >= len(ev) - 16
    with pytest.warns(EventFormatWarning):
        kept = np.concatenate(list(iter_events(path, chunk_events=32, format=fmt, on_error="stop")))
    np.testing.assert_array_equal(kept, decoded)


def test_evt2_garbage_word_in_the_middle(tmp_path):
    ev = events(100)
    path = tmp_path / "g.raw"
    write_events(path, ev, format="evt2")
    start = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    k = 50
    data[start + 4 * k : start + 4 * k + 4] = struct.pack("<I", 0x3000_0000)
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="undefined word type 0x3") as info:
        read_events(path)
    assert info.value.offset == start + 4 * k
    assert 0 < len(info.value.events) < 100 and is_prefix(info.value.events, ev)


def test_evt3_garbage_word_in_the_middle(tmp_path):
    ev = events(100)
    path = tmp_path / "g3.raw"
    write_events(path, ev, format="evt3")
    start = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    k = 120
    data[start + 2 * k : start + 2 * k + 2] = struct.pack("<H", 0xB123)
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="undefined word type 0xB") as info:
        read_events(path)
    assert info.value.offset == start + 2 * k
    assert 0 < len(info.value.events) < 100 and is_prefix(info.value.events, ev)


def test_evt21_garbage_word(tmp_path):
    words = [(0x8 << 28 | 1) << 32, ((1 << 28) | (3 << 11) | 4) << 32 | 1, (0x3 << 28) << 32]
    path = tmp_path / "g21.raw"
    path.write_bytes(b"% evt 2.1\n% end\n" + struct.pack("<3Q", *words))
    with pytest.raises(EventFormatError, match="undefined word type 0x3") as info:
        read_events(path)
    assert info.value.offset == 16 + 16
    assert [(int(e["x"]), int(e["y"])) for e in info.value.events] == [(3, 4)]


@pytest.mark.parametrize("field", ["size", "identifier"])
def test_aedat4_corrupt_packet(tmp_path, monkeypatch, field):
    small_packets(monkeypatch)
    ev = events(64)
    path = tmp_path / "c.aedat4"
    write_events(path, ev)
    start = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    packet = 8 + 32 + 16 * 16
    second = start + packet
    if field == "size":
        data[second + 4 : second + 8] = struct.pack("<i", -5)
    else:
        data[second + 8 + 8 : second + 8 + 12] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="corrupt") as info:
        read_events(path)
    assert info.value.offset == second
    np.testing.assert_array_equal(info.value.events, ev[:16])


def test_aedat4_corrupt_lz4_payload(tmp_path):
    pytest.importorskip("lz4")
    path = tmp_path / "z.aedat4"
    write_events(path, events(), format="aedat4-lz4")
    start = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    data[start + 8 + 4 : start + 8 + 12] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="lz4 decompression failed") as info:
        read_events(path)
    assert info.value.offset == start


def test_missing_codec_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("lz4")
    path = tmp_path / "m.aedat4"
    write_events(path, events(), format="aedat4-lz4")
    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    with pytest.raises(EventFormatError, match=r'pip install "spikeforge\[events\]"'):
        read_events(path)


def test_aedat31_corrupt_packet_header(tmp_path):
    head = b"#!AER-DAT3.1\r\n#!END-HEADER\r\n"
    good = struct.pack("<hhiiiiii", 1, 0, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", (5 << 17) | (6 << 2) | 1, 9)
    bad = struct.pack("<hhiiiiii", 1, 0, 8, 4, 0, 1, 5, 1)  # number > capacity
    path = tmp_path / "b.aedat"
    path.write_bytes(head + good + bad)
    with pytest.raises(EventFormatError, match="corrupt packet header") as info:
        read_events(path)
    assert info.value.offset == len(head) + len(good)
    assert [(int(e["x"]), int(e["y"]), int(e["t"])) for e in info.value.events] == [(5, 6, 9)]


def test_dat_unsupported_event_size(tmp_path):
    path = tmp_path / "s.dat"
    path.write_bytes(b"% Version 2\n" + bytes([0, 12]) + b"\0" * 24)
    with pytest.raises(EventFormatError, match="event size 12") as info:
        read_events(path)
    assert info.value.offset == len(b"% Version 2\n") + 1


@pytest.mark.parametrize("forced", ["aedat4", "aedat31", "aedat2", "npy"])
def test_wrong_magic(tmp_path, forced):
    path = tmp_path / "x.raw"
    write_events(path, events(), format="evt3")
    with pytest.raises(EventFormatError) as info:
        read_events(path, format=forced)
    assert info.value.offset == 0


def test_unknown_files(tmp_path):
    path = tmp_path / "u.bin"
    path.write_bytes(b"hello world, not events")
    with pytest.raises(EventFormatError, match="unknown event file"):
        read_events(path)
    path.write_bytes(b"#!AER-DAT1.0\r\n")
    with pytest.raises(EventFormatError, match="not supported"):
        read_events(path)
    path.write_bytes(b"% date today\n% end\n\0\0\0\0")
    with pytest.raises(EventFormatError, match="format='evt2'"):
        read_events(path)
    with pytest.raises(ValueError, match="unknown event format 'evt9'"):
        read_events(path, format="evt9")
    with pytest.raises(ValueError, match="on_error"):
        read_events(path, format="evt2", on_error="ignore")


def test_npy_errors(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10))
    with pytest.raises(EventFormatError, match="structured array"):
        read_events(path)
    np.save(path, np.zeros(3, dtype=[("x", "u2"), ("y", "u2"), ("t", "f8"), ("p", "i1")]))
    with pytest.raises(EventFormatError, match="integer microseconds"):
        read_events(path)
    np.save(path, np.zeros(3, dtype=[("x", "u2"), ("y", "u2"), ("p", "i1")]))
    with pytest.raises(EventFormatError, match="no field for 't'"):
        read_events(path)
    bad = tmp_path / "b.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(EventFormatError, match="npz"):
        read_events(bad)


def test_errors_never_leak_numpy_tracebacks(tmp_path):
    """Random bytes after valid headers: only EventFormatError (or a clean decode), never another type."""
    rng = np.random.default_rng(7)
    headers = {
        "evt2": b"% evt 2.0\n% end\n",
        "evt21": b"% evt 2.1\n% end\n",
        "evt3": b"% evt 3.0\n% end\n",
        "dat": b"% Version 2\n\x00\x08",
        "aedat2": b"#!AER-DAT2.0\r\n",
        "aedat31": b"#!AER-DAT3.1\r\n#!END-HEADER\r\n",
    }
    path = tmp_path / "r.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fmt, head in headers.items():
            for size in (0, 1, 7, 64, 333):
                path.write_bytes(head + rng.bytes(size))
                try:
                    read_events(path, format=fmt)
                except EventFormatError:
                    pass

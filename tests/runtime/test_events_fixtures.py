"""Decoders against small files built by hand from the documented byte layouts.

Each fixture is decoded whole, and again through blocks of every small size, so that state carried
between blocks (time-high words, rows, vector bases, wrap counts, split packets) is exercised.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from runtime.events import read_events, read_header
from runtime.events.api import open_blocks
from runtime.events.dtype import concat_events
from runtime.events.reader import collect


def rows(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"])) for e in events]


def decode_in_blocks(path, fmt: str, block: int) -> list[tuple[int, int, int, int]]:
    _, blocks = open_blocks(path, fmt, block)
    return rows(collect(blocks))


def check(path, fmt: str, expected: list[tuple[int, int, int, int]], granule: int) -> None:
    assert rows(read_events(path, format=fmt)) == expected
    assert rows(read_events(path)) == expected  # detection
    for k in range(1, 6):
        assert decode_in_blocks(path, fmt, k * granule) == expected, f"block {k * granule}"


# --- Prophesee ---------------------------------------------------------------------------------
def evt2_cd(p: int, ts6: int, x: int, y: int) -> int:
    return (p << 28) | (ts6 << 22) | (x << 11) | y


def test_evt2_hand_built(tmp_path):
    words = [
        evt2_cd(1, 3, 9, 9),  # before the first time-high: no time, dropped (openeb)
        0x80000000 | 10,  # time-high 10 -> 640 µs
        evt2_cd(1, 5, 100, 7),
        0xA0000000 | (5 << 22) | (1 << 8) | 1,  # external trigger: skipped
        evt2_cd(0, 63, 2047, 2047),
        0xE0000000,  # OTHERS: skipped
        0x80000000 | 11,
        evt2_cd(0, 0, 0, 0),
    ]
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 2048x2048\n% end\n" + struct.pack(f"<{len(words)}I", *words))
    expected = [(100, 7, 645, 1), (2047, 2047, 703, 0), (0, 0, 704, 0)]
    check(path, "evt2", expected, 4)
    header = read_header(path)
    assert (header.width, header.height) == (2048, 2048)


def evt21_word(high: int, mask: int) -> int:
    return (high << 32) | mask


@pytest.mark.parametrize("legacy", [False, True])
def test_evt21_hand_built(tmp_path, legacy):
    th = 0x8 << 28 | 10
    cd_on = (1 << 28) | (5 << 22) | (100 << 11) | 7
    cd_off = (0 << 28) | (6 << 22) | (2000 << 11) | 8
    pairs = [(th, 0), (cd_on, 0b1011), (0xE << 28, 0xFFFF), (cd_off, 1 << 31 | 1)]
    if legacy:
        data = b"".join(struct.pack("<II", hi, lo) for hi, lo in pairs)
        head = b"% evt 2.1\n% format EVT21;height=720;width=1280;endianness=legacy\n% end\n"
    else:
        data = b"".join(struct.pack("<Q", evt21_word(hi, lo)) for hi, lo in pairs)
        head = b"% evt 2.1\n% format EVT21;height=720;width=1280\n% end\n"
    path = tmp_path / "b.raw"
    path.write_bytes(head + data)
    expected = [(100, 7, 645, 1), (101, 7, 645, 1), (103, 7, 645, 1), (2000, 8, 646, 0), (2031, 8, 646, 0)]
    check(path, "evt21", expected, 8)
    if legacy:
        # forcing the legacy layout on a legacy file changes nothing
        assert rows(read_events(path, format="evt21-legacy")) == expected


def test_evt3_hand_built(tmp_path):
    w = [
        0x2000 | 5,  # ADDR_X before any time-high: skipped
        0x8000 | 1,  # time-high 1 -> 4096 µs
        0x6000 | 10,  # time-low 10
        0x0000 | 3,  # y = 3
        0x3000 | (1 << 11) | 100,  # vector base x=100, ON
        0x4000 | 0b1000_0000_0001,  # VECT_12: x=100, 111; base -> 112
        0x5000 | 0b11,  # VECT_8: x=112, 113; base -> 120
        0x2000 | 7,  # ADDR_X OFF x=7
        0x7000 | 0xABC,  # CONTINUED_4: skipped
        0x1000 | 4,  # EM row: following pixel words are not CD events
        0x2000 | 8,
        0x0000 | 5,  # back to CD row y=5
        0x8000 | 4000,  # time-high changes: time-low resets to 0 -> 4000 * 4096 µs
        0x2000 | (1 << 11) | 9,
        0x6000 | 1,
        0x4000 | 0b100,  # vector continues from base 120: x=122
        0xA000 | 0x100 | 1,  # trigger: skipped
        0x8000 | 0,  # time-high falls by >= 2^11: one 2^24 µs wrap
        0x6000 | 2,
        0x2000 | 1,
    ]
    path = tmp_path / "c.raw"
    path.write_bytes(b"% format EVT3;height=720;width=1280\n% end\n" + struct.pack(f"<{len(w)}H", *w))
    expected = [
        (100, 3, 4106, 1),
        (111, 3, 4106, 1),
        (112, 3, 4106, 1),
        (113, 3, 4106, 1),
        (7, 3, 4106, 0),
        (9, 5, 4000 * 4096, 1),
        (122, 5, 4000 * 4096 + 1, 1),
        (1, 5, (1 << 24) + 2, 0),
    ]
    check(path, "evt3", expected, 2)


def dat_record(t: int, x: int, y: int, p: int) -> bytes:
    return struct.pack("<II", t, x | (y << 14) | (p << 28))


def test_dat_hand_built(tmp_path):
    head = b"% Data file containing CD events.\n% Version 2\n% Width 304\n% Height 240\n" + bytes([0, 8])
    body = dat_record(10, 3, 4, 1) + dat_record(20, 303, 239, 0) + dat_record((1 << 32) - 5, 1, 1, 1)
    body += dat_record(7, 2, 2, 1)  # wrapped: 2^32 + 7
    body += dat_record(9, 0, 0, 0)
    path = tmp_path / "d.dat"
    path.write_bytes(head + body)
    expected = [
        (3, 4, 10, 1),
        (303, 239, 20, 0),
        (1, 1, (1 << 32) - 5, 1),
        (2, 2, (1 << 32) + 7, 1),
        (0, 0, (1 << 32) + 9, 0),
    ]
    check(path, "dat", expected, 8)
    assert (read_header(path).width, read_header(path).height) == (304, 240)


# --- iniVation ---------------------------------------------------------------------------------
def test_aedat2_davis_hand_built(tmp_path):
    def davis(x: int, y: int, p: int) -> int:
        return (y << 22) | (x << 12) | (p << 11)

    recs = [
        (davis(345, 259, 1), 100),
        (1 << 31 | 5, 150),
        (davis(0, 1, 0), (1 << 32) - 1),
        (davis(2, 3, 1), 4),
    ]
    path = tmp_path / "e.aedat"
    path.write_bytes(
        b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n# HardwareInterface: DAVIS346\r\n"
        + b"".join(struct.pack(">II", a, t) for a, t in recs)
    )
    expected = [(345, 259, 100, 1), (0, 1, (1 << 32) - 1, 0), (2, 3, (1 << 32) + 4, 1)]
    check(path, "aedat2", expected, 8)


def test_aedat2_dvs128_hand_built(tmp_path):
    recs = [((5 << 8) | (9 << 1) | 1, 10), (1 << 15, 11), ((127 << 8) | (127 << 1), 12)]
    path = tmp_path / "f.aedat"
    path.write_bytes(
        b"#!AER-DAT2.0\r\n# HardwareInterface: DVS128\r\n" + b"".join(struct.pack(">II", a, t) for a, t in recs)
    )
    check(path, "aedat2", [(9, 5, 10, 1), (127, 127, 12, 0)], 8)
    assert read_header(path).width == 128


def aedat31_packet(etype: int, size: int, overflow: int, events: list[bytes], capacity: int | None = None) -> bytes:
    cap = len(events) if capacity is None else capacity
    valid = sum(1 for e in events if size == 8 and struct.unpack_from("<I", e)[0] & 1)
    body = b"".join(events) + b"\0" * (size * (cap - len(events)))
    return struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, cap, len(events), valid) + body


def polarity31(x: int, y: int, p: int, ts: int, valid: int = 1) -> bytes:
    return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)


def test_aedat31_hand_built(tmp_path):
    head = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS346\r\n#Start-Time: now\r\n#!END-HEADER\r\n"
    packets = [
        aedat31_packet(0, 8, 0, [struct.pack("<Ii", 1, 5)]),  # special events: skipped
        aedat31_packet(1, 8, 0, [polarity31(10, 20, 1, 100), polarity31(11, 21, 0, 101, valid=0)], capacity=4),
        aedat31_packet(1, 8, 1, [polarity31(345, 259, 0, 7)]),
    ]
    path = tmp_path / "g.aedat"
    path.write_bytes(head + b"".join(packets))
    expected = [(10, 20, 100, 1), (345, 259, (1 << 31) + 7, 0)]
    check(path, "aedat31", expected, 1)


def test_aedat4_hand_built_multi_stream(tmp_path):
    """A file with a frame stream before the event stream; only EVTS packets give events."""
    from runtime.events.aedat4 import MAGIC, _ioheader, event_packet

    xml = (
        '<dv version="2.0"><node name="outInfo" path="/o/">'
        '<node name="0" path="/o/0/"><attr key="typeIdentifier" type="string">FRME</attr></node>'
        '<node name="1" path="/o/1/"><attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/o/1/info/"><attr key="sizeX" type="int">346</attr>'
        '<attr key="sizeY" type="int">260</attr></node></node></node></dv>'
    )
    head = _ioheader(0, xml)
    ev = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    ev["t"], ev["x"], ev["y"], ev["p"] = [5, 6, 7], [1, 2, 345], [3, 4, 259], [True, False, True]
    pkt = event_packet(ev)
    frame = b"\0" * 24
    data = MAGIC + struct.pack("<I", len(head)) + head
    data += struct.pack("<ii", 0, len(frame)) + frame + struct.pack("<ii", 1, len(pkt)) + pkt
    path = tmp_path / "h.aedat4"
    path.write_bytes(data)
    check(path, "aedat4", [(1, 3, 5, 1), (2, 4, 6, 0), (345, 259, 7, 1)], 1)
    header = read_header(path)
    assert (header.width, header.height) == (346, 260)


@pytest.mark.parametrize(("fmt", "granule"), [("evt2", 4), ("evt3", 2), ("aedat4", 1)])
@pytest.mark.parametrize("k", [1, 3, 7, 50])
def test_tiny_blocks_equal_whole_read(tmp_path, fmt, granule, k):
    """State crossing block boundaries at every phase: blocks of k words/bytes equal one whole read."""
    from runtime.events import EVENT_DTYPE, write_events

    rng = np.random.default_rng(k)
    n = 400
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 40_000_000, n))
    ev["t"][1::2] = ev["t"][0::2]
    ev["y"] = rng.integers(0, 5, n)
    ev["y"][1::2] = ev["y"][0::2]
    ev["x"] = rng.integers(0, 1000, n)
    ev["x"][1::2] = ev["x"][0::2] + 1
    ev["p"] = rng.integers(0, 2, n)
    ev["p"][1::2] = ev["p"][0::2]
    path = tmp_path / f"s.{fmt}"
    write_events(path, ev, format=fmt)
    block = k * granule if fmt != "aedat4" else 100 * k
    assert decode_in_blocks(path, fmt, block) == rows(ev)


def test_concat_events_of_nothing():
    assert len(concat_events([])) == 0


def test_aedat4_stops_at_the_data_table(tmp_path, monkeypatch):
    """Bytes from the header's dataTablePosition on are the file data table, not packets."""
    from runtime.events import EVENT_DTYPE, aedat4, write_events

    monkeypatch.setattr(aedat4, "EVENTS_PER_PACKET", 4)
    ev = np.zeros(8, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = np.arange(8), np.arange(8), np.arange(8), 1
    path = tmp_path / "t.aedat4"
    write_events(path, ev)
    data = bytearray(path.read_bytes())
    table_at = len(data)
    data += b"\x01\x02\x03 not a packet"
    # our IOHeader keeps dataTablePosition at byte 32 of the flatbuffer, after magic and length
    struct.pack_into("<q", data, len(aedat4.MAGIC) + 4 + 32, table_at)
    path.write_bytes(bytes(data))
    assert read_header(path).meta["data_table_position"] == str(table_at)
    check(path, "aedat4", rows(ev), 1)

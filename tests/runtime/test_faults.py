"""The fault injector, and the protocol under its damage: uploads intact or a clear error, losses exact."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import emulator
from runtime.board import sim_board_link
from runtime.faults import FaultInjector
from runtime.framing import Deframer, Frame, encode_frame
from runtime.host import BoardClient
from spikeforge.errors import LinkError, LinkTimeout


def _frames(n: int) -> list[bytes]:
    return [encode_frame(0x30, i, bytes([i % 256]) * 40) for i in range(n)]


def test_same_seed_same_faults() -> None:
    runs = []
    for _ in range(2):
        inj = FaultInjector(7, drop=0.1, corrupt=0.1, duplicate=0.1, delay=0.1, byte_flip=0.001)
        runs.append((b"".join(inj.apply(f) for f in _frames(500)), dict(inj.counts), list(inj.damaged)))
    assert runs[0] == runs[1]
    other = FaultInjector(8, drop=0.1, corrupt=0.1, duplicate=0.1, delay=0.1, byte_flip=0.001)
    assert b"".join(other.apply(f) for f in _frames(500)) != runs[0][0]


def test_rates_and_counts() -> None:
    inj = FaultInjector(1, drop=0.1, duplicate=0.05)
    out = b"".join(inj.apply(f) for f in _frames(4000))
    assert 300 < inj.counts["frames_dropped"] < 500
    assert 120 < inj.counts["frames_duplicated"] < 280
    frames = Deframer().feed(out)
    assert len(frames) == 4000 - inj.counts["frames_dropped"] + inj.counts["frames_duplicated"]


def test_corruption_is_caught_and_stays_in_its_frame() -> None:
    inj = FaultInjector(2, corrupt=0.2)
    sent = _frames(1000)
    d = Deframer()
    got = d.feed(b"".join(inj.apply(f) for f in sent))
    assert len(got) == 1000 - inj.counts["frames_corrupted"]
    assert {f.seq for f in got}.isdisjoint(inj.damaged)
    assert d.rejected >= inj.counts["frames_corrupted"]


def test_delay_reorders() -> None:
    inj = FaultInjector(3, delay=0.2, delay_frames=2)
    got = Deframer().feed(b"".join(inj.apply(f) for f in _frames(200)) + inj.flush())
    seqs = [f.seq for f in got]
    assert sorted(seqs) == list(range(200)) and seqs != list(range(200))


def test_byte_faults() -> None:
    inj = FaultInjector(4, byte_drop=0.001, byte_flip=0.001, byte_duplicate=0.001)
    data = b"".join(inj.apply(f) for f in _frames(1000))
    assert inj.counts["bytes"] > 40000
    for kind in ("bytes_dropped", "bytes_flipped", "bytes_duplicated"):
        assert 10 < inj.counts[kind] < 120
    assert len(data) == inj.counts["bytes"] - inj.counts["bytes_dropped"] + inj.counts["bytes_duplicated"]


def test_bad_rates_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        FaultInjector(drop=1.5)


def _program() -> emulator.Program:
    rng = np.random.default_rng(0)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 64)
    h = b.population("h", 100, du=3000, dv=2000, vth=30, bias_mant=0, bias_exp=0)
    o = b.population("o", 16, du=3000, dv=2000, vth=20, bias_mant=0, bias_exp=0)
    b.connect(x, h, weights=rng.integers(-60, 127, (100, 64)), weight_exp=0, num_weight_bits=8)
    b.connect(h, o, weights=rng.integers(-60, 127, (16, 100)), weight_exp=0, num_weight_bits=8)
    b.output("out", o)
    return b.build()


@pytest.fixture(scope="module")
def program() -> emulator.Program:
    return _program()


def _record_frames(link, sent: list[Frame]) -> None:
    """Keep a copy of every frame ``link`` transmits, before any damage."""
    original = link.send

    def send(frame: bytes) -> None:
        sent.extend(Deframer().feed(frame))
        original(frame)

    link.send = send


@pytest.mark.parametrize(
    ("fraction", "seed"),
    [
        (0.01, 11),
        (0.10, 12),
        pytest.param(0.10, 13, marks=pytest.mark.slow),
        pytest.param(0.10, 14, marks=pytest.mark.slow),
    ],
)
def test_damaged_link_upload_and_stream(program, fraction: float, seed: int) -> None:
    host_faults = FaultInjector.damaging(fraction, seed)
    board_faults = FaultInjector.damaging(fraction, seed + 100)
    spikes = (np.random.default_rng(seed).random((400, 64)) < 0.2).astype(np.int64)
    host_sent: list[Frame] = []
    board_got: list[Frame] = []
    with sim_board_link("loihi", host_faults=host_faults, board_faults=board_faults, max_payload=1024) as (
        link,
        board,
        _,
    ):
        original_handle = board.handle
        board.handle = lambda frames: (board_got.extend(frames), original_handle(frames))[1]  # type: ignore[method-assign]
        _record_frames(link, host_sent)
        with BoardClient(link, reply_timeout=0.05, slow_timeout=0.3, retries=10) as client:
            try:
                digest = client.upload(program)
            except LinkTimeout as exc:  # allowed, if it says what happened
                assert "no reply after 11 attempts" in str(exc)
                return
            assert digest == program.digest
            assert board.program_digest == hashlib.sha256(program.to_bytes()).digest()
            client.start()
            client.send_array(spikes)
            client.flush()
            stats = client.stats()
            host = client.counters()

    # no corrupted frame was ever accepted: everything the board handled is something the host sent
    assert set(board_got) <= set(host_sent)
    # every EVENTS frame is accounted for exactly: arrived, or counted lost
    assert stats["event_frames_rx"] + stats["event_frames_lost"] == host["event_frames_tx"]
    assert stats["event_frames_lost"] == host["event_frames_tx"] - sum(f.type == 0x30 for f in board_got)
    # and every SPIKES frame the board sent before the last FLUSH's ACK
    assert host["spike_frames_rx"] + host["spike_frames_lost"] == stats["spike_frames_tx"]
    if fraction >= 0.1:
        assert host["retransmits"] > 0 and host_faults.counts["frames_dropped"] > 0
        assert stats["rejects_crc"] + stats["rejects_cobs"] + stats["rejects_length"] > 0


def test_dead_link_upload_fails_with_a_clear_timeout(program) -> None:
    with sim_board_link("loihi", host_faults=FaultInjector(0, drop=1.0)) as (link, _, _):
        with BoardClient(link, reply_timeout=0.02, retries=3) as client:
            with pytest.raises(LinkTimeout, match=r"HELLO \(seq 0\): no reply after 4 attempts"):
                client.upload(program)
            assert isinstance(LinkTimeout("x"), LinkError)

"""Link over real pyserial ports: loop://, a pty pair, pacing, unplugging, port errors."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.faults import FaultInjector
from runtime.framing import Frame, encode_frame
from runtime.link import Link
from spikeforge.errors import LinkError


def _collect(link: Link, n: int, timeout: float = 5.0) -> list[Frame]:
    got: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += link.receive(0.1)
    return got


def test_loop_round_trip() -> None:
    with Link("loop://") as link:
        link.send_frame(0x30, 9, b"a\x00b")
        link.send_frame(0x31, 10, b"")
        assert _collect(link, 2) == [Frame(0x30, 9, b"a\x00b"), Frame(0x31, 10, b"")]
        assert link.stats()["frames_rx"] == 2


def test_loop_beyond_its_4096_byte_queue_with_a_reader_thread() -> None:
    with Link("loop://") as link:
        frames = [Frame(0x30, i, bytes([i % 251]) * 1000) for i in range(20)]
        got: list[Frame] = []
        reader = threading.Thread(target=lambda: got.extend(_collect(link, len(frames))))
        reader.start()
        for f in frames:
            link.send_frame(f.type, f.seq, f.payload)
        reader.join(10)
        assert got == frames


def test_receive_times_out_empty() -> None:
    with Link("loop://") as link:
        t0 = time.monotonic()
        assert link.receive(0.1) == []
        assert time.monotonic() - t0 < 1.0


def test_pty_pair_both_directions() -> None:
    with Link.pty() as board:
        with Link(board.url, baudrate=921600) as host:
            board.peer_attached()
            host.send_frame(1, 1, b"x" * 5000)
            assert _collect(board, 1) == [Frame(1, 1, b"x" * 5000)]
            board.send_frame(2, 1, b"reply")
            assert _collect(host, 1) == [Frame(2, 1, b"reply")]


def test_pacing_limits_throughput_to_the_baud_rate() -> None:
    baud = 1_000_000
    with Link.pty() as board, Link(board.url, baudrate=baud, pace=True) as host:
        board.peer_attached()
        frame = encode_frame(0x30, 0, bytes(1000))
        got: list[Frame] = []
        reader = threading.Thread(target=lambda: got.extend(_collect(board, 25)))
        reader.start()
        t0 = time.monotonic()
        for _ in range(25):
            host.send(frame)
        elapsed = time.monotonic() - t0
        reader.join(10)
        expected = 25 * len(frame) * 10 / baud
        ahead = host.tx_buffer * 10 / baud  # the writer may run ahead of the line by one transmit buffer
        assert len(got) == 25
        assert expected - ahead - 0.005 <= elapsed <= expected * 1.5 + 0.05


def test_peer_closing_the_pty_is_a_link_error() -> None:
    board = Link.pty().open()
    host = Link(board.url).open()
    board.peer_attached()
    host.close()
    with pytest.raises(LinkError, match="closed"):
        _collect(board, 1, timeout=2.0)
    with pytest.raises(LinkError):  # the loss is sticky
        board.receive(0.01)
    board.close()


def test_board_side_unplugged_is_a_link_error_for_the_host() -> None:
    board = Link.pty().open()
    host = Link(board.url).open()
    board.peer_attached()
    board.close()
    with pytest.raises(LinkError, match="unplugged|closed"):
        _collect(host, 1, timeout=2.0)
    host.close()


def test_open_errors_are_link_errors() -> None:
    with pytest.raises(LinkError, match="cannot open serial port '/dev/does-not-exist'"):
        Link("/dev/does-not-exist").open()
    with pytest.raises(LinkError, match="cannot open"):
        Link("nosuchscheme://x").open()
    with pytest.raises(LinkError, match="not open"):
        Link("loop://").receive(0.01)


def test_faulty_link_never_delivers_a_corrupted_frame() -> None:
    injector = FaultInjector(3, corrupt=0.3, drop=0.05, duplicate=0.05, byte_flip=0.001)
    sent = [Frame(0x30, i, bytes((i + k) % 256 for k in range(200))) for i in range(300)]
    with Link.pty() as board, Link(board.url, faults=injector) as host:
        board.peer_attached()
        got: list[Frame] = []
        reader = threading.Thread(target=lambda: got.extend(_collect(board, len(sent), timeout=1.0)))
        reader.start()
        for f in sent:
            host.send_frame(f.type, f.seq, f.payload)
        host.send(injector.flush())
        reader.join(10)
    assert set(got) <= set(sent)
    assert injector.counts["frames_corrupted"] > 50
    assert board.deframer.rejected > 50

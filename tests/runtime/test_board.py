"""Host ↔ SimBoard over a real pty: upload, refusals, streaming against the emulator, flow control, unplug."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import emulator
from runtime.board import sim_board_link
from runtime.framing import encode_frame
from runtime.host import BoardClient, BoardRefused
from runtime.protocol import Events, ProgramBegin, ProgramChunk, ProgramEnd, Reason, pack_runs
from spikeforge.errors import LinkError

N_IN, N_HID, N_OUT = 12, 10, 6


def tiny_program(target: str = "loihi", seed: int = 0) -> emulator.Program:
    """A two-layer loihi network small enough to run per step, busy enough to spike."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder(target)
    x = b.input("in", N_IN)
    h = b.population("h", N_HID, du=3000, dv=2000, vth=20, bias_mant=0, bias_exp=0)
    o = b.population("o", N_OUT, du=3000, dv=2000, vth=15, bias_mant=0, bias_exp=0)
    b.connect(x, h, weights=rng.integers(-40, 120, (N_HID, N_IN)), weight_exp=0, num_weight_bits=8)
    b.connect(h, o, weights=rng.integers(-40, 120, (N_OUT, N_HID)), weight_exp=0, num_weight_bits=8)
    b.output("out", o)
    b.output("hidden", h)
    return b.build()


def input_spikes(steps: int, rate: float = 0.3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, N_IN)) < rate).astype(
        np.int64
    )  # loihi takes at most 1 spike per axon and step


@pytest.fixture(scope="module")
def program() -> emulator.Program:
    return tiny_program()


def test_upload_and_stream_match_the_emulator(program) -> None:
    spikes = input_spikes(300)
    expected = emulator.run(program, spikes[None], engine="fast").spikes
    with sim_board_link("loihi", max_chunk_steps=64) as (link, board, _), BoardClient(link) as client:
        caps = client.hello()
        assert caps.target == "loihi" and not caps.loaded
        digest = client.upload(program)
        assert digest == program.digest == board.program_digest.hex()
        client.start()
        # in irregular pieces, as a live source would deliver them
        for lo, hi in ((0, 1), (1, 40), (40, 41), (41, 250), (250, 300)):
            client.send_array(spikes[lo:hi])
        assert client.flush() == 300
        out = client.take_spikes()
        for index, name in enumerate(program.outputs):
            got = out[index].dense(program.outputs[name], 0, 300)
            np.testing.assert_array_equal(got, expected[name][0])
        assert client.spike_horizons == {0: 300, 1: 300}
        stats = client.stats()
        assert stats["steps_run"] == 300
        assert stats["event_frames_lost"] == 0 and client.counters()["spike_frames_lost"] == 0
        assert client.hello().loaded


def test_busy_steps_span_several_frames_and_state_carries_over(program) -> None:
    spikes = np.ones((6, N_IN), dtype=np.int64)  # one step holds 12 events; frames hold 4
    expected = emulator.run(program, spikes[None]).spikes["out"][0]
    with sim_board_link("loihi", max_payload=24) as (link, _, _), BoardClient(link, max_payload=24) as client:
        assert client.hello().max_payload == 24
        client.upload(program)
        client.start()
        steps, axons = np.nonzero(spikes)
        frames = client.send_events(steps, axons, spikes[steps, axons], end_step=6)
        assert frames >= 6
        client.flush()
        np.testing.assert_array_equal(client.take_spikes()[0].dense(N_OUT, 0, 6), expected)


def test_reset_restarts_at_step_zero(program) -> None:
    spikes = input_spikes(50)
    expected = emulator.run(program, spikes[None]).spikes["out"][0]
    with sim_board_link("loihi") as (link, board, _), BoardClient(link) as client:
        client.upload(program)
        client.start()
        client.send_array(spikes)
        client.flush()
        client.take_spikes()
        client.reset()
        assert board.step == 0
        client.send_array(spikes)
        client.flush()
        np.testing.assert_array_equal(client.take_spikes()[0].dense(N_OUT, 0, 50), expected)


def test_wrong_target_is_refused_clearly(program) -> None:
    with sim_board_link("xylo") as (link, board, _), BoardClient(link) as client:
        with pytest.raises(BoardRefused, match="WRONG_TARGET.*built for target 'loihi'.*'xylo'") as info:
            client.upload(program)
        assert info.value.reason == Reason.WRONG_TARGET
        assert board.program is None
        with pytest.raises(BoardRefused, match="NO_PROGRAM"):
            client.start()


def test_corrupt_program_and_digest_mismatch_are_refused(program) -> None:
    data = bytearray(program.to_bytes())
    with sim_board_link("loihi") as (link, _, _), BoardClient(link) as client:
        data[100] ^= 0xFF
        with pytest.raises(BoardRefused, match="BAD_PROGRAM") as info:
            client.upload(bytes(data))
        assert info.value.reason == Reason.BAD_PROGRAM
        # announce one digest, send other bytes
        client._request(ProgramBegin(len(data), hashlib.sha256(b"something else").digest()))
        client._request(ProgramChunk(0, bytes(data)[:900]))
        with pytest.raises(BoardRefused, match="BAD_OFFSET"):
            client._request(ProgramChunk(2000, b"x"))
        with pytest.raises(BoardRefused, match="incomplete"):
            client._request(ProgramEnd())


def test_ping_stats_and_unknown_requests(program) -> None:
    with sim_board_link("loihi") as (link, board, _), BoardClient(link) as client:
        assert 0 < client.ping() < 1.0
        assert client.last_pong is not None and client.last_pong.t_board_tx >= client.last_pong.t_board_rx
        link.send(encode_frame(0x2F, 99, b""))  # not a message type
        stats = client.stats()
        assert stats["bad_messages"] == 1 and stats["nacks_tx"] == 1


def test_credit_flow_control_with_a_slow_board(program) -> None:
    # the board queues 2 frames; the host must wait for credit, never overrun it
    spikes = input_spikes(400, rate=0.5)
    expected = emulator.run(program, spikes[None]).spikes["out"][0]
    with sim_board_link("loihi", credits=2, max_payload=64) as (link, board, _):
        with BoardClient(link, max_payload=64, queue_frames=4) as client:
            client.upload(program)
            client.start()
            client.send_array(spikes)
            client.flush()
            np.testing.assert_array_equal(client.take_spikes()[0].dense(N_OUT, 0, 400), expected)
            assert board.stats()["event_frames_overflow"] == 0
            assert client.counters()["event_frames_tx"] > 50


def test_events_while_stopped_are_counted_not_run(program) -> None:
    with sim_board_link("loihi") as (link, board, _), BoardClient(link) as client:
        client.upload(program)
        client.send_array(input_spikes(10))
        client._drain_queue()
        with pytest.raises(BoardRefused, match="BAD_STATE"):
            client.flush()
        stats = client.stats()
        assert stats["events_ignored"] == stats["events_rx"] > 0 and stats["steps_run"] == 0


def test_host_ignoring_credit_overflows_drop_oldest(program) -> None:
    with sim_board_link("loihi", credits=2) as (link, board, thread), BoardClient(link) as client:
        client.upload(program)
        client.start()
        thread.stop()  # the board stops reading: frames pile up in the pty
        sent = 0
        for seq, (msg, flags) in enumerate(pack_runs(Events, 0, 0, 10, range(10), [0] * 10, None, 16)):
            link.send(encode_frame(Events.TYPE, seq, msg.encode(), flags))
            sent += 1
        # collect every frame first, then hand them over at once: how reads split the bytes in
        # time must not decide whether the queue overflows
        frames: list = []
        for _ in range(100):
            frames += board.link.receive(0.05)
            if len(frames) >= sent:
                break
        assert len(frames) == sent
        board.handle(frames)
        stats = board.stats()
        assert stats["event_frames_overflow"] >= 1
        assert stats["events_dropped"] >= 1


def test_board_unplugged_mid_stream_keeps_partial_result(program) -> None:
    spikes = input_spikes(200)
    with sim_board_link("loihi") as (link, board, thread), BoardClient(link) as client:
        client.upload(program)
        client.start()
        client.send_array(spikes[:100])
        client.flush()
        thread.stop()
        board.link.close()  # the cable is pulled
        with pytest.raises(LinkError, match="closed|unplugged"):
            for _ in range(100):
                client.send_array(spikes[100:101] * 0)
                client.flush(timeout=0.1)
        partial = client.take_spikes()
        assert partial[0].steps.size > 0 and partial[0].steps.max() < 100
        assert isinstance(client.failure, LinkError)


def test_host_gone_ends_the_board_with_a_link_error(program) -> None:
    with sim_board_link("loihi") as (link, _, thread):
        with BoardClient(link) as client:
            client.hello()
        link.close()
        thread._thread.join(3.0)
        assert isinstance(thread.error, LinkError)
        assert not thread.alive

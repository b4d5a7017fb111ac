"""Messages: round trips, decoder fuzz, event packing, sequence arithmetic, gap counting, queues."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.framing import FLAG_MORE
from runtime.protocol import (
    MESSAGES,
    RECORD_SIZE,
    RUN_HEADER,
    STATS_FIELDS,
    Ack,
    Capabilities,
    Credit,
    DropQueue,
    Error,
    Events,
    Flush,
    GapCounter,
    Hello,
    Nack,
    Ping,
    Pong,
    ProgramBegin,
    ProgramChunk,
    Reason,
    Spikes,
    Stats,
    decode_message,
    pack_runs,
    seq_before,
)
from spikeforge.errors import ProtocolError

EXAMPLES = [
    Hello(1, 512),
    Capabilities(1, 3, 1024, 32, 256, 1 << 20, 4096, bytes(range(32)), "loihi"),
    ProgramBegin(12345, bytes(range(32))),
    ProgramChunk(1024, b"\x00\x01\x02"),
    Flush(100, 65535),
    Events(7, 3, 1, np.array([5 | 2 << 16 | 1 << 24], dtype="<u4").tobytes()),
    Spikes(0, 1, 0, b""),
    Credit(40),
    Ack(b"\x01\x00"),
    Nack(Reason.WRONG_TARGET, 0x12, "built for 'xylo'"),
    Ping(123456789),
    Pong(1, 2, 3),
    Stats({name: i for i, name in enumerate(STATS_FIELDS)}),
    Error(Reason.EMULATOR_FAILED, "step 3: boom ✗"),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg) -> None:
    assert decode_message(msg.TYPE, msg.encode()) == msg


def test_every_type_decodes_its_default() -> None:
    for type_, cls in MESSAGES.items():
        assert isinstance(decode_message(type_, cls().encode()), cls)


@settings(max_examples=500)
@given(st.integers(0, 255), st.binary(max_size=120))
def test_decoder_raises_only_protocol_errors(type_: int, payload: bytes) -> None:
    try:
        decode_message(type_, payload)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(sorted(MESSAGES)), st.data())
def test_decoder_on_truncated_and_extended_payloads(type_: int, data) -> None:
    good = (
        EXAMPLES[[m.TYPE for m in EXAMPLES].index(type_)].encode()
        if type_ in {m.TYPE for m in EXAMPLES}
        else b""
    )
    cut = data.draw(st.integers(0, len(good)))
    extra = data.draw(st.binary(max_size=8))
    for payload in (good[:cut], good + extra):
        try:
            decode_message(type_, payload)
        except ProtocolError:
            pass


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ProtocolError, match="unknown message type 0xee.*HELLO=0x01"):
        decode_message(0xEE, b"")


def test_events_decoder_checks_records() -> None:
    header = RUN_HEADER.pack(0, 2, 0, 0)
    with pytest.raises(ProtocolError, match="multiple of 4"):
        decode_message(Events.TYPE, header + b"\x01\x02\x03")
    outside = np.array([1 | 1 << 16 | 2 << 24], dtype="<u4").tobytes()  # dstep 2 of a 2-step frame
    with pytest.raises(ProtocolError, match="outside"):
        decode_message(Events.TYPE, header + outside)


def _unpack(frames) -> tuple[dict[tuple[int, int], int], list[tuple[int, int, int]]]:
    totals: dict[tuple[int, int], int] = {}
    spans = []
    for msg, flags in frames:
        decoded = decode_message(msg.TYPE, msg.encode())
        assert decoded == msg
        steps, ids, counts = msg.arrays()
        for s, i, c in zip(steps.tolist(), ids.tolist(), counts.tolist(), strict=True):
            assert 1 <= c <= 255
            totals[(s, i)] = totals.get((s, i), 0) + c
        spans.append((msg.base_step, msg.n_steps, flags))
    return totals, spans


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 1000),
    st.lists(st.tuples(st.integers(0, 900), st.integers(0, 0xFFFF), st.integers(0, 700)), max_size=300),
    st.integers(0, 50),
    st.sampled_from([24, 64, 1024]),
)
def test_pack_runs_round_trip_and_covers_every_step(start, events, tail, max_payload) -> None:
    steps = [start + s for s, _, _ in events]
    end = max(steps, default=start) + 1 + tail
    frames = pack_runs(
        Events, 2, start, end, steps, [i for _, i, _ in events], [c for _, _, c in events], max_payload
    )
    totals, spans = _unpack(frames)
    expected: dict[tuple[int, int], int] = {}
    for s, (_, i, c) in zip(steps, events, strict=True):
        if c:
            expected[(s, i)] = expected.get((s, i), 0) + c
    assert totals == expected
    # frames tile [start, end): each begins where the previous ended (or on its last step, with MORE)
    cursor = start
    for base, n_steps, flags in spans:
        assert base == cursor
        assert n_steps >= 1 or (start == end and n_steps == 0)
        cursor = base + n_steps - (1 if flags & FLAG_MORE else 0)
    assert cursor == end and not spans[-1][2] & FLAG_MORE
    for msg, _ in frames:
        assert len(msg.encode()) <= max_payload
        assert msg.port == 2


def test_pack_runs_budget_is_four_bytes_per_event() -> None:
    rng = np.random.default_rng(0)
    steps = np.sort(rng.integers(0, 100, 10000))
    frames = pack_runs(Events, 0, 0, 100, steps, rng.integers(0, 1024, 10000), None, 1024)
    payload = sum(len(m.encode()) for m, _ in frames)
    assert payload / 10000 < RECORD_SIZE * 1.01


def test_pack_runs_long_quiet_stretches() -> None:
    frames = pack_runs(Events, 0, 0, 200_000, [5, 150_000], [1, 2])
    totals, spans = _unpack(frames)
    assert totals == {(5, 1): 1, (150_000, 2): 1}
    assert all(n <= 0xFFFF for _, n, _ in spans)


def test_pack_runs_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        pack_runs(Events, 0, 10, 20, [5], [0])
    with pytest.raises(ValueError, match="ids span"):
        pack_runs(Events, 0, 0, 20, [5], [70000])
    with pytest.raises(ValueError, match="differ in length"):
        pack_runs(Events, 0, 0, 20, [5, 6], [1])


def test_seq_before_wraps() -> None:
    assert seq_before(65535, 0)
    assert seq_before(65000, 100)
    assert not seq_before(100, 65000)
    assert not seq_before(5, 5)


def test_gap_counter_is_exact_across_wrap() -> None:
    rng = np.random.default_rng(1)
    g = GapCounter(65000)
    sent = [(65000 + i) % 65536 for i in range(3000)]
    delivered = [s for s in sent if rng.random() > 0.2]
    for s in delivered:
        assert g.observe(s)
    assert g.observe(delivered[-1]) is False  # a duplicate
    g.close((sent[-1] + 1) % 65536)
    assert g.accepted == len(delivered)
    assert g.lost == len(sent) - len(delivered)
    assert g.stale == 1


def test_gap_counter_late_frame_is_stale() -> None:
    g = GapCounter()
    for s in (0, 2, 1, 3):
        g.observe(s)
    assert (g.accepted, g.lost, g.stale) == (3, 1, 1)


def test_drop_queue_policies() -> None:
    q: DropQueue[int] = DropQueue(2, "drop_oldest")
    assert [q.push(i) for i in range(4)] == [None, None, 0, 1]
    assert (q.pop(), q.pop(), q.dropped) == (2, 3, 2)
    r: DropQueue[int] = DropQueue(1, "reject")
    assert (r.push(1), r.push(2), r.peek(), r.dropped) == (None, 2, 1, 1)
    with pytest.raises(ValueError):
        DropQueue(1, "newest")

"""Streaming: chunked streaming into the emulator equals one run on the whole binned input; endings
(source exhausted, duration, Ctrl-C, source failure) all keep the summary and the partial output."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from runtime.sources import EventSource, MovingBarSource, PoissonSource
from runtime.stream import EmulatorTarget, Streamer, load_spikes, open_target
from runtime.transforms import EVENT_DTYPE, Downsample, Pipeline, Refractory, TimeBinner, ToAxons
from spikeforge.cli import main
from spikeforge.errors import LinkError, ProgramError

W = H = 8


def relay_program(channels: int = 2 * W * H, neurons: int = 6, seed: int = 0) -> emulator.Program:
    """A small loihi program: random excitatory weights, so outputs depend on which axons spike."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", channels)
    l1 = b.population("l1", neurons, du=3000, dv=200, vth=30, bias_mant=0, bias_exp=0)
    b.connect(x, l1, weights=rng.integers(0, 120, (neurons, channels)), weight_exp=0, num_weight_bits=8)
    b.output("out", l1)
    return b.build()


class ListSource(EventSource):
    """Chunks from a list; ``fail_after`` raises (a KeyboardInterrupt or an error) after that many."""

    def __init__(self, chunks, width=W, height=H, fail_after=None, exc: BaseException | None = None):
        self.chunks, self.width, self.height = chunks, width, height
        self.fail_after, self.exc = fail_after, exc
        self.closed = False

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                assert self.exc is not None
                raise self.exc
            yield c

    def close(self) -> None:
        self.closed = True


def bar_events() -> np.ndarray:
    src = MovingBarSource(W, H, size=2, speed_px_s=400, direction_deg=20, duration_us=80_000, chunk_us=3_000)
    return np.concatenate(list(src))


def expected_spikes(program, ev: np.ndarray, dt_us: int, transforms=()) -> np.ndarray:
    size = Pipeline(*transforms).output_size((W, H, 2))
    pipe = Pipeline(*transforms, TimeBinner(dt_us, size), ToAxons(size, program.inputs["in"], max_count=1))
    counts = np.concatenate([pipe(ev), pipe.flush()])
    return emulator.run(program, counts[None], engine="fast").spikes["out"][0]


@pytest.mark.parametrize("chunk", [1, 37, 10_000])
def test_chunked_stream_equals_one_run(chunk: int) -> None:
    program = relay_program()
    ev = bar_events()
    chunks = [ev[i : i + chunk] for i in range(0, ev.size, chunk)]
    s = Streamer(program, ListSource(chunks), EmulatorTarget(program), dt_us=500)
    stats = s.run()
    want = expected_spikes(program, ev, 500)
    got = s.spikes()["out"]
    assert stats.ended == "source ended"
    assert got.shape == want.shape and want.sum() > 0
    np.testing.assert_array_equal(got, want)
    assert stats.events_in == ev.size and stats.steps == want.shape[0]
    assert stats.spikes["out"] == int(want.sum())


def test_transforms_in_stream_and_clipping_counted() -> None:
    program = relay_program(channels=2 * 4 * 4)
    ev = bar_events()
    tr = [Refractory(10_000), Downsample(2)]
    s = Streamer(
        program, ListSource([ev[:500], ev[500:]]), EmulatorTarget(program), dt_us=1000, transforms=tr
    )
    stats = s.run()
    want = expected_spikes(program, ev, 1000, [Refractory(10_000), Downsample(2)])
    np.testing.assert_array_equal(s.spikes()["out"], want)
    # pooled 2x2 blocks give counts > 1 per step: loihi accepts 1, the excess is counted, never silent
    assert stats.dropped["clipped"] > 0 and stats.dropped["refractory"] > 0


def test_duration_cuts_steps() -> None:
    program = relay_program()
    src = PoissonSource(W, H, 200, 1_000_000, seed=1)
    stats = Streamer(program, src, EmulatorTarget(program), dt_us=1000, duration_s=0.0255).run()
    assert stats.steps == 26 and stats.ended.startswith("duration")


@pytest.mark.parametrize(
    ("exc", "ended"),
    [(KeyboardInterrupt(), "interrupted"), (LinkError("unplugged"), "source failed: unplugged")],
)
def test_interrupt_and_failure_keep_partial_output(tmp_path, exc, ended) -> None:
    program = relay_program()
    ev = bar_events()
    half = ev.size // 2
    src = ListSource([ev[:half], ev[half:]], fail_after=1, exc=exc)
    s = Streamer(program, src, EmulatorTarget(program), dt_us=500)
    stats = s.run()
    assert stats.ended == ended and src.closed
    assert (s.error is not None) == isinstance(exc, LinkError)
    # the partial last bin was run too: exactly what a whole run on the first half gives
    want = expected_spikes(program, ev[:half], 500)
    np.testing.assert_array_equal(s.spikes()["out"], want)
    s.save(tmp_path / "out.npz")
    np.testing.assert_array_equal(load_spikes(tmp_path / "out.npz")["out"], want)
    assert "stream ended: " + ended in stats.summary()


def test_stats_callback_is_rate_limited() -> None:
    program = relay_program()
    ev = bar_events()
    now = [0.0]

    def clock() -> float:
        now[0] += 0.1  # every clock read advances 100 ms
        return now[0]

    seen: list = []
    walls: list[float] = []

    def record(st) -> None:
        seen.append(st)
        walls.append(st.wall_s)  # the stats object is live: keep the value at report time

    chunks = [ev[i : i + 20] for i in range(0, ev.size, 20)]
    s = Streamer(
        program, ListSource(chunks), EmulatorTarget(program), dt_us=500, on_stats=record, clock=clock
    )
    s.run()
    assert seen, "no statistics reported"
    assert len(seen) < len(chunks)
    assert "kev/s" in seen[-1].line() and "latency" in seen[-1].line()
    assert len(walls) > 1
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(walls[:-1], walls[1:], strict=False))


def test_size_mismatch_is_a_program_error() -> None:
    program = relay_program(channels=100)
    with pytest.raises(ProgramError, match="has 100 axons .* 2x8x8"):
        Streamer(program, ListSource([]), EmulatorTarget(program))
    with pytest.raises(ValueError, match="sensor size"):
        Streamer(program, ListSource([], width=None), EmulatorTarget(program))


def test_empty_source() -> None:
    program = relay_program()
    s = Streamer(program, ListSource([np.zeros(0, dtype=EVENT_DTYPE)]), EmulatorTarget(program))
    stats = s.run()
    assert stats.steps == 0 and s.spikes()["out"].shape == (0, 6)


def test_board_target_is_explicit_or_fails_clearly() -> None:
    program = relay_program()
    with pytest.raises(LinkError):
        open_target("/dev/does-not-exist-spikeforge", program)


def test_cli_stream_synthetic(tmp_path, capsys) -> None:
    program = relay_program(channels=2 * 16 * 16)
    prog = tmp_path / "net.sfp"
    program.save(prog)
    out = tmp_path / "spikes.npz"
    rc = main(
        [
            "stream",
            "--program",
            str(prog),
            "--source",
            "synthetic:bar?speed=300&width=32&height=32&duration=0.5",
            "--transforms",
            "downsample=2,refractory=500",
            "--dt-us",
            "1000",
            "--save-spikes",
            str(out),
            "--duration",
            "0.3",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "steps run      300" in text and "dropped" in text and "output 'out'" in text
    spikes = load_spikes(out)["out"]
    assert spikes.shape == (300, 6)


def test_cli_reports_bad_transform(tmp_path, capsys) -> None:
    prog = tmp_path / "net.sfp"
    relay_program().save(prog)
    with pytest.raises(ValueError, match="unknown transform"):
        main(["stream", "--program", str(prog), "--source", "synthetic:poisson", "--transforms", "blur=1"])


def test_board_target_over_a_pty_simboard_matches_emulator() -> None:
    from runtime.board import BoardThread, SimBoard
    from runtime.link import Link
    from runtime.stream import BoardTarget

    program = relay_program()
    ev = bar_events()
    link = Link.pty(keep_slave_open=True).open()
    try:
        with BoardThread(SimBoard(link, target="loihi")):
            target = BoardTarget(program, link.url, drop_policy="block")
            try:
                chunks = [ev[i : i + 50] for i in range(0, ev.size, 50)]
                s = Streamer(program, ListSource(chunks), target, dt_us=500)
                stats = s.run()
            finally:
                target.close()
    finally:
        link.close()
    assert stats.ended == "source ended" and stats.target.get("spike_frames_lost", 0) == 0
    np.testing.assert_array_equal(s.spikes()["out"], expected_spikes(program, ev, 500))

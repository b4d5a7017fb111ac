"""Stream events from a source through transforms into a Program, in the emulator or on a board.

::

    source ──chunks──► transforms ──► TimeBinner(dt_us, t0) ──► ToAxons(port) ──► target.run([T, channels])
                                                                                     │
                                          statistics (≤ every 0.5 s), output spikes ◄┘

The target runs only complete bins, so the program sees a constant step rate of ``dt_us`` µs of sensor
time per step, empty steps included; the last partial bin is run when the stream ends (source exhausted,
``duration_s`` reached, Ctrl-C, or a source failure), and the summary and saved spikes cover everything
run up to then. Live sources (a serial eDVS, a file in real time) that go quiet still advance the steps
by the host clock, one bin behind, so outputs keep flowing.

Targets: :class:`EmulatorTarget` (``emulator.Simulator(program, engine="fast", batch=1)``, state carried
across calls) and :class:`BoardTarget` (``runtime.host.BoardClient`` over a ``runtime.link.Link``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.host import BoardClient
from runtime.link import Link
from runtime.sources import EventSource
from runtime.transforms import Pipeline, Size, TimeBinner, ToAxons, Transform
from spikeforge.errors import ProgramError, SpikeforgeError

if TYPE_CHECKING:  # the emulator is imported only when a target runs a Program
    from emulator import Program

__all__ = ["BoardTarget", "EmulatorTarget", "StreamStats", "Streamer", "load_spikes", "open_target"]

#: output spikes of one port as parallel int64 arrays (absolute step, neuron, count)
Sparse = tuple[np.ndarray, np.ndarray, np.ndarray]


def _sparse(dense: np.ndarray, step0: int) -> Sparse:
    t, n = np.nonzero(dense)
    return (t.astype(np.int64) + step0, n.astype(np.int64), dense[t, n].astype(np.int64))


class EmulatorTarget:
    """Runs chunks of steps in ``emulator.Simulator(program, engine=engine, batch=1)``."""

    name = "emulator"

    def __init__(self, program: Program, engine: str = "fast", seed: int = 0) -> None:
        import emulator

        self.program = program
        self.sim = emulator.Simulator(program, engine=engine, batch=1, seed=seed)
        self.steps = 0

    def run(self, counts: np.ndarray) -> dict[str, Sparse]:
        """Run ``counts`` ``int [T, channels]``; returns the output spikes of those steps per port."""
        trace = self.sim.run(counts[None])
        out = {port: _sparse(np.asarray(s)[0], self.steps) for port, s in trace.spikes.items()}
        self.steps += counts.shape[0]
        return out

    def finish(self) -> dict[str, Sparse]:
        return {}

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class BoardTarget:
    """Streams chunks of steps to a board (or SimBoard) at ``url`` through ``runtime.host.BoardClient``.

    Uploads the program, starts it, sends each chunk as dense counts and collects the spikes that have
    arrived; :meth:`finish` waits until every step sent has run. Spikes may arrive a few chunks late,
    so the latency statistic covers sending only. ``drop_policy``: ``"block"`` (every event arrives) or
    ``"drop_oldest"`` (live input: fresh beats complete; drops are counted in the target statistics).
    """

    name = "board"

    def __init__(
        self, program: Program, url: str, baudrate: int = 3_000_000, drop_policy: str = "drop_oldest"
    ) -> None:
        self.program = program
        self._ports = list(program.outputs)
        self.link = Link(url, baudrate=baudrate)
        self.client = BoardClient(self.link, drop_policy=drop_policy)
        try:
            self.client.open()
            self.client.hello()
            self.client.upload(program)
            self.client.start()
        except BaseException:
            self.close()
            raise
        self.steps = 0

    def _take(self) -> dict[str, Sparse]:
        out: dict[str, Sparse] = {}
        for index, run in self.client.take_spikes().items():
            name = self._ports[index] if index < len(self._ports) else f"port{index}"
            out[name] = (
                run.steps.astype(np.int64),
                run.neurons.astype(np.int64),
                run.counts.astype(np.int64),
            )
        return out

    def run(self, counts: np.ndarray) -> dict[str, Sparse]:
        self.client.send_array(counts)
        self.steps += counts.shape[0]
        return self._take()

    def finish(self) -> dict[str, Sparse]:
        if self.steps:
            self.client.flush()
        return self._take()

    def stats(self) -> dict[str, int]:
        c = self.client.counters()
        return {k: v for k, v in c.items() if "drop" in k or "lost" in k}

    def close(self) -> None:
        try:
            self.client.stop()
        except (SpikeforgeError, OSError):
            pass
        finally:
            self.client.close()
            self.link.close()


def open_target(target: str, program: Program, **kwargs: Any) -> EmulatorTarget | BoardTarget:
    """``"emulator"`` (or ``"emulator:reference"``) or a board's serial URL."""
    if target == "emulator" or target.startswith("emulator:"):
        engine = target.partition(":")[2] or "fast"
        return EmulatorTarget(program, engine=engine, **kwargs)
    return BoardTarget(program, target, **kwargs)


@dataclass
class StreamStats:
    """Counters of a stream so far. Rates are per second of wall time unless named otherwise."""

    wall_s: float = 0.0
    events_in: int = 0
    events_in_per_s: float = 0.0  # over the last reporting interval
    dropped: dict[str, int] = field(default_factory=dict)  # events removed, by reason
    source: dict[str, int] = field(default_factory=dict)  # source counters (e.g. bytes discarded)
    target: dict[str, int] = field(default_factory=dict)  # target counters (e.g. frames lost)
    steps: int = 0
    steps_per_s: float = 0.0  # over the last reporting interval
    stream_s: float = 0.0  # sensor time covered by the steps run (steps × dt)
    spikes: dict[str, int] = field(default_factory=dict)  # output spikes per port
    neurons: dict[str, int] = field(default_factory=dict)
    latency_ms_mean: float = 0.0  # chunk received → its steps run, mean
    latency_ms_max: float = 0.0
    ended: str = ""  # why the stream ended ("" while running)

    def rate_hz(self, port: str) -> float:
        """Output spike rate of ``port`` per neuron, per second of sensor time (Hz)."""
        if not self.stream_s or not self.neurons.get(port):
            return 0.0
        return self.spikes.get(port, 0) / self.stream_s / self.neurons[port]

    def line(self) -> str:
        """One status line."""
        drops = sum(self.dropped.values())
        out = ", ".join(f"{p}={self.rate_hz(p):.1f} Hz" for p in self.spikes)
        return (
            f"[{self.wall_s:6.1f} s] in {self.events_in_per_s / 1e3:8.1f} kev/s  dropped {drops}  "
            f"steps {self.steps} ({self.steps_per_s:.0f}/s)  rate/neuron {out or '-'}  "
            f"latency {self.latency_ms_mean:.1f}/{self.latency_ms_max:.1f} ms"
        )

    def summary(self) -> str:
        """A multi-line report for the end of a stream."""
        lines = [
            f"stream ended: {self.ended or 'running'}",
            f"  wall time      {self.wall_s:.2f} s; sensor time streamed {self.stream_s:.3f} s",
            f"  events in      {self.events_in} ({self.events_in / max(self.wall_s, 1e-9) / 1e3:.1f} kev/s)",
            f"  steps run      {self.steps} ({self.steps / max(self.wall_s, 1e-9):.0f} steps/s)",
            f"  latency        mean {self.latency_ms_mean:.2f} ms, max {self.latency_ms_max:.2f} ms",
        ]
        if self.dropped:
            lines.append("  dropped        " + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())))
        else:
            lines.append("  dropped        none")
        for k, v in sorted({**self.source, **self.target}.items()):
            lines.append(f"  {k:<14} {v}")
        for port, n in self.spikes.items():
            lines.append(f"  output {port!r}: {n} spikes, {self.rate_hz(port):.2f} Hz per neuron")
        return "\n".join(lines)


class Streamer:
    """Drive ``source`` → ``transforms`` → bins of ``dt_us`` µs → ``program``'s input port → ``target``.

    ``size``: the source's ``(W, H, P)``; default ``(source.width, source.height, 2)``. ``t0_us``: origin
    of step 0 (default: the first event). ``input_port``: needed when the program has several.
    ``layout``/``max_count``: see :class:`runtime.transforms.ToAxons`; ``max_count`` defaults to the
    target spec's ``chip.max_input_count``. ``duration_s``: stop after this much sensor time.
    ``on_stats(stats)`` is called at most every ``stats_interval_s`` seconds of wall time.
    """

    def __init__(
        self,
        program: Program,
        source: EventSource,
        target: EmulatorTarget | BoardTarget,
        *,
        dt_us: int = 1000,
        transforms: Sequence[Transform] = (),
        size: Size | None = None,
        t0_us: int | None = None,
        input_port: str | None = None,
        layout: str = "pyx",
        max_count: int | None = None,
        duration_s: float | None = None,
        stats_interval_s: float = 0.5,
        on_stats: Callable[[StreamStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.program, self.source, self.target = program, source, target
        self.dt_us = int(dt_us)
        if size is None:
            if source.width is None or source.height is None:
                raise ValueError(
                    "the source does not state its sensor size; pass size=(W, H, P) (CLI: --sensor WxH)"
                )
            size = (int(source.width), int(source.height), 2)
        inputs = dict(program.inputs)
        if input_port is None:
            if len(inputs) != 1:
                raise ProgramError(f"program has input ports {list(inputs)}; choose one with input_port")
            input_port = next(iter(inputs))
        if input_port not in inputs:
            raise ProgramError(f"program has no input port {input_port!r}; its inputs: {list(inputs)}")
        if max_count is None:
            chip = getattr(getattr(program, "spec", None), "chip", None)
            max_count = getattr(chip, "max_input_count", None)
        pre = Pipeline(*transforms)
        out_size = pre.output_size(size)
        self.binner = TimeBinner(self.dt_us, out_size, t0=t0_us)
        self.axons = ToAxons(
            out_size, inputs[input_port], layout=layout, max_count=max_count, port=input_port
        )
        self.pipeline = Pipeline(*transforms, self.binner, self.axons)
        self.size, self.input_port = size, input_port
        self.max_steps = None if duration_s is None else math.ceil(duration_s * 1e6 / self.dt_us)
        self.stats_interval_s = stats_interval_s
        self.on_stats = on_stats
        self._clock = clock
        self.outputs: dict[str, list[Sparse]] = {p: [] for p in program.outputs}
        self.stats = StreamStats(neurons=dict(program.outputs), spikes=dict.fromkeys(program.outputs, 0))
        self.error: BaseException | None = None
        self._lat_sum = 0.0
        self._lat_n = 0
        self._last_report = 0.0
        self._last_events = 0
        self._last_steps = 0

    # --- running ---------------------------------------------------------------------------------
    def _run(self, counts: np.ndarray, t_recv: float) -> bool:
        """Run ``counts`` (cut at ``max_steps``); returns False once the duration is reached."""
        more = True
        if self.max_steps is not None and self.stats.steps + counts.shape[0] >= self.max_steps:
            counts = counts[: self.max_steps - self.stats.steps]
            more = False
        if counts.shape[0]:
            self._collect(self.target.run(counts))
            self.stats.steps += counts.shape[0]
            lat = (self._clock() - t_recv) * 1e3
            self._lat_sum += lat
            self._lat_n += 1
            self.stats.latency_ms_max = max(self.stats.latency_ms_max, lat)
        return more

    def _collect(self, spikes: dict[str, Sparse]) -> None:
        for port, sp in spikes.items():
            if sp[0].size:
                self.outputs.setdefault(port, []).append(sp)
                self.stats.spikes[port] = self.stats.spikes.get(port, 0) + int(sp[2].sum())

    def _update(self, t_start: float, force: bool = False) -> None:
        now = self._clock()
        since = now - self._last_report
        if not force and since < self.stats_interval_s:
            return
        s = self.stats
        s.wall_s = now - t_start
        s.events_in_per_s = (s.events_in - self._last_events) / max(since, 1e-9)
        s.steps_per_s = (s.steps - self._last_steps) / max(since, 1e-9)
        s.stream_s = s.steps * self.dt_us / 1e6
        s.dropped = self.pipeline.drop_counts()
        s.source = self.source.stats()
        s.target = self.target.stats()
        s.latency_ms_mean = self._lat_sum / self._lat_n if self._lat_n else 0.0
        self._last_report, self._last_events, self._last_steps = now, s.events_in, s.steps
        if self.on_stats is not None and not force:
            self.on_stats(s)

    def run(self) -> StreamStats:
        """Stream until the source ends, the duration is reached, Ctrl-C or a source error.

        Always runs the last partial bin, collects the target's late spikes and closes the source;
        a source failure is kept in ``self.error`` (``stats.ended`` says what happened) rather than
        raised, so that the caller can still save and report.
        """
        t_start = self._last_report = self._clock()
        self._last_events = self._last_steps = 0
        last_event_wall: float | None = None
        last_event_t = 0
        more = True
        try:
            try:
                for chunk in self.source:
                    t_recv = self._clock()
                    self.stats.events_in += chunk.size
                    counts = self.pipeline(chunk)
                    if chunk.size:
                        last_event_wall, last_event_t = t_recv, int(chunk["t"][-1])
                    elif self.source.live and last_event_wall is not None:
                        # quiet live sensor: advance by the host clock, one bin behind for bytes in flight
                        now_t = last_event_t + int((t_recv - last_event_wall) * 1e6) - self.dt_us
                        counts = self.axons(self.binner.advance_to(now_t))
                    more = self._run(counts, t_recv)
                    self._update(t_start)
                    if not more:
                        self.stats.ended = f"duration {self.max_steps} steps reached"
                        break
                else:
                    self.stats.ended = "source ended"
            except KeyboardInterrupt:
                self.stats.ended = "interrupted"
            except (SpikeforgeError, OSError) as exc:
                self.stats.ended = f"source failed: {exc}"
                self.error = exc
            if more:
                t_recv = self._clock()
                try:
                    self._run(self.pipeline.flush(), t_recv)
                except KeyboardInterrupt:
                    self.stats.ended = "interrupted"
            self._collect(self.target.finish())
        finally:
            self.source.close()
            self._update(t_start, force=True)
        return self.stats

    # --- results ---------------------------------------------------------------------------------
    def spikes(self) -> dict[str, np.ndarray]:
        """Output spikes so far, dense ``int32 [steps, neurons]`` per output port."""
        out = {}
        for port, n in self.program.outputs.items():
            dense = np.zeros((self.stats.steps, n), dtype=np.int32)
            for t, i, c in self.outputs.get(port, []):
                inside = t < self.stats.steps
                np.add.at(dense, (t[inside], i[inside]), c[inside])
            out[port] = dense
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save output spikes to ``.npz``: per port ``<port>/steps``, ``<port>/neurons``, ``<port>/counts``
        (sparse, int64), plus ``n_steps``, ``dt_us``, ``t0_us`` (µs of step 0) and ``neurons/<port>``.
        :func:`load_spikes` gives them back dense."""
        arrays: dict[str, np.ndarray] = {
            "n_steps": np.asarray(self.stats.steps, dtype=np.int64),
            "dt_us": np.asarray(self.dt_us, dtype=np.int64),
            "t0_us": np.asarray(self.binner.t0 if self.binner.t0 is not None else 0, dtype=np.int64),
        }
        for port, n in self.program.outputs.items():
            parts = self.outputs.get(port, [])
            for i, key in enumerate(("steps", "neurons", "counts")):
                arrays[f"{port}/{key}"] = (
                    np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
                )
            arrays[f"neurons/{port}"] = np.asarray(n, dtype=np.int64)
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy stubs match ** to allow_pickle


def load_spikes(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Spikes saved by :meth:`Streamer.save` as dense ``int32 [n_steps, neurons]`` arrays per port."""
    with np.load(path) as z:
        n_steps = int(z["n_steps"])
        out = {}
        for key in z.files:
            if key.startswith("neurons/"):
                port = key[len("neurons/") :]
                dense = np.zeros((n_steps, int(z[key])), dtype=np.int32)
                np.add.at(dense, (z[f"{port}/steps"], z[f"{port}/neurons"]), z[f"{port}/counts"])
                out[port] = dense
    return out

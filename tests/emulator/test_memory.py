"""Runs within a memory budget: chunked over time and samples, the same result as one piece."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines_agree import all_probes, assert_same, draw_inputs, draw_program

import emulator
from emulator import memory
from spikeforge.errors import EmulatorError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo", "truenorth"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_chunked_runs_equal_one_run(target, data):
    """A budget so small that every chunk is one step of one sample gives the one-piece result,
    on both engines, with every state probed (TrueNorth's stochastic modes included)."""
    program = draw_program(data, target)
    batch = data.draw(st.integers(1, 4), label="batch")
    steps = data.draw(st.integers(1, 12), label="steps")
    spikes = draw_inputs(data, program, batch, steps)
    probes = all_probes(program)
    whole = emulator.run(program, spikes, probes=probes, seed=3, memory_budget="1GiB")
    tiny = emulator.run(program, spikes, probes=probes, seed=3, memory_budget=1)
    assert_same(whole, tiny)
    ref = emulator.run(program, spikes, probes=probes, seed=3, engine="reference", memory_budget=1)
    assert_same(whole, ref)
    # a Simulator streams in time chunks and carries its state from call to call
    sim = emulator.Simulator(program, batch=batch, seed=3, probes=probes, memory_budget=64)
    half = steps // 2
    first, second = sim.run(spikes[:, :half]), sim.run(spikes[:, half:])
    for name in whole.probes:
        np.testing.assert_array_equal(np.concatenate([first.probes[name], second.probes[name]], axis=1),
                                      whole.probes[name])


def test_budget_forms():
    assert memory.parse(1024) == 1024
    assert memory.parse("512MiB") == 512 << 20
    assert memory.parse("1.5G") == 3 << 29
    assert memory.parse("2 GB") == 2 * 1000**3
    for bad in (0, -5, "lots", "12 parsecs", True, "-1M"):
        with pytest.raises(EmulatorError):
            memory.parse(bad)
    assert memory.budget(None) >= 1 << 20
    assert memory.chunks(10, 3, 7) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert memory.chunks(5, 1, 100) == [(0, 5)]
    assert memory.chunks(0, 1, 1) == []


def test_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPIKEFORGE_MEMORY_BUDGET", "3MiB")
    assert memory.budget() == 3 << 20
    monkeypatch.setenv("SPIKEFORGE_MEMORY_BUDGET", "three")
    with pytest.raises(EmulatorError, match="SPIKEFORGE_MEMORY_BUDGET"):
        memory.budget()


def test_step_bytes_grow_with_what_is_kept():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 50)
    h = b.population("h", 300, vth=10)
    b.connect(x, h, weights=np.ones((300, 50), dtype=np.int64))
    b.output("out", h)
    sim = emulator.Simulator(b.build())
    bare = sim.engine.step_bytes({})
    probed = sim.engine.step_bytes({"h.v": ("h", "v")})
    assert bare >= 300 * 8 and probed >= bare + 300 * 8


LIMITED = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import emulator

    # 60 000 neurons on one input channel: one sample-step of the fast engine keeps ~1.5 MB, so the
    # 16 x 600 run below needs over 8 GiB in one piece
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 1)
    h = b.population("h", 60000, du=0, dv=0, vth=1)
    o = b.population("o", 4, vth=1)
    b.connect(x, h, weights=np.ones((60000, 1), dtype=np.int64))
    b.connect(x, o, weights=np.ones((4, 1), dtype=np.int64))
    b.output("out", o)
    program = b.build()
    spikes = (np.random.default_rng(0).random((16, 600, 1)) < 0.5).astype(np.int8)
    one = emulator.Simulator(program).engine.step_bytes({})
    assert one * 16 * 600 > 8 << 30, one
    # "o" depends on the input only: a program of it alone gives the expected spikes
    small = emulator.ProgramBuilder("loihi")
    sx = small.input("in", 1)
    so = small.population("o", 4, vth=1)
    small.connect(sx, so, weights=np.ones((4, 1), dtype=np.int64))
    small.output("out", so)
    expected = emulator.run(small.build(), spikes).spikes["out"]
    assert expected.any()
    emulator.run(program, spikes[:1, :5])  # warm up: libraries map their memory first
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = vm + (768 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    trace = emulator.run(program, spikes, memory_budget="128MiB")
    assert np.array_equal(trace.spikes["out"], expected), "wrong spikes"
    print("ok", trace.synaptic_ops.sum())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limit and /proc are Linux's")
def test_a_large_run_stays_within_an_address_space_limit():
    """A run that would need over 8 GiB in one piece completes under a 768 MiB address-space
    allowance beyond what the process has mapped, with the right spikes."""
    out = subprocess.run([sys.executable, "-c", LIMITED], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_a_learning_run_in_chunks_equals_one_run():
    """On-chip learning carries its weights, traces and epoch over the chunks too."""
    rng = np.random.default_rng(5)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 12)
    h = b.population("h", 6, du=300, dv=300, vth=3)
    b.connect(x, h, weights=rng.integers(0, 60, (6, 12)), name="p1", plasticity="dw = 2^-2*x1*y0 - 2^-2*y1*x0")
    b.output("out", h)
    program = b.build()
    spikes = (rng.random((3, 40, 12)) < 0.3).astype(np.int8)
    probes = ["p1.w", "p1.x1", "h.v"]
    whole = emulator.run(program, spikes, probes=probes, seed=2, memory_budget="1GiB")
    tiny = emulator.run(program, spikes, probes=probes, seed=2, memory_budget=1)
    assert whole.probes["p1.w"].shape == (3, 40, 6, 12)
    assert_same(whole, tiny)
    assert (whole.probes["p1.w"][:, -1] != whole.probes["p1.w"][:, 0]).any()  # it learned

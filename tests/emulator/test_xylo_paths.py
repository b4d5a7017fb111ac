"""Both fast-engine paths for Xylo — numpy and the optional compiled kernel — equal the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines_agree import all_probes, assert_same, draw_inputs, draw_program

import emulator
from emulator.families.xylo import kernel as xylo_kernel

PATHS = ["numpy", pytest.param("jit", marks=pytest.mark.skipif(not xylo_kernel.load(), reason="numba not installed"))]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPIKEFORGE_EMULATOR_JIT", "1" if request.param == "jit" else "0")
    return str(request.param)


def test_path_is_the_one_asked_for(path: str) -> None:
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 2)
    h = b.population("h", 3)
    b.connect(x, h, weights=np.ones((3, 2), dtype=int))
    b.output("out", h)
    sim = emulator.Simulator(b.build())
    assert sim.engine.compiled is (path == "jit")  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_path_equals_reference_in_chunks(path: str, data: st.DataObject) -> None:
    program = draw_program(data, "xylo")
    batch = data.draw(st.integers(1, 3), label="batch")
    steps = data.draw(st.integers(2, 14), label="steps")
    cut = data.draw(st.integers(1, steps - 1), label="cut")
    spikes = draw_inputs(data, program, batch, steps)
    probes = all_probes(program)
    whole = emulator.run(program, spikes, probes=probes, engine="reference")
    sim = emulator.Simulator(program, engine="fast", batch=batch, probes=probes)
    first, second = sim.run(spikes[:, :cut]), sim.run(spikes[:, cut:])
    joined = emulator.Trace(
        {k: np.concatenate([first.spikes[k], second.spikes[k]], axis=1) for k in first.spikes},
        {k: np.concatenate([first.probes[k], second.probes[k]], axis=1) for k in first.probes},
        np.concatenate([first.synaptic_ops, second.synaptic_ops], axis=1),
    )
    assert_same(whole, joined)


def test_saturating_network_is_exact(path: str) -> None:
    """Weights at the extremes: the numpy path falls back to in-order accumulation, the kernel
    always follows the order; both must equal the reference."""
    rng = np.random.default_rng(7)
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 16)
    h = b.population("h", 30, threshold=rng.integers(1, 30000, 30), dash_mem=1, dash_syn=1, dash_syn2=15)
    o = b.population("o", 4, readout=True, threshold=5000)
    b.connect(x, h, weights=rng.choice([-128, 127], size=(30, 16)), weight_shift=8)
    b.connect(x, h, weights=rng.choice([-128, 127], size=(30, 16)), weight_shift=8, synapse=1, name="in2")
    b.connect(h, h, weights=rng.choice([-128, 0, 127], size=(30, 30)), weight_shift=8)
    b.connect(h, o, weights=rng.integers(-128, 128, (4, 30)), weight_shift=8)
    b.output("out", o)
    program = b.build()
    spikes = rng.integers(0, 16, (2, 25, 16))
    probes = ["h.isyn", "h.isyn2", "h.vmem", "o.isyn", "o.vmem"]
    ref = emulator.run(program, spikes, probes=probes, engine="reference")
    fast = emulator.run(program, spikes, probes=probes, engine="fast")
    assert np.abs(ref.probes["h.isyn2"]).max() >= 32766  # saturated, then decayed by one
    assert_same(ref, fast)

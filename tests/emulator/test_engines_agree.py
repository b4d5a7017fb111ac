"""Property tests: on random programs of every family, with registers over their full ranges (biased
toward the extremes so that wrap and saturation happen), the fast engine computes exactly what the
reference engine (the definition) computes: every probed state, every spike, every synaptic-op count;
and running in two chunks on one Simulator equals one run, for both engines."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import emulator
import hw_specs
from spikeforge.errors import DoesNotFit

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def extreme(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi], often at or next to an end (or 0)."""
    edges = sorted({v for v in (lo, lo + 1, hi - 1, hi, 0) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def draw_registers(data, spec, size: int, readout: bool = False) -> dict:
    regs = {}
    for key in hw_specs.FAMILIES[spec.family]["registers"]:
        if data.draw(st.booleans(), label=f"default {key}"):
            continue  # the spec's default
        rng = spec.registers[key]
        lo, hi = rng.lo, rng.hi
        elem = extreme(lo, hi)
        shape = (size, 4) if key == "type_weights" else (size,)
        if data.draw(st.booleans(), label=f"scalar {key}"):
            regs[key] = data.draw(elem, label=key) if key != "type_weights" else data.draw(
                st.lists(elem, min_size=4, max_size=4), label=key)
        else:
            flat = data.draw(st.lists(elem, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))), label=key)
            regs[key] = np.array(flat, dtype=np.int64).reshape(shape)
    return regs


def draw_weights(data, spec, post: int, pre: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    wr = spec.synapse_range("weight")
    lo = wr.lo if lo is None else lo
    hi = wr.hi if hi is None else hi
    density = data.draw(st.sampled_from([0.2, 0.6, 1.0]), label="density")
    vals = data.draw(st.lists(extreme(lo, hi), min_size=post * pre, max_size=post * pre), label="weights")
    mask = data.draw(st.lists(st.floats(0, 1), min_size=post * pre, max_size=post * pre), label="mask")
    w = np.array(vals, dtype=np.int64).reshape(post, pre)
    w[np.array(mask).reshape(post, pre) > density] = 0
    return w


def draw_program(data, target: str):
    spec = hw_specs.load(target)
    fam = spec.family
    b = emulator.ProgramBuilder(target)
    n_in = data.draw(st.integers(1, 5), label="n_in")
    x = b.input("in", n_in)
    n_pops = data.draw(st.integers(1, 3), label="n_pops")
    sizes = [data.draw(st.integers(1, 5), label="size") for _ in range(n_pops)]
    readout = fam == "xylo" and n_pops >= 2 and data.draw(st.booleans(), label="readout")
    pops = []
    for i, size in enumerate(sizes):
        ro = readout and i == n_pops - 1
        regs = draw_registers(data, spec, size, ro)
        pops.append(b.population(f"p{i}", size, readout=ro, **regs))
    # which pairs are connected: the input always reaches p0; others at random (recurrence included)
    pairs = [("in", 0)]
    for j in range(1, n_pops):
        if data.draw(st.booleans(), label=f"in->p{j}"):
            pairs.append(("in", j))
    for i in range(n_pops):
        if readout and i == n_pops - 1:
            continue  # readouts do not project
        targets = list(range(n_pops))
        if fam == "truenorth":
            # fan-out 1: every neuron targets exactly one axon, so each population at most one projection
            if data.draw(st.booleans(), label=f"p{i} projects"):
                pairs.append((i, data.draw(st.sampled_from(targets), label="target")))
            continue
        for j in targets:
            if data.draw(st.booleans(), label=f"p{i}->p{j}"):
                pairs.append((i, j))
    if readout and not any(j == n_pops - 1 and i != "in" for i, j in pairs):
        pairs.append((0, n_pops - 1))
    for i, j in pairs:
        pre = x if i == "in" else pops[i]
        post = pops[j]
        kw: dict = {}
        if fam == "loihi":
            kw["weight_exp"] = data.draw(extreme(-8, 7), label="weight_exp")
            kw["num_weight_bits"] = data.draw(extreme(1, 8), label="num_weight_bits")
            rng = spec.synapse_range("input_delay" if i == "in" else "delay")
            kw["delay"] = data.draw(st.one_of(st.integers(rng.lo, min(rng.hi, 4)), st.just(rng.hi)), label="delay")
            w = draw_weights(data, spec, post.size, pre.size)
        elif fam == "xylo":
            kw["weight_shift"] = data.draw(extreme(0, 8), label="weight_shift")
            kw["synapse"] = 0 if readout and j == n_pops - 1 else data.draw(st.integers(0, 1), label="synapse")
            w = draw_weights(data, spec, post.size, pre.size)
        else:
            rng = spec.synapse_range("input_delay" if i == "in" else "delay")
            kw["delay"] = data.draw(st.one_of(st.integers(rng.lo, min(rng.hi, 3)), st.just(rng.hi)), label="delay")
            kw["axon_types"] = data.draw(st.lists(st.integers(0, 3), min_size=pre.size, max_size=pre.size),
                                         label="axon_types")
            w = draw_weights(data, spec, post.size, pre.size)
        b.connect(pre, post, weights=w, name=f"{i}->{j}", **kw)
    b.output("out", pops[-1])
    placement = None
    if target == "tiny":
        # spread populations over several small cores
        placement = {f"p{i}": np.array(data.draw(st.lists(st.integers(0, 3), min_size=s, max_size=s),
                                                 label="cores"), dtype=np.int64) for i, s in enumerate(sizes)}
    try:
        program = b.build(placement=placement)
    except DoesNotFit:
        assume(False)
    return program


def draw_inputs(data, program, batch: int, steps: int) -> np.ndarray:
    n = program.inputs["in"]
    fam = program.family
    top = 20 if fam == "xylo" else 1  # xylo clips counts > 15
    p_on = data.draw(st.sampled_from([0.1, 0.5, 0.9]), label="rate")
    vals = data.draw(st.lists(st.integers(0, top), min_size=batch * steps * n, max_size=batch * steps * n),
                     label="counts")
    on = data.draw(st.lists(st.floats(0, 1), min_size=batch * steps * n, max_size=batch * steps * n), label="on")
    s = np.array(vals, dtype=np.int64).reshape(batch, steps, n)
    s[np.array(on).reshape(batch, steps, n) > p_on] = 0
    if top == 1:
        s = np.minimum(s, 1)
    return s


def all_probes(program) -> list[str]:
    return [f"{pop}.{var}" for pop in program.populations for var in (*program.spec.state, "spikes")]


def assert_same(a: emulator.Trace, b: emulator.Trace) -> None:
    assert a.spikes.keys() == b.spikes.keys()
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=f"spikes {k}")
    assert a.probes.keys() == b.probes.keys()
    for k in a.probes:
        np.testing.assert_array_equal(a.probes[k], b.probes[k], err_msg=f"probe {k}")
    np.testing.assert_array_equal(a.synaptic_ops, b.synaptic_ops, err_msg="synaptic_ops")


def run_both_engines(data, program):
    """Draw a batch of inputs and a seed, run ``program`` on both engines probing every state:
    ``(reference trace, fast trace, batch, steps)``."""
    batch = data.draw(st.integers(1, 3), label="batch")
    steps = data.draw(st.integers(1, 12), label="steps")
    spikes = draw_inputs(data, program, batch, steps)
    seed = data.draw(st.integers(0, 2**16), label="seed")
    probes = all_probes(program)
    ref = emulator.run(program, spikes, probes=probes, engine="reference", seed=seed)
    fast = emulator.run(program, spikes, probes=probes, engine="fast", seed=seed)
    return ref, fast, batch, steps


@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo", "truenorth"])
@SETTINGS
@given(data=st.data())
def test_fast_equals_reference(target, data):
    ref, fast, batch, steps = run_both_engines(data, draw_program(data, target))
    assert ref.synaptic_ops.shape == (batch, steps)
    assert_same(ref, fast)


@contextlib.contextmanager
def only_kernels(*kinds: str):
    """Force the fast engine's crossbar products onto ``kinds`` (and the numpy Xylo path, not the
    compiled one)."""
    from emulator import crossbar

    saved = crossbar.KERNELS, os.environ.get("SPIKEFORGE_EMULATOR_JIT")
    crossbar.KERNELS = kinds
    os.environ["SPIKEFORGE_EMULATOR_JIT"] = "0"
    try:
        yield
    finally:
        crossbar.KERNELS = saved[0]
        if saved[1] is None:
            os.environ.pop("SPIKEFORGE_EMULATOR_JIT")
        else:
            os.environ["SPIKEFORGE_EMULATOR_JIT"] = saved[1]


@pytest.mark.parametrize("kernel", ["sparse", "dense", "int8"])
@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo", "truenorth"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_crossbar_kernel_equals_reference(target, kernel, data):
    """Every product kernel — CSR (convolution-like projections), float BLAS and int8 digits — is
    exact: the fast engine on each alone equals the reference engine."""
    from emulator import crossbar

    program = draw_program(data, target)
    batch = data.draw(st.integers(1, 3), label="batch")
    steps = data.draw(st.integers(1, 10), label="steps")
    spikes = draw_inputs(data, program, batch, steps)
    probes = all_probes(program)
    ref = emulator.run(program, spikes, probes=probes, engine="reference", seed=7)
    kinds = ("int8", "dense") if kernel == "int8" else (kernel,)
    with only_kernels(*kinds):
        sim = emulator.Simulator(program, batch=batch, engine="fast", seed=7, probes=probes)
        used = {xb.kind for e in sim.engine.edges for xb in e.crossbars}  # type: ignore[attr-defined]
        assert used <= set(kinds)
        if kernel == "int8" and crossbar.int8_available():
            # int8 takes every edge whose weights fit 14 bits (all drawn programs' do)
            assert used <= {"int8"}
        fast = sim.run(spikes)
    assert_same(ref, fast)


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_two_chunks_equal_one_run(target, data):
    program = draw_program(data, target)
    batch = data.draw(st.integers(1, 2), label="batch")
    steps = data.draw(st.integers(2, 12), label="steps")
    cut = data.draw(st.integers(1, steps - 1), label="cut")
    spikes = draw_inputs(data, program, batch, steps)
    seed = data.draw(st.integers(0, 100), label="seed")
    probes = all_probes(program)
    whole = emulator.run(program, spikes, probes=probes, engine="reference", seed=seed)
    for engine in ("reference", "fast"):
        sim = emulator.Simulator(program, engine=engine, batch=batch, seed=seed, probes=probes)
        first = sim.run(spikes[:, :cut])
        second = sim.run(spikes[:, cut:])
        joined = emulator.Trace(
            {k: np.concatenate([first.spikes[k], second.spikes[k]], axis=1) for k in first.spikes},
            {k: np.concatenate([first.probes[k], second.probes[k]], axis=1) for k in first.probes},
            np.concatenate([first.synaptic_ops, second.synaptic_ops], axis=1),
        )
        assert_same(whole, joined)
        # reset goes back to the initial state
        sim.reset()
        assert_same(whole, sim.run(spikes))


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_spikes_in_flight_cross_the_chunk_boundary(engine):
    # l1 fires at step 1; a 5-step route delivers at step 6, after a chunk boundary at step 3
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 1)
    l1 = b.population("l1", 1, du=4095, dv=4095, vth=0)
    l2 = b.population("l2", 1, du=4095, dv=4095, vth=131071)
    b.connect(x, l1, weights=[[7]], delay=2)
    b.connect(l1, l2, weights=[[9]], delay=5)
    b.output("out", l2)
    p = b.build()
    sim = emulator.Simulator(p, engine=engine, probes=["l1.spikes", "l2.u"])
    s = np.zeros((1, 3, 1), dtype=np.int64)
    s[0, 1, 0] = 1  # arrives at l1 at step 3 -> spike at 3 -> l2 at step 8
    a = sim.run(s)
    c = sim.run(np.zeros((1, 3, 1), dtype=np.int64))
    d = sim.run(steps=4)
    np.testing.assert_array_equal(np.concatenate([a.probes["l1.spikes"], c.probes["l1.spikes"],
                                                  d.probes["l1.spikes"]], axis=1)[0, :, 0],
                                  [0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    u = np.concatenate([a.probes["l2.u"], c.probes["l2.u"], d.probes["l2.u"]], axis=1)[0, :, 0]
    np.testing.assert_array_equal(u, [0, 0, 0, 0, 0, 0, 0, 0, 576, 0])

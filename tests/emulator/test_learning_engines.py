"""On-chip learning: both engines learn the same integers, step by step; learned Programs round-trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emulator
from emulator.families.loihi import learning as loihi_learning
from emulator.learning import LearningRule, format_rule
from emulator.learning.plasticity import TRACES
from emulator.learning.rules import Equation, Factor, Product


def _rule_text(draw: Any, one_k: bool = False) -> str:
    def product() -> Product:
        n = draw(st.integers(0, 3))
        factors = []
        for _ in range(n):
            if draw(st.booleans()):
                var = draw(st.sampled_from(("x1", "x2", "y1", "y2", "y3", "w", "d", "t", "x0", "y0")))
                factors.append(Factor(var, draw(st.integers(-128, 127)) if draw(st.booleans()) else 0))
            else:
                factors.append(Factor(draw(st.sampled_from(("w", "d", "t"))), draw(st.integers(-8, 8)), True))
        dep = draw(st.sampled_from(("x0", "y0", "u")))
        return Product(dep, draw(st.integers(-7, 7).filter(bool)), draw(st.integers(-7, 8)), tuple(factors),
                       draw(st.integers(0, 2)) if dep == "u" else 0)

    eqs = []
    k_all = draw(st.integers(0, 2))
    for target in draw(st.lists(st.sampled_from(("dw", "dd", "dt")), min_size=1, max_size=3, unique=True)):
        products = [product() for _ in range(draw(st.integers(1, 4)))]
        ks = {p.decimate for p in products if p.dependency == "u"}
        k = k_all if one_k else min(ks, default=0)
        products = [Product(p.dependency, p.mantissa, p.exponent, p.factors, k if p.dependency == "u" else 0)
                    for p in products]
        eqs.append(Equation(target, tuple(products)))
    return format_rule(eqs)


@st.composite
def networks(draw: Any) -> tuple[emulator.Program, dict[str, np.ndarray], list[str]]:
    n_in = draw(st.integers(1, 4))
    n1 = draw(st.integers(1, 4))
    n2 = draw(st.integers(1, 3))
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", n_in)
    b.input("reward", 1)

    def regs() -> dict[str, int]:
        return {"du": draw(st.integers(0, 4095)), "dv": draw(st.integers(0, 4095)), "vth": draw(st.integers(1, 60)),
                "bias_mant": draw(st.integers(-20, 60)), "refractory": draw(st.integers(0, 2))}

    l1 = b.population("l1", n1, **regs())
    l2 = b.population("l2", n2, **regs())

    def rule(lava: bool) -> LearningRule:
        params: dict[str, Any] = {f"{t}_impulse": draw(st.integers(0, 127 * 256)) / 256 for t in TRACES}
        params.update({f"{t}_tau": draw(st.sampled_from((0, 1, 2, 5, 16, 255))) for t in TRACES})
        if lava:  # Lava's generators and arithmetic: two-factor rules, one u_k period
            return LearningRule(_rule_text(draw, one_k=True), epoch=draw(st.sampled_from((1, 2, 4, 8))),
                                random="lava", rng_seed=draw(st.integers(0, 2**20)), **params)
        return LearningRule(_rule_text(draw), epoch=draw(st.sampled_from((1, 2, 4, 8))),
                            nearest=draw(st.booleans()), reward="reward" if draw(st.booleans()) else None,
                            **params)

    def weights(post: int, pre: int, lava: bool = False) -> np.ndarray:
        lo = 0 if lava else draw(st.sampled_from((-256, 0)))  # Lava mode: an 8-bit excitatory projection
        values = draw(st.lists(st.integers(lo, 255), min_size=post * pre, max_size=post * pre))
        return np.array(values).reshape(post, pre)

    lava = [draw(st.booleans()) for _ in range(3)]
    bits = 8 if lava[0] else draw(st.integers(6, 8))
    b.connect(x, l1, weights=weights(n1, n_in, lava[0]), name="p1", plasticity=rule(lava[0]), num_weight_bits=bits)
    if draw(st.booleans()):
        b.connect(l1, l2, weights=weights(n2, n1, lava[1]), name="p2", plasticity=rule(lava[1]),
                  delay=draw(st.integers(1, 3)))
    else:
        b.connect(l1, l2, weights=weights(n2, n1), name="p2")
    if draw(st.booleans()):  # recurrence, plastic or not
        plastic = draw(st.booleans())
        b.connect(l2, l1, weights=weights(n1, n2, lava[2] and plastic), name="back",
                  plasticity=rule(lava[2]) if plastic else None)
    b.output("out", l2)
    program = b.build()
    steps = draw(st.integers(1, 24))
    batch = draw(st.integers(1, 2))
    rate = draw(st.sampled_from((0.2, 0.5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    inputs = {"in": (rng.random((batch, steps, n_in)) < rate).astype(np.int64),
              "reward": (rng.random((batch, steps, 1)) < 0.2).astype(np.int64)}
    probes = ["l1.v", "l2.u", "l1.spikes"]
    for proj in program.projections:
        if proj.plasticity is not None:
            probes += [f"{proj.name}.{v}" for v in ("w", "d", "t", *TRACES)]
    return program, inputs, probes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(networks(), st.integers(0, 2**20))
def test_engines_learn_identically(net, seed):
    program, inputs, probes = net
    sims = [emulator.Simulator(program, engine=e, batch=inputs["in"].shape[0], seed=seed, probes=probes)
            for e in ("reference", "fast")]
    t_n = inputs["in"].shape[1]
    cut = t_n // 2  # two chunks: the learning state carries over between calls
    for lo, hi in ((0, cut), (cut, t_n)):
        chunk = {k: v[:, lo:hi] for k, v in inputs.items()}
        ref, fast = (s.run(chunk) for s in sims)
        for key in probes:
            np.testing.assert_array_equal(ref.probes[key], fast.probes[key], err_msg=key)
        np.testing.assert_array_equal(ref.spikes["out"], fast.spikes["out"])
        np.testing.assert_array_equal(ref.synaptic_ops, fast.synaptic_ops)
    for b in range(inputs["in"].shape[0]):
        assert sims[0].learned(b).to_bytes() == sims[1].learned(b).to_bytes()


def _stdp_program(epoch: int = 1) -> emulator.Program:
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 4)
    l1 = b.population("l1", 2, du=4095, dv=4095, vth=100)
    b.connect(x, l1, weights=np.full((2, 4), 90), name="p1",
              plasticity=LearningRule("dw = 2^-2*x1*y0 - 2^-2*y1*x0", epoch=epoch))
    b.output("out", l1)
    return b.build()


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_learned_program_round_trips_and_continues(engine, tmp_path):
    program = _stdp_program(epoch=2)
    rng = np.random.default_rng(1)
    spikes = (rng.random((1, 40, 4)) < 0.4).astype(np.int64)
    sim = emulator.Simulator(program, engine=engine, seed=5, probes=["p1.w"])
    trace = sim.run(spikes)
    learned = sim.learned()
    np.testing.assert_array_equal(learned.weights("p1"), trace.probes["p1.w"][0, -1])
    assert not np.array_equal(learned.weights("p1"), program.weights("p1"))  # it learned something
    path = learned.save(tmp_path / "learned.sfp")
    loaded = emulator.Program.load(path)
    assert loaded.to_bytes() == learned.to_bytes()
    assert loaded.projections[0].plasticity == program.projections[0].plasticity
    again = emulator.run(loaded, spikes[:, :2], probes=["p1.w"], engine=engine)
    np.testing.assert_array_equal(again.probes["p1.w"][0, 0], learned.weights("p1"))  # no epoch end yet


def test_same_seed_same_weights_other_seed_other_weights():
    program = _stdp_program()
    rng = np.random.default_rng(2)
    spikes = (rng.random((1, 60, 4)) < 0.5).astype(np.int64)
    w = [emulator.run(program, spikes, probes=["p1.w"], seed=s).probes["p1.w"][0, -1] for s in (0, 0, 1)]
    np.testing.assert_array_equal(w[0], w[1])
    assert not np.array_equal(w[0], w[2])  # stochastic rounding is seeded


def test_program_without_plasticity_takes_the_fast_path():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    l1 = b.population("l1", 2)
    b.connect(x, l1, weights=[[10, 20], [30, 40]])
    sim = emulator.Simulator(b.build(), engine="fast")
    assert sim.engine.learning is None  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 127), st.integers(0, 4096), st.integers(0, 4095), st.integers(0, 127 * 256),
       st.integers(0, 255), st.booleans())
def test_trace_arithmetic_scalar_and_array_agree(x, k, r12, impulse, r8, overwrite):
    arr = np.array([x], dtype=np.int64)
    assert loihi_learning.decay_array(arr, k, np.array([r12]))[0] == loihi_learning.decay(x, k, r12)
    assert (loihi_learning.add_impulse_array(arr, impulse, np.array([r8]), 127, overwrite)[0]
            == loihi_learning.add_impulse(x, impulse, r8, 127, overwrite))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-600, 600), max_size=3), st.integers(-8, 7), st.integers(-7, 8), st.integers(0, 30),
       st.integers(-40000, 40000), st.integers(0, 2), st.integers(0, 2**9 - 1))
def test_product_arithmetic_scalar_and_array_agree(factors, m, e, width, acc, k, r):
    fs = [loihi_learning.factor(f, 3, False, 7) for f in factors]
    fa = [loihi_learning.factor_array(np.array([f]), 3, False, 7) for f in factors]
    assert [int(v[0]) for v in fa] == fs
    v = loihi_learning.term(1, fs, m, e, width)
    assert loihi_learning.term_array(np.array([1]), fa, m, e, width)[0] == v
    a = loihi_learning.accumulate(acc, v)
    assert loihi_learning.accumulate_array(np.array([acc]), np.array([v]))[0] == a
    r &= (1 << (7 + k)) - 1
    assert loihi_learning.finish_array(np.array([a]), -256, 255, k, np.array([r]))[0] == \
        loihi_learning.finish(a, -256, 255, k, r)


def test_draws_scalar_and_array_agree():
    arr = loihi_learning.draw_array(7, np.arange(3), 2, 33, 9, np.arange(50), 12)
    assert arr.tolist() == [[loihi_learning.draw(7, b, 2, 33, 9, u, 12) for u in range(50)] for b in range(3)]
    assert 0 <= arr.min() and arr.max() < 4096
    assert len(np.unique(arr)) > 100  # batch elements draw their own numbers

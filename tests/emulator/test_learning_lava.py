"""``random="lava"``: both engines learn exactly the weights and tags lava-nc 0.10's fixed-point
learning engine learns, step by step (Lava's output stored by ``tests/fixtures/lava_learning.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.lava_learning import CASES, program, rasters

import emulator
import hw_specs
from emulator.learning import LearningRule, compile_plasticity
from spikeforge.errors import LearningRuleError

LAVA = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "lava_learning.json").read_text())


@pytest.mark.parametrize("engine", ["reference", "fast"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_learns_as_lava_step_by_step(name, engine):
    case = CASES[name]
    prog, inputs = program(case)
    trace = emulator.run(prog, inputs, probes=["syn.w", "syn.t", "post.spikes"], engine=engine, seed=123)
    _, post, _ = rasters(case)
    np.testing.assert_array_equal(trace.probes["post.spikes"][0], post.T)  # the post raster, exactly
    np.testing.assert_array_equal(trace.probes["syn.w"][0], np.array(LAVA[name]["w"]))
    np.testing.assert_array_equal(trace.probes["syn.t"][0], np.array(LAVA[name]["t"]))
    assert (np.diff(trace.probes["syn.w"][0], axis=0) != 0).any()  # it learned


def test_lava_mode_ignores_the_run_seed_and_batch():
    prog, inputs = program(CASES["stdp_fractional_epoch4"])
    both = {k: np.concatenate([v, v]) for k, v in inputs.items()}
    w = emulator.run(prog, both, probes=["syn.w"], seed=7).probes["syn.w"]
    np.testing.assert_array_equal(w[0], w[1])  # Lava has no batch: every element draws Lava's numbers
    np.testing.assert_array_equal(w[0], np.array(LAVA["stdp_fractional_epoch4"]["w"]))


@pytest.mark.parametrize("rule", [
    LearningRule("dw = 2^-2*x1*y0", random="lava", reward="r"),
    LearningRule("dw = 2^-2*x1*y0", random="lava", nearest=True),
    LearningRule("dw = u1*x1; dt = u2*x1", random="lava"),
    LearningRule("dw = 2^-2*x1*y0", random="other"),
])
def test_lava_mode_refuses_what_lava_cannot_run(rule):
    with pytest.raises(LearningRuleError):
        compile_plasticity(rule, hw_specs.load("loihi"))


def test_lava_mode_needs_8_bit_weights():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    p = b.population("p", 1)
    b.connect(x, p, weights=[[10, -20]], name="syn", plasticity=LearningRule("dw = x0", random="lava"))
    with pytest.raises(LearningRuleError, match="8-bit"):
        b.build()

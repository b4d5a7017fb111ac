"""Ready-made rules: the emulated STDP window has the expected exponential shape and signs; the
nearest-neighbour variant pairs with the latest spike only; reward-modulated STDP needs the reward."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
import hw_specs
from emulator.learning import compile_plasticity
from emulator.learning.stdp import nearest_stdp, reward_stdp, scale, stdp, w_max
from emulator.learning.window import stdp_window


def test_scale_literals():
    assert scale(0.25) == "2^-2"
    assert scale(3.0) == "3*2^0"
    assert scale(-0.75) == "-3*2^-2"
    with pytest.raises(ValueError):
        scale(0.0)
    assert w_max(8) == 255 and w_max(6) == 252


@pytest.mark.parametrize("make", [stdp, nearest_stdp, lambda: reward_stdp("r")])
def test_ready_made_rules_compile_for_loihi(make):
    compile_plasticity(make(), hw_specs.load("loihi"))


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_stdp_window_shape_and_signs(engine):
    tau, impulse = 12, 64.0
    rule = stdp(a_plus=1.0, a_minus=1.0, tau_plus=tau, tau_minus=tau, impulse=impulse)
    lags = np.array([-24, -16, -8, -4, -2, -1, 1, 2, 4, 8, 16, 24])
    dw = stdp_window(rule, lags, repeats=16 if engine == "fast" else 2, engine=engine)
    expected = np.sign(lags) * impulse * np.exp(-np.abs(lags) / tau)  # the trace decays once per step
    # signs: potentiation when pre leads, depression when post leads
    assert (np.sign(dw) == np.sign(lags)).all()
    # the exponential within quantisation: stochastic rounding of a 7-bit trace, a few units
    np.testing.assert_allclose(dw, expected, atol=4.0 if engine == "fast" else 6.0)
    # monotone in |lag| on each side
    assert (np.diff(dw[lags > 0]) < 0).all() and (np.diff(dw[lags < 0]) < 0).all()
    if engine == "fast":  # the time constant fitted on each side
        for side in (lags > 0, lags < 0):
            slope = np.polyfit(np.abs(lags[side]), np.log(np.abs(dw[side])), 1)[0]
            assert abs(-1 / slope - tau) < 0.15 * tau


def test_nearest_neighbour_pairs_with_the_latest_spike_only():
    def learned(rule: emulator.learning.LearningRule) -> int:
        b = emulator.ProgramBuilder("loihi")
        x = b.input("pre", 1)
        teach = b.input("teach", 1)
        post = b.population("post", 1, du=4095, dv=4095, vth=101)
        b.connect(x, post, weights=[[100]], name="syn", plasticity=rule)
        b.connect(teach, post, weights=[[255]])
        pre = np.zeros((1, 30, 1), dtype=int)
        pre[0, [5, 10]] = 1  # two pre spikes, then one post spike at 13
        t = np.zeros((1, 30, 1), dtype=int)
        t[0, 12] = 1
        tr = emulator.run(b.build(), {"pre": pre, "teach": t}, probes=["syn.w"], seed=1)
        return int(tr.probes["syn.w"][0, -1, 0, 0]) - 100

    all_to_all = learned(stdp(a_plus=1.0, a_minus=1.0, impulse=32.0, tau_plus=8))
    nearest = learned(nearest_stdp(a_plus=1.0, a_minus=1.0, impulse=32.0, tau_plus=8))
    assert 0 < nearest < all_to_all
    assert abs(nearest - 32 * np.exp(-3 / 8)) <= 3  # the latest pre spike only (lag 3)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_reward_modulated_stdp_needs_the_reward(engine):
    b = emulator.ProgramBuilder("loihi")
    x = b.input("pre", 1)
    teach = b.input("teach", 1)
    b.input("reward", 1)
    post = b.population("post", 1, du=4095, dv=4095, vth=101)
    b.connect(x, post, weights=[[100]], name="syn", plasticity=reward_stdp("reward", a_plus=1.0, a_minus=1.0))
    b.connect(teach, post, weights=[[255]])
    program = b.build()
    steps = 40
    pre = np.zeros((2, steps, 1), dtype=int)
    pre[:, 5] = 1
    t = np.zeros((2, steps, 1), dtype=int)
    t[:, 7] = 1  # post at 8: pre leads, the tag charges
    r = np.zeros((2, steps, 1), dtype=int)
    r[1, 10] = 1  # batch element 1 is rewarded
    tr = emulator.run(program, {"pre": pre, "teach": t, "reward": r}, probes=["syn.w", "syn.t", "syn.y3"],
                      engine=engine)
    assert tr.probes["syn.t"][:, 9, 0, 0].min() > 0  # eligibility after the pairing
    assert tr.probes["syn.w"][0, -1, 0, 0] == 100  # no reward, no change
    assert tr.probes["syn.w"][1, -1, 0, 0] > 100  # reward after a causal pairing: potentiation
    assert tr.probes["syn.y3"][0].max() == 0 and tr.probes["syn.y3"][1].max() > 0


@pytest.mark.slow
def test_example_learns_the_hidden_pattern(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "stdp_pattern.py"
    spec = importlib.util.spec_from_file_location("stdp_pattern", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    example.main()
    lines = capsys.readouterr().out.splitlines()
    first = [float(w) for w in lines[1].split() if w.replace(".", "").isdigit()]
    last = [float(w) for w in lines[2].split() if w.replace(".", "").isdigit()]
    assert last[0] > 0 and last[1] < first[1] and last[1] < 0.2 * last[0]  # it answers the pattern only

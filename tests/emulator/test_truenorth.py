"""TrueNorth family (Cassidy et al. 2013), analytic cases on both engines. Values by hand."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from spikeforge.errors import DoesNotFit, RegisterError

VMAX = (1 << 19) - 1
VMIN = -(1 << 19)
BIG = VMAX  # threshold alpha that is never reached unless stated


def net(n_in=1, weights=None, axon_types=None, **regs):
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", n_in)
    regs.setdefault("threshold", BIG)
    p = b.population("p", 1, **regs)
    w = np.ones((1, n_in), dtype=np.int64) if weights is None else weights
    b.connect(x, p, weights=w, axon_types=axon_types)
    b.output("out", p)
    return b.build()


def spikes_at(steps, n_in, at):
    s = np.zeros((1, steps, n_in), dtype=np.int64)
    for t, c in at:
        s[0, t, c] = 1
    return s


def go(p, s, engine, seed=0):
    tr = emulator.run(p, s, probes=["p.v"], engine=engine, seed=seed)
    return tr.probes["p.v"][0, :, 0], tr.spikes["out"][0, :, 0]


def test_integration_by_axon_type(engine):
    p = net(4, [[1, 1, 1, 0]], axon_types=[0, 1, 2, 3], type_weights=[5, -3, 7, 100], neg_threshold=100)
    s = spikes_at(4, 4, [(0, 0), (0, 1), (1, 2), (2, 3), (2, 1)])
    v, sp = go(p, s, engine)
    # input delay 1: step 1: 5 - 3 = 2; step 2: 2 + 7 = 9; step 3: 9 - 3 = 6 (axon 3 has no crossbar bit)
    np.testing.assert_array_equal(v, [0, 2, 9, 6])
    np.testing.assert_array_equal(sp, [0, 0, 0, 0])


def test_per_neuron_type_weights(engine):
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 2)
    p = b.population("p", 2, threshold=BIG, type_weights=[[1, 2, 3, 4], [-10, 20, 30, 40]], neg_threshold=50)
    b.connect(x, p, weights=[[1, 1], [1, 1]], axon_types=[1, 0])
    b.output("out", p)
    tr = emulator.run(b.build(), spikes_at(2, 2, [(0, 0), (0, 1)]), probes=["p.v"], engine=engine)
    # neuron 0: s[1] + s[0] = 3; neuron 1: 20 - 10 = 10
    np.testing.assert_array_equal(tr.probes["p.v"][0, 1], [3, 10])


def test_positive_leak_and_reset_to_r(engine):
    # leak 7, alpha 10, gamma 0, R 2: 7, 14 -> spike, 2; 9; 16 -> spike, 2; 9
    v, sp = go(net(leak=7, threshold=10, reset_mode=0, reset_value=2), spikes_at(6, 1, []), engine)
    np.testing.assert_array_equal(v, [7, 2, 9, 2, 9, 2])
    np.testing.assert_array_equal(sp, [0, 1, 0, 1, 0, 1])


def test_linear_reset_subtracts_alpha(engine):
    v, sp = go(net(leak=7, threshold=10, reset_mode=1), spikes_at(8, 1, []), engine)
    # 7, 14-10=4, 11-10=1, 8, 15-10=5, 12-10=2, 9, 16-10=6
    np.testing.assert_array_equal(v, [7, 4, 1, 8, 5, 2, 9, 6])
    np.testing.assert_array_equal(sp, [0, 1, 1, 0, 1, 1, 0, 1])


def test_no_reset_keeps_v_and_spikes_once_per_tick(engine):
    v, sp = go(net(leak=7, threshold=10, reset_mode=2), spikes_at(4, 1, []), engine)
    np.testing.assert_array_equal(v, [7, 14, 21, 28])
    np.testing.assert_array_equal(sp, [0, 1, 1, 1])


def test_negative_leak_clamped_by_kappa_1(engine):
    # default beta 0, kappa 1: V never goes below 0
    v, _ = go(net(leak=-2), spikes_at(3, 1, []), engine)
    np.testing.assert_array_equal(v, [0, 0, 0])
    # beta 5, kappa 1: -3, -6 < -5 -> -5, -8 -> -5
    v, _ = go(net(leak=-3, neg_threshold=5, neg_saturate=1), spikes_at(4, 1, []), engine)
    np.testing.assert_array_equal(v, [-3, -5, -5, -5])


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        (0, [-3, -2, -5, -2, -5, -2]),      # below -beta: V = -R = -2; -5 is not < -5
        (1, [-3, -1, -4, -2, -5, -3]),      # V += beta: -6 -> -1, -7 -> -2, -8 -> -3
        (2, [-3, -6, -9, -12, -15, -18]),   # keep
    ],
)
def test_negative_threshold_kappa_0_mirrors_reset(engine, mode, want):
    p = net(leak=-3, neg_threshold=5, neg_saturate=0, reset_mode=mode, reset_value=2)
    v, sp = go(p, spikes_at(6, 1, []), engine)
    np.testing.assert_array_equal(v, want)
    np.testing.assert_array_equal(sp, np.zeros(6))


def test_leak_reversal_decays_toward_zero(engine):
    # epsilon 1: V += sgn(V) * lambda; lambda -1 pulls both signs toward 0
    p = net(2, [[1, 1]], axon_types=[0, 1], type_weights=[5, -5, 0, 0], leak=-1, leak_reversal=1,
            neg_threshold=100)
    v, _ = go(p, spikes_at(8, 2, [(0, 0)]), engine)
    np.testing.assert_array_equal(v, [0, 4, 3, 2, 1, 0, 0, 0])
    v, _ = go(p, spikes_at(8, 2, [(0, 1)]), engine)
    np.testing.assert_array_equal(v, [0, -4, -3, -2, -1, 0, 0, 0])
    # without reversal, lambda -1 keeps going down (beta 100, kappa 1 clamps at -100)
    p = net(2, [[1, 1]], axon_types=[0, 1], type_weights=[5, -5, 0, 0], leak=-1, neg_threshold=100)
    v, _ = go(p, spikes_at(8, 2, [(0, 0)]), engine)
    np.testing.assert_array_equal(v, [-1, 3, 2, 1, 0, -1, -2, -3])


def test_leak_applies_after_integration_before_threshold(engine):
    # leak -3 at step 0 (beta 100): -3; input +10 then leak: -3 + 10 - 3 = 4 < 8; next input: 4 + 10 - 3 = 11
    # >= 8: spike, V = R = 0; then -3
    p = net(type_weights=[10, 0, 0, 0], leak=-3, threshold=8, neg_threshold=100)
    v, sp = go(p, spikes_at(4, 1, [(0, 0), (1, 0)]), engine)
    np.testing.assert_array_equal(v, [-3, 4, 0, -3])
    np.testing.assert_array_equal(sp, [0, 0, 1, 0])


def test_v_saturates_at_20_bits(engine):
    n = 256
    p = net(n, np.ones((1, n), dtype=np.int64), type_weights=[255, 0, 0, 0], threshold=1, reset_mode=2)
    s = np.ones((1, 11, n), dtype=np.int64)
    v, sp = go(p, s, engine)
    # 256 x 255 = 65280 per tick from step 1; 8 x 65280 = 522240; then 524287
    want = [0] + [min(65280 * t, VMAX) for t in range(1, 11)]
    assert want[9] == VMAX and want[8] == 522240
    np.testing.assert_array_equal(v, want)
    np.testing.assert_array_equal(sp, [0] + [1] * 10)
    p = net(n, np.ones((1, n), dtype=np.int64), type_weights=[-255, 0, 0, 0], reset_mode=2, neg_saturate=0)
    v, _ = go(p, s, engine)
    np.testing.assert_array_equal(v, [0] + [max(-65280 * t, VMIN) for t in range(1, 11)])


def test_saturation_is_in_axon_order(engine):
    # V at +VMAX after 9 ticks of +65280 (type 0, axons 0..255); then one tick where only axon 0 (type 0,
    # +255) and axon 1 (type 1, -255) fire: sat(VMAX + 255) - 255 = VMAX - 255 (the plain sum would keep VMAX)
    n = 256
    types = [0] * n
    types[1] = 1
    p = net(n, np.ones((1, n), dtype=np.int64), axon_types=types, type_weights=[255, -255, 0, 0],
            threshold=BIG, reset_mode=2)
    s = np.zeros((1, 12, n), dtype=np.int64)
    s[0, :10, :] = 1
    s[0, :10, 1] = 0
    s[0, 10, [0, 1]] = 1
    v, _ = go(p, s, engine)
    assert v[10] == VMAX
    assert v[11] == VMAX - 255


def _stochastic(**regs):
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    regs.setdefault("threshold", BIG)
    p = b.population("p", 4, **regs)
    b.connect(x, p, weights=np.ones((4, 1), dtype=np.int64))
    b.output("out", p)
    return b.build()


@pytest.mark.parametrize(
    "regs",
    [
        {"leak": 100, "stochastic_leak": 1},
        {"type_weights": [100, 0, 0, 0], "stochastic_synapse": 1},
        {"leak": 3, "threshold": 10, "threshold_mask_bits": 4, "reset_mode": 0},
    ],
    ids=["leak", "synapse", "threshold"],
)
def test_stochastic_modes_are_seeded(engine, regs):
    p = _stochastic(**regs)
    s = np.ones((1, 120, 1), dtype=np.int64)
    a = emulator.run(p, s, probes=["p.v", "p.spikes"], engine=engine, seed=7)
    b = emulator.run(p, s, probes=["p.v", "p.spikes"], engine=engine, seed=7)
    c = emulator.run(p, s, probes=["p.v", "p.spikes"], engine=engine, seed=8)
    np.testing.assert_array_equal(a.probes["p.v"], b.probes["p.v"])
    np.testing.assert_array_equal(a.probes["p.spikes"], b.probes["p.spikes"])
    assert (a.probes["p.v"] != c.probes["p.v"]).any()
    # the four neurons draw different numbers
    assert len({tuple(a.probes["p.v"][0, :, i]) for i in range(4)}) > 1


def test_stochastic_leak_statistics(engine):
    # +1 with probability 100/256 per tick: ~ 0.39 per tick, and never more than 1 per tick
    p = _stochastic(leak=100, stochastic_leak=1)
    v = emulator.run(p, np.zeros((1, 400, 1), dtype=np.int64), probes=["p.v"], engine=engine, seed=3).probes["p.v"]
    assert set(np.unique(np.diff(v[0], axis=0))) <= {0, 1}
    mean = v[0, -1].mean() / 400
    assert 0.3 < mean < 0.48


def test_stochastic_modes_same_in_both_engines():
    p = _stochastic(leak=-40, stochastic_leak=1, type_weights=[200, 0, 0, 0], stochastic_synapse=1,
                    threshold=20, threshold_mask_bits=3, reset_mode=1, neg_threshold=30)
    s = (np.arange(90)[None, :, None] % 3 != 0).astype(np.int64)
    ref = emulator.run(p, s, probes=["p.v"], engine="reference", seed=5)
    fast = emulator.run(p, s, probes=["p.v"], engine="fast", seed=5)
    np.testing.assert_array_equal(ref.probes["p.v"], fast.probes["p.v"])
    np.testing.assert_array_equal(ref.spikes["out"], fast.spikes["out"])


def test_fan_out_above_one_does_not_fit():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    a = b.population("a", 1)
    c1 = b.population("c1", 1)
    c2 = b.population("c2", 1)
    b.connect(x, a, weights=[[1]])
    b.connect(a, c1, weights=[[1]])
    b.connect(a, c2, weights=[[1]])
    b.output("out", c1)
    with pytest.raises(DoesNotFit, match=r"fan-out 2 .*fan_out_per_neuron 1"):
        b.build()


def test_one_axon_to_many_neurons_fits():
    # a single route into one axon whose crossbar row has many bits is fan-out 1
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    a = b.population("a", 1, threshold=1)
    c = b.population("c", 3, threshold=BIG)
    b.connect(x, a, weights=[[1]])
    b.connect(a, c, weights=[[1], [1], [1]])
    b.output("out", c)
    p = b.build()
    tr = emulator.run(p, np.ones((1, 4, 1), dtype=np.int64), probes=["c.v"], engine="reference")
    # a fires at step 1, c integrates it (+1, default type weight) at step 2
    np.testing.assert_array_equal(tr.probes["c.v"][0, :, 0], [0, 0, 1, 2])


def test_truenorth_register_errors():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 2)
    with pytest.raises(RegisterError, match=r"type_weights=256 .*\[-255, 255\]"):
        b.population("p", 1, type_weights=[0, 256, 0, 0])
    with pytest.raises(RegisterError, match=r"reset_mode=3"):
        b.population("p", 1, reset_mode=3)
    with pytest.raises(RegisterError, match=r"threshold=0"):
        b.population("p", 1, threshold=0)
    p = b.population("p", 1)
    with pytest.raises(RegisterError, match=r"weight 2 .*\[0, 1\]"):
        b.connect(x, p, weights=[[2, 0]])
    with pytest.raises(RegisterError, match=r"axon_types=4"):
        b.connect(x, p, weights=[[1, 1]], axon_types=[0, 4])
    with pytest.raises(RegisterError, match=r"delay=16 outside \[1, 15\]"):
        b.connect(x, p, weights=[[1, 1]], delay=16)


def test_stochastic_synapse_neuron_reads_its_source_population_of_the_same_chunk(engine):
    # p1's stochastic mode is on for axon type 1 only, its synapses are type 0: it integrates one
    # synapse at a time (outside the crossbar products) but deterministically. p0 spikes at step 1
    # (input delay 1), p1 receives it at step 2 and spikes: the engine must step p0 before p1.
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    p0 = b.population("p0", 1, threshold=1)
    p1 = b.population("p1", 1, threshold=1, stochastic_synapse=2)
    b.connect(x, p0, weights=np.ones((1, 1), dtype=np.int64))
    b.connect(p0, p1, weights=np.ones((1, 1), dtype=np.int64))
    b.output("out", p1)
    tr = emulator.run(b.build(), spikes_at(4, 1, [(0, 0)]), engine=engine)
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [0, 0, 1, 0])

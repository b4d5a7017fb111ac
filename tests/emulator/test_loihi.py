"""Loihi family, analytic cases (Lava PyLifModelBitAcc + PyDenseModelBitAcc semantics), each on both
engines, plus register validation. Expected values are computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from spikeforge.errors import EmulatorError, ProgramError, RegisterError

BIG_VTH = 131071  # vth << 6 = 8388544: no spike for the drives used below
U24 = 1 << 23


def one_neuron(n_in=1, weights=None, *, weight_exp=0, num_weight_bits=8, in_delay=None, **regs):
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", n_in)
    l1 = b.population("l1", 1, **regs)
    w = np.ones((1, n_in), dtype=np.int64) if weights is None else np.asarray(weights)
    b.connect(x, l1, weights=w, weight_exp=weight_exp, num_weight_bits=num_weight_bits, delay=in_delay)
    b.output("out", l1)
    return b.build()


def pulse(steps, n_in=1, at=((0, 0),)):
    s = np.zeros((1, steps, n_in), dtype=np.int64)
    for t, c in at:
        s[0, t, c] = 1
    return s


def trace(program, spikes, engine, probes=("l1.u", "l1.v")):
    return emulator.run(program, spikes, probes=list(probes), engine=engine)


# ----------------------------------------------------------------------------- current
def test_u_halves_toward_zero_after_one_spike(engine):
    # du = 2047: u <- trunc(u * (4096 - 2048) / 4096) = trunc(u / 2)
    p = one_neuron(weights=[[100]], du=2047, dv=0, vth=BIG_VTH)
    tr = trace(p, pulse(16), engine)
    u = tr.probes["l1.u"][0, :, 0]
    # input at step 0 reaches the neuron at step 1 (Lava Dense delay): u = 100 * 64 = 6400
    want = [0, 6400, 3200, 1600, 800, 400, 200, 100, 50, 25, 12, 6, 3, 1, 0, 0]
    np.testing.assert_array_equal(u, want)
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], np.zeros(16))
    # dv = 0: v integrates u without leak
    np.testing.assert_array_equal(tr.probes["l1.v"][0, :, 0], np.cumsum(want))


def test_u_decay_truncates_negative_values_toward_zero(engine):
    p = one_neuron(weights=[[-100]], du=2047, dv=4095, vth=BIG_VTH)
    u = trace(p, pulse(16), engine).probes["l1.u"][0, :, 0]
    # -12.5 -> -12 and -1.5 -> -1 (toward zero; a floor would give -13 and -2)
    want = [0, -6400, -3200, -1600, -800, -400, -200, -100, -50, -25, -12, -6, -3, -1, 0, 0]
    np.testing.assert_array_equal(u, want)


def test_v_leak_halves_toward_zero(engine):
    # du = 4095: u keeps only this step's input; dv = 2048: v <- trunc(v / 2) + u
    p = one_neuron(weights=[[-3]], du=4095, dv=2048, vth=BIG_VTH)
    tr = trace(p, pulse(11), engine)
    np.testing.assert_array_equal(tr.probes["l1.u"][0, :, 0], [0, -192] + [0] * 9)
    # -192, -96, -48, -24, -12, -6, -3, trunc(-1.5) = -1, trunc(-0.5) = 0
    np.testing.assert_array_equal(tr.probes["l1.v"][0, :, 0], [0, -192, -96, -48, -24, -12, -6, -3, -1, 0, 0])
    p = one_neuron(weights=[[101]], du=4095, dv=2048, vth=BIG_VTH)
    v = trace(p, pulse(8), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v, [0, 6464, 3232, 1616, 808, 404, 202, 101])


def test_bias_integrates_to_threshold_spikes_and_resets(engine):
    # bias = 5 << 3 = 40 per step, no leak; spike when v > vth << 6 = 640
    p = one_neuron(bias_mant=5, bias_exp=3, vth=10, du=0, dv=0)
    tr = trace(p, pulse(40, at=()), engine)
    v = tr.probes["l1.v"][0, :, 0]
    s = tr.spikes["out"][0, :, 0]
    # the state recorded at index t is after step t: 40 already at index 0
    assert v[0] == 40
    assert v[15] == 640  # 640 is not > 640: no spike yet
    # 40 * 17 = 680 > 640 at step 16: spike, v = 0; again 17 steps later
    np.testing.assert_array_equal(np.flatnonzero(s), [16, 33])
    assert v[16] == 0 and v[17] == 40 and v[32] == 640 and v[33] == 0
    np.testing.assert_array_equal(tr.probes["l1.u"][0], np.zeros((40, 1)))


def test_negative_bias_saturates_v(engine):
    # bias = -4096 << 7 = -524288 per step: -8388608 after 16 steps, clipped to -(2^23 - 1)
    p = one_neuron(bias_mant=-4096, bias_exp=7, dv=0, vth=BIG_VTH)
    v = trace(p, pulse(20, at=()), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v[:15], -524288 * np.arange(1, 16))
    np.testing.assert_array_equal(v[15:], [-(U24 - 1)] * 5)
    # vmin_exp = 31 (vmin = -2^31 + 1) is still bounded by the 24-bit register
    p = one_neuron(bias_mant=-4096, bias_exp=7, dv=0, vth=BIG_VTH, vmin_exp=31)
    v = trace(p, pulse(20, at=()), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v[15:], [-(U24 - 1)] * 5)


def test_vmin_vmax_clamp_v(engine):
    # vmin_exp = 10: vmin = -2^10 + 1 = -1023
    p = one_neuron(bias_mant=-300, dv=0, vth=BIG_VTH, vmin_exp=10)
    v = trace(p, pulse(6, at=()), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v, [-300, -600, -900, -1023, -1023, -1023])
    # vmin_exp = 0: vmin = -1 + 1 = 0 (NengoLoihi's default: v never negative)
    p = one_neuron(weights=[[-50]], dv=0, vth=BIG_VTH, vmin_exp=0)
    v = trace(p, pulse(4), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v, [0, 0, 0, 0])
    # vmax_exp = 0: vmax = 2^9 - 1 = 511 (below vth << 6, so v sits at 511)
    p = one_neuron(bias_mant=100, dv=0, vth=BIG_VTH, vmax_exp=0)
    v = trace(p, pulse(7, at=()), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v, [100, 200, 300, 400, 500, 511, 511])
    # vmax_exp = 1: vmax = 2^11 - 1 = 2047
    p = one_neuron(bias_mant=1000, dv=0, vth=BIG_VTH, vmax_exp=1)
    v = trace(p, pulse(4, at=()), engine).probes["l1.v"][0, :, 0]
    np.testing.assert_array_equal(v, [1000, 2000, 2047, 2047])


def test_u_wraps_past_2_23(engine):
    # 5 inputs of 255, weight_exp 7: a = 1275 << 7 = 163200; u = a << 6 = 10444800 > 2^23 -> -6332416
    p = one_neuron(5, [[255] * 5], weight_exp=7, du=4095, dv=4095, vth=BIG_VTH)
    s = np.zeros((1, 4, 5), dtype=np.int64)
    s[0, 0, :] = 1
    tr = trace(p, s, engine)
    np.testing.assert_array_equal(tr.probes["l1.u"][0, :, 0], [0, 10444800 - (1 << 24), 0, 0])
    assert tr.probes["l1.v"][0, 1, 0] == 10444800 - (1 << 24)
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [0, 0, 0, 0])


def test_u_wrap_is_half_open(engine):
    # 8 x 128 << 7 << 6 = 2^23 exactly: inside (-2^23, 2^23]
    p = one_neuron(8, [[128] * 8], weight_exp=7, du=4095, vth=BIG_VTH)
    s = np.zeros((1, 3, 8), dtype=np.int64)
    s[0, 0, :] = 1
    np.testing.assert_array_equal(trace(p, s, engine).probes["l1.u"][0, :, 0], [0, U24, 0])
    # 8 x -128: -2^23 is outside, gains 2^24 -> +2^23
    p = one_neuron(8, [[-128] * 8], weight_exp=7, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(trace(p, s, engine).probes["l1.u"][0, :, 0], [0, U24, 0])
    # 7 x -128 -> -7340032, no wrap
    s7 = s.copy()
    s7[0, 0, 7] = 0
    np.testing.assert_array_equal(trace(p, s7, engine).probes["l1.u"][0, :, 0], [0, -7340032, 0])


def test_u_wraps_while_accumulating(engine):
    # du = 0 (factor 4095/4096) and 5 x 255 << 7 every step: u crosses 2^23 at step 1
    p = one_neuron(5, [[255] * 5], weight_exp=7, du=0, dv=4095, vth=BIG_VTH)
    s = np.ones((1, 3, 5), dtype=np.int64)
    u = trace(p, s, engine).probes["l1.u"][0, :, 0]
    u1 = 10444800 - (1 << 24)                       # step 1: -6332416
    u2 = -((6332416 * 4095) >> 12) + 10444800       # step 2: trunc(u1 * 4095/4096) + 10444800
    assert u2 == 4113930  # no wrap needed
    np.testing.assert_array_equal(u, [0, u1, u2])


# --------------------------------------------------------------------------- weight format
def test_negative_weight_exp_floors_after_the_projection_sum(engine):
    # [1, 1] >> 1 summed first: (1 + 1) >> 1 = 1 -> u = 64 (per synapse it would be 0)
    p = one_neuron(2, [[1, 1]], weight_exp=-1, du=4095, vth=BIG_VTH)
    s = np.zeros((1, 3, 2), dtype=np.int64)
    s[0, 0, :] = 1
    np.testing.assert_array_equal(trace(p, s, engine).probes["l1.u"][0, :, 0], [0, 64, 0])
    # 3 >> 1 = 1
    p = one_neuron(3, [[1, 1, 1]], weight_exp=-1, du=4095, vth=BIG_VTH)
    s3 = np.zeros((1, 3, 3), dtype=np.int64)
    s3[0, 0, :] = 1
    np.testing.assert_array_equal(trace(p, s3, engine).probes["l1.u"][0, :, 0], [0, 64, 0])
    # one input: 1 >> 1 = 0; -1 >> 1 = -1 (floor, as Lava's >>), not 0
    p = one_neuron(2, [[1, -1]], weight_exp=-1, num_weight_bits=8, du=4095, vth=BIG_VTH)
    # mixed sign, 8 bits: stored weights lose the LSB: 1 -> 0, -1 -> -2; -2 >> 1 = -1
    np.testing.assert_array_equal(p.weights("in->l1"), [[0, -2]])
    np.testing.assert_array_equal(trace(p, pulse(3, 2, at=((0, 1),)), engine).probes["l1.u"][0, :, 0],
                                  [0, -64, 0])
    p = one_neuron(1, [[-1]], weight_exp=-1, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(trace(p, pulse(3), engine).probes["l1.u"][0, :, 0], [0, -64, 0])
    p = one_neuron(1, [[-5]], weight_exp=-2, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(trace(p, pulse(3), engine).probes["l1.u"][0, :, 0], [0, -128, 0])


def test_weight_exp_shift_is_per_projection(engine):
    # two projections with weight 1 and weight_exp -1 each floor to 0 separately
    b = emulator.ProgramBuilder("loihi")
    x1 = b.input("a", 1)
    x2 = b.input("b", 1)
    l1 = b.population("l1", 1, du=4095, vth=BIG_VTH)
    b.connect(x1, l1, weights=[[1]], weight_exp=-1)
    b.connect(x2, l1, weights=[[1]], weight_exp=-1)
    b.output("out", l1)
    p = b.build()
    tr = emulator.run(p, {"a": pulse(3), "b": pulse(3)}, probes=["l1.u"], engine=engine)
    np.testing.assert_array_equal(tr.probes["l1.u"][0, :, 0], [0, 0, 0])
    # and a positive exponent multiplies: 3 << 2 = 12 -> u = 768
    p = one_neuron(1, [[3]], weight_exp=2, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(trace(p, pulse(3), engine).probes["l1.u"][0, :, 0], [0, 768, 0])


def test_weight_truncation_mixed_sign_loses_lsb(engine):
    # mixed sign, 8 bits: k = 8 - 8 + 1 = 1: 3 -> 2, -3 -> -4, 255 -> 254, -256 stays
    p = one_neuron(4, [[3, -3, 255, -256]], du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[2, -4, 254, -256]])
    for ch, want in ((0, 2 * 64), (1, -4 * 64), (2, 254 * 64)):
        u = trace(p, pulse(3, 4, at=((0, ch),)), engine).probes["l1.u"][0, :, 0]
        np.testing.assert_array_equal(u, [0, want, 0])


def test_weight_truncation_single_sign_keeps_lsb(engine):
    # excitatory only: k = 0
    p = one_neuron(2, [[3, 255]], du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[3, 255]])
    np.testing.assert_array_equal(trace(p, pulse(3, 2), engine).probes["l1.u"][0, :, 0], [0, 192, 0])
    # inhibitory only: k = 0, applied to -w
    p = one_neuron(2, [[-3, -255]], du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[-3, -255]])
    # fewer bits: excitatory 4 bits, k = 4: 37 -> 32, 15 -> 0 (dropped); inhibitory -37 -> -32
    p = one_neuron(2, [[37, 15]], num_weight_bits=4, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[32, 0]])
    np.testing.assert_array_equal(trace(p, pulse(3, 2), engine).probes["l1.u"][0, :, 0], [0, 2048, 0])
    p = one_neuron(1, [[-37]], num_weight_bits=4, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[-32]])
    # mixed 4 bits, k = 5: 37 -> 32, -37 -> -64
    p = one_neuron(2, [[37, -37]], num_weight_bits=4, du=4095, vth=BIG_VTH)
    np.testing.assert_array_equal(p.weights("in->l1"), [[32, -64]])


# -------------------------------------------------------------------------- refractory
def test_refractory_holds_v_at_zero(engine):
    p = one_neuron(bias_mant=5, bias_exp=3, vth=10, refractory=3)
    tr = trace(p, pulse(40, at=()), engine)
    v = tr.probes["l1.v"][0, :, 0]
    # spike at 16 (680 > 640), then v held at 0 for steps 17, 18, 19; integrates again from step 20
    np.testing.assert_array_equal(np.flatnonzero(tr.spikes["out"][0, :, 0]), [16, 36])
    np.testing.assert_array_equal(v[16:21], [0, 0, 0, 0, 40])
    assert v[35] == 640


def test_refractory_neuron_does_not_spike_even_when_driven(engine):
    # vth 0: any v > 0 spikes; the input drives every step but refractory 2 allows one spike per 3 steps
    p = one_neuron(weights=[[10]], du=4095, dv=4095, vth=0, refractory=2)
    s = np.ones((1, 10, 1), dtype=np.int64)
    sp = trace(p, s, engine).spikes["out"][0, :, 0]
    np.testing.assert_array_equal(np.flatnonzero(sp), [1, 4, 7])


# ------------------------------------------------------------------------------ delays
@pytest.mark.parametrize("d", [1, 2, 5, 62])
def test_route_delay_shifts_arrival(engine, d):
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 1)
    l1 = b.population("l1", 1, du=4095, dv=4095, vth=0)
    l2 = b.population("l2", 1, du=4095, dv=4095, vth=BIG_VTH)
    b.connect(x, l1, weights=[[7]])
    b.connect(l1, l2, weights=[[9]], delay=d)
    b.output("out", l2)
    p = b.build()
    steps = d + 4
    tr = emulator.run(p, pulse(steps), probes=["l1.spikes", "l2.u"], engine=engine)
    # l1 fires at step 1 (input delay 1); l2 sees it at step 1 + d
    np.testing.assert_array_equal(np.flatnonzero(tr.probes["l1.spikes"][0, :, 0]), [1])
    want = np.zeros(steps, dtype=np.int64)
    want[1 + d] = 9 * 64
    np.testing.assert_array_equal(tr.probes["l2.u"][0, :, 0], want)


@pytest.mark.parametrize("d", [1, 3, 10])
def test_input_delay_shifts_arrival(engine, d):
    p = one_neuron(weights=[[4]], in_delay=d, du=4095, vth=BIG_VTH)
    want = np.zeros(d + 3, dtype=np.int64)
    want[d] = 256
    np.testing.assert_array_equal(trace(p, pulse(d + 3), engine).probes["l1.u"][0, :, 0], want)


def test_batch_elements_are_independent(engine):
    p = one_neuron(weights=[[100]], du=2047, dv=0, vth=BIG_VTH)
    s = np.zeros((3, 4, 1), dtype=np.int64)
    s[0, 0, 0] = 1
    s[2, 1, 0] = 1
    u = trace(p, s, engine).probes["l1.u"][:, :, 0]
    np.testing.assert_array_equal(u, [[0, 6400, 3200, 1600], [0, 0, 0, 0], [0, 0, 6400, 3200]])


# ----------------------------------------------------------------------- register errors
def _pop_error(**regs):
    b = emulator.ProgramBuilder("loihi")
    with pytest.raises(RegisterError) as err:
        b.population("l1", 2, **regs)
    return str(err.value)


@pytest.mark.parametrize(
    ("regs", "needles"),
    [
        ({"du": 5000}, ["du", "5000", "[0, 4095]"]),
        ({"dv": -1}, ["dv", "-1", "[0, 4095]"]),
        ({"vth": -1}, ["vth", "-1", "[0, 131071]"]),
        ({"vth": 131072}, ["vth", "131072", "[0, 131071]"]),
        ({"bias_exp": 8}, ["bias_exp", "8", "[0, 7]"]),
        ({"bias_mant": 4096}, ["bias_mant", "4096", "[-4096, 4095]"]),
        ({"refractory": 64}, ["refractory", "64", "[0, 63]"]),
        ({"vmax_exp": 8}, ["vmax_exp", "8", "[0, 7]"]),
        ({"du": [0, 4096]}, ["du", "4096", "[0, 4095]"]),
    ],
)
def test_population_register_out_of_range(regs, needles):
    msg = _pop_error(**regs)
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "loihi" in msg


def test_register_errors_are_value_errors():
    assert issubclass(RegisterError, ValueError)
    with pytest.raises(ValueError):
        emulator.ProgramBuilder("loihi").population("l1", 1, du=5000)


def _conn_error(weights, exc=RegisterError, **kw):
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    l1 = b.population("l1", 1)
    with pytest.raises(exc) as err:
        b.connect(x, l1, weights=weights, **kw)
    return str(err.value)


@pytest.mark.parametrize(
    ("weights", "kw", "needles"),
    [
        ([[300, 0]], {}, ["weight", "300", "[-256, 255]"]),
        ([[0, -257]], {}, ["weight", "-257", "[-256, 255]"]),
        ([[256, 1]], {}, ["weight", "256", "[-256, 255]"]),
        ([[1, 1]], {"num_weight_bits": 9}, ["num_weight_bits", "9", "[1, 8]"]),
        ([[1, 1]], {"num_weight_bits": 0}, ["num_weight_bits", "0", "[1, 8]"]),
        ([[1, 1]], {"weight_exp": 9}, ["weight_exp", "9", "[-8, 7]"]),
        ([[1, 1]], {"weight_exp": -9}, ["weight_exp", "-9", "[-8, 7]"]),
        ([[1, 1]], {"delay": 0}, ["delay", "0", "[1, 62]"]),
        ([[1, 1]], {"delay": 63}, ["delay", "63", "[1, 62]"]),
    ],
)
def test_projection_register_out_of_range(weights, kw, needles):
    msg = _conn_error(weights, **kw)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_delay_zero_between_populations():
    b = emulator.ProgramBuilder("loihi")
    l1 = b.population("l1", 1)
    l2 = b.population("l2", 1)
    with pytest.raises(RegisterError, match=r"delay=0 outside \[1, 62\]"):
        b.connect(l1, l2, weights=[[1]], delay=0)


def test_float_weights_must_be_integers():
    msg = _conn_error(np.array([[1.5, 2.0]]))
    assert "integer" in msg
    # integer-valued floats are accepted
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    l1 = b.population("l1", 1)
    b.connect(x, l1, weights=np.array([[4.0, -2.0]]))
    b.output("o", l1)
    np.testing.assert_array_equal(b.build().weights("in->l1"), [[4, -2]])


def test_float_register_must_be_integer():
    with pytest.raises(RegisterError, match="du"):
        emulator.ProgramBuilder("loihi").population("l1", 1, du=1.5)


def test_unknown_register_name():
    with pytest.raises(RegisterError, match="tau_mem"):
        emulator.ProgramBuilder("loihi").population("l1", 1, tau_mem=3)


def test_register_array_of_wrong_shape():
    with pytest.raises(RegisterError, match="shape"):
        emulator.ProgramBuilder("loihi").population("l1", 3, du=[1, 2])


def test_wrong_weight_shape():
    msg = _conn_error(np.ones((2, 2), dtype=np.int64), exc=ProgramError)
    assert "(2, 2)" in msg and "(1, 2)" in msg


def _simple():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    l1 = b.population("l1", 1)
    b.connect(x, l1, weights=[[1, 1]])
    b.output("out", l1)
    return b.build()


def test_unknown_probe():
    p = _simple()
    with pytest.raises(EmulatorError, match="nope"):
        emulator.run(p, np.zeros((1, 2, 2)), probes=["nope.v"])
    with pytest.raises(EmulatorError, match="isyn"):
        emulator.run(p, np.zeros((1, 2, 2)), probes=["l1.isyn"])


@pytest.mark.parametrize("engine_name", ["reference", "fast"])
def test_input_errors(engine_name):
    p = _simple()
    with pytest.raises(EmulatorError, match="shape"):
        emulator.run(p, np.zeros((1, 2, 3), dtype=np.int64), engine=engine_name)
    with pytest.raises(EmulatorError, match="negative"):
        emulator.run(p, -np.ones((1, 2, 2), dtype=np.int64), engine=engine_name)
    s = np.zeros((1, 2, 2), dtype=np.int64)
    s[0, 1, 0] = 2
    with pytest.raises(EmulatorError, match="at most 1"):
        emulator.run(p, s, engine=engine_name)
    with pytest.raises(EmulatorError, match="integer"):
        emulator.run(p, np.full((1, 2, 2), 0.5), engine=engine_name)
    with pytest.raises(EmulatorError, match="unknown input"):
        emulator.run(p, {"nope": np.zeros((1, 2, 2))}, engine=engine_name)


def test_unknown_engine_and_bad_batch():
    p = _simple()
    with pytest.raises(EmulatorError, match="engine"):
        emulator.Simulator(p, engine="gpu")
    with pytest.raises(EmulatorError, match="batch"):
        emulator.Simulator(p, batch=0)

"""Xylo family (XyloSim semantics), analytic cases on both engines. Expected values by hand."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from spikeforge.errors import ProgramError, RegisterError

NO_SPIKE = 32767  # largest threshold: vmem never reaches it in these cases


def hidden_net(weights, *, n_in=None, weight_shift=0, synapse=0, **regs):
    weights = np.asarray(weights)
    n_in = weights.shape[1] if n_in is None else n_in
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", n_in)
    regs.setdefault("threshold", NO_SPIKE)
    h = b.population("h", weights.shape[0], **regs)
    b.connect(x, h, weights=weights, weight_shift=weight_shift, synapse=synapse)
    b.output("out", h)
    return b.build()


def counts(steps, n_in, at):
    s = np.zeros((1, steps, n_in), dtype=np.int64)
    for t, c, k in at:
        s[0, t, c] = k
    return s


def run(p, s, engine, probes=("h.isyn", "h.isyn2", "h.vmem")):
    return emulator.run(p, s, probes=list(probes), engine=engine)


def test_isyn_bit_shift_decay_after_one_spike(engine):
    p = hidden_net([[100]], dash_syn=2, dash_mem=4)
    tr = run(p, counts(18, 1, [(0, 0, 1)]), engine)
    isyn = tr.probes["h.isyn"][0, :, 0]
    # delivered and decayed in the same step: 100 - (100 >> 2) = 75, then x - (x >> 2), min step 1
    want = [75, 57, 43, 33, 25, 19, 15, 12, 9, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    np.testing.assert_array_equal(isyn, want)
    np.testing.assert_array_equal(tr.probes["h.isyn2"][0, :, 0], np.zeros(18))
    vmem = tr.probes["h.vmem"][0, :, 0]
    # vmem: 0 + 75 = 75; then 75 - (75 >> 4 = 4) + 57 = 128; then 128 - 8 + 43 = 163
    np.testing.assert_array_equal(vmem[:3], [75, 128, 163])


def test_negative_isyn_decay_floors_then_min_step(engine):
    p = hidden_net([[-100]], dash_syn=2)
    isyn = run(p, counts(15, 1, [(0, 0, 1)]), engine).probes["h.isyn"][0, :, 0]
    # -100 - (-25) = -75; -75 >> 2 = -19 (floor) -> -56; ...; -1 >> 2 = -1 -> 0
    want = [-75, -56, -42, -31, -23, -17, -12, -9, -6, -4, -3, -2, -1, 0, 0]
    np.testing.assert_array_equal(isyn, want)


def test_second_synapse_uses_dash_syn2(engine):
    p = hidden_net([[100]], synapse=1, dash_syn=15, dash_syn2=1)
    tr = run(p, counts(4, 1, [(0, 0, 1)]), engine)
    np.testing.assert_array_equal(tr.probes["h.isyn"][0, :, 0], [0, 0, 0, 0])
    # 100 - 50 = 50, 25, 13 (25 >> 1 = 12), 7 (13 >> 1 = 6)
    np.testing.assert_array_equal(tr.probes["h.isyn2"][0, :, 0], [50, 25, 13, 7])


def test_several_input_spikes_in_one_step_all_delivered(engine):
    p = hidden_net([[10, 20]], dash_syn=4)
    tr = run(p, counts(3, 2, [(0, 0, 2), (1, 0, 1), (1, 1, 1), (2, 1, 3)]), engine)
    isyn = tr.probes["h.isyn"][0, :, 0]
    # step 0: 2 x 10 = 20 -> 20 - 1 = 19
    # step 1: 19 + 10 + 20 = 49 -> 49 - 3 = 46
    # step 2: 46 + 3 x 20 = 106 -> 106 - 6 = 100
    np.testing.assert_array_equal(isyn, [19, 46, 100])
    np.testing.assert_array_equal(tr.synaptic_ops[0], [2, 2, 3])


def test_input_counts_above_15_are_clipped(engine):
    p = hidden_net([[10]], dash_syn=4)
    tr = run(p, counts(2, 1, [(0, 0, 20), (1, 0, 15)]), engine)
    # 15 x 10 = 150 -> 150 - 9 = 141; 141 + 150 = 291 -> 291 - 18 = 273
    np.testing.assert_array_equal(tr.probes["h.isyn"][0, :, 0], [141, 273])
    np.testing.assert_array_equal(tr.synaptic_ops[0], [15, 15])


def test_isyn_saturation_depends_on_order_positive_first(engine):
    # weight_shift 7: increments 127 << 7 = 16256 and -128 << 7 = -16384, in channel order:
    # 16256, 32512, sat(48768) = 32767, 32767 - 16384 = 16383 (the plain sum would be 32384)
    p = hidden_net([[127, 127, 127, -128]], weight_shift=7, dash_syn=15, dash_mem=15)
    s = counts(1, 4, [(0, c, 1) for c in range(4)])
    tr = run(p, s, engine)
    # decay: 16383 >> 15 = 0 -> minimum step 1
    assert tr.probes["h.isyn"][0, 0, 0] == 16382


def test_isyn_saturation_depends_on_order_negative_first(engine):
    # -16384, -32768, sat(-49152) = -32768, -32768 + 16256 = -16512 (plain sum: -32896 -> -32768)
    p = hidden_net([[-128, -128, -128, 127]], weight_shift=7, dash_syn=15, dash_mem=15)
    s = counts(1, 4, [(0, c, 1) for c in range(4)])
    tr = run(p, s, engine)
    # decay: -16512 >> 15 = -1 -> -16511
    assert tr.probes["h.isyn"][0, 0, 0] == -16511


def test_isyn_saturation_with_repeated_counts(engine):
    # one channel 15 times +16256 saturates at 32767; then the next channel -16384 x 2 -> -1
    p = hidden_net([[127, -128]], weight_shift=7, dash_syn=15)
    s = counts(1, 2, [(0, 0, 15), (0, 1, 2)])
    # -1 - (-1 >> 15 = -1) = 0 ; the plain sum 243840 - 32768 would stay at +32767
    assert run(p, s, engine).probes["h.isyn"][0, 0, 0] == 0
    s = counts(1, 2, [(0, 0, 15), (0, 1, 1)])
    # 32767 - 16384 = 16383 -> 16382
    assert run(p, s, engine).probes["h.isyn"][0, 0, 0] == 16382


def test_vmem_saturates(engine):
    # bias 30000, threshold 32767: step 0 vmem 30000; step 1 sat(30000 - 1 + 30000) = 32767 >= 32767:
    # one spike, vmem 0 (without saturation 59999 would leave 27232); step 2: 30000 again
    p = hidden_net([[1]], bias=30000, dash_mem=15)
    tr = run(p, counts(3, 1, []), engine)
    np.testing.assert_array_equal(tr.probes["h.vmem"][0, :, 0], [30000, 0, 30000])
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [0, 1, 0])
    p = hidden_net([[1]], bias=-32768, dash_mem=15)
    v = run(p, counts(3, 1, []), engine).probes["h.vmem"][0, :, 0]
    # -32768; decay(-32768, 15) = -1: dv = sat(1 - 32768) = -32767, vmem = sat(-65535) = -32768
    np.testing.assert_array_equal(v, [-32768, -32768, -32768])


def test_dv_saturates_before_bias(engine):
    # isyn2 = 32767 - 1 = 32766 (dash 15) and isyn = 32766: dv = sat(0 + 65532) = 32767, then
    # sat(32767 + bias -32768) = -1 -> vmem -1 (adding bias before saturating would give 32764)
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 2)
    h = b.population("h", 1, bias=-32768, dash_syn=15, dash_syn2=15, dash_mem=15)
    b.connect(x, h, weights=[[127, 0]], weight_shift=8, synapse=0, name="a")
    b.connect(x, h, weights=[[0, 127]], weight_shift=8, synapse=1, name="b")
    b.output("out", h)
    p = b.build()
    s = counts(1, 2, [(0, 0, 2), (0, 1, 2)])
    tr = run(p, s, engine)
    # 2 x 32512 saturates at 32767 in each synapse; decay 1 -> 32766
    assert tr.probes["h.isyn"][0, 0, 0] == 32766 and tr.probes["h.isyn2"][0, 0, 0] == 32766
    assert tr.probes["h.vmem"][0, 0, 0] == -1


def test_multiple_spikes_per_step_with_subtractive_reset(engine):
    p = hidden_net([[1]], bias=35, threshold=10, dash_mem=15)
    tr = run(p, counts(4, 1, []), engine, probes=("h.vmem", "h.spikes"))
    # 35 -> 3 spikes, 5; 5 - 1 + 35 = 39 -> 3 spikes, 9; 9 - 1 + 35 = 43 -> 4 spikes, 3; 3 - 1 + 35 = 37 -> 3, 7
    np.testing.assert_array_equal(tr.probes["h.vmem"][0, :, 0], [5, 9, 3, 7])
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [3, 3, 4, 3])
    np.testing.assert_array_equal(tr.probes["h.spikes"][0, :, 0], [3, 3, 4, 3])


def test_at_most_31_spikes_per_step(engine):
    p = hidden_net([[1]], bias=100, threshold=1, dash_mem=15)
    tr = run(p, counts(2, 1, []), engine, probes=("h.vmem",))
    # 100 -> 31 spikes, 69 left; 69 - 1 + 100 = 168 -> 31 spikes, 137 left
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [31, 31])
    np.testing.assert_array_equal(tr.probes["h.vmem"][0, :, 0], [69, 137])


def _with_readout(**ro_regs):
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 1)
    h = b.population("h", 1, threshold=1, dash_mem=15, dash_syn=15)
    ro = b.population("ro", 1, readout=True, **ro_regs)
    b.connect(x, h, weights=[[100]])
    b.connect(h, ro, weights=[[5]])
    b.output("out", ro)
    b.output("hid", h)
    return b.build()


def test_readout_spikes_at_most_once(engine):
    p = _with_readout(bias=35, threshold=10, dash_mem=15)
    tr = emulator.run(p, counts(3, 1, []), probes=["ro.vmem"], engine=engine)
    # 35 -> 1 spike, 25; 25 - 1 + 35 = 59 -> 1 spike, 49; 49 - 1 + 35 = 83 -> 73
    np.testing.assert_array_equal(tr.spikes["out"][0, :, 0], [1, 1, 1])
    np.testing.assert_array_equal(tr.probes["ro.vmem"][0, :, 0], [25, 49, 73])


def test_input_same_step_hidden_to_readout_next_step(engine):
    p = _with_readout(threshold=NO_SPIKE, dash_syn=15, dash_mem=15)
    tr = emulator.run(p, counts(5, 1, [(2, 0, 1)]), probes=["h.isyn", "h.spikes", "ro.isyn"], engine=engine)
    # input at step 2 lands in h.isyn at step 2: 100 - 1 = 99, and h spikes at step 2
    np.testing.assert_array_equal(tr.probes["h.isyn"][0, :, 0], [0, 0, 99, 98, 97])
    h_sp = tr.probes["h.spikes"][0, :, 0]
    assert h_sp[:2].tolist() == [0, 0] and h_sp[2] >= 1
    k = int(h_sp[2])
    # vmem at step 2 = 99 -> min(99, 31) spikes of threshold 1
    assert k == 31
    # the readout receives step 2's 31 spikes at step 3: 31 x 5 = 155 -> 154
    ro = tr.probes["ro.isyn"][0, :, 0]
    assert ro[:3].tolist() == [0, 0, 0]
    assert ro[3] == 154


def test_recurrent_spikes_arrive_next_step(engine):
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 1)
    h = b.population("h", 2, threshold=[1, NO_SPIKE], dash_syn=15, dash_mem=15)
    b.connect(x, h, weights=[[50], [0]])
    b.connect(h, h, weights=[[0, 0], [3, 0]])  # neuron 0 -> neuron 1
    b.output("out", h)
    p = b.build()
    tr = emulator.run(p, counts(4, 1, [(0, 0, 1)]), probes=["h.isyn", "h.spikes"], engine=engine)
    # neuron 0: isyn 49 at step 0, vmem 49 -> 31 spikes at step 0 (18 left); then isyn 48 -> vmem 18-1+48=65 -> 31
    np.testing.assert_array_equal(tr.probes["h.spikes"][0, :2, 0], [31, 31])
    # neuron 1: nothing at step 0; 31 x 3 = 93 at step 1 -> 92; step 2: 92 + 93 = 185 -> 184
    np.testing.assert_array_equal(tr.probes["h.isyn"][0, :3, 1], [0, 92, 184])
    # 31 spikes x 1 synapse each step from neuron 0
    assert tr.synaptic_ops[0, 0] == 1 and tr.synaptic_ops[0, 1] == 31


def test_readout_has_one_synapse():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 1)
    h = b.population("h", 1)
    ro = b.population("ro", 1, readout=True)
    b.connect(x, h, weights=[[1]])
    with pytest.raises(RegisterError, match="synapse"):
        b.connect(h, ro, weights=[[1]], synapse=1)


def test_projection_register_errors():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 1)
    h = b.population("h", 1)
    with pytest.raises(RegisterError, match=r"weight 128 .*\[-128, 127\]"):
        b.connect(x, h, weights=[[128]])
    with pytest.raises(RegisterError, match=r"weight_shift=9 outside \[0, 8\]"):
        b.connect(x, h, weights=[[1]], weight_shift=9)
    with pytest.raises(RegisterError, match=r"synapse=2 outside \[0, 1\]"):
        b.connect(x, h, weights=[[1]], synapse=2)
    with pytest.raises(RegisterError, match=r"delay=1 outside \[0, 0\]"):
        b.connect(x, h, weights=[[1]], delay=1)
    with pytest.raises(RegisterError, match=r"threshold=0 .*\[1, 32767\]"):
        b.population("h2", 1, threshold=0)
    with pytest.raises(RegisterError, match=r"dash_mem=16"):
        b.population("h3", 1, dash_mem=16)
    with pytest.raises(ProgramError, match="readout"):
        emulator.ProgramBuilder("loihi").population("r", 1, readout=True)

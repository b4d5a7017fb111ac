"""The fast engine runs a lowered network (populations + COO synapses) that need not come from a
Program: the same family steps and drive machinery; without an axon order, an ordered family
saturates the step's summed drive once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines_agree import draw_inputs, draw_program

import emulator
from emulator.engine import Wiring
from emulator.fast import FastEngine, Lowered, synops_terms
from spikeforge.errors import EmulatorError


def run_lowered(net: Lowered, spikes: np.ndarray, probes: dict[str, tuple[str, str]]):
    engine = FastEngine(net, spikes.shape[0], seed=0)
    return engine.run(spikes, probes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loihi_lowered_without_order_equals_the_program(data):
    """Loihi's sums do not depend on order: a lowered network without axon tables is exact."""
    program = draw_program(data, "loihi")
    batch = data.draw(st.integers(1, 3), label="batch")
    spikes = draw_inputs(data, program, batch, data.draw(st.integers(1, 10), label="steps"))
    net = Lowered.from_wiring(Wiring(program))
    # a netlist has no axons: its synaptic operations are counted from the synapse paths
    sizes = [net.n_channels] + [pop.size for pop in net.populations]
    net = dataclasses.replace(net, order=None, synops=synops_terms(net.synapses, sizes))
    probes = {f"{pop}.{var}": (pop, var) for pop in program.populations for var in ("u", "v", "spikes")}
    by_pop, probed, synops = run_lowered(net, spikes, probes)
    want = emulator.run(program, spikes, probes=list(probes), engine="reference")
    for name in probes:
        np.testing.assert_array_equal(probed[name], want.probes[name], err_msg=name)
    np.testing.assert_array_equal(synops, want.synaptic_ops)


def test_lowered_net_records_its_populations_and_edges():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 3)
    h = b.population("h", 2)
    b.connect(x, h, weights=np.array([[1, 2, 3], [4, 5, 6]]))
    b.output("out", h)
    net = Lowered.from_wiring(Wiring(b.build()))
    assert [p.name for p in net.populations] == ["h"] and net.populations[0].size == 2
    assert net.n_channels == 3 and net.family == "loihi"
    syn = net.synapses
    got = sorted(zip(syn.pre.tolist(), syn.post.tolist(), syn.increment.tolist(), strict=True))
    assert got == [(0, 0, 1), (0, 1, 4), (1, 0, 2), (1, 1, 5), (2, 0, 3), (2, 1, 6)]


def test_xylo_lowered_without_order_saturates_the_sum_once():
    # 127 << 7 three times then -128 << 7: in order 16256, 32512, 32767 (saturated), 16383;
    # the plain sum 32384 saturates once (it fits): without an axon order isyn = 32384
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 4)
    h = b.population("h", 1, threshold=32767, dash_syn=15, dash_mem=15)
    b.connect(x, h, weights=np.array([[127, 127, 127, -128]]), weight_shift=7)
    b.output("out", h)
    program = b.build()
    s = np.ones((1, 1, 4), dtype=np.int64)
    net = dataclasses.replace(Lowered.from_wiring(Wiring(program)), order=None)
    _, probed, _ = run_lowered(net, s, {"h.isyn": ("h", "isyn")})
    assert probed["h.isyn"][0, 0, 0] == 32384 - 1  # minus the decay's minimum step
    _, probed, _ = run_lowered(Lowered.from_wiring(Wiring(program)), s, {"h.isyn": ("h", "isyn")})
    assert probed["h.isyn"][0, 0, 0] == 16382  # with the order: the chip's result


def test_truenorth_stochastic_synapses_need_an_axon_order():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    p = b.population("p", 1, stochastic_synapse=1)
    b.connect(x, p, weights=np.ones((1, 1), dtype=np.int64))
    b.output("out", p)
    net = dataclasses.replace(Lowered.from_wiring(Wiring(b.build())), order=None)
    with pytest.raises(EmulatorError, match="axon order"):
        FastEngine(net, 1, seed=0)

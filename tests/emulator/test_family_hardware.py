"""Each family's hardware module: the same hooks everywhere; the builder and Program ask them (stored
formats, truncation, fan-out counting, memory cost, hints) instead of comparing family names; learning
rules are refused."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from emulator import families
from spikeforge.errors import DoesNotFit, ProgramError, RegisterError

HOOKS = ("weight_bits", "store", "untruncated", "WEIGHT_HINT", "FAN_OUT_UNIT", "FAN_OUT_REMEDY", "COPIES_REMEDY",
         "ONE_ROUTE_PER_NEURON", "FORMAT_FIELDS")


@pytest.mark.parametrize("name", families.names())
def test_every_family_provides_the_hooks(name):
    hardware = families.get(name).hardware
    for hook in HOOKS:
        assert hasattr(hardware, hook), f"{name}.hardware lacks {hook}"
        assert hook in hardware.__all__
    assert hardware.FAN_OUT_UNIT in ("routes", "target synapses")
    assert isinstance(hardware.weight_bits({}), int)


def test_one_route_per_neuron_is_truenorth_only():
    assert [n for n in families.names() if families.get(n).hardware.ONE_ROUTE_PER_NEURON] == ["truenorth"]


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
def test_plasticity_is_refused(target):
    """A target without a learning engine refuses any rule; loihi refuses a string that is not a rule
    (on-chip learning: tests/emulator/test_learning*.py)."""
    from spikeforge.errors import LearningRuleError

    b = emulator.ProgramBuilder(target)
    x = b.input("in", 2)
    p = b.population("p", 1)
    with pytest.raises(LearningRuleError) as err:
        b.connect(x, p, weights=[[1, 1]], plasticity="stdp" if target == "loihi" else "dw = 2^-2*x1*y0")
    assert isinstance(err.value, ProgramError)
    assert families.get(target).learns == (target == "loihi")
    b.connect(x, p, weights=[[1, 1]])  # nothing was stored by the refused call: the name is free
    assert [c.name for c in b.netlist().projections] == ["in->p"]
    assert all(proj.plasticity is None for proj in b.build().projections)


@pytest.mark.parametrize("target,hint", [
    ("loihi", "raise weight_exp"), ("xylo", "raise weight_shift"), ("truenorth", "put magnitudes in type_weights")])
def test_weight_hint_comes_from_the_family(target, hint):
    b = emulator.ProgramBuilder(target)
    x = b.input("in", 2)
    p = b.population("p", 1)
    with pytest.raises(RegisterError, match=hint):
        b.connect(x, p, weights=[[1, 1000]])


def test_loihi_store_truncates_and_infers_the_sign_mode():
    store = families.get("loihi").hardware.store
    w = np.array([3, 5, 8, 1], dtype=np.int16)
    idx = np.arange(4, dtype=np.int32)

    def run(fields):
        return store("p", idx, idx, w * fields.pop("sign", 1), {"weight_exp": 0, "num_weight_bits": 6,
                                                                "sign_mode": None, **fields},
                     pre_size=4, post="q", post_readout=False, check_field=None)

    post, pre, got, params, types = run({})  # excitatory: k = 8 - 6 = 2, the 1 and 3 truncate to 0
    assert params == {"weight_exp": 0, "num_weight_bits": 6, "sign_mode": 1} and types is None
    assert got.tolist() == [4, 8] and post.tolist() == [1, 2]
    _, _, got, params, _ = run({"sign": -1})  # inhibitory: -((-w >> k) << k)
    assert params["sign_mode"] == 2 and got.tolist() == [-4, -8]
    with pytest.raises(RegisterError, match="sign_mode=1 but weights of both signs"):
        store("p", idx, idx, w * np.array([1, -1, 1, 1], dtype=np.int16),
              {"weight_exp": 0, "num_weight_bits": 8, "sign_mode": 1}, pre_size=4, post="q", post_readout=False,
              check_field=None)


def test_xylo_readout_takes_synapse_zero():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 2)
    o = b.population("o", 1, readout=True)
    with pytest.raises(RegisterError, match=r"readout population 'o' has one synapse; use synapse=0"):
        b.connect(x, o, weights=[[1, 1]], synapse=1)


def test_truenorth_axon_types_are_checked_against_the_spec():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 3)
    p = b.population("p", 2)
    with pytest.raises(RegisterError, match=r"axon_types=4"):
        b.connect(x, p, weights=np.ones((2, 3), dtype=np.int64), axon_types=[0, 1, 4])
    b.connect(x, p, weights=np.ones((2, 3), dtype=np.int64), axon_types=[0, 1, 3])
    assert b.netlist().projections[0].axon_types.tolist() == [0, 1, 3]
    assert sorted(b.build().axon_type.tolist()) == [0, 1, 3]


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
def test_memory_cost_uses_the_family_weight_bits(target):
    b = emulator.ProgramBuilder(target)
    x = b.input("in", 4)
    p = b.population("p", 3)
    kw = {"num_weight_bits": 4} if target == "loihi" else {}
    b.connect(x, p, weights=np.ones((3, 4), dtype=np.int64) * (16 if target == "loihi" else 1), **kw)
    program = b.build()
    spec = program.spec
    bits = families.get(target).hardware.weight_bits(program.projections[0].params)
    assert bits == {"loihi": 4, "xylo": 8, "truenorth": 1}[target]
    want = 4 * int(spec.synapse["synapse_row_header_bits"]) + 12 * (bits + int(spec.synapse["synapse_index_bits"]))
    assert program.synapse_bits().tolist() == [want]


def test_xylo_fan_out_counts_target_synapses():
    # 70 synapses from one hidden neuron: over Xylo's fan_out_per_neuron of 64 though it has one route
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 1)
    h = b.population("h", 1)
    o = b.population("o", 70)
    b.connect(x, h, weights=[[1]])
    b.connect(h, o, weights=np.ones((70, 1), dtype=np.int64))
    with pytest.raises(DoesNotFit, match=r"fan-out 70 target synapses > fan_out_per_neuron 64"):
        b.build()


def test_program_checks_the_family_format_fields():
    from emulator.program import INT_ARRAYS, Program, Projection

    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    p = b.population("p", 1)
    b.connect(x, p, weights=[[2, 4]])
    program = b.build()
    bad = Projection("in->p", "in", "p", {**program.projections[0].params, "sign_mode": 3})
    with pytest.raises(RegisterError, match=r"projection 'in->p': sign_mode=3; expected 0, 1 or 2"):
        Program(program.spec, arrays={k: getattr(program, k) for k in INT_ARRAYS}, registers=program.registers,
                inputs=program.inputs, populations=list(program.populations.values()), projections=[bad],
                output_ports=program.output_ports)

"""State widths and overflow policies come from the spec's ``[state]``: a user TOML with another
width emulates that width in both engines (analytic cases, and engine agreement on random
programs), and a width a datapath cannot hold exactly is refused by ``hw_specs.load`` with a
SpecError naming the key, the value and the supported range — never silently truncated."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engines_agree import assert_same, draw_program, run_both_engines

import emulator
import hw_specs
from emulator import families
from spikeforge.errors import SpecError


def user_spec(tmp_path: Path, target: str, state: dict[str, tuple[int, str]], **registers: str) -> Path:
    """A copy of ``hw_specs/<target>.toml`` with the given ``[state]`` formats (and register ranges)."""
    text = (hw_specs.SPEC_DIR / f"{target}.toml").read_text()
    for key, (bits, overflow) in state.items():
        text, n = re.subn(rf"(?m)^{key} = \{{ bits = \d+, overflow = \"\w+\" \}}",
                          f'{key} = {{ bits = {bits}, overflow = "{overflow}" }}', text)
        assert n == 1, key
    for key, rng in registers.items():
        text, n = re.subn(rf"(?m)^{key} = \[[^\]]*\]", f"{key} = {rng}", text)
        assert n == 1, key
    path = tmp_path / f"my{target}.toml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------- loihi
def loihi_one_neuron(spec: Path, n_in: int, weights: list[list[int]], **regs: int) -> emulator.Program:
    b = emulator.ProgramBuilder(str(spec))
    x = b.input("in", n_in)
    l1 = b.population("l1", 1, **regs)
    b.connect(x, l1, weights=np.asarray(weights), weight_exp=7)
    b.output("out", l1)
    return b.build()


def test_loihi_20_bit_u_wraps_at_20_bits(tmp_path, engine):
    spec = user_spec(tmp_path, "loihi", {"u": (20, "wrap"), "v": (20, "saturate")})
    assert hw_specs.load(spec).state["u"] == hw_specs.StateFormat(20, "wrap")
    # 1 input of 100 << 7 << 6 = 819200 > 2^19 = 524288: wraps to 819200 - 2^20 = -229376
    p = loihi_one_neuron(spec, 1, [[100]], du=4095, dv=4095, vth=131071)
    s = np.zeros((1, 3, 1), dtype=np.int64)
    s[0, 0, 0] = 1
    tr = emulator.run(p, s, probes=["l1.u", "l1.v"], engine=engine)
    np.testing.assert_array_equal(tr.probes["l1.u"][0, :, 0], [0, 819200 - (1 << 20), 0])
    # v = u, inside [-(2^19 - 1), 2^19 - 1]
    assert tr.probes["l1.v"][0, 1, 0] == 819200 - (1 << 20)
    # at 24 bits (the shipped spec) the same drive does not wrap
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 1)
    l1 = b.population("l1", 1, du=4095, dv=4095, vth=131071)
    b.connect(x, l1, weights=np.array([[100]]), weight_exp=7)
    b.output("out", l1)
    assert emulator.run(b.build(), s, probes=["l1.u"], engine=engine).probes["l1.u"][0, 1, 0] == 819200


def test_loihi_20_bit_u_wrap_is_half_open(tmp_path, engine):
    # 2^19 exactly stays (the range is (-2^19, 2^19]); 2^19 + 2^13 wraps
    spec = user_spec(tmp_path, "loihi", {"u": (20, "wrap")})
    p = loihi_one_neuron(spec, 2, [[64, 1]], du=4095, dv=4095, vth=131071)  # 64 << 13 = 2^19
    s = np.zeros((1, 3, 2), dtype=np.int64)
    s[0, 0, 0] = 1
    assert emulator.run(p, s, probes=["l1.u"], engine=engine).probes["l1.u"][0, 1, 0] == 1 << 19
    s[0, 0, 1] = 1
    u = emulator.run(p, s, probes=["l1.u"], engine=engine).probes["l1.u"]
    assert u[0, 1, 0] == (1 << 19) + (1 << 13) - (1 << 20)


def test_loihi_narrow_v_saturates(tmp_path, engine):
    # v is 16 bits: vmax = min(2^23 - 1, 2^15 - 1) = 32767 although vmax_exp allows more
    spec = user_spec(tmp_path, "loihi", {"v": (16, "saturate")})
    b = emulator.ProgramBuilder(str(spec))
    x = b.input("in", 1)
    l1 = b.population("l1", 1, bias_mant=4000, bias_exp=3, dv=0, vth=131071)
    b.connect(x, l1, weights=np.array([[0]]))
    b.output("out", l1)
    v = emulator.run(b.build(), np.zeros((1, 3, 1), dtype=np.int64), probes=["l1.v"], engine=engine).probes["l1.v"]
    np.testing.assert_array_equal(v[0, :, 0], [32000, 32767, 32767])


@pytest.mark.parametrize("bits", [43, 48, 64])
def test_loihi_u_wider_than_the_exact_path_is_refused(tmp_path, bits):
    spec = user_spec(tmp_path, "loihi", {"u": (bits, "wrap")})
    with pytest.raises(SpecError, match=rf"state\.u\.bits = {bits}.*\[2, 42\]"):
        hw_specs.load(spec)


def test_loihi_42_bit_u_is_honoured_exactly(tmp_path, engine):
    # the widest exact u, driven past 2^41 (weight_exp widened to 27 in the user spec):
    # u <- wrap42(trunc(u * 4095 / 4096) + 255 << 33), in exact integers
    spec = user_spec(tmp_path, "loihi", {"u": (42, "wrap")}, weight_exp="[-8, 27]")
    b = emulator.ProgramBuilder(str(spec))
    x = b.input("in", 1)
    l1 = b.population("l1", 1, du=0, dv=4095, vth=131071)
    b.connect(x, l1, weights=np.array([[255]]), weight_exp=27)
    b.output("out", l1)
    u = emulator.run(b.build(), np.ones((1, 6, 1), dtype=np.int64), probes=["l1.u"], engine=engine).probes["l1.u"]
    want, x_ = [0], 0
    for _ in range(5):
        p_ = x_ * 4095
        x_ = (-((-p_) >> 12) if p_ < 0 else p_ >> 12) + (255 << 33)
        if x_ > 1 << 41:
            x_ -= 1 << 42
        want.append(x_)
    assert min(want) < 0  # it wrapped
    np.testing.assert_array_equal(u[0, :, 0], want)


@pytest.mark.parametrize(("key", "overflow"), [("u", "saturate"), ("v", "wrap")])
def test_loihi_overflow_policy_it_does_not_implement_is_refused(tmp_path, key, overflow):
    spec = user_spec(tmp_path, "loihi", {key: (24, overflow)})
    with pytest.raises(SpecError, match=rf"state\.{key}\.overflow = '{overflow}'"):
        hw_specs.load(spec)


# ------------------------------------------------------------------------------------ xylo
def xylo_net(spec: Path, weights: list[list[int]], **regs: int) -> emulator.Program:
    b = emulator.ProgramBuilder(str(spec))
    x = b.input("in", len(weights[0]))
    regs.setdefault("threshold", 32767)
    h = b.population("h", 1, **regs)
    b.connect(x, h, weights=np.asarray(weights), weight_shift=7)
    b.output("out", h)
    return b.build()


def test_xylo_12_bit_isyn_saturates_in_order(tmp_path, engine):
    # isyn is 12 bits ([-2048, 2047]); increments are held in 12 bits: 127 << 7 = 16256 -> -128
    # (16256 - 4 * 4096), 15 << 7 = 1920, -16 << 7 = -2048
    spec = user_spec(tmp_path, "xylo", {"isyn": (12, "saturate"), "isyn2": (12, "saturate")})
    p = xylo_net(spec, [[127, 15, 15, -16]], dash_syn=15, dash_mem=15)
    s = np.zeros((1, 1, 4), dtype=np.int64)
    s[0, 0, 1], s[0, 0, 2], s[0, 0, 3] = 15, 15, 1
    # channel 1: 15 x 1920 saturates at 2047; channel 2 stays at 2047; channel 3: 2047 - 2048 = -1
    # decay: -1 >> 15 = -1 -> 0 (saturating the plain sum once would leave 2047 - 1 = 2046)
    tr = emulator.run(p, s, probes=["h.isyn"], engine=engine)
    assert tr.probes["h.isyn"][0, 0, 0] == 0
    s[0, 0, 0] = 1  # -384 first
    tr = emulator.run(p, s, probes=["h.isyn"], engine=engine)
    # -128 + 15 x 1920 -> 2047, ... 2047 - 2048 = -1 -> 0
    assert tr.probes["h.isyn"][0, 0, 0] == 0


def test_xylo_narrow_vmem_saturates(tmp_path, engine):
    spec = user_spec(tmp_path, "xylo", {"vmem": (12, "saturate")})
    p = xylo_net(spec, [[0]], bias=1500, dash_mem=15, threshold=3000)
    v = emulator.run(p, np.zeros((1, 3, 1), dtype=np.int64), probes=["h.vmem"], engine=engine).probes["h.vmem"]
    # 1500; sat(1500 - 1 + 1500) = 2047 (12 bits), never reaching the threshold 3000
    np.testing.assert_array_equal(v[0, :, 0], [1500, 2047, 2047])


def test_xylo_48_bit_states_are_honoured(tmp_path, engine):
    # vmem is 48 bits: bias 2^46 (register ranges widened in the user spec), dash_mem 15:
    # 2^46; 2^46 - (2^46 >> 15) + 2^46 = 2^47 - 2^31; then held at 2^47 - 1
    spec = user_spec(tmp_path, "xylo", {k: (48, "saturate") for k in ("vmem", "isyn", "isyn2")},
                     bias=f"[{-(1 << 47)}, {(1 << 47) - 1}]", threshold=f"[1, {1 << 47}]")
    p = xylo_net(spec, [[0]], bias=1 << 46, dash_mem=15, threshold=1 << 47)
    v = emulator.run(p, np.zeros((1, 4, 1), dtype=np.int64), probes=["h.vmem"], engine=engine).probes["h.vmem"]
    np.testing.assert_array_equal(v[0, :, 0], [1 << 46, (1 << 47) - (1 << 31), (1 << 47) - 1, (1 << 47) - 1])


def test_xylo_wider_than_48_bits_is_refused(tmp_path):
    spec = user_spec(tmp_path, "xylo", {"isyn": (49, "saturate")})
    with pytest.raises(SpecError, match=r"state\.isyn\.bits = 49.*\[2, 48\]"):
        hw_specs.load(spec)


# ------------------------------------------------------------------------------- truenorth
def test_truenorth_12_bit_v_saturates(tmp_path, engine):
    spec = user_spec(tmp_path, "truenorth", {"v": (12, "saturate")})
    b = emulator.ProgramBuilder(str(spec))
    x = b.input("in", 16)
    p_ = b.population("p", 1, type_weights=[255, 0, 0, 0], threshold=524287, reset_mode=2)
    b.connect(x, p_, weights=np.ones((1, 16), dtype=np.int64))
    b.output("out", p_)
    v = emulator.run(b.build(), np.ones((1, 3, 16), dtype=np.int64), probes=["p.v"], engine=engine).probes["p.v"]
    # 16 x 255 = 4080 per tick, held at 2047 (12 bits)
    np.testing.assert_array_equal(v[0, :, 0], [0, 2047, 2047])


def test_truenorth_v_wider_than_48_bits_or_wrapping_is_refused(tmp_path):
    with pytest.raises(SpecError, match=r"state\.v\.bits = 52"):
        hw_specs.load(user_spec(tmp_path, "truenorth", {"v": (52, "saturate")}))
    with pytest.raises(SpecError, match=r"state\.v\.overflow = 'wrap'"):
        hw_specs.load(user_spec(tmp_path, "truenorth", {"v": (20, "wrap")}))


def test_every_family_declares_support_for_each_state():
    for name, fam in families.REGISTRY.items():
        support = fam.datapath.SUPPORT
        assert set(support) == set(fam.state), name
        for key in fam.state:
            shipped = [hw_specs.load(t) for t in hw_specs.available() if hw_specs.load(t).family == name]
            for spec in shipped:
                lo, hi = support[key].bits
                assert lo <= spec.state[key].bits <= hi
                assert spec.state[key].overflow in support[key].overflow


# ------------------------------------------------ random programs, narrower and wider widths
NARROW = {
    "loihi": {"u": (14, "wrap"), "v": (13, "saturate")},
    "xylo": {"vmem": (11, "saturate"), "isyn": (10, "saturate"), "isyn2": (12, "saturate")},
    "truenorth": {"v": (10, "saturate")},
}


@pytest.fixture(params=["default", "numpy"])
def xylo_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Xylo's fast engine with its default path (the compiled kernel when numba is installed)
    and with the numpy path."""
    if request.param == "numpy":
        monkeypatch.setenv("SPIKEFORGE_EMULATOR_JIT", "0")
    return str(request.param)


WIDE = {
    "loihi": {"u": (42, "wrap"), "v": (42, "saturate")},
    "xylo": {"vmem": (48, "saturate"), "isyn": (30, "saturate"), "isyn2": (48, "saturate")},
    "truenorth": {"v": (48, "saturate")},
}


@pytest.mark.parametrize("widths", [NARROW, WIDE], ids=["narrow", "wide"])
@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_equals_reference_at_other_widths(tmp_path_factory, xylo_path, widths, target, data):
    if target != "xylo" and xylo_path != "default":
        return
    spec = user_spec(tmp_path_factory.mktemp("spec"), target, widths[target])
    ref, fast, _, _ = run_both_engines(data, draw_program(data, str(spec)))
    assert_same(ref, fast)

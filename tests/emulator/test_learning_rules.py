"""The learning-rule language: parse, check against a target, integer form, print back."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emulator
import hw_specs
from emulator.learning import (
    LearningRule,
    compile_plasticity,
    compile_rule,
    decode,
    format_rule,
    parse,
)
from emulator.learning.rules import FACTOR_VARS, Equation, Factor, Product
from spikeforge.errors import LearningRuleError, ProgramFormatError

LOIHI = hw_specs.load("loihi")


def test_stdp_rule_parses_to_two_products():
    (eq,) = parse("dw = 2^-2*x1*y0 - 2^-2*y1*x0")
    assert eq.target == "dw"
    assert eq.products == (Product("y0", 1, -2, (Factor("x1"),)), Product("x0", -1, -2, (Factor("y1"),)))
    assert [p.column for p in eq.products] == [6, 19]


def test_constants_sgn_decimation_and_several_equations():
    eqs = parse("dt = 3*x0*(y1+4) - 2^-3*u2*t\ndw = 16*u0*sgn(w-2)*t*y3")
    assert [e.target for e in eqs] == ["dt", "dw"]
    assert eqs[0].products[0] == Product("x0", 3, 0, (Factor("y1", 4),))
    assert eqs[0].products[1] == Product("u", -1, -3, (Factor("t"),), decimate=2)
    # 16 = 4 * 2^2: the mantissa is normalised as Lava does
    assert eqs[1].products[0] == Product("u", 4, 2, (Factor("w", -2, True), Factor("t"), Factor("y3")))


def test_a_second_spike_dependency_is_a_factor():
    (eq,) = parse("dw = x0*y0")
    assert eq.products[0] == Product("x0", 1, 0, (Factor("y0"),))


@pytest.mark.parametrize("text,column,term", [
    ("dw = 2^-2*x1*y0 - 2^-2*z1*x0", 24, "z1"),               # unknown variable, named
    ("dw = 2^-9*x1*y0", 6, "2^-9*x1*y0"),                      # exponent outside [-7, 8]
    ("dw = 9*x1*y0", 6, "9*x1*y0"),                            # mantissa outside [-8, 7]
    ("dw = x1*y1*y2*w*x0", 6, "x1*y1*y2*w*x0"),                # too many factors
    ("dw = x0 + x0 + y0 + y0 - 2*x0", 26, "2*x0"),             # too many products
    ("dw = x1*y1", 6, "x1*y1"),                                # no dependency
    ("dx = x0", 1, "dx"),                                      # not a target
    ("dw = 3^2*x0", 6, "3"),                                   # not a power of two
    ("dw = x0*(y1+300)", 6, "x0*(y1+300)"),                    # constant outside [-128, 127]
    ("dw = x0*sgn(y1)", 13, "y1"),                              # sgn of a trace
    ("dw = x0; dw = y0", 10, "dw"),                            # target twice
    ("dw = x0*u1", 9, "u1"),                                   # two dependencies
    ("dw = x0 $ y0", 9, "$"),                                  # not a character of the language
])
def test_errors_point_at_term_and_column(text, column, term):
    with pytest.raises(LearningRuleError) as err:
        compile_plasticity(text, LOIHI)
    assert (err.value.column, err.value.term) == (column, term)
    assert text[column - 1:].startswith(term)


@pytest.mark.parametrize("target", ["xylo", "truenorth"])
def test_targets_without_learning_engine_say_so(target):
    with pytest.raises(LearningRuleError, match="no on-chip learning engine"):
        compile_plasticity("dw = 2^-2*x1*y0", hw_specs.load(target))


@pytest.mark.parametrize("field,value", [("epoch", 3), ("epoch", 128), ("x1_tau", 256), ("y2_impulse", 128.0),
                                         ("x2_impulse", -1.0)])
def test_trace_parameters_are_checked(field, value):
    with pytest.raises(LearningRuleError, match=field.split("_")[-1]):
        compile_plasticity(LearningRule("dw = x0", **{field: value}), LOIHI)


def _product() -> st.SearchStrategy[Product]:
    factor = st.builds(Factor, st.sampled_from(FACTOR_VARS[2:]), st.integers(-128, 127), st.just(False))
    sgn = st.builds(Factor, st.sampled_from(("w", "d", "t")), st.integers(-128, 127), st.just(True))
    return st.builds(
        Product, st.sampled_from(("x0", "y0", "u")), st.integers(-7, 7).filter(bool), st.integers(-7, 8),
        st.lists(st.one_of(factor, sgn), max_size=3).map(tuple), st.just(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("dw", "dd", "dt")), st.lists(_product(), min_size=1, max_size=4)),
                min_size=1, max_size=3, unique_by=lambda e: e[0]))
def test_compiled_form_prints_back_to_an_equivalent_rule(spec):
    eqs = tuple(Equation(t, tuple(ps)) for t, ps in spec)
    config = compile_rule(eqs)
    text = format_rule(config)
    again = parse(text)
    assert compile_rule(again) == config
    assert format_rule(again) == text
    assert decode(config.rows) == tuple(sorted(eqs, key=lambda e: ("dw", "dd", "dt").index(e.target)))
    compile_plasticity(text, LOIHI)  # every drawn rule is within loihi's limits


def _plastic_program() -> emulator.Program:
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 3)
    l1 = b.population("l1", 2, du=4095, dv=4095, vth=100)
    b.connect(x, l1, weights=np.full((2, 3), 60), name="p1",
              plasticity=LearningRule("dw = 2^-2*x1*y0 - 2^-2*y1*x0", x1_tau=5, epoch=2))
    b.output("out", l1)
    return b.build()


def test_program_file_keeps_the_rule_and_zero_weight_synapses():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 3)
    l1 = b.population("l1", 2)
    b.connect(x, l1, weights=np.zeros((2, 3), dtype=int), name="p1", plasticity="dw = 2^-2*x1*y0")
    program = b.build()
    assert program.syn_weight.size == 6  # every pair is a plastic synapse
    loaded = emulator.Program.from_bytes(program.to_bytes())
    assert loaded.projections[0].plasticity == program.projections[0].plasticity == LearningRule("dw = 2^-2*x1*y0")
    assert loaded.to_bytes() == program.to_bytes()


def _patched(program: emulator.Program, edit) -> bytes:
    data = program.to_bytes()
    magic, version, mlen = struct.unpack_from("<8sII", data)
    manifest = json.loads(data[16:16 + mlen])
    edit(manifest)
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * ((-(len(text) + 16)) % 8)
    body = struct.pack("<8sII", magic, version, len(text)) + text + data[16 + mlen:-4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("edit", [
    lambda m: m["projections"][0]["plasticity"].update(rule="dw = 2^-2*q1*y0"),
    lambda m: m["projections"][0]["plasticity"].update(rule=["dw"]),
    lambda m: m["projections"][0]["plasticity"].update(epoch=3),
    lambda m: m["projections"][0]["plasticity"].update(evil="__import__('os')"),
    lambda m: m["projections"][0]["plasticity"].update(x1_tau=1.5),
    lambda m: m["projections"][0].update(plasticity="dw = x0"),
    lambda m: m["projections"][0]["plasticity"].update(reward="nowhere"),
])
def test_untrusted_rule_data_is_refused(edit):
    program = _plastic_program()
    assert emulator.Program.from_bytes(_patched(program, lambda m: None)).to_bytes() == program.to_bytes()
    with pytest.raises(ProgramFormatError):
        emulator.Program.from_bytes(_patched(program, edit))


def test_inspect_names_the_rule(tmp_path, capsys):
    from spikeforge.cli import main

    path = _plastic_program().save(tmp_path / "p.sfp")
    assert main(["inspect", str(path)]) == 0
    assert "plasticity='dw = 2^-2*x1*y0 - 2^-2*y1*x0' epoch=2" in capsys.readouterr().out

"""emulator.fixed: the scalar (Python int, the definition) and array (numpy) forms of every
integer primitive agree, including at the edges of their registers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator import fixed

WIDE = st.integers(min_value=-(1 << 40), max_value=1 << 40)
I24 = st.integers(min_value=-(1 << 24), max_value=1 << 24)
ints = st.lists(WIDE, min_size=1, max_size=40)


def arr(xs):
    return np.array(xs, dtype=np.int64)


# --------------------------------------------------------------------------------- shift
@settings(max_examples=200, deadline=None)
@given(ints, st.integers(min_value=-12, max_value=12))
def test_shift_scalar_vs_array(xs, k):
    want = [fixed.shift(x, k) for x in xs]
    np.testing.assert_array_equal(fixed.shift_array(arr(xs), k), want)
    # float form is exact for these magnitudes
    np.testing.assert_array_equal(fixed.shift_float(arr(xs).astype(np.float64), k), want)


def test_shift_negative_exponent_floors():
    assert fixed.shift(-1, -1) == -1
    assert fixed.shift(-3, -1) == -2
    assert fixed.shift(3, -1) == 1
    assert fixed.shift(5, 2) == 20
    np.testing.assert_array_equal(fixed.shift_array(arr([-1, -3, 3, -8]), -2), [-1, -1, 0, -2])
    np.testing.assert_array_equal(fixed.shift_float(np.array([-1.0, -3.0, 3.0, -8.0]), -2), [-1, -1, 0, -2])


# ------------------------------------------------------------------------ mul_shift_trunc
@settings(max_examples=200, deadline=None)
@given(ints, st.integers(min_value=0, max_value=4096), st.integers(min_value=0, max_value=12))
def test_mul_shift_trunc_scalar_vs_array(xs, m, k):
    want = [fixed.mul_shift_trunc(x, m, k) for x in xs]
    np.testing.assert_array_equal(fixed.mul_shift_trunc_array(arr(xs), m, k), want)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(1 << 24) + 1, max_value=(1 << 24) - 1), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=4096), st.integers(min_value=0, max_value=12))
def test_mul_shift_trunc_float_equals_int_below_2_24(xs, m, k):
    want = [fixed.mul_shift_trunc(x, m, k) for x in xs]
    got = fixed.mul_shift_trunc_float(arr(xs).astype(np.float64), float(m), k)
    np.testing.assert_array_equal(got.astype(np.int64), want)
    # the fast engine's form: multiplier already divided by 2^k, shift 0
    got2 = fixed.mul_shift_trunc_float(arr(xs).astype(np.float64), m / float(1 << k), 0)
    np.testing.assert_array_equal(got2.astype(np.int64), want)


def test_mul_shift_trunc_rounds_toward_zero():
    # p = -3 * 2048 = -6144; -6144 / 4096 = -1.5 -> -1 (toward zero), not -2 (floor)
    assert fixed.mul_shift_trunc(-3, 2048, 12) == -1
    assert fixed.mul_shift_trunc(3, 2048, 12) == 1
    assert fixed.mul_shift_trunc(-1, 4095, 12) == 0
    assert fixed.mul_shift_trunc(-4096, 4095, 12) == -4095
    assert fixed.mul_shift_trunc(-8388607, 2048, 12) == -4194303
    np.testing.assert_array_equal(fixed.mul_shift_trunc_array(arr([-3, 3, -1, -4096]), 2048, 12), [-1, 1, 0, -2048])
    np.testing.assert_array_equal(fixed.mul_shift_trunc_float(np.array([-3.0, -1.0, -5.0]), 2048.0, 12),
                                  [-1, 0, -2])


# -------------------------------------------------------------------------------- wrap
@settings(max_examples=300, deadline=None)
@given(ints, st.integers(min_value=2, max_value=32))
def test_wrap_scalar_vs_array(xs, bits):
    want = [fixed.wrap(x, bits) for x in xs]
    np.testing.assert_array_equal(fixed.wrap_array(arr(xs), bits), want)
    np.testing.assert_array_equal(fixed.wrap_float(arr(xs).astype(np.float64), bits), want)
    half = 1 << (bits - 1)
    for x, y in zip(xs, want, strict=True):
        assert -half < y <= half
        assert (x - y) % (1 << bits) == 0


BOUNDARY_24 = [
    (1 << 23, 1 << 23),                 # 2^23 is inside (-2^23, 2^23]
    ((1 << 23) + 1, -(1 << 23) + 1),    # just above: loses 2^24
    (-(1 << 23), 1 << 23),              # -2^23 is outside: gains 2^24
    (-(1 << 23) + 1, -(1 << 23) + 1),
    ((1 << 23) - 1, (1 << 23) - 1),
    (0, 0),
    (1 << 24, 0),
    (10444800, 10444800 - (1 << 24)),
    (-(1 << 24), 0),
    (3 * (1 << 24) + 5, 5),              # more than one step of wrap: modulo
]


@pytest.mark.parametrize(("x", "want"), BOUNDARY_24)
def test_wrap_boundaries_24(x, want):
    assert fixed.wrap(x, 24) == want
    assert int(fixed.wrap_array(arr([x]), 24)[0]) == want
    assert int(fixed.wrap_float(np.array([float(x)]), 24)[0]) == want


@settings(max_examples=200, deadline=None)
@given(ints, st.integers(min_value=2, max_value=32))
def test_wrap_signed_scalar_vs_array(xs, bits):
    want = [fixed.wrap_signed(x, bits) for x in xs]
    np.testing.assert_array_equal(fixed.wrap_signed_array(arr(xs), bits), want)
    half = 1 << (bits - 1)
    for x, y in zip(xs, want, strict=True):
        assert -half <= y < half
        assert (x - y) % (1 << bits) == 0


def test_wrap_signed_is_c_conversion():
    assert fixed.wrap_signed(127 << 8, 16) == 32512
    assert fixed.wrap_signed(1 << 15, 16) == -(1 << 15)
    assert fixed.wrap_signed(-(1 << 15), 16) == -(1 << 15)
    assert fixed.wrap_signed(-(1 << 15) - 1, 16) == (1 << 15) - 1


# ---------------------------------------------------------------------------- saturate
@settings(max_examples=200, deadline=None)
@given(ints, ints, st.integers(min_value=2, max_value=32))
def test_sat_add_scalar_vs_array(xs, ys, bits):
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    want = [fixed.sat_add(x, y, bits) for x, y in zip(xs, ys, strict=True)]
    np.testing.assert_array_equal(fixed.sat_array(arr(xs) + arr(ys), bits), want)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for x, y, z in zip(xs, ys, want, strict=True):
        assert z == min(hi, max(lo, x + y))
        assert fixed.saturate(x + y, lo, hi) == z


def test_sat_add_edges_16():
    assert fixed.sat_add(32767, 1, 16) == 32767
    assert fixed.sat_add(-32768, -1, 16) == -32768
    assert fixed.sat_add(32000, -65000, 16) == -32768
    assert fixed.sat_add(100, -50, 16) == 50
    assert fixed.saturate(5, 0, 3) == 3 and fixed.saturate(-5, 0, 3) == 0 and fixed.saturate(2, 0, 3) == 2


# --------------------------------------------------------------------------- shift_decay
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-(1 << 20), max_value=1 << 20), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=15))
def test_shift_decay_scalar_vs_array(xs, dash):
    want = [fixed.shift_decay(x, dash) for x in xs]
    np.testing.assert_array_equal(fixed.shift_decay_array(arr(xs), dash), want)
    # per-element dash too
    dashes = arr([(dash + i) % 16 for i in range(len(xs))])
    want2 = [fixed.shift_decay(x, int(d)) for x, d in zip(xs, dashes, strict=True)]
    np.testing.assert_array_equal(fixed.shift_decay_array(arr(xs), dashes), want2)
    for x, d in zip(xs, want, strict=True):
        if x != 0:
            assert d != 0 and (d > 0) == (x > 0)  # a non-zero state always moves
            assert abs(x - d) < abs(x)  # and strictly toward 0, never past it
            assert (x - d == 0) or ((x - d) > 0) == (x > 0)
        else:
            assert d == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(1 << 40), max_value=1 << 40), min_size=0, max_size=40),
       st.integers(min_value=0, max_value=47))
def test_shift_decay_list_equals_scalar(xs, dash):
    dashes = [(dash + i) % 48 for i in range(len(xs))]
    assert fixed.shift_decay_list(xs, dashes) == [fixed.shift_decay(x, d) for x, d in zip(xs, dashes, strict=True)]


def test_shift_decay_minimum_step():
    assert fixed.shift_decay(1, 4) == 1
    assert fixed.shift_decay(-1, 4) == -1
    assert fixed.shift_decay(15, 4) == 1       # 15 >> 4 == 0 -> minimum step 1
    assert fixed.shift_decay(-15, 4) == -1     # -15 >> 4 == -1 already (floor)
    assert fixed.shift_decay(-17, 4) == -2     # floor(-17/16) = -2
    assert fixed.shift_decay(32, 4) == 2
    assert fixed.shift_decay(0, 4) == 0
    assert fixed.shift_decay(-32768, 15) == -1
    np.testing.assert_array_equal(fixed.shift_decay_array(arr([1, -1, 15, -15, -17, 32, 0]), 4),
                                  [1, -1, 1, -1, -2, 2, 0])


def test_sign():
    assert [fixed.sign(x) for x in (-7, 0, 9)] == [-1, 0, 1]


# -------------------------------------------------------------------------------- draw
@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 15) - 1), st.integers(min_value=0, max_value=(1 << 20) - 1),
       st.lists(st.integers(min_value=0, max_value=(1 << 19) - 1), min_size=1, max_size=20),
       st.integers(min_value=0, max_value=511), st.integers(min_value=1, max_value=16))
def test_draw_scalar_vs_array(seed, step, neurons, slot, bits):
    want = [fixed.draw(seed, step, n, slot, bits) for n in neurons]
    got = fixed.draw_array(seed, step, arr(neurons), slot, bits)
    np.testing.assert_array_equal(got, want)
    for x in want:
        assert 0 <= x < (1 << bits)
    # slot broadcast as an array
    slots = arr([(slot + i) % 512 for i in range(len(neurons))])
    want2 = [fixed.draw(seed, step, n, int(s), bits) for n, s in zip(neurons, slots, strict=True)]
    np.testing.assert_array_equal(fixed.draw_array(seed, step, arr(neurons), slots, bits), want2)


def test_draw_large_seed_and_step_wrap_like_the_scalar():
    # seed << 48 and step << 28 overflow 64 bits: both forms must reduce mod 2^64 alike
    for seed, step in ((1 << 20, 5), (12345, (1 << 36) + 3), ((1 << 16) + 1, (1 << 20) + 7)):
        want = [fixed.draw(seed, step, n, 257, 8) for n in range(5)]
        np.testing.assert_array_equal(fixed.draw_array(seed, step, np.arange(5), 257, 8), want)


def test_draw_is_spread():
    xs = fixed.draw_array(0, 3, np.arange(4096), 0, 8)
    counts = np.bincount(xs, minlength=256)
    assert counts.min() > 0 and counts.max() < 40  # ~16 expected per bin
    other = fixed.draw_array(1, 3, np.arange(4096), 0, 8)
    assert (xs != other).mean() > 0.9  # another seed, another sequence


def test_mix64_is_splitmix_finaliser():
    # SplitMix64 with state 0: first output is mix64(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF
    assert fixed.mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert fixed.mix64(0) == 0


# ------------------------------------------------------------- formats and in-place forms
class Fmt:
    def __init__(self, bits: int, overflow: str) -> None:
        self.bits, self.overflow = bits, overflow


@pytest.mark.parametrize("bits", [2, 8, 16, 20, 24, 42, 48])
def test_limits(bits):
    lo, hi = fixed.limits(bits)
    assert lo == -(1 << (bits - 1)) and hi == (1 << (bits - 1)) - 1


@settings(max_examples=300, deadline=None)
@given(ints, st.integers(min_value=2, max_value=48), st.sampled_from(["wrap", "saturate"]))
def test_overflow_scalar_vs_array(xs, bits, policy):
    fmt = Fmt(bits, policy)
    want = [fixed.overflow(x, fmt) for x in xs]
    np.testing.assert_array_equal(fixed.overflow_array(arr(xs), fmt), want)
    lo, hi = fixed.limits(bits)
    assert all(lo <= y <= hi for y in want)
    for x, y in zip(xs, want, strict=True):
        if lo <= x <= hi:
            assert y == x  # a value the register holds is kept
        elif policy == "saturate":
            assert y == (lo if x < lo else hi)
        else:
            assert (y - x) % (1 << bits) == 0


def test_overflow_edges():
    assert fixed.overflow(1 << 19, Fmt(20, "wrap")) == -(1 << 19)
    assert fixed.overflow(1 << 19, Fmt(20, "saturate")) == (1 << 19) - 1
    assert fixed.overflow(-(1 << 19) - 1, Fmt(20, "wrap")) == (1 << 19) - 1
    assert fixed.overflow(-(1 << 19) - 1, Fmt(20, "saturate")) == -(1 << 19)


@settings(max_examples=300, deadline=None)
@given(ints, st.integers(min_value=2, max_value=48))
def test_saturate_inplace_and_list_equal_scalar(xs, bits):
    lo, hi = fixed.limits(bits)
    want = [fixed.saturate(x, lo, hi) for x in xs]
    a = arr(xs)
    assert fixed.saturate_inplace(a, lo, hi) is a
    np.testing.assert_array_equal(a, want)
    f = arr(xs).astype(np.float64)
    np.testing.assert_array_equal(fixed.saturate_inplace(f, lo, hi), want)
    assert fixed.saturate_list(xs, lo, hi) == want


@settings(max_examples=300, deadline=None)
@given(ints, st.integers(min_value=2, max_value=42))
def test_wrap_float_inplace_equals_wrap(xs, bits):
    want = [fixed.wrap(x, bits) for x in xs]
    f = arr(xs).astype(np.float64)
    assert fixed.wrap_float_inplace(f, bits) is f
    np.testing.assert_array_equal(f, want)
    assert fixed.wrap_float_inplace(np.zeros(0), bits).size == 0

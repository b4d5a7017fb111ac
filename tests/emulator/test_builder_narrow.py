"""The builder stores COO indices as int32 and weights in the narrowest dtype of the target's weight
range; builds, placements and errors are those of int64 storage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_builder_layout import network, placements

import emulator
from compiler.backend import layout, place
from compiler.passes.partition import partition
from emulator import builder as builder_mod
from spikeforge.errors import ProgramError, RegisterError


def xylo_network(seed=0):
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 12)
    h = b.population("h", 30)
    o = b.population("o", 4, readout=True)
    for pre, post in ((x, h), (h, h), (h, o)):
        dense = rng.integers(-128, 128, (post.size, pre.size))
        dense[rng.random(dense.shape) < 0.5] = 0
        post_idx, pre_idx = np.nonzero(dense)
        order = rng.permutation(post_idx.size)
        b.connect(pre, post, weights=(post_idx[order], pre_idx[order], dense[post_idx, pre_idx][order]))
    b.output("out", o)
    return b


class Widened:
    """``b``'s netlist with every projection's arrays widened to int64 (the storage before narrowing),
    built as ``b.build`` builds: the same back end."""

    def __init__(self, b):
        net = b.netlist()
        self.spec = b.spec
        self.net = dataclasses.replace(net, projections=tuple(
            dataclasses.replace(c, post_idx=c.post_idx.astype(np.int64), pre_idx=c.pre_idx.astype(np.int64),
                                weight=c.weight.astype(np.int64)) for c in net.projections))

    def netlist(self):
        return self.net

    def build(self, placement=None):
        where = place(self.net, self.spec, strategy="per_population", fixed=placement)
        return layout(self.net, where, self.spec, metadata={"builder": "emulator.ProgramBuilder"})


def widened(b):
    return Widened(b)


@pytest.mark.parametrize("target", ["loihi", "truenorth", "xylo"])
def test_connect_stores_narrow_dtypes(target):
    b = xylo_network() if target == "xylo" else network(target)
    lo, hi = b.spec.synapse_range("weight").lo, b.spec.synapse_range("weight").hi
    for c in b.netlist().projections:
        assert c.post_idx.dtype == np.int32 and c.pre_idx.dtype == np.int32
        assert c.weight.dtype == np.int16
        assert int(np.iinfo(c.weight.dtype).min) <= -max(abs(lo), abs(hi))
        assert int(np.iinfo(c.weight.dtype).max) >= max(abs(lo), abs(hi))


def test_dtype_choice():
    assert builder_mod._index_dtype(10, 2**31 - 1) is np.int32
    assert builder_mod._index_dtype(2**31, 10) is np.int64
    assert builder_mod._weight_dtype(-256, 255) is np.int16
    assert builder_mod._weight_dtype(-(2**15), 0) is np.int32  # -w must fit too
    assert builder_mod._weight_dtype(0, 2**31) is np.int64


@pytest.mark.parametrize("target", ["loihi", "truenorth", "xylo"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_build_equals_int64_storage(target, shuffle):
    if target == "xylo":
        narrow, wide = xylo_network(), widened(xylo_network())
    else:
        narrow, wide = network(target, shuffle=shuffle), widened(network(target, shuffle=shuffle))
    if target == "loihi":
        assert narrow.build().to_bytes() == wide.build().to_bytes()
    for kind in {"loihi": ["single", "runs", "scattered"], "truenorth": ["single"], "xylo": []}[target]:
        pl = placements(narrow, kind)
        assert narrow.build(placement=pl).to_bytes() == wide.build(placement=pl).to_bytes()
    if target != "truenorth":  # (the layout network's TrueNorth neurons have several target cores)
        pn, pw = partition(narrow), partition(wide.netlist(), spec=wide.spec)
        assert pn.keys() == pw.keys() and all(np.array_equal(pn[k], pw[k]) for k in pn)
        assert narrow.build(placement=pn).to_bytes() == wide.build(placement=pw).to_bytes()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.float64])
def test_input_dtypes_give_the_same_program(dtype):
    rng = np.random.default_rng(1)
    dense = rng.integers(-60, 60, (30, 20)) * 2
    dense[rng.random(dense.shape) < 0.4] = 0
    if np.dtype(dtype).kind == "u":
        dense = np.abs(dense)
    post, pre = np.nonzero(dense)
    order = rng.permutation(post.size)
    progs = []
    for idx_t, w_t in [(np.int64, np.int64), (dtype if np.dtype(dtype).kind != "f" else np.int64, dtype)]:
        for coo in (True, False):
            b = emulator.ProgramBuilder("loihi")
            x = b.input("in", 20)
            p = b.population("p", 30)
            w = (post[order].astype(idx_t), pre[order].astype(idx_t), dense[post, pre][order].astype(w_t)) if coo \
                else dense.astype(w_t)
            b.connect(x, p, weights=w, num_weight_bits=6)
            progs.append(b.build().to_bytes())
    assert all(p == progs[0] for p in progs)


def test_connect_does_not_alias_the_callers_weights():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 4)
    p = b.population("p", 3)
    w = np.array([10, 20, 30], dtype=np.int16)
    b.connect(x, p, weights=(np.arange(3), np.arange(3), w))
    w[:] = 0
    assert b.netlist().projections[0].weight.tolist() == [10, 20, 30]


def test_errors_unchanged():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 4)
    p = b.population("p", 3)
    with pytest.raises(RegisterError, match=r"weight 300 at \[post 1, pre 2\] outside"):
        b.connect(x, p, weights=(np.array([0, 1], dtype=np.int16), np.array([0, 2], dtype=np.int8),
                                 np.array([5, 300], dtype=np.int16)))
    with pytest.raises(RegisterError, match=r"weight -300 at \[post 1, pre 2\] outside"):
        b.connect(x, p, weights=(np.array([0, 1]), np.array([0, 2]), np.array([5, -300], dtype=np.int64)))
    b.connect(x, p, weights=(np.array([0]), np.array([0]), np.array([2**64 - 1], dtype=np.uint64)))  # wraps, as before
    assert b.netlist().projections[-1].weight.tolist() == [-1]
    with pytest.raises(ProgramError, match="COO index outside"):
        b.connect(x, p, weights=(np.array([3], dtype=np.uint8), np.array([0]), np.array([1])), name="q")


def _coo_rows(rng, n_post, n_pre, per_row):
    post = np.repeat(np.arange(n_post), per_row)
    pre = np.concatenate([rng.choice(n_pre, per_row, replace=False) for _ in range(n_post)])
    return post, pre


@pytest.mark.parametrize("layout", ["strict", "rows_unsorted", "shuffled"])
@pytest.mark.parametrize("dup", [None, "early", "late", "long_row"])
def test_repeats_found_in_every_layout(monkeypatch, layout, dup):
    monkeypatch.setattr(builder_mod, "_DUP_BLOCK", 64)  # many blocks, rows across block ends
    rng = np.random.default_rng(2)
    n_post, n_pre = 200, 50
    post, pre = _coo_rows(rng, n_post, n_pre, 7)
    post = np.concatenate([post, np.full(n_pre, n_post)])  # one row longer than a block
    pre = np.concatenate([pre, rng.permutation(n_pre)])
    n_post += 1
    if layout == "strict":
        o = np.lexsort((pre, post))
        post, pre = post[o], pre[o]
    if dup is not None:
        i, j = {"early": (0, 1), "late": (post.size - n_pre - 2, post.size - n_pre - 1),
                "long_row": (post.size - 1, post.size - 3)}[dup]
        pre[j] = pre[i]
    if layout == "shuffled":
        o = rng.permutation(post.size)
        post, pre = post[o], pre[o]
    elif dup is not None and layout == "strict":
        o = np.lexsort((pre, post))
        post, pre = post[o], pre[o]
    assert builder_mod._repeats(post.astype(np.int32), pre.astype(np.int32), n_pre) == (dup is not None)
    key = post * n_pre + pre
    assert (np.unique(key).size < key.size) == (dup is not None)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", n_pre)
    p = b.population("p", n_post)
    w = (post, pre, np.full(post.size, 2))
    if dup is None:
        b.connect(x, p, weights=w)
    else:
        with pytest.raises(ProgramError, match="COO weights repeat a"):
            b.connect(x, p, weights=w)

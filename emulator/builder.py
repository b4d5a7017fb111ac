"""Register-level construction of a Program: no model, no quantiser, only chip registers.

This is how a Lava / NxSDK / Rockpool deployment is ported, and how a third party
cross-checks the emulator: every value is a chip register in the family's own units.

>>> b = ProgramBuilder("loihi")
>>> x = b.input("in", 2)
>>> l1 = b.population("l1", 1, du=4095, dv=0, vth=10)
>>> b.connect(x, l1, weights=[[100, 100]], weight_exp=0)
>>> b.output("out", l1)
>>> program = b.build()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

import hw_specs
from hw_specs import HwSpec
from spikeforge.errors import ProgramError, RegisterError

from . import families
from .learning.plasticity import LearningRule, as_rule, compile_plasticity
from .program import Program

if TYPE_CHECKING:  # the back end is imported when a program is built (it imports the compiler package)
    from compiler.backend.netlist import Netlist

__all__ = ["ProgramBuilder", "Node"]

#: COO weights: (post indices, pre indices, values)
Coo = tuple[ArrayLike, ArrayLike, ArrayLike]
#: metadata of every Program the builder makes
_METADATA = {"builder": "emulator.ProgramBuilder"}


@dataclass(frozen=True)
class Node:
    """A handle on an input port or population of a builder (``name`` and ``size``)."""

    name: str
    size: int
    kind: str  # "input" | "population"


@dataclass
class _Pop:
    name: str
    size: int
    registers: dict[str, NDArray[np.int64]]
    readout: bool


@dataclass
class _Conn:
    name: str
    pre: Node
    post: Node
    post_idx: NDArray[np.integer[Any]]  # int32 (int64 only for populations of 2**31 or more)
    pre_idx: NDArray[np.integer[Any]]
    weight: NDArray[np.integer[Any]]  # int16 or int32: the narrowest holding the target's weight range
    delay: int
    params: dict[str, int]
    axon_types: NDArray[np.int64] | None
    plasticity: LearningRule | None = None


class ProgramBuilder:
    """Build a :class:`Program` from register values.

    ``target`` is a spec name, a path to a TOML spec, or an :class:`HwSpec`.
    """

    def __init__(self, target: str | HwSpec) -> None:
        self.spec = hw_specs.load(target)
        self._inputs: dict[str, Node] = {}
        self._pops: dict[str, _Pop] = {}
        self._conns: list[_Conn] = []
        self._outputs: dict[str, str] = {}

    # ---------------------------------------------------------------- declarations
    def input(self, name: str, size: int) -> Node:
        """Declare an input port of ``size`` channels (the program's input axons)."""
        self._new_name(name)
        size = _positive_int(size, f"input {name!r}: size")
        node = Node(name, size, "input")
        self._inputs[name] = node
        return node

    def population(self, name: str, size: int, *, readout: bool = False, **registers: ArrayLike) -> Node:
        """Declare ``size`` neurons with the family's registers (scalars or ``[size]`` arrays).

        Loihi: ``du, dv, vth, bias_mant, bias_exp, refractory, vmin_exp, vmax_exp``.
        Xylo: ``dash_mem, dash_syn, dash_syn2, threshold, bias``; ``readout=True`` makes a readout
        layer (one synaptic state, at most one spike per step).
        TrueNorth: ``type_weights`` (``[4]`` or ``[size, 4]``), ``leak, threshold, neg_threshold,
        reset_mode, reset_value, neg_saturate, leak_reversal, stochastic_synapse, stochastic_leak,
        threshold_mask_bits``. Registers left out take the spec's ``[defaults]``.
        """
        self._new_name(name)
        size = _positive_int(size, f"population {name!r}: size")
        spec = self.spec
        family = families.get(spec.family)
        family_regs = family.registers
        unknown = sorted(set(registers) - set(family_regs))
        if unknown:
            raise RegisterError(
                f"population {name!r}: unknown register(s) {', '.join(unknown)} for family {spec.family}; "
                f"registers are {', '.join(family_regs)}"
            )
        if readout and not spec.chip.readout_neurons:
            raise ProgramError(f"population {name!r}: target {spec.name} has no readout layer (readout=True)")
        values: dict[str, NDArray[np.int64]] = {}
        for key in family_regs:
            raw = registers.get(key, spec.defaults[key])
            values[key] = _register_array(raw, family.register_shape(key, size), name, key, spec)
        self._pops[name] = _Pop(name, size, values, readout)
        return Node(name, size, "population")

    def connect(
        self,
        pre: Node | str,
        post: Node | str,
        *,
        weights: ArrayLike | Coo,
        delay: int | None = None,
        name: str | None = None,
        plasticity: str | LearningRule | None = None,
        weight_exp: int = 0,
        num_weight_bits: int = 8,
        sign_mode: int | None = None,
        synapse: int = 0,
        weight_shift: int = 0,
        axon_types: ArrayLike | None = None,
    ) -> Node:
        """Connect ``pre`` (input or population) to ``post`` with integer ``weights`` ``[post, pre]``.

        ``weights`` is a dense ``[post, pre]`` array or a COO triple ``(post_idx, pre_idx, values)``;
        zero entries are no synapse. ``delay`` (steps) defaults to the spec's default (Loihi: 1,
        as Lava's Dense; Xylo: 0 from inputs, 1 otherwise).

        Loihi: ``weight_exp`` and ``num_weight_bits`` as in Lava's Dense; weights are stored as the
        chip stores them, truncated to ``num_weight_bits`` (``w = (w >> k) << k``,
        ``k = 8 - num_weight_bits + is_mixed``). Xylo: ``synapse`` (0 or 1) and ``weight_shift``.
        TrueNorth: 0/1 weights and ``axon_types`` ``[pre]`` (0..3). Keywords of another family are
        ignored.

        ``plasticity``: a learning rule such as ``"dw = 2^-2*x1*y0 - 2^-2*y1*x0"`` (documented trace
        defaults) or an :class:`emulator.learning.LearningRule` (rule, trace parameters, epoch): the
        projection learns on chip (``docs/learning.md``). The rule is checked against the target's
        learning engine here (:class:`LearningRuleError` pointing at the term and column; a target
        without a learning engine says so). Every entry of a dense ``weights`` matrix, zeros included,
        is a plastic synapse; a COO triple lists them.
        """
        pre_n = self._node(pre)
        post_n = self._node(post)
        if post_n.kind != "population":
            raise ProgramError(f"connect: post {post_n.name!r} is an input port; connect into a population")
        spec = self.spec
        name = name or f"{pre_n.name}->{post_n.name}"
        rule = None
        if plasticity is not None:
            rule = as_rule(plasticity)
            compile_plasticity(rule, spec)  # checked where it is given
        if any(c.name == name for c in self._conns):
            raise ProgramError(f"connect: a projection named {name!r} exists already; pass name=...")
        if rule is not None and not isinstance(weights, tuple):
            post_idx, pre_idx, w = _all_pairs(weights, post_n.size, pre_n.size, name)
        else:
            post_idx, pre_idx, w = _coo(weights, post_n.size, pre_n.size, name)
            keep = w != 0
            if rule is None and not keep.all():  # a listed plastic synapse of weight 0 stays: it can learn
                post_idx, pre_idx, w = post_idx[keep], pre_idx[keep], w[keep]
            del keep
        where = spec.where()
        hardware = families.get(spec.family).hardware
        wr = spec.synapse_range("weight")
        if w.size and (int(w.min()) < wr.lo or int(w.max()) > wr.hi):
            w = w.astype(np.int64, copy=False)
            i = int(np.argmax((w < wr.lo) | (w > wr.hi)))
            raise RegisterError(
                f"projection {name!r}: weight {int(w[i])} at [post {int(post_idx[i])}, pre {int(pre_idx[i])}] "
                f"outside {wr} of target {spec.name} ({where}); {hardware.WEIGHT_HINT}"
            )
        w_dtype = _weight_dtype(int(wr.lo), int(wr.hi))  # in range: exact (and -w too)
        w = w.astype(w_dtype, copy=w_dtype is np.int64)  # a copy (int64 values may be the caller's)
        is_input = pre_n.kind == "input"
        rng_key = "input_delay" if is_input else "delay"
        if delay is None:
            delay = int(spec.synapse["default_input_delay" if is_input else "default_delay"])
        if delay not in spec.synapse_range(rng_key):
            raise RegisterError(
                f"projection {name!r}: delay={delay} outside {spec.synapse_range(rng_key)} steps for "
                f"{'input' if is_input else 'neuron'} projections of target {spec.name} ({where})"
            )
        fields = {"weight_exp": weight_exp, "num_weight_bits": num_weight_bits, "sign_mode": sign_mode,
                  "synapse": synapse, "weight_shift": weight_shift, "axon_types": axon_types,
                  "plastic": rule is not None}

        def check_field(raw: ArrayLike, shape: tuple[int, ...], key: str) -> NDArray[np.int64]:
            return _register_array(raw, shape, name, key, spec, table="synapse")

        post_idx, pre_idx, w, params, types = hardware.store(
            name, post_idx, pre_idx, w, fields, pre_size=pre_n.size, post=post_n.name,
            post_readout=self._pops[post_n.name].readout, check_field=check_field)
        for key, value in params.items():
            if key in spec.synapse and value not in spec.synapse_range(key):
                raise RegisterError(
                    f"projection {name!r}: {key}={value} outside {spec.synapse_range(key)} of target "
                    f"{spec.name} ({where})"
                )
        self._conns.append(_Conn(name, pre_n, post_n, post_idx, pre_idx, w, int(delay), params, types, rule))
        return Node(name, 0, "projection")

    def output(self, name: str, population: Node | str) -> None:
        """Expose a population's spikes as output port ``name``."""
        node = self._node(population)
        if node.kind != "population":
            raise ProgramError(f"output {name!r}: {node.name!r} is not a population")
        if name in self._outputs:
            raise ProgramError(f"output {name!r} is declared twice")
        self._outputs[name] = node.name

    # ------------------------------------------------------------------------ build
    def netlist(self) -> Netlist:
        """The network declared so far as a frozen :class:`compiler.backend.Netlist` (read-only views
        of the builder's arrays: no copy)."""
        from compiler.backend import netlist as net

        ro = net.read_only
        return net.Netlist(
            inputs=tuple(net.InputPort(n.name, n.size) for n in self._inputs.values()),
            populations=tuple(
                net.Population(p.name, p.size, net.frozen_mapping({k: ro(v) for k, v in p.registers.items()}),
                               p.readout)
                for p in self._pops.values()),
            projections=tuple(
                net.Projection(c.name, c.pre.name, c.pre.size, c.pre.kind == "input", c.post.name, c.post.size,
                               ro(c.post_idx), ro(c.pre_idx), ro(c.weight), c.delay, net.frozen_mapping(c.params),
                               None if c.axon_types is None else ro(c.axon_types), c.plasticity)
                for c in self._conns),
            outputs=net.frozen_mapping(self._outputs),
        )

    def build(
        self,
        placement: Mapping[str, ArrayLike] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Program:
        """Place neurons on cores, allocate axons and routes, and return the Program.

        ``placement`` maps a population name to the core of each of its neurons (``[size]``);
        populations left out are placed automatically: each on cores of its own, split greedily
        so that every core respects neurons, input axons and synapse memory (on single-core
        targets such as Xylo every population shares core 0). This is the compiler's back end:
        :func:`compiler.backend.place` (``per_population``) then :func:`compiler.backend.layout`.
        """
        if not self._pops:
            raise ProgramError("build: the program has no population")
        from compiler.backend import layout, place

        netlist = self.netlist()
        where = place(netlist, self.spec, strategy="per_population", fixed=placement)
        return layout(netlist, where, self.spec, metadata={**_METADATA, **(metadata or {})})

    def _new_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise ProgramError(f"name {name!r}: use a non-empty string without '.' or '/' (probes use 'pop.state')")
        if name in self._inputs or name in self._pops:
            raise ProgramError(f"name {name!r} is used already")

    def _node(self, ref: Node | str) -> Node:
        name = ref.name if isinstance(ref, Node) else ref
        if name in self._inputs:
            return self._inputs[name]
        if name in self._pops:
            return Node(name, self._pops[name].size, "population")
        raise ProgramError(
            f"no input or population named {name!r}; have {', '.join([*self._inputs, *self._pops]) or 'none'}"
        )


def _positive_int(value: Any, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ProgramError(f"{what} = {value!r}; expected a positive integer")
    return int(value)


def _register_array(raw: ArrayLike, shape: tuple[int, ...], owner: str, key: str, spec: HwSpec,
                    table: str = "registers") -> NDArray[np.int64]:
    arr = np.asarray(raw)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise RegisterError(f"{owner!r}: register {key} must hold integers; got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise RegisterError(f"{owner!r}: register {key} must hold integers; got dtype {arr.dtype}")
    try:
        out = np.broadcast_to(arr.astype(np.int64), shape).copy()
    except ValueError:
        raise RegisterError(f"{owner!r}: register {key} has shape {arr.shape}; expected a scalar or {shape}") from None
    rng = spec.registers[key] if table == "registers" else spec.synapse_range(key)
    bad = (out < rng.lo) | (out > rng.hi)
    if bad.any():
        idx = np.argwhere(bad)[0]
        value = int(out[tuple(idx)])
        bits = max(rng.hi.bit_length(), (-rng.lo).bit_length()) + (1 if rng.lo < 0 else 0)
        raise RegisterError(
            f"{owner!r}: {key}={value} (at index {idx.tolist()}) outside {rng} ({bits}-bit) of target "
            f"{spec.name} ({spec.where()})"
        )
    return out


def _coo(weights: ArrayLike | Coo, n_post: int, n_pre: int, name: str
         ) -> tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]]]:
    """``(post, pre, values)``: indices in :func:`_index_dtype`, values exact integers of an integer dtype
    (the caller's dtype when it holds them exactly, else int64): a copy, or the caller's int64 values,
    which ``connect`` narrows to a copy once they are checked."""
    idx_dtype = _index_dtype(n_post, n_pre)
    if isinstance(weights, tuple) and len(weights) == 3:
        post = _int_array(weights[0])
        pre = _int_array(weights[1])
        val = np.asarray(weights[2])
        if not (post.size == pre.size == val.size):
            raise ProgramError(f"projection {name!r}: COO weights (post, pre, values) differ in length")
        if post.size and (int(post.min()) < 0 or int(post.max()) >= n_post or int(pre.min()) < 0
                          or int(pre.max()) >= n_pre):
            raise ProgramError(f"projection {name!r}: COO index outside [post {n_post}, pre {n_pre}]")
        post, pre = post.astype(idx_dtype, copy=False), pre.astype(idx_dtype, copy=False)  # in range: exact
        if post.size > 1 and _repeats(post, pre, n_pre):
            raise ProgramError(f"projection {name!r}: COO weights repeat a (post, pre) pair")
    else:
        dense = np.asarray(weights)
        if dense.shape != (n_post, n_pre):
            raise ProgramError(
                f"projection {name!r}: weights have shape {dense.shape}; expected [post, pre] = ({n_post}, {n_pre})"
            )
        post, pre = np.nonzero(dense)
        val = dense[post, pre]
        post, pre = post.astype(idx_dtype), pre.astype(idx_dtype)
    if val.dtype.kind == "f":
        if not np.all(np.isfinite(val)) or np.any(val != np.round(val)):
            raise RegisterError(
                f"projection {name!r}: weights must be integers (chip register values); quantise them first "
                "(compiler.compile does this)"
            )
    elif val.dtype.kind not in "iub":
        raise RegisterError(f"projection {name!r}: weights must be integers; got dtype {val.dtype}")
    if _exact_int(val.dtype):  # no int64 copy: connect narrows the values once they are checked
        return post, pre, val.ravel() if val.dtype == np.int64 else val.ravel().copy()
    return post, pre, val.astype(np.int64).ravel()


def _all_pairs(weights: ArrayLike, n_post: int, n_pre: int, name: str
               ) -> tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]]]:
    """A plastic projection's dense ``[post, pre]`` weights as COO with every pair, zeros included
    (a zero-weight plastic synapse can learn)."""
    dense = np.asarray(weights)
    if dense.shape != (n_post, n_pre):
        raise ProgramError(
            f"projection {name!r}: weights have shape {dense.shape}; expected [post, pre] = ({n_post}, {n_pre})")
    idx_dtype = _index_dtype(n_post, n_pre)
    post, pre = np.divmod(np.arange(n_post * n_pre, dtype=np.int64), n_pre)
    return _coo((post.astype(idx_dtype), pre.astype(idx_dtype), dense.ravel()), n_post, n_pre, name)


def _exact_int(dtype: np.dtype[Any]) -> bool:
    """Integer dtypes whose every value is an int64 value (all but uint64)."""
    return dtype.kind == "i" or dtype.kind == "u" and dtype.itemsize < 8


def _int_array(raw: ArrayLike) -> NDArray[np.integer[Any]]:
    """``np.asarray(raw, dtype=np.int64).ravel()``, but an exact integer array keeps its dtype (no copy)."""
    arr = np.asarray(raw)
    if _exact_int(arr.dtype):
        return arr.ravel()
    return np.asarray(raw, dtype=np.int64).ravel()


def _index_dtype(n_post: int, n_pre: int) -> type[np.signedinteger[Any]]:
    """COO indices as int32 when both sizes allow (every real chip), else int64."""
    return np.int32 if max(n_post, n_pre) <= np.iinfo(np.int32).max else np.int64


def _weight_dtype(lo: int, hi: int) -> type[np.signedinteger[Any]]:
    """The narrowest of int16 / int32 / int64 holding ``[lo, hi]`` and the negations (Loihi's truncation
    of negative weights shifts ``-w``)."""
    m = max(abs(lo), abs(hi))
    return np.int16 if m < 1 << 15 else np.int32 if m < 1 << 31 else np.int64


#: synapses per block of the duplicate check (a block of int64 keys stays in cache)
_DUP_BLOCK = 1 << 16


def _repeats(post: NDArray[np.integer[Any]], pre: NDArray[np.integer[Any]], n_pre: int) -> bool:
    """Whether some (post, pre) pair occurs twice (indices checked in range).

    COO sorted by post (a generator's order, or ``np.nonzero``'s) is checked block by block, each block
    of whole rows at once: one pass when it is sorted by (post, pre) strictly, else a sort of that
    block's keys (in cache). Other orders: one sort of all the ``post * n_pre + pre`` keys.
    """
    if not _non_decreasing(post):
        key = post.astype(np.int64) * n_pre + pre
        key.sort()
        return bool((key[1:] == key[:-1]).any())
    n = post.size
    buf = np.empty(_DUP_BLOCK, dtype=np.int64)
    lo = 0
    while lo < n:
        hi = min(n, lo + _DUP_BLOCK)
        if hi < n:  # the block ends with its last row
            hi = int(np.searchsorted(post, post[hi - 1], side="right"))
        if hi - lo > buf.size:
            buf = np.empty(hi - lo, dtype=np.int64)
        key = buf[:hi - lo]
        np.subtract(post[lo:hi], post[lo], out=key, dtype=np.int64)
        key *= n_pre
        np.add(key, pre[lo:hi], out=key, dtype=np.int64)
        if not (key[1:] > key[:-1]).all():
            key.sort()
            if (key[1:] == key[:-1]).any():
                return True
        lo = hi
    return False


def _non_decreasing(a: NDArray[np.integer[Any]]) -> bool:
    """``a[i] <= a[i + 1]`` for all i, checked in blocks (no array-sized temporary)."""
    for lo in range(0, max(0, a.size - 1), _DUP_BLOCK):
        part = a[lo:lo + _DUP_BLOCK + 1]
        if (part[1:] < part[:-1]).any():
            return False
    return True

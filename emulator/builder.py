"""Register-level construction of a Program, with no compiler involved.

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
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

import hw_specs
from hw_specs import HwSpec
from spikeforge.errors import DoesNotFit, ProgramError, RegisterError

from .program import Population, Program, Projection, _truncation_bits

__all__ = ["ProgramBuilder", "Node"]

#: COO weights: (post indices, pre indices, values)
Coo = tuple[ArrayLike, ArrayLike, ArrayLike]
#: sorted synapses: (axon, neuron, weight), int32 [S] each
_Syn = tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]


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
    plasticity: str | None


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
        family_regs = hw_specs.FAMILIES[spec.family]["registers"]
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
            shape: tuple[int, ...] = (size, 4) if key == "type_weights" else (size,)
            values[key] = _register_array(raw, shape, name, key, spec)
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
        plasticity: str | None = None,
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
        TrueNorth: 0/1 weights and ``axon_types`` ``[pre]`` (0..3).
        """
        pre_n = self._node(pre)
        post_n = self._node(post)
        if post_n.kind != "population":
            raise ProgramError(f"connect: post {post_n.name!r} is an input port; connect into a population")
        spec = self.spec
        name = name or f"{pre_n.name}->{post_n.name}"
        if any(c.name == name for c in self._conns):
            raise ProgramError(f"connect: a projection named {name!r} exists already; pass name=...")
        post_idx, pre_idx, w = _coo(weights, post_n.size, pre_n.size, name)
        keep = w != 0
        if not keep.all():
            post_idx, pre_idx, w = post_idx[keep], pre_idx[keep], w[keep]
        del keep
        where = spec.where()
        wr = spec.synapse_range("weight")
        if w.size and (int(w.min()) < wr.lo or int(w.max()) > wr.hi):
            w = w.astype(np.int64, copy=False)
            i = int(np.argmax((w < wr.lo) | (w > wr.hi)))
            hint = {
                "loihi": "scale the weights down and raise weight_exp",
                "xylo": "scale the weights down and raise weight_shift",
                "truenorth": "use 0/1 crossbar bits and put magnitudes in type_weights",
            }[spec.family]
            raise RegisterError(
                f"projection {name!r}: weight {int(w[i])} at [post {int(post_idx[i])}, pre {int(pre_idx[i])}] "
                f"outside {wr} of target {spec.name} ({where}); {hint}"
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
        params: dict[str, int] = {}
        types = None
        if spec.family == "loihi":
            params = {"weight_exp": int(weight_exp), "num_weight_bits": int(num_weight_bits)}
            if sign_mode is None:
                sign_mode = 1 if (w >= 0).all() else 2 if (w <= 0).all() else 0
            params["sign_mode"] = int(sign_mode)
            if sign_mode == 1 and (w < 0).any() or sign_mode == 2 and (w > 0).any():
                raise RegisterError(f"projection {name!r}: sign_mode={sign_mode} but weights of both signs")
            k = _truncation_bits(params)
            if k:
                w = -(np.right_shift(-w, k) << k) if sign_mode == 2 else np.right_shift(w, k) << k
                keep = w != 0
                if not keep.all():
                    post_idx, pre_idx, w = post_idx[keep], pre_idx[keep], w[keep]
        elif spec.family == "xylo":
            params = {"synapse": int(synapse), "weight_shift": int(weight_shift)}
            if self._pops[post_n.name].readout and synapse != 0:
                raise RegisterError(f"projection {name!r}: readout population {post_n.name!r} has one synapse; "
                                    "use synapse=0")
        else:
            raw = np.zeros(pre_n.size, dtype=np.int64) if axon_types is None else axon_types
            types = _register_array(raw, (pre_n.size,), name, "axon_types", spec, table="synapse")
        for key, value in params.items():
            if key in spec.synapse and value not in spec.synapse_range(key):
                raise RegisterError(
                    f"projection {name!r}: {key}={value} outside {spec.synapse_range(key)} of target "
                    f"{spec.name} ({where})"
                )
        self._conns.append(_Conn(name, pre_n, post_n, post_idx, pre_idx, w, int(delay), params, types, plasticity))
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
    def build(
        self,
        placement: Mapping[str, ArrayLike] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Program:
        """Place neurons on cores, allocate axons and routes, and return the Program.

        ``placement`` maps a population name to the core of each of its neurons (``[size]``);
        populations left out are placed automatically: each on cores of its own, split greedily
        so that every core respects neurons, input axons and synapse memory (on single-core
        targets such as Xylo every population shares core 0).
        """
        if not self._pops:
            raise ProgramError("build: the program has no population")
        spec = self.spec
        core_of: dict[str, NDArray[np.int64]] = {}
        next_core = 0
        single = spec.total_cores == 1
        for pop in self._pops.values():
            if placement and pop.name in placement:
                cores = np.asarray(placement[pop.name], dtype=np.int64)
                if cores.shape != (pop.size,) or (cores < 0).any():
                    raise ProgramError(f"placement[{pop.name!r}]: expected {pop.size} non-negative core indices")
                core_of[pop.name] = cores
            elif single:
                core_of[pop.name] = np.zeros(pop.size, dtype=np.int64)
            else:
                core_of[pop.name] = self._auto_place(pop, next_core)
            next_core = max(next_core, int(core_of[pop.name].max()) + 1)
        n_cores = max(int(c.max()) for c in core_of.values()) + 1

        # global neuron ids: by core, then population order, then index (the concatenation is in
        # population order and index order already, so a stable sort by core is enough)
        pops = list(self._pops.values())
        keys = np.concatenate([core_of[p.name] for p in pops])
        order = np.argsort(keys, kind="stable")
        gid_flat = np.empty(order.size, dtype=np.int64)
        gid_flat[order] = np.arange(order.size)
        del order
        gids: dict[str, NDArray[np.int64]] = {}
        start = 0
        for p in pops:
            gids[p.name] = gid_flat[start:start + p.size]
            start += p.size
        core_neurons = np.bincount(keys, minlength=n_cores)
        registers = {}
        for key in pops[0].registers:
            flat = np.concatenate([p.registers[key] for p in pops])
            out = np.empty_like(flat)
            out[gid_flat] = flat
            registers[key] = out

        # axons: per core, connections with input ports first, then in connect order; per pre unit
        conns = sorted(self._conns, key=lambda c: (c.pre.kind != "input",))
        wr = spec.synapse_range("weight")
        xbar = _crossbar(conns, core_of, gids, np.concatenate([[0], np.cumsum(core_neurons)]),
                         (int(wr.lo), int(wr.hi)), list(self._inputs))
        arrays: dict[str, NDArray[Any]] = {
            "core_neurons": core_neurons, "core_axons": xbar.core_axons,
            "axon_projection": xbar.axon_conn, "axon_type": xbar.axon_type,
            "syn_axon": xbar.syn_axon, "syn_neuron": xbar.syn_neuron, "syn_weight": xbar.syn_weight,
            "route_src": xbar.routes[0], "route_dst": xbar.routes[1], "route_delay": xbar.routes[2],
            "in_port": xbar.inputs[0], "in_channel": xbar.inputs[1], "in_dst": xbar.inputs[2],
            "in_delay": xbar.inputs[3],
        }
        del xbar
        projections = [
            Projection(c.name, c.pre.name, c.post.name, c.params, c.plasticity) for c in conns
        ]
        meta = {"builder": "emulator.ProgramBuilder"}
        meta.update(metadata or {})
        return Program(
            spec,
            arrays=arrays,
            registers=registers,
            inputs={k: v.size for k, v in self._inputs.items()},
            populations=[Population(p.name, gids[p.name].astype(np.int32), p.readout) for p in pops],
            projections=projections,
            output_ports=self._outputs,
            metadata=meta,
        )

    # ---------------------------------------------------------------------- helpers
    def _auto_place(self, pop: _Pop, first_core: int) -> NDArray[np.int64]:
        """Greedy split of one population over consecutive cores, respecting per-core limits."""
        chip = self.spec.chip
        incoming = [c for c in self._conns if c.post.name == pop.name]
        cores = np.empty(pop.size, dtype=np.int64)
        start, core = 0, first_core
        while start < pop.size:
            hi = min(pop.size, start + chip.neurons_per_core)
            lo = start + 1
            if not self._chunk_fits(incoming, start, lo):
                raise DoesNotFit(
                    f"population {pop.name!r}: neuron {start} alone needs more input axons or synapse memory than "
                    f"one core has ({self.spec.where()}); reduce its fan-in or the weight bits"
                )
            # largest chunk [start, end) that fits: bisection on end
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._chunk_fits(incoming, start, mid):
                    lo = mid
                else:
                    hi = mid - 1
            cores[start:lo] = core
            start, core = lo, core + 1
        return cores

    def _chunk_fits(self, incoming: list[_Conn], start: int, end: int) -> bool:
        spec = self.spec
        axons = 0
        bits = 0
        for c in incoming:
            m = (c.post_idx >= start) & (c.post_idx < end)
            pres = np.unique(c.pre_idx[m])
            axons += pres.size
            wbits = c.params.get("num_weight_bits", 8) if spec.family == "loihi" else (
                8 if spec.family == "xylo" else 1)
            bits += pres.size * int(spec.synapse["synapse_row_header_bits"])
            bits += int(m.sum()) * (wbits + int(spec.synapse["synapse_index_bits"]))
        return axons <= spec.chip.axons_in_per_core and bits <= spec.chip.synapse_memory_bits_per_core

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


#: elements per block in the chunked passes: a temporary (128 KiB of int64) stays in cache and within
#: glibc's mmap threshold (larger ones are mapped and faulted in afresh for every block)
_BLOCK = 1 << 14


@dataclass(frozen=True)
class _KeyFields:
    """Bit widths of the packed synapse sort key, low to high: ``weight - lo``, the neuron's index on
    its core, pre unit, connection (position in axon order) and core.

    Sorted keys order synapses by (core, connection, pre unit) — which is the axon numbering, so
    every run of equal high bits is one axon — then by neuron (global ids run core by core).
    """

    weight: int
    local: int
    pre: int
    conn: int
    core: int

    @property
    def total(self) -> int:
        return self.weight + self.local + self.pre + self.conn + self.core

    @property
    def at_local(self) -> int:
        return self.weight

    @property
    def at_pre(self) -> int:
        return self.weight + self.local

    @property
    def at_conn(self) -> int:
        return self.at_pre + self.pre

    @property
    def at_core(self) -> int:
        return self.at_conn + self.conn


@dataclass
class _Crossbar:
    """The built arrays: synapses sorted by (axon, neuron), int32 ``[S]`` each; per axon its
    connection (int32 ``[A]``, position in ``conns``) and TrueNorth type (int8 ``[A]``);
    ``core_axons`` int64 ``[n_cores]``; routes (int32 ``[R]`` each, sorted by source then axon)
    and input routes (int32 ``[I]`` each, connection by connection, axons ascending).
    """

    syn_axon: NDArray[np.int32]
    syn_neuron: NDArray[np.int32]
    syn_weight: NDArray[np.int32]
    axon_conn: NDArray[np.int32]
    axon_type: NDArray[np.int8]
    core_axons: NDArray[np.int64]
    routes: tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]
    inputs: tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]


class _Axons:
    """Per-axon records, appended in axon order block by block (:meth:`add`).

    Every axon gets its connection and type; an axon of a population's connection adds a route
    sort key ``source neuron << a_bits | axon`` to ``route_key`` (a caller's int64 buffer, whose
    first ``n_routes`` entries are written); an input axon adds (connection, pre unit, axon).
    """

    def __init__(self, conns: list[_Conn], gids: dict[str, NDArray[np.int64]], most: int,
                 route_key: NDArray[np.int64]) -> None:
        self.n_inputs = sum(c.pre.kind == "input" for c in conns)  # the first connections of the axon order
        sizes = [c.pre.size for c in conns]
        self.at = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (conn j, pre p) → at[j] + p
        self.src = np.concatenate([np.zeros(0, dtype=np.int64)] + [
            gids[c.pre.name] if c.pre.kind != "input" else np.full(c.pre.size, -1) for c in conns])
        has_types = any(c.axon_types is not None for c in conns)
        self.types = np.concatenate([np.zeros(0, dtype=np.int8)] + [
            (c.axon_types if c.axon_types is not None else np.zeros(c.pre.size)).astype(np.int8)
            for c in conns]) if has_types else None
        self.a_bits = max(1, min(most, (1 << 31) - 1).bit_length())  # axon ids < most, int32
        self.conn = np.empty(most, dtype=np.int32)  # only the pages written become resident
        self.type = np.zeros(most if has_types else 0, dtype=np.int8)
        self.route_key = route_key
        self.n_axons = self.n_routes = 0
        self.input_parts: list[tuple[NDArray[np.int32], ...]] = []  # (conn, pre, axon) of input axons

    def add(self, conn: NDArray[np.int64], pre: NDArray[np.int64]) -> None:
        """Records of the next ``conn.size`` axons (ids ``n_axons, …``): connection and pre unit of each."""
        a0, h = self.n_axons, conn.size
        self.conn[a0:a0 + h] = conn
        idx = self.at[conn] + pre
        if self.types is not None:
            self.type[a0:a0 + h] = self.types[idx]
        if self.n_inputs:
            is_input = conn < self.n_inputs
            hit = np.flatnonzero(is_input)
            if hit.size:
                self.input_parts.append((conn[hit].astype(np.int32), pre[hit].astype(np.int32),
                                         (hit + a0).astype(np.int32)))
            hit = np.flatnonzero(~is_input)
            idx, axon = idx[hit], hit + a0
        else:
            axon = np.arange(a0, a0 + h)
        r = self.n_routes
        np.bitwise_or(self.src[idx] << self.a_bits, axon, out=self.route_key[r:r + idx.size])
        self.n_axons += h
        self.n_routes += idx.size

    def routes(self, delay_of: NDArray[np.int32]) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
        """``(source, axon, delay)`` sorted by source then axon (the keys sorted in place), int32 each."""
        key = self.route_key[:self.n_routes]
        key.sort()
        src, dst, delay = (np.empty(key.size, dtype=np.int32) for _ in range(3))
        for lo in range(0, key.size, _BLOCK):
            k, d = key[lo:lo + _BLOCK], dst[lo:lo + _BLOCK]
            np.right_shift(k, self.a_bits, out=src[lo:lo + _BLOCK], casting="unsafe")
            np.bitwise_and(k, (1 << self.a_bits) - 1, out=d, casting="unsafe")
            np.take(delay_of, self.conn[d], out=delay[lo:lo + _BLOCK])
        return src, dst, delay

    def inputs(self, port_of: NDArray[np.int32], delay_of: NDArray[np.int32]
               ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
        """Input routes ``(port, channel, axon, delay)``, int32 each, connection by connection."""
        conn, pre, axon = (np.concatenate([p[i] for p in self.input_parts]) if self.input_parts
                           else np.zeros(0, dtype=np.int32) for i in range(3))
        if self.n_inputs > 1:  # group by connection; a stable sort keeps the axons ascending
            order = np.argsort(conn, kind="stable")
            conn, pre, axon = conn[order], pre[order], axon[order]
        return port_of[conn], pre, axon, delay_of[conn]


def _crossbar(conns: list[_Conn], core_of: dict[str, NDArray[np.int64]], gids: dict[str, NDArray[np.int64]],
              neuron_offset: NDArray[np.int64], w_range: tuple[int, int], ports: list[str]) -> _Crossbar:
    """Number the axons (per core: connection in ``conns`` order, then pre unit), sort the synapses
    and make the routes.

    One int64 key per synapse (:class:`_KeyFields`), sorted per (core, connection) segment or at
    once, when the fields fit 63 bits; else a ``lexsort`` of the same fields. ``w_range``: the
    target's (lo, hi) weights (``connect`` checked them); ``ports``: input port names.
    """
    n_cores = neuron_offset.size - 1
    local_of = {name: g - neuron_offset[core_of[name]] for name, g in gids.items()}
    n_syn = sum(int(c.weight.size) for c in conns)
    w_lo = w_range[0]
    fields = _KeyFields(
        weight=max(0, w_range[1] - w_lo).bit_length(),
        local=max(0, int(np.diff(neuron_offset).max(initial=0)) - 1).bit_length(),
        pre=max((c.pre.size - 1 for c in conns), default=0).bit_length(),
        conn=max(0, len(conns) - 1).bit_length(),
        core=max(0, n_cores - 1).bit_length(),
    )
    if n_syn == 0 or fields.total > 63:
        syn, axons, core_axons = _crossbar_lexsort(conns, core_of, local_of, gids, neuron_offset)
    else:
        tables = [(core_of[c.post.name] << fields.at_core) | (j << fields.at_conn)
                  | (local_of[c.post.name] << fields.at_local) for j, c in enumerate(conns)]
        segments = _segments(conns, core_of)
        if segments is None:
            key = _packed_keys(conns, tables, fields.at_pre, w_lo)
            key.sort()
            axons = _Axons(conns, gids, n_syn, key)  # route keys go where the spent synapse keys were
            unpack = _Unpack(n_syn, fields, neuron_offset, w_lo, axons)
            for lo in range(0, n_syn, _BLOCK):
                unpack.feed(key[lo:lo + _BLOCK], lo)
        else:  # segment by segment: no key array for all synapses
            axons = _Axons(conns, gids, n_syn, np.empty(n_syn, dtype=np.int64))
            unpack = _Unpack(n_syn, fields, neuron_offset, w_lo, axons)
            _stream_segments(conns, tables, segments, fields.at_pre, w_lo, unpack)
        syn, core_axons = (unpack.sa, unpack.sn, unpack.sw), unpack.core_axons
    delay_of = np.array([c.delay for c in conns] + [0], dtype=np.int32)
    port_of = np.array([ports.index(c.pre.name) if c.pre.kind == "input" else -1 for c in conns] + [0],
                       dtype=np.int32)
    n = axons.n_axons
    types = axons.type[:n] if axons.types is not None else np.zeros(n, dtype=np.int8)
    return _Crossbar(syn[0], syn[1], syn[2], axons.conn[:n], types, core_axons, axons.routes(delay_of),
                     axons.inputs(port_of, delay_of))


def _fill_keys(out: NDArray[np.int64], c: _Conn, table: NDArray[np.int64], lo: int, at_pre: int, w_lo: int,
               tmp: NDArray[np.int64]) -> None:
    """``out[i] = table[post] | pre << at_pre | (w - w_lo)`` for synapse ``lo + i`` of ``c``, in blocks
    (the narrow index and weight arrays are widened to int64 a block at a time, in ``tmp``)."""
    for b in range(0, out.size, _BLOCK):
        seg = out[b:b + _BLOCK]
        t = tmp[:seg.size]
        np.take(table, c.post_idx[lo + b:lo + b + seg.size], out=seg)
        np.left_shift(c.pre_idx[lo + b:lo + b + seg.size], at_pre, out=t, dtype=np.int64)
        seg |= t
        np.subtract(c.weight[lo + b:lo + b + seg.size], w_lo, out=t, dtype=np.int64)
        seg |= t


def _packed_keys(conns: list[_Conn], tables: list[NDArray[np.int64]], at_pre: int, w_lo: int) -> NDArray[np.int64]:
    """Unsorted keys of every synapse, connections concatenated: int64 ``[S]``.

    ``tables[j]``: the key bits of each post neuron of ``conns[j]`` (core, connection, local index).
    """
    key = np.empty(sum(int(c.weight.size) for c in conns), dtype=np.int64)
    tmp = np.empty(_BLOCK, dtype=np.int64)
    at = 0
    for c, table in zip(conns, tables, strict=True):
        _fill_keys(key[at:at + c.weight.size], c, table, 0, at_pre, w_lo, tmp)
        at += c.weight.size
    return key


def _segments(conns: list[_Conn], core_of: dict[str, NDArray[np.int64]]) -> NDArray[np.int64] | None:
    """Runs of synapses on one core, when every connection's synapses are sorted by post and each
    core holds one run of its post neurons (every placement by ``partition`` and ``_auto_place``).

    Rows ``(connection, first synapse, end, destination)``, int64 ``[runs, 4]``, in (core,
    connection) order: the sorted synapse keys are these runs, each sorted, laid end to end.
    None when some (core, connection) is split over runs (then one global sort is needed).
    """
    parts = [np.zeros((0, 4), dtype=np.int64)]
    for j, c in enumerate(conns):
        if c.weight.size == 0:
            continue
        if not _non_decreasing(c.post_idx):
            return None
        post_core = core_of[c.post.name]
        first = np.flatnonzero(np.concatenate([[True], post_core[1:] != post_core[:-1]]))  # post runs
        # their synapses (values in the index dtype: no int64 copy of a narrow post_idx)
        bounds = np.searchsorted(c.post_idx, np.concatenate([first, [post_core.size]]).astype(c.post_idx.dtype))
        full = bounds[1:] > bounds[:-1]
        parts.append(np.stack([post_core[first[full]], np.full(int(full.sum()), j), bounds[:-1][full],
                               bounds[1:][full]], axis=1))
    rows = np.concatenate(parts)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    if ((rows[1:, 0] == rows[:-1, 0]) & (rows[1:, 1] == rows[:-1, 1])).any():
        return None
    length = rows[:, 3] - rows[:, 2]
    return np.stack([rows[:, 1], rows[:, 2], rows[:, 3], np.cumsum(length) - length], axis=1)


def _stream_segments(conns: list[_Conn], tables: list[NDArray[np.int64]], segments: NDArray[np.int64],
                     at_pre: int, w_lo: int, unpack: _Unpack) -> None:
    """Feed the sorted keys of every synapse to ``unpack``: each run of :func:`_segments` written to a
    reused buffer and sorted there (small sorts, in cache, instead of one sort of everything);
    consecutive short runs are batched to at least a block."""
    size = int((segments[:, 2] - segments[:, 1]).max(initial=0)) + _BLOCK
    buf = np.empty(size, dtype=np.int64)
    tmp = np.empty(_BLOCK, dtype=np.int64)
    fill = start = 0  # keys in buf, and the synapse index of buf[0]

    def flush() -> None:
        for b in range(0, fill, _BLOCK):
            unpack.feed(buf[b:min(fill, b + _BLOCK)], start + b)

    for j, lo, hi, dest in segments.tolist():
        if fill + hi - lo > size:
            flush()
            fill = 0
        if fill == 0:
            start = dest
        seg = buf[fill:fill + hi - lo]
        _fill_keys(seg, conns[j], tables[j], lo, at_pre, w_lo, tmp)
        seg.sort()
        fill += hi - lo
        if fill >= _BLOCK:
            flush()
            fill = 0
    flush()


def _non_decreasing(a: NDArray[np.integer[Any]]) -> bool:
    """``a[i] <= a[i + 1]`` for all i, checked in blocks (no array-sized temporary)."""
    for lo in range(0, max(0, a.size - 1), _BLOCK):
        part = a[lo:lo + _BLOCK + 1]
        if (part[1:] < part[:-1]).any():
            return False
    return True


class _Unpack:
    """Splits sorted synapse keys, fed in order block by block (:meth:`feed`), into ``sa, sn, sw``
    (axon, neuron, weight: int32 ``[S]``) and ``core_axons`` (int64 ``[n_cores]``): axon = running
    count of (core, conn, pre) runs, neuron = ``neuron_offset[core] + local``, weight = low bits
    ``+ w_lo``; the (conn, pre) of each run go to ``axons``."""

    def __init__(self, n: int, fields: _KeyFields, neuron_offset: NDArray[np.int64], w_lo: int,
                 axons: _Axons) -> None:
        self.sa, self.sn, self.sw = (np.empty(n, dtype=np.int32) for _ in range(3))
        self.core_axons = np.zeros(neuron_offset.size - 1, dtype=np.int64)
        self.fields, self.neuron_offset, self.w_lo, self.axons = fields, neuron_offset, w_lo, axons
        self.last = -1  # (core, conn, pre) of the last synapse fed

    def feed(self, k: NDArray[np.int64], lo: int) -> None:
        """Keys ``k`` of synapses ``lo, lo + 1, …`` (the next in sorted order)."""
        f, hi = self.fields, lo + k.size
        np.add(k & ((1 << f.weight) - 1), self.w_lo, out=self.sw[lo:hi], casting="unsafe")
        local = (k >> f.at_local) & ((1 << f.local) - 1)
        np.add(self.neuron_offset[k >> f.at_core], local, out=self.sn[lo:hi], casting="unsafe")
        axon = k >> f.at_pre
        new = np.empty(k.size, dtype=bool)
        new[0] = axon[0] != self.last
        np.not_equal(axon[1:], axon[:-1], out=new[1:])
        np.cumsum(new, out=self.sa[lo:hi])
        self.sa[lo:hi] += self.axons.n_axons - 1
        self.last = int(axon[-1])
        head = axon[new]
        core = head >> (f.pre + f.conn)  # sorted: count over its own range
        if core.size:
            first = int(core[0])
            self.core_axons[first:int(core[-1]) + 1] += np.bincount(core - first)
        # last: the route keys may be written over keys already read (a caller's in-place choice)
        self.axons.add((head >> f.pre) & ((1 << f.conn) - 1), head & ((1 << f.pre) - 1))


def _crossbar_lexsort(conns: list[_Conn], core_of: dict[str, NDArray[np.int64]],
                      local_of: dict[str, NDArray[np.int64]], gids: dict[str, NDArray[np.int64]],
                      neuron_offset: NDArray[np.int64]) -> tuple[_Syn, _Axons, NDArray[np.int64]]:
    """:func:`_crossbar` for keys wider than 63 bits (or no synapse): the same fields, ``lexsort``-ed."""
    core = _cat([core_of[c.post.name][c.post_idx] for c in conns], np.int64)
    local = _cat([local_of[c.post.name][c.post_idx] for c in conns], np.int64)
    conn = _cat([np.full(c.weight.size, j, dtype=np.int64) for j, c in enumerate(conns)], np.int64)
    pre = _cat([c.pre_idx for c in conns], np.int64)
    weight = _cat([c.weight for c in conns], np.int64)
    o = np.lexsort((local, pre, conn, core))
    core, local, conn, pre, weight = core[o], local[o], conn[o], pre[o], weight[o]
    new = np.ones(o.size, dtype=bool)
    new[1:] = (core[1:] != core[:-1]) | (conn[1:] != conn[:-1]) | (pre[1:] != pre[:-1])
    n_axons = int(new.sum())
    axons = _Axons(conns, gids, n_axons, np.empty(n_axons, dtype=np.int64))
    axons.add(conn[new], pre[new])
    syn = ((np.cumsum(new) - 1).astype(np.int32), (neuron_offset[core] + local).astype(np.int32),
           weight.astype(np.int32))
    return syn, axons, np.bincount(core[new], minlength=neuron_offset.size - 1)


def _cat(parts: list[NDArray[Any]], dtype: type) -> NDArray[Any]:
    """Concatenation of ``parts`` as ``dtype`` (empty when there are none)."""
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


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

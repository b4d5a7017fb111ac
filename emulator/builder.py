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

import sys
from collections.abc import Mapping, Sequence
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
    post_idx: NDArray[np.int64]
    pre_idx: NDArray[np.int64]
    weight: NDArray[np.int64]
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
        if w.size and (w.min() < wr.lo or w.max() > wr.hi):
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
        self._conns.append(_Conn(name, pre_n, post_n, post_idx, pre_idx, w.astype(np.int64, copy=False), int(delay),
                                 params, types, plasticity))
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
        core_axons = np.zeros(n_cores, dtype=np.int64)
        biggest = max((int(c.weight.size) for c in conns), default=0)
        key_buf = np.empty(biggest, dtype=np.int64)  # reused per projection: no fresh pages per temporary
        tmp_buf = np.empty(biggest, dtype=np.int64)
        pairs: list[_AxonPairs] = []
        for c in conns:
            pairs.append(_AxonPairs.find(c, core_of[c.post.name], key_buf))
            ax = pairs[-1]
            # local axon index = running count on that core (pairs are sorted by core, then pre)
            counts = np.bincount(ax.core_u, minlength=n_cores)
            first = np.cumsum(counts) - counts
            ax.local_u = core_axons[ax.core_u] + np.arange(ax.core_u.size) - first[ax.core_u]
            core_axons += counts
        axon_offset = np.concatenate([[0], np.cumsum(core_axons)])
        n_axons = int(axon_offset[-1])
        n_neurons = int(gid_flat.size)
        axon_projection = np.full(n_axons, -1, dtype=np.int32)
        axon_type = np.zeros(n_axons, dtype=np.int8)
        n_syn = sum(int(c.weight.size) for c in conns)
        wr = spec.synapse_range("weight")
        # one int64 sort key per synapse, (axon, neuron, weight - lo) packed; the axon in the high
        # 32 bits when neuron and weight fit the low 32 (then unpacking is a strided copy)
        w_bits = max(1, int(wr.hi - wr.lo).bit_length())
        n_bits = max(1, n_neurons.bit_length())
        a_bits = max(1, n_axons.bit_length())
        low_bits = 32 if n_bits + w_bits <= 32 and a_bits <= 31 else n_bits + w_bits
        packed = a_bits + low_bits <= 63
        syn_key = np.empty(n_syn, dtype=np.int64) if packed else None
        syn_a, syn_n, syn_w = [], [], []
        r_src, r_dst, r_del = [], [], []
        i_port, i_ch, i_dst, i_del = [], [], [], []
        input_names = list(self._inputs)
        at = 0
        for ci, (c, ax) in enumerate(zip(conns, pairs, strict=True)):
            glob = axon_offset[ax.core_u] + ax.local_u
            axon_projection[glob] = ci
            if c.axon_types is not None:
                axon_type[glob] = c.axon_types[ax.pre_u]
            size = int(c.weight.size)
            if syn_key is not None:
                seg = syn_key[at:at + size]
                ax.gather(c, glob << low_bits, key_buf, out=seg)
                tmp = tmp_buf[:size]
                np.take(gids[c.post.name] << w_bits, c.post_idx, out=tmp)
                seg |= tmp
                np.subtract(c.weight, wr.lo, out=tmp)
                seg |= tmp
                at += size
            else:
                syn_a.append(ax.gather(c, glob, key_buf, out=np.empty(size, dtype=np.int64)))
                syn_n.append(gids[c.post.name][c.post_idx])
                syn_w.append(c.weight)
            if c.pre.kind == "input":
                i_port.append(np.full(ax.pre_u.size, input_names.index(c.pre.name)))
                i_ch.append(ax.pre_u)
                i_dst.append(glob)
                i_del.append(np.full(ax.pre_u.size, c.delay))
            else:
                r_src.append(gids[c.pre.name][ax.pre_u])
                r_dst.append(glob)
                r_del.append(np.full(ax.pre_u.size, c.delay))
        del pairs, key_buf, tmp_buf

        def cat(parts: Sequence[NDArray[Any]]) -> NDArray[np.int32]:
            return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, dtype=np.int32)

        if syn_key is not None:
            if syn_key.size > 1 and (syn_key[1:] < syn_key[:-1]).any():
                syn_key.sort()
            sa, sn, sw = _unpack(syn_key, low_bits, w_bits, wr.lo)
            del syn_key
        else:
            a64, n64, w64 = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (syn_a, syn_n, syn_w))
            o = np.lexsort((n64, a64))
            sa, sn, sw = a64[o].astype(np.int32), n64[o].astype(np.int32), w64[o].astype(np.int32)
        ra, rd, rl = _sorted_routes(r_src, r_dst, r_del, n_neurons, n_axons)
        arrays: dict[str, NDArray[Any]] = {
            "core_neurons": core_neurons, "core_axons": core_axons,
            "axon_projection": axon_projection, "axon_type": axon_type,
            "syn_axon": sa, "syn_neuron": sn, "syn_weight": sw,
            "route_src": ra, "route_dst": rd, "route_delay": rl,
            "in_port": cat(i_port), "in_channel": cat(i_ch), "in_dst": cat(i_dst), "in_delay": cat(i_del),
        }
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


@dataclass
class _AxonPairs:
    """The axons of one projection: its distinct (core, pre unit) pairs, sorted by core then pre.

    Two ways, both linear in synapses. Blocked (synapses sorted by post, cores non-decreasing
    in post: every placement by ``partition`` or ``_auto_place``): the synapses of each core are
    one run, whose distinct pre units a reused ``[n_pre]`` marker finds. Otherwise ``key = (core -
    lo) · n_pre + pre`` is marked in a boolean array over the key span when that span is not much
    larger than the projection, else ``np.unique`` (keeping the inverse). ``gather`` writes a
    per-pair value to every synapse of the pair.
    """

    pre_u: NDArray[np.int64]
    core_u: NDArray[np.int64]
    local_u: NDArray[np.int64]
    lo: int
    span: int
    uniq: NDArray[np.int64]
    inv: NDArray[np.int64] | None
    post_core: NDArray[np.int64]  # core of every post neuron [n_post]
    runs: list[tuple[int, int, int, int]] | None = None  # blocked: (syn lo, syn hi, pair lo, pair hi)

    @classmethod
    def find(cls, c: _Conn, post_core: NDArray[np.int64], key_buf: NDArray[np.int64]) -> _AxonPairs:
        n_pre = c.pre.size
        z = np.zeros(0, dtype=np.int64)
        if c.post_idx.size == 0:
            return cls(z, z, z, 0, 0, z, None, post_core)
        if _non_decreasing(c.post_idx):
            blocked = cls._find_blocked(c, post_core)
            if blocked is not None:
                return blocked
        lo = int(post_core.min())
        span = (int(post_core.max()) - lo + 1) * n_pre
        key = cls._keys(c, post_core, lo, key_buf)
        inv = None
        if span <= 4 * key.size + (1 << 20):
            mark = np.zeros(span, dtype=bool)
            mark[key] = True
            uniq = np.flatnonzero(mark)
        else:
            uniq, inv = np.unique(key, return_inverse=True)
        return cls(uniq % n_pre, uniq // n_pre + lo, z, lo, span, uniq, inv, post_core)

    @classmethod
    def _find_blocked(cls, c: _Conn, post_core: NDArray[np.int64]) -> _AxonPairs | None:
        """Per-core runs when every core holds one run of post neurons (None otherwise)."""
        n_pre = c.pre.size
        change = np.flatnonzero(np.diff(post_core)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [post_core.size]])
        run_core = post_core[starts]
        if np.unique(run_core).size != run_core.size:
            return None
        ptr = np.zeros(post_core.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(c.post_idx, minlength=post_core.size), out=ptr[1:])
        by_core = np.argsort(run_core, kind="stable")  # pairs are numbered core by core
        mark = np.zeros(n_pre, dtype=bool)
        pres, cores, runs = [], [], []
        at = 0
        for core, p0, p1 in zip(run_core[by_core].tolist(), ptr[starts[by_core]].tolist(),
                                ptr[ends[by_core]].tolist(), strict=True):
            if p0 == p1:
                continue
            block = c.pre_idx[p0:p1]
            if n_pre > 8 * block.size:
                u = np.sort(block)  # distinct values of a short block (np.unique hashes: slower here)
                u = u[np.concatenate([[True], u[1:] != u[:-1]])]
            else:
                mark[block] = True
                u = np.flatnonzero(mark)
                mark[u] = False
            pres.append(u)
            cores.append(np.full(u.size, core, dtype=np.int64))
            runs.append((p0, p1, at, at + u.size))
            at += u.size
        z = np.zeros(0, dtype=np.int64)
        return cls(np.concatenate(pres), np.concatenate(cores), z, 0, 0, z, None, post_core, runs)

    @staticmethod
    def _keys(c: _Conn, post_core: NDArray[np.int64], lo: int, key_buf: NDArray[np.int64]) -> NDArray[np.int64]:
        key = key_buf[:c.post_idx.size]
        np.take((post_core - lo) * c.pre.size, c.post_idx, out=key)
        key += c.pre_idx
        return key

    def gather(self, c: _Conn, values: NDArray[np.int64], key_buf: NDArray[np.int64], *,
               out: NDArray[np.int64]) -> NDArray[np.int64]:
        """``out[s] = values[pair of synapse s]`` (int64 ``[synapses]``)."""
        if self.runs is not None:
            table = np.zeros(c.pre.size, dtype=np.int64)  # one core's pairs at a time: stays in cache
            for p0, p1, u0, u1 in self.runs:
                table[self.pre_u[u0:u1]] = values[u0:u1]
                np.take(table, c.pre_idx[p0:p1], out=out[p0:p1])
            return out
        if self.inv is not None:
            return np.take(values, self.inv.ravel(), out=out)
        table = np.zeros(self.span, dtype=np.int64)
        table[self.uniq] = values
        return np.take(table, self._keys(c, self.post_core, self.lo, key_buf), out=out)


def _sorted_routes(src: list[NDArray[np.int64]], dst: list[NDArray[np.int64]], delay: list[NDArray[np.int64]],
                   n_neurons: int, n_axons: int) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
    """Routes sorted by (source neuron, target axon), as int32; one packed int64 sort when it fits."""
    s, d, dl = (np.concatenate(x) if x else np.zeros(0, dtype=np.int64) for x in (src, dst, delay))
    if s.size == 0:
        z = np.zeros(0, dtype=np.int32)
        return z, z, z
    d_bits = max(1, n_axons.bit_length())
    l_bits = max(1, int(dl.max()).bit_length())
    if max(1, n_neurons.bit_length()) + d_bits + l_bits > 63 or dl.min() < 0:
        o = np.lexsort((d, s))
        return s[o].astype(np.int32), d[o].astype(np.int32), dl[o].astype(np.int32)
    key = s << (d_bits + l_bits)
    key |= d << l_bits
    key |= dl
    key.sort()
    return ((key >> (d_bits + l_bits)).astype(np.int32), ((key >> l_bits) & ((1 << d_bits) - 1)).astype(np.int32),
            (key & ((1 << l_bits) - 1)).astype(np.int32))


def _non_decreasing(a: NDArray[np.int64]) -> bool:
    """``a[i] <= a[i + 1]`` for all i, checked in blocks (no array-sized temporary)."""
    step = 1 << 22
    for lo in range(0, max(0, a.size - 1), step):
        part = a[lo:lo + step + 1]
        if (part[1:] < part[:-1]).any():
            return False
    return True


def _unpack(key: NDArray[np.int64], low_bits: int, w_bits: int, w_lo: int
            ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
    """Split sort keys ``axon << low_bits | neuron << w_bits | (weight - w_lo)`` into int32 arrays."""
    n = key.size
    sa = np.empty(n, dtype=np.int32)
    sn = np.empty(n, dtype=np.int32)
    sw = np.empty(n, dtype=np.int32)
    if low_bits == 32:  # the high word is the axon: a strided copy, no shifts
        words = key.view(np.uint32).reshape(n, 2)
        hi, lo = (1, 0) if sys.byteorder == "little" else (0, 1)
        np.copyto(sa, words[:, hi], casting="unsafe")
        np.right_shift(words[:, lo], w_bits, out=sn, casting="unsafe")
        np.bitwise_and(words[:, lo], (1 << w_bits) - 1, out=sw, casting="unsafe")
    else:
        np.copyto(sa, key >> low_bits, casting="unsafe")
        np.copyto(sn, (key >> w_bits) & ((1 << (low_bits - w_bits)) - 1), casting="unsafe")
        np.copyto(sw, key & ((1 << w_bits) - 1), casting="unsafe")
    sw += w_lo
    return sa, sn, sw


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
         ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    if isinstance(weights, tuple) and len(weights) == 3:
        post = np.asarray(weights[0], dtype=np.int64).ravel()
        pre = np.asarray(weights[1], dtype=np.int64).ravel()
        val = np.asarray(weights[2])
        if not (post.size == pre.size == val.size):
            raise ProgramError(f"projection {name!r}: COO weights (post, pre, values) differ in length")
        if post.size and (post.min() < 0 or post.max() >= n_post or pre.min() < 0 or pre.max() >= n_pre):
            raise ProgramError(f"projection {name!r}: COO index outside [post {n_post}, pre {n_pre}]")
        if post.size > 1:
            key = post * n_pre + pre
            # row-major COO (np.nonzero order, or a generator's) is checked in one pass, without a sort
            if not (key[1:] > key[:-1]).all():
                key.sort()
                if (key[1:] == key[:-1]).any():
                    raise ProgramError(f"projection {name!r}: COO weights repeat a (post, pre) pair")
            del key
    else:
        dense = np.asarray(weights)
        if dense.shape != (n_post, n_pre):
            raise ProgramError(
                f"projection {name!r}: weights have shape {dense.shape}; expected [post, pre] = ({n_post}, {n_pre})"
            )
        post, pre = np.nonzero(dense)
        val = dense[post, pre]
        post, pre = post.astype(np.int64), pre.astype(np.int64)
    if val.dtype.kind == "f":
        if not np.all(np.isfinite(val)) or np.any(val != np.round(val)):
            raise RegisterError(
                f"projection {name!r}: weights must be integers (chip register values); quantise them first "
                "(compiler.compile does this)"
            )
    elif val.dtype.kind not in "iub":
        raise RegisterError(f"projection {name!r}: weights must be integers; got dtype {val.dtype}")
    return post, pre, val.astype(np.int64).ravel()

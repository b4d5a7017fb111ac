"""The layout pass: a netlist and a placement → the crossbar, routes and the Program.

``layout(netlist, placement, spec) -> Program``. Neurons get global ids core by core (within a
core: population order, then index). Axons are numbered per core: projections from input ports
first, then the others in declaration order; within a projection by pre unit. Every synapse is
``(axon, neuron, weight)``, sorted by axon then neuron; every axon of a projection from a
population has one route ``(source neuron, axon, delay)`` (sorted by source, then axon); every
axon of a projection from an input port has an input route ``(port, channel, axon, delay)``.

The kernel packs each synapse's fields into one int64 sort key (:class:`_KeyFields`) and sorts
per (core, projection) run when the placement allows (every placement by :func:`place` does), so
the work is linear in the synapses apart from small in-cache sorts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emulator.program import Population, Program, Projection
from hw_specs import HwSpec
from spikeforge.errors import ProgramError

from .netlist import Netlist
from .netlist import Projection as _Conn
from .placement import Placement

__all__ = ["layout", "Crossbar", "crossbar"]

#: sorted synapses: (axon, neuron, weight), int32 [S] each
_Syn = tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]


def layout(netlist: Netlist, placement: Placement, spec: HwSpec,
           metadata: Mapping[str, Any] | None = None) -> Program:
    """The Program of ``netlist`` with its neurons on the cores of ``placement`` (see the module doc).

    ``metadata`` is stored in the Program as given. The Program validates itself: a resource over a
    core's limit raises :class:`spikeforge.errors.DoesNotFit`; a netlist without populations or a
    placement that misses a neuron raises :class:`spikeforge.errors.ProgramError`.
    """
    pops = list(netlist.populations)
    if not pops:
        raise ProgramError("layout: the netlist has no population")
    core_of: dict[str, NDArray[np.int64]] = {}
    for p in pops:
        cores = placement.cores.get(p.name)
        if cores is None or cores.shape != (p.size,) or (p.size and int(cores.min()) < 0):
            raise ProgramError(f"layout: the placement has no non-negative core for each of the {p.size} neurons "
                               f"of population {p.name!r}")
        core_of[p.name] = cores
    n_cores = max(int(c.max()) for c in core_of.values()) + 1

    # global neuron ids: by core, then population order, then index (the concatenation is in
    # population order and index order already, so a stable sort by core is enough)
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

    # axons: per core, projections from input ports first, then in declaration order; per pre unit
    conns = axon_order(netlist)
    wr = spec.synapse_range("weight")
    xbar = crossbar(conns, core_of, gids, np.concatenate([[0], np.cumsum(core_neurons)]),
                    (int(wr.lo), int(wr.hi)), [p.name for p in netlist.inputs])
    arrays: dict[str, NDArray[Any]] = {
        "core_neurons": core_neurons, "core_axons": xbar.core_axons,
        "axon_projection": xbar.axon_conn, "axon_type": xbar.axon_type,
        "syn_axon": xbar.syn_axon, "syn_neuron": xbar.syn_neuron, "syn_weight": xbar.syn_weight,
        "route_src": xbar.routes[0], "route_dst": xbar.routes[1], "route_delay": xbar.routes[2],
        "in_port": xbar.inputs[0], "in_channel": xbar.inputs[1], "in_dst": xbar.inputs[2],
        "in_delay": xbar.inputs[3],
    }
    del xbar
    return Program(
        spec,
        arrays=arrays,
        registers=registers,
        inputs=netlist.input_sizes,
        populations=[Population(p.name, gids[p.name].astype(np.int32), p.readout) for p in pops],
        projections=[Projection(c.name, c.pre, c.post, dict(c.params), c.plasticity) for c in conns],
        output_ports=netlist.outputs,
        metadata=metadata,
    )


def axon_order(netlist: Netlist) -> list[_Conn]:
    """The projections in axon (and ``Program.projections``) order: from input ports first, then the
    others, each group in declaration order."""
    return sorted(netlist.projections, key=lambda c: (not c.pre_is_input,))


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
class Crossbar:
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
        self.n_inputs = sum(c.pre_is_input for c in conns)  # the first connections of the axon order
        sizes = [c.pre_size for c in conns]
        self.at = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (conn j, pre p) → at[j] + p
        self.src = np.concatenate([np.zeros(0, dtype=np.int64)] + [
            gids[c.pre] if not c.pre_is_input else np.full(c.pre_size, -1) for c in conns])
        has_types = any(c.axon_types is not None for c in conns)
        self.types = np.concatenate([np.zeros(0, dtype=np.int8)] + [
            (c.axon_types if c.axon_types is not None else np.zeros(c.pre_size)).astype(np.int8)
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


def crossbar(conns: list[_Conn], core_of: dict[str, NDArray[np.int64]], gids: dict[str, NDArray[np.int64]],
              neuron_offset: NDArray[np.int64], w_range: tuple[int, int], ports: list[str]) -> Crossbar:
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
        pre=max((c.pre_size - 1 for c in conns), default=0).bit_length(),
        conn=max(0, len(conns) - 1).bit_length(),
        core=max(0, n_cores - 1).bit_length(),
    )
    if n_syn == 0 or fields.total > 63:
        syn, axons, core_axons = _crossbar_lexsort(conns, core_of, local_of, gids, neuron_offset)
    else:
        tables = [(core_of[c.post] << fields.at_core) | (j << fields.at_conn)
                  | (local_of[c.post] << fields.at_local) for j, c in enumerate(conns)]
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
    port_of = np.array([ports.index(c.pre) if c.pre_is_input else -1 for c in conns] + [0],
                       dtype=np.int32)
    n = axons.n_axons
    types = axons.type[:n] if axons.types is not None else np.zeros(n, dtype=np.int8)
    return Crossbar(syn[0], syn[1], syn[2], axons.conn[:n], types, core_axons, axons.routes(delay_of),
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
    core holds one run of its post neurons (every placement by :func:`~compiler.backend.place`).

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
        post_core = core_of[c.post]
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
    """:func:`crossbar` for keys wider than 63 bits (or no synapse): the same fields, ``lexsort``-ed."""
    core = _cat([core_of[c.post][c.post_idx] for c in conns], np.int64)
    local = _cat([local_of[c.post][c.post_idx] for c in conns], np.int64)
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



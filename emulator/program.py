"""The Program: what a chip runs, as data. The one seam between compiler, emulator and board.

A Program is core-level hardware truth plus a symbol table:

* cores: ``core_neurons[c]`` neurons and ``core_axons[c]`` input axons each. Neurons and axons
  have *global* ids: core ``c``'s neuron ``i`` is ``neuron_offset[c] + i`` (likewise axons).
* neuron registers: one int64 array per register name, ``[N]`` (TrueNorth ``type_weights``:
  ``[N, 4]``), in the family's units (see ``hw_specs/<target>.toml``).
* crossbars: synapses as sorted COO arrays ``syn_axon, syn_neuron, syn_weight`` (global ids);
  every axon belongs to one projection (``axon_projection``), which carries its synapse format
  (Loihi ``weight_exp``, ``num_weight_bits``; Xylo ``synapse``, ``weight_shift``); TrueNorth
  axons carry an ``axon_type``.
* routes: ``route_src`` (global neuron) → ``route_dst`` (global axon) after ``route_delay``
  steps (>= 1); input routes: (``in_port``, ``in_channel``) → ``in_dst`` after ``in_delay``.
* symbols: input ports (name → channels), populations (name → global neuron ids), projections
  (name, pre, post, format), output ports (name → population).

Weight matrices are ``[post, pre]`` wherever they are shown to users; the crossbar is stored as
COO so that a 128-core chip file stays proportional to its synapses, not to axons × neurons.

The file format (``docs/program-format.md``) is :mod:`emulator.program_file`; :meth:`Program.to_bytes`,
:meth:`Program.save` and :meth:`Program.load` call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hw_specs import HwSpec
from spikeforge.errors import DoesNotFit, ProgramError, RegisterError

from . import families
from .learning.plasticity import LearningRule

__all__ = ["Program", "Population", "Projection", "INT_ARRAYS", "DTYPES"]

#: elements per block in the chunked passes: a temporary (128 KiB of int64) stays in cache and within
#: glibc's mmap threshold (larger ones are mapped and faulted in afresh for every block)
_BLOCK = 1 << 14

#: the Program's integer arrays (attributes of the same names), in file order
INT_ARRAYS = (
    "core_neurons", "core_axons", "axon_projection", "axon_type",
    "syn_axon", "syn_neuron", "syn_weight",
    "route_src", "route_dst", "route_delay",
    "in_port", "in_channel", "in_dst", "in_delay",
)
#: their dtypes (little-endian in the file, native in memory)
DTYPES = {
    "core_neurons": "<i4", "core_axons": "<i4", "axon_projection": "<i4", "axon_type": "<i1",
    "syn_axon": "<i4", "syn_neuron": "<i4", "syn_weight": "<i4",
    "route_src": "<i4", "route_dst": "<i4", "route_delay": "<i4",
    "in_port": "<i4", "in_channel": "<i4", "in_dst": "<i4", "in_delay": "<i4",
}


@dataclass(frozen=True)
class Population:
    """A named group of neurons (a layer): ``neurons`` are global neuron ids, in population order."""

    name: str
    neurons: NDArray[np.int32]
    readout: bool = False

    @property
    def size(self) -> int:
        return int(self.neurons.size)


@dataclass(frozen=True)
class Projection:
    """A named connection ``pre`` (population or input port) → ``post`` population.

    ``params`` is the synapse format shared by the projection's axons: Loihi ``weight_exp``,
    ``num_weight_bits``, ``sign_mode`` (0 mixed, 1 excitatory, 2 inhibitory); Xylo ``synapse``
    (0 or 1) and ``weight_shift``; TrueNorth none. ``plasticity``: the learning rule and its trace
    parameters (:class:`emulator.learning.LearningRule`) of a plastic projection, None otherwise.
    """

    name: str
    pre: str
    post: str
    params: Mapping[str, int] = field(default_factory=dict)
    plasticity: LearningRule | None = None


class Program:
    """A mapped program for one target chip. Build with :class:`emulator.ProgramBuilder` or
    the compiler; save with :meth:`save`, load with :meth:`load`.
    """

    def __init__(
        self,
        spec: HwSpec,
        *,
        arrays: Mapping[str, NDArray[Any]],
        registers: Mapping[str, NDArray[np.int64]],
        inputs: Mapping[str, int],
        populations: list[Population],
        projections: list[Projection],
        output_ports: Mapping[str, str],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        for key in INT_ARRAYS:
            if key not in arrays:
                raise ProgramError(f"program is missing array {key!r}")
            value = np.ascontiguousarray(arrays[key], dtype=np.dtype(DTYPES[key]).newbyteorder("="))
            value.flags.writeable = False
            setattr(self, key, value)
        self.registers: Mapping[str, NDArray[np.int64]] = MappingProxyType(
            {k: _frozen(np.asarray(v, dtype=np.int64)) for k, v in sorted(registers.items())}
        )
        self.input_ports: Mapping[str, int] = MappingProxyType(dict(inputs))
        self.populations: Mapping[str, Population] = MappingProxyType({p.name: p for p in populations})
        self.projections: tuple[Projection, ...] = tuple(projections)
        self.output_ports: Mapping[str, str] = MappingProxyType(dict(output_ports))
        self.metadata: Mapping[str, Any] = MappingProxyType(dict(metadata or {}))
        self._bytes: bytes | None = None
        self._per_axon: NDArray[np.int64] | None = None
        self._per_neuron: NDArray[np.int64] | None = None
        self._sorted_synapses = False
        self._validate()

    # typed attributes set in __init__
    core_neurons: NDArray[np.int32]
    core_axons: NDArray[np.int32]
    axon_projection: NDArray[np.int32]
    axon_type: NDArray[np.int8]
    syn_axon: NDArray[np.int32]
    syn_neuron: NDArray[np.int32]
    syn_weight: NDArray[np.int32]
    route_src: NDArray[np.int32]
    route_dst: NDArray[np.int32]
    route_delay: NDArray[np.int32]
    in_port: NDArray[np.int32]
    in_channel: NDArray[np.int32]
    in_dst: NDArray[np.int32]
    in_delay: NDArray[np.int32]

    # ------------------------------------------------------------------------ views
    @property
    def target(self) -> str:
        return self.spec.name

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def n_cores(self) -> int:
        return int(self.core_neurons.size)

    @property
    def n_neurons(self) -> int:
        return int(self.core_neurons.sum())

    @property
    def n_axons(self) -> int:
        return int(self.core_axons.sum())

    @property
    def neuron_offset(self) -> NDArray[np.int64]:
        return np.concatenate([[0], np.cumsum(self.core_neurons, dtype=np.int64)])

    @property
    def axon_offset(self) -> NDArray[np.int64]:
        return np.concatenate([[0], np.cumsum(self.core_axons, dtype=np.int64)])

    @property
    def neuron_core(self) -> NDArray[np.int64]:
        """Core of every global neuron ``[N]``."""
        return np.repeat(np.arange(self.n_cores, dtype=np.int64), self.core_neurons)

    @property
    def axon_core(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(self.n_cores, dtype=np.int64), self.core_axons)

    @property
    def inputs(self) -> dict[str, int]:
        """Input ports: name → number of channels."""
        return dict(self.input_ports)

    @property
    def outputs(self) -> dict[str, int]:
        """Output ports: name → number of neurons."""
        return {name: self.populations[pop].size for name, pop in self.output_ports.items()}

    @property
    def readout_mask(self) -> NDArray[np.bool_]:
        mask = np.zeros(self.n_neurons, dtype=bool)
        for pop in self.populations.values():
            if pop.readout:
                mask[pop.neurons] = True
        return mask

    def projection_index(self, name: str) -> int:
        for i, proj in enumerate(self.projections):
            if proj.name == name:
                return i
        raise ProgramError(f"no projection named {name!r}; projections: {[p.name for p in self.projections]}")

    def weights(self, projection: str) -> NDArray[np.int64]:
        """The stored weights of a projection as a dense ``[post, pre]`` matrix (0 where no synapse).

        For TrueNorth the entries are the 0/1 crossbar bits.
        """
        j = self.projection_index(projection)
        proj = self.projections[j]
        post = self.populations[proj.post].neurons
        pre_size = self.input_ports[proj.pre] if proj.pre in self.input_ports else self.populations[proj.pre].size
        out = np.zeros((post.size, pre_size), dtype=np.int64)
        post_local = _local_index(post, self.n_neurons)
        src_of_axon = self._axon_sources(proj)
        sel = self.axon_projection[self.syn_axon] == j
        axons = self.syn_axon[sel]
        for src_local, axon in src_of_axon:
            hit = axons == axon
            out[post_local[self.syn_neuron[sel][hit]], src_local] = self.syn_weight[sel][hit]
        return out

    def _axon_sources(self, proj: Projection) -> list[tuple[int, int]]:
        if proj.pre in self.input_ports:
            port = list(self.input_ports).index(proj.pre)
            m = self.in_port == port
            return list(zip(self.in_channel[m].tolist(), self.in_dst[m].tolist(), strict=True))
        pre = self.populations[proj.pre].neurons
        pre_local = _local_index(pre, self.n_neurons)
        j = self.projections.index(proj)
        m = (pre_local[self.route_src] >= 0) & (self.axon_projection[self.route_dst] == j)
        return list(zip(pre_local[self.route_src[m]].tolist(), self.route_dst[m].tolist(), strict=True))

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        n, a = self.n_neurons, self.n_axons
        if self.core_axons.size != self.core_neurons.size:
            raise ProgramError("core_neurons and core_axons differ in length")
        if (self.core_neurons < 0).any() or (self.core_axons < 0).any():
            raise ProgramError("negative neuron or axon count on a core")
        for key, size in (("axon_projection", a), ("axon_type", a)):
            if getattr(self, key).size != size:
                raise ProgramError(f"{key} has {getattr(self, key).size} entries for {size} axons")
        for group in (("syn_axon", "syn_neuron", "syn_weight"), ("route_src", "route_dst", "route_delay"),
                      ("in_port", "in_channel", "in_dst", "in_delay")):
            sizes = {getattr(self, k).size for k in group}
            if len(sizes) != 1:
                raise ProgramError(f"arrays {', '.join(group)} differ in length")
        _check_ids("syn_axon", self.syn_axon, a)
        _check_ids("syn_neuron", self.syn_neuron, n)
        _check_ids("route_src", self.route_src, n)
        _check_ids("route_dst", self.route_dst, a)
        _check_ids("in_dst", self.in_dst, a)
        _check_ids("in_port", self.in_port, len(self.input_ports))
        if self.axon_projection.size and (
            (self.axon_projection < -1).any() or (self.axon_projection >= len(self.projections)).any()
        ):
            raise ProgramError("axon_projection refers to a projection that does not exist")
        unsorted, dup = _order_defects(self.syn_axon, self.syn_neuron)
        self._sorted_synapses = not unsorted
        if self.syn_axon.size and (self.axon_projection < 0).any() and (
                (self.synapses_per_axon() > 0) & (self.axon_projection < 0)).any():
            raise ProgramError("a synapse sits on an axon that belongs to no projection")
        # synapses must stay within their core, sorted by (axon, neuron), without duplicates
        if self.syn_axon.size and not self._synapses_within_cores(unsorted):
            raise ProgramError("a synapse connects an axon and a neuron of different cores")
        if unsorted:
            raise ProgramError("synapses must be sorted by (axon, neuron)")
        if dup:
            raise ProgramError("duplicate synapse (same axon and neuron)")
        for port, size in self.input_ports.items():
            if size < 1:
                raise ProgramError(f"input port {port!r} has {size} channels; needs at least 1")
        for i, size in enumerate(self.input_ports.values()):
            m = self.in_port == i
            if m.any() and (self.in_channel[m] < 0).any() | (self.in_channel[m] >= size).any():
                raise ProgramError(f"an input route uses a channel outside port {list(self.input_ports)[i]!r}")
        seen = np.zeros(n, dtype=np.int64)
        for pop in self.populations.values():
            _check_ids(f"population {pop.name!r}", pop.neurons, n)
            seen[pop.neurons] += 1
        if n and (seen != 1).any():
            raise ProgramError("every neuron must belong to exactly one population")
        for name, pop_name in self.output_ports.items():
            if pop_name not in self.populations:
                raise ProgramError(f"output port {name!r} names population {pop_name!r}, which does not exist")
        for proj in self.projections:
            if proj.post not in self.populations:
                raise ProgramError(f"projection {proj.name!r}: post {proj.post!r} is not a population")
            if proj.pre not in self.populations and proj.pre not in self.input_ports:
                raise ProgramError(f"projection {proj.name!r}: pre {proj.pre!r} is neither population nor input")
        self._validate_registers()
        self._validate_synapses()
        self._validate_plasticity()
        self._validate_resources()

    def _synapses_within_cores(self, unsorted: bool) -> bool:
        """Whether every synapse's neuron lies on its axon's core.

        Sorted synapses: the synapses of core ``c`` are one run ``[b_c, b_{c+1})`` of ``syn_axon``;
        its neurons must lie in ``[neuron_offset[c], neuron_offset[c+1])`` (a min and a max per run).
        """
        if unsorted:
            return bool((self.axon_core[self.syn_axon] == self.neuron_core[self.syn_neuron]).all())
        bounds = np.searchsorted(self.syn_axon, self.axon_offset.astype(self.syn_axon.dtype))  # no upcast copy
        counts = np.diff(bounds)
        full = np.flatnonzero(counts)
        lo = np.minimum.reduceat(self.syn_neuron, bounds[full])
        hi = np.maximum.reduceat(self.syn_neuron, bounds[full])
        offset = self.neuron_offset
        return bool(((lo >= offset[full]) & (hi < offset[full + 1])).all())

    def synapses_per_axon(self) -> NDArray[np.int64]:
        """Synapses on every axon, int64 ``[n_axons]`` (computed once: the arrays are read-only)."""
        if self._per_axon is None:
            self._per_axon = _bincount(self.syn_axon, self.n_axons)
        return self._per_axon

    def _validate_registers(self) -> None:
        spec = self.spec
        family = families.get(spec.family)
        for key in family.registers:
            if key not in self.registers:
                raise ProgramError(f"program lacks neuron register {key!r} required by family {spec.family}")
        for key, values in self.registers.items():
            if key not in spec.registers:
                raise ProgramError(f"register {key!r} is not a register of target {spec.name} ({spec.where()})")
            want = family.register_shape(key, self.n_neurons)
            if values.shape != want:
                raise ProgramError(f"register {key!r} has shape {values.shape}; expected {want}")
            rng = spec.registers[key]
            if values.size and (values.min() < rng.lo or values.max() > rng.hi):
                bad = int(values.min()) if values.min() < rng.lo else int(values.max())
                raise RegisterError(
                    f"register {key}={bad} outside {rng} of target {spec.name} ({spec.where()})"
                )

    def _validate_synapses(self) -> None:
        spec = self.spec
        w = spec.synapse_range("weight")
        if self.syn_weight.size and (self.syn_weight.min() < w.lo or self.syn_weight.max() > w.hi):
            raise RegisterError(f"a stored weight lies outside {w} of target {spec.name} ({spec.where()})")
        d = spec.synapse_range("delay")
        if self.route_delay.size and (self.route_delay.min() < d.lo or self.route_delay.max() > d.hi):
            raise RegisterError(f"a route delay lies outside {d} steps of target {spec.name} ({spec.where()})")
        d = spec.synapse_range("input_delay")
        if self.in_delay.size and (self.in_delay.min() < d.lo or self.in_delay.max() > d.hi):
            raise RegisterError(f"an input delay lies outside {d} steps of target {spec.name} ({spec.where()})")
        if "axon_types" in spec.synapse:
            t = spec.synapse_range("axon_types")
            if self.axon_type.size and (self.axon_type.min() < t.lo or self.axon_type.max() > t.hi):
                raise RegisterError(f"an axon type lies outside {t} ({spec.where()})")
        hardware = families.get(spec.family).hardware
        untruncated = hardware.untruncated(self)  # (projection, message): weights the chip cannot hold
        format_fields: Mapping[str, tuple[int, ...]] = hardware.FORMAT_FIELDS
        for j, proj in enumerate(self.projections):
            for key, value in proj.params.items():
                if key in format_fields:
                    allowed = format_fields[key]
                    if value not in allowed:
                        listed = ", ".join(str(v) for v in allowed[:-1]) + f" or {allowed[-1]}"
                        raise RegisterError(f"projection {proj.name!r}: {key}={value}; expected {listed}")
                    continue
                if key not in spec.synapse:
                    raise ProgramError(f"projection {proj.name!r}: {key!r} is not a synapse field of {spec.name}")
                rng = spec.synapse_range(key)
                if value not in rng:
                    raise RegisterError(
                        f"projection {proj.name!r}: {key}={value} outside {rng} of target {spec.name} "
                        f"({spec.where()})"
                    )
            if untruncated is not None and j == untruncated[0]:
                raise RegisterError(untruncated[1])

    def _validate_plasticity(self) -> None:
        """Every plastic projection's rule runs on the target and its synapses are tables the learning
        engine can address (:func:`emulator.learning.wiring.plastic_projections` checks both)."""
        if any(p.plasticity is not None for p in self.projections):
            from .learning.wiring import plastic_projections

            plastic_projections(self)

    def _validate_resources(self) -> None:
        spec, chip = self.spec, self.spec.chip
        where = spec.where()
        if self.n_cores > spec.total_cores:
            raise DoesNotFit(
                f"program uses {self.n_cores} cores > {spec.total_cores} ({chip.cores_per_chip} per chip x "
                f"{chip.max_chips} chips, {where}); choose a larger target or a smaller network"
            )
        readout = np.bincount(self.neuron_core, weights=self.readout_mask, minlength=self.n_cores).astype(np.int64)
        hidden = self.core_neurons - readout
        axons = self.core_axons.astype(np.int64)
        bad = (hidden > chip.neurons_per_core) | (readout > chip.readout_neurons) | (axons > chip.axons_in_per_core)
        for c in np.flatnonzero(bad)[:1].tolist():  # the first offending core, limits in this order
            if hidden[c] > chip.neurons_per_core:
                raise DoesNotFit(
                    f"core {c}: {hidden[c]} neurons > neurons_per_core {chip.neurons_per_core} ({where}) by "
                    f"{hidden[c] - chip.neurons_per_core}; split the population across cores"
                )
            if readout[c] > chip.readout_neurons:
                raise DoesNotFit(
                    f"core {c}: {readout[c]} readout neurons > readout_neurons {chip.readout_neurons} ({where}); "
                    "reduce the output layer"
                )
            raise DoesNotFit(
                f"core {c}: {axons[c]} input axons > axons_in_per_core "
                f"{chip.axons_in_per_core} ({where}) by {axons[c] - chip.axons_in_per_core}; "
                "split the layer's fan-in or prune inputs"
            )
        _, bits, out = self._usage_arrays()
        bad = (bits > chip.synapse_memory_bits_per_core) | (out > chip.axons_out_per_core)
        for c in np.flatnonzero(bad)[:1].tolist():
            if bits[c] > chip.synapse_memory_bits_per_core:
                raise DoesNotFit(
                    f"core {c}: synapse memory {bits[c]} bits > synapse_memory_bits_per_core "
                    f"{chip.synapse_memory_bits_per_core} ({where}) by "
                    f"{bits[c] - chip.synapse_memory_bits_per_core} bits; "
                    "spread the population over more cores or use fewer weight bits"
                )
            raise DoesNotFit(
                f"core {c}: {out[c]} output routes > axons_out_per_core {chip.axons_out_per_core} "
                f"({where}); reduce fan-out"
            )
        if chip.fan_out_per_neuron and self.route_src.size:
            hardware = families.get(spec.family).hardware
            label = hardware.FAN_OUT_UNIT
            if label == "target synapses":
                fan = np.bincount(self.syn_axon, minlength=self.n_axons)
                per_neuron = np.zeros(self.n_neurons, dtype=np.int64)
                np.add.at(per_neuron, self.route_src, fan[self.route_dst])
            else:
                per_neuron = self._routes_per_neuron()
            worst = int(per_neuron.max())
            if worst > chip.fan_out_per_neuron:
                nid = int(per_neuron.argmax())
                raise DoesNotFit(
                    f"neuron {nid} ({self.neuron_name(nid)}): fan-out {worst} {label} > fan_out_per_neuron "
                    f"{chip.fan_out_per_neuron} ({where}) by {worst - chip.fan_out_per_neuron}; "
                    "prune its outgoing connections" + hardware.FAN_OUT_REMEDY
                )
        if chip.input_channels:
            total = sum(self.input_ports.values())
            if total > chip.input_channels:
                raise DoesNotFit(
                    f"inputs use {total} channels > input_channels {chip.input_channels} ({where}); "
                    "reduce the input size (pool or crop the events)"
                )

    def neuron_name(self, nid: int) -> str:
        """``population[index]`` for a global neuron id (for messages)."""
        for pop in self.populations.values():
            hit = np.flatnonzero(pop.neurons == nid)
            if hit.size:
                return f"{pop.name}[{int(hit[0])}]"
        return f"neuron {nid}"

    def synapse_bits(self) -> NDArray[np.int64]:
        """Synapse memory per core in bits, by the spec's cost model.

        ``bits = Σ_rows (row_header_bits + entries × (weight_bits + index_bits))`` where a row is an
        axon with at least one synapse and weight_bits is the family's cost of one stored weight
        (``emulator.families.get(family).hardware.weight_bits``: Loihi the projection's
        ``num_weight_bits``, Xylo 8, TrueNorth 1, its binary crossbar).
        """
        return self._usage_arrays()[1]

    def _usage_arrays(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Per core (int64 ``[n_cores]``): synapses, synapse memory bits, output routes."""
        spec = self.spec
        per_axon = self.synapses_per_axon()
        wb = np.zeros(len(self.projections) + 1, dtype=np.int64)  # index -1: axons of no projection
        weight_bits = families.get(spec.family).hardware.weight_bits
        for j, proj in enumerate(self.projections):
            wb[j] = int(weight_bits(proj.params))
        entry = wb + int(spec.synapse["synapse_index_bits"])
        header = int(spec.synapse["synapse_row_header_bits"])
        offset = self.axon_offset  # axons are numbered core by core: per-core sums are runs of a cumsum

        def row_bits(lo: int, hi: int) -> NDArray[np.int64]:
            n = per_axon[lo:hi]
            return (n > 0) * header + n * entry[self.axon_projection[lo:hi]]

        bits = _run_sums(row_bits, offset)
        syn = _run_sums(lambda lo, hi: per_axon[lo:hi], offset)
        out = _run_sums(lambda lo, hi: self._routes_per_neuron()[lo:hi], self.neuron_offset)
        return syn, bits, out

    def _routes_per_neuron(self) -> NDArray[np.int64]:
        """Routes leaving every neuron, int64 ``[n_neurons]`` (computed once)."""
        if self._per_neuron is None:
            self._per_neuron = _bincount(self.route_src, self.n_neurons)
        return self._per_neuron

    def core_usage(self) -> list[dict[str, int]]:
        """Per core: neurons, axons in, synapses, synapse memory bits, output routes."""
        syn, bits, out = self._usage_arrays()
        return [
            {"core": c, "neurons": n, "axons_in": a, "synapses": s, "synapse_bits": b, "axons_out": o}
            for c, (n, a, s, b, o) in enumerate(zip(self.core_neurons.tolist(), self.core_axons.tolist(),
                                                    syn.tolist(), bits.tolist(), out.tolist(), strict=True))
        ]

    # -------------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        """The file bytes (:mod:`emulator.program_file`): identical content gives identical bytes."""
        if self._bytes is None:
            from . import program_file

            self._bytes = program_file.to_bytes(self)
        return self._bytes

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the file bytes: the identity a board checks after an upload."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the program to ``path`` (atomically: a partial file never replaces a good one)."""
        from . import program_file

        return program_file.save(self, path)

    @classmethod
    def load(cls, path: str | Path, target: str | None = None) -> Program:
        """Read a program file; ``target`` (a spec name) rejects a program built for another chip."""
        from . import program_file

        return program_file.load(path, target)

    @classmethod
    def from_bytes(cls, data: bytes, target: str | None = None, source: str = "<bytes>") -> Program:
        """Parse program file bytes; every defect is a :class:`ProgramFormatError` naming ``source``."""
        from . import program_file

        return program_file.from_bytes(data, target, source)

    def __repr__(self) -> str:
        return (
            f"Program(target={self.target!r}, cores={self.n_cores}, neurons={self.n_neurons}, "
            f"synapses={self.syn_axon.size}, inputs={self.inputs}, outputs={self.outputs})"
        )


def _frozen(a: NDArray[Any]) -> NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _run_sums(values: Callable[[int, int], NDArray[np.int64]], offset: NDArray[np.int64]) -> NDArray[np.int64]:
    """``out[c] = Σ v[offset[c]:offset[c + 1]]`` (int64, exact) where ``values(lo, hi)`` is ``v[lo:hi]``.

    ``offset``: non-decreasing int64 ``[n + 1]`` from 0; ``v`` is produced and summed in blocks (a
    running cumsum read at the offsets), so no temporary is as long as ``v``.
    """
    prefix = np.zeros(offset.size, dtype=np.int64)  # Σ v[:offset[c]]
    total = int(offset[-1])
    carry = 0
    for lo in range(0, total, _BLOCK):
        hi = min(total, lo + _BLOCK)
        cs = np.cumsum(values(lo, hi), dtype=np.int64)
        i0, i1 = np.searchsorted(offset, [lo, hi], side="right")
        prefix[i0:i1] = carry + cs[offset[i0:i1] - lo - 1]
        carry += int(cs[-1])
    return np.diff(prefix)


def _bincount(ids: NDArray[Any], n: int) -> NDArray[np.int64]:
    """``np.bincount(ids, minlength=n)`` in blocks, int64 ``[n]``: no int64 copy of ``ids``.

    A block counts over its own ``[min, max]`` (narrow when ``ids`` are sorted, as synapse axons
    are); a block spread over a wider range than its length adds with ``np.add.at``.
    """
    out = np.zeros(n, dtype=np.int64)
    for lo in range(0, ids.size, _BLOCK):
        block = ids[lo:lo + _BLOCK]
        first, last = int(block.min()), int(block.max())
        if last - first <= 4 * block.size:
            out[first:last + 1] += np.bincount(block - first, minlength=last - first + 1)
        else:
            np.add.at(out, block, 1)
    return out


def _order_defects(axon: NDArray[np.int32], neuron: NDArray[np.int32]) -> tuple[bool, bool]:
    """Whether (axon, neuron) pairs are out of lexicographic order, and whether a pair repeats.

    One pass in blocks (no sort): position ``i`` is out of order when ``axon[i+1] < axon[i]``, or
    the axons are equal and ``neuron[i+1] < neuron[i]``; it repeats when both are equal.
    """
    unsorted = dup = False
    n = axon.size
    step = _BLOCK
    for lo in range(0, max(0, n - 1), step):
        hi = min(n, lo + step + 1)
        da = np.diff(axon[lo:hi])
        dn = np.diff(neuron[lo:hi])
        same = da == 0
        unsorted = unsorted or bool((da < 0).any() or (same & (dn < 0)).any())
        dup = dup or bool((same & (dn == 0)).any())
    return unsorted, dup


def _check_ids(what: str, ids: NDArray[Any], limit: int) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= limit):
        raise ProgramError(f"{what} refers to index {int(ids.max() if ids.max() >= limit else ids.min())} "
                           f"outside [0, {limit})")


def _local_index(ids: NDArray[Any], n: int) -> NDArray[np.int64]:
    """Map global id → position in ``ids`` (-1 elsewhere)."""
    out = np.full(n, -1, dtype=np.int64)
    out[ids] = np.arange(ids.size)
    return out

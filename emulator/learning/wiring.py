"""Where a Program's plastic synapses are: per plastic projection, its synapses as (post, pre) pairs,
its pre-synaptic units, its post population and its reward source; and a Program with learned weights.

Both engines read these tables; the spikes a learning engine sees are the ones emitted (module
docstring of :mod:`emulator.learning.epoch`): a pre unit is an input channel or a neuron of the
projection's source, a post unit a neuron of its post population.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spikeforge.errors import LearningRuleError, ProgramError

from .plasticity import LearningRule, Plasticity, compile_plasticity

__all__ = ["PlasticProjection", "plastic_projections", "has_plasticity", "learned_program"]


@dataclass(frozen=True, eq=False)
class PlasticProjection:
    """One plastic projection of a Program.

    ``index``: its index in ``program.projections``; ``synapses``: the global synapse ids of its
    crossbar entries, int64 ``[n_syn]`` in crossbar order, with ``post`` / ``pre`` their local
    indices; ``pre_units``: the pre units as global ids (input channels over all ports
    concatenated when ``pre_is_input``, else neurons), ``post_units``: the post neurons;
    ``reward_units`` / ``reward_is_input``: the reward source's units (None without one), whose
    unit ``r`` drives post neuron ``r`` (or every post neuron, for a source of one unit).
    """

    index: int
    name: str
    plasticity: Plasticity
    params: Mapping[str, int]
    synapses: NDArray[np.int64]
    post: NDArray[np.int64]
    pre: NDArray[np.int64]
    pre_is_input: bool
    pre_units: NDArray[np.int64]
    post_units: NDArray[np.int64]
    reward_units: NDArray[np.int64] | None
    reward_is_input: bool

    @property
    def n_pre(self) -> int:
        return int(self.pre_units.size)

    @property
    def n_post(self) -> int:
        return int(self.post_units.size)

    def reward_targets(self, unit: int) -> range:
        """Post neurons (local) a spike of reward unit ``unit`` (local) drives."""
        assert self.reward_units is not None
        return range(self.n_post) if self.reward_units.size == 1 else range(unit, unit + 1)


def has_plasticity(program: Any) -> bool:
    """Whether any projection of ``program`` learns."""
    return any(p.plasticity is not None for p in program.projections)


def _port_channels(program: Any, port: str) -> NDArray[np.int64]:
    offset = 0
    for name, size in program.input_ports.items():
        if name == port:
            return np.arange(offset, offset + size, dtype=np.int64)
        offset += size
    raise ProgramError(f"no input port {port!r}")


def _units(program: Any, name: str) -> tuple[NDArray[np.int64], bool]:
    if name in program.input_ports:
        return _port_channels(program, name), True
    if name in program.populations:
        return program.populations[name].neurons.astype(np.int64), False
    raise LearningRuleError(f"reward source {name!r} is neither an input port nor a population; have "
                            f"{', '.join([*program.input_ports, *program.populations])}")


def plastic_projections(program: Any) -> tuple[PlasticProjection, ...]:
    """The plastic projections of ``program`` (:class:`PlasticProjection`), in projection order.

    Raises :class:`ProgramError` when a plastic projection's axon has more than one source (the
    synapse's pre unit would be ambiguous) or a reward source does not fit the post population.
    """
    out = []
    p = program
    axon_src = np.full(p.n_axons, -1, dtype=np.int64)
    axon_count = np.zeros(p.n_axons, dtype=np.int64)
    port_offset = np.concatenate([[0], np.cumsum(list(p.input_ports.values()), dtype=np.int64)])
    channel = port_offset[p.in_port] + p.in_channel if p.in_port.size else np.zeros(0, dtype=np.int64)
    np.add.at(axon_count, p.in_dst, 1)
    axon_src[p.in_dst] = channel
    np.add.at(axon_count, p.route_dst, 1)
    axon_src[p.route_dst] = p.route_src
    for j, proj in enumerate(p.projections):
        if proj.plasticity is None:
            continue
        plasticity = compile_plasticity(proj.plasticity, p.spec)
        syn = np.flatnonzero(p.axon_projection[p.syn_axon] == j).astype(np.int64)
        axons = p.syn_axon[syn]
        if (axon_count[axons] > 1).any():
            raise ProgramError(f"plastic projection {proj.name!r}: an axon has several sources; a plastic "
                               "synapse needs one pre unit")
        pre_units, pre_is_input = _units(p, proj.pre)
        post_units = p.populations[proj.post].neurons.astype(np.int64)
        pre_local = _local(pre_units, axon_src[axons])
        post_local = _local(post_units, p.syn_neuron[syn].astype(np.int64))
        reward_units: NDArray[np.int64] | None = None
        reward_is_input = False
        rule: LearningRule = plasticity.rule
        if rule.reward is not None:
            reward_units, reward_is_input = _units(p, rule.reward)
            if reward_units.size not in (1, post_units.size):
                raise LearningRuleError(f"projection {proj.name!r}: reward source {rule.reward!r} has "
                                        f"{reward_units.size} units; give 1 (every post neuron) or "
                                        f"{post_units.size} (one per post neuron)")
        if rule.random == "lava" and plasticity.engine.variable_bounds("w", proj.params)[2]:
            raise LearningRuleError(f"projection {proj.name!r}: random='lava' keeps Lava's 8-bit learned weights, "
                                    "which this projection's stored format cannot hold; use an excitatory or "
                                    "inhibitory projection of 8-bit weights")
        out.append(PlasticProjection(j, proj.name, plasticity, dict(proj.params), syn, post_local, pre_local,
                                     pre_is_input, pre_units, post_units, reward_units, reward_is_input))
    return tuple(out)


def _local(units: NDArray[np.int64], ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Position of every id of ``ids`` in ``units`` (each present)."""
    order = np.argsort(units, kind="stable")
    pos = np.searchsorted(units[order], ids)
    return order[np.minimum(pos, units.size - 1)].astype(np.int64)


def learned_program(program: Any, weights: Mapping[int, NDArray[np.int64]]) -> Any:
    """``program`` with the stored weights of plastic projections replaced: ``weights`` maps a
    projection index to its synapses' weights in :class:`PlasticProjection` order (int ``[n_syn]``).
    Everything else (rule, trace parameters, synapses, routes) is kept; the result is validated."""
    from emulator.program import INT_ARRAYS, Program

    syn_weight = program.syn_weight.astype(np.int64)
    by_index = {pp.index: pp for pp in plastic_projections(program)}
    for j, w in weights.items():
        syn_weight[by_index[j].synapses] = np.asarray(w, dtype=np.int64)
    arrays = {k: getattr(program, k) for k in INT_ARRAYS}
    arrays["syn_weight"] = syn_weight
    return Program(program.spec, arrays=arrays, registers=program.registers, inputs=program.input_ports,
                   populations=list(program.populations.values()), projections=list(program.projections),
                   output_ports=program.output_ports, metadata=program.metadata)

"""A projection's plasticity: its rule string and trace parameters, checked against a target.

:class:`LearningRule` is what a user attaches to a projection (``connect(..., plasticity=...)``)
and what a Program file stores; a plain rule string takes the documented defaults below.
:func:`compile_plasticity` checks it against the target (its family's learning engine and the
spec's ``[learning]`` limits) and gives the integers the engines run (:class:`Plasticity`).

Trace parameters: ``<trace>_impulse`` (added to the trace on a spike, in trace units, 8
fractional bits) and ``<trace>_tau`` (decay time constant in steps; 0: the trace holds only the
impulse of its spike's step) for the pre-synaptic traces ``x1, x2`` and post-synaptic traces
``y1, y2, y3``; ``epoch`` (steps per learning epoch, a power of two); ``nearest`` (each spike
restarts its traces at the impulse: nearest-neighbour pairing instead of all-to-all); ``reward``
(an input port or population whose spikes drive ``y3`` instead of the post spikes: a third
factor; one unit for every post neuron, or one per post neuron); ``random`` (``"counter"``: the
emulator's counter-based draws; ``"lava"``: lava-nc 0.10's generators, seeded from ``rng_seed``, and
its arithmetic, so that a network ported from Lava learns the same weights step by step:
:mod:`emulator.learning.lava`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

from spikeforge.errors import LearningRuleError

from .. import families
from . import rules

if TYPE_CHECKING:
    from hw_specs import HwSpec

__all__ = ["LearningRule", "Plasticity", "TRACES", "PROBES", "as_rule", "compile_plasticity", "engine_of"]

#: the traces: pre-synaptic x1, x2; post-synaptic y1, y2, y3
TRACES = ("x1", "x2", "y1", "y2", "y3")
#: what a probe ``"<projection>.<name>"`` may read: synaptic variables ``[post, pre]`` and traces
PROBES = ("w", "d", "t", *TRACES)
#: the random-number modes: the emulator's counter-based draws, or lava-nc 0.10's generators
RANDOM = ("counter", "lava")


@dataclass(frozen=True)
class LearningRule:
    """A rule (``"dw = 2^-2*x1*y0 - 2^-2*y1*x0"``, see :mod:`emulator.learning.rules`) with its trace
    parameters (module docstring). Defaults: impulses 16 (Lava's STDP default), time constants 16
    steps, epoch 1 step, all-to-all pairing, no reward channel."""

    rule: str
    x1_impulse: float = 16.0
    x1_tau: int = 16
    x2_impulse: float = 16.0
    x2_tau: int = 16
    y1_impulse: float = 16.0
    y1_tau: int = 16
    y2_impulse: float = 16.0
    y2_tau: int = 16
    y3_impulse: float = 16.0
    y3_tau: int = 16
    epoch: int = 1
    nearest: bool = False
    reward: str | None = None
    random: str = "counter"
    rng_seed: int = 0

    @cached_property
    def equations(self) -> tuple[rules.Equation, ...]:
        """The parsed rule (:func:`emulator.learning.rules.parse`)."""
        return rules.parse(self.rule)

    def impulse(self, trace: str) -> float:
        return float(getattr(self, f"{trace}_impulse"))

    def tau(self, trace: str) -> int:
        return int(getattr(self, f"{trace}_tau"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the Program file's ``plasticity`` entry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LearningRule:
        """A rule from untrusted data (a file): every key known and of its type, else
        :class:`LearningRuleError`. Values are checked against a target by :func:`compile_plasticity`."""
        if not isinstance(data, Mapping):
            raise LearningRuleError(f"plasticity entry must be a mapping; got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown or "rule" not in data:
            raise LearningRuleError(f"plasticity entry: unknown keys {unknown} or no 'rule'; keys are {list(known)}")
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "rule":
                ok = isinstance(value, str) and len(value) <= rules.MAX_TEXT
            elif key == "reward":
                ok = value is None or isinstance(value, str) and len(value) <= rules.MAX_TEXT
            elif key == "random":
                ok = value in RANDOM
            elif key == "nearest":
                ok = isinstance(value, bool)
            elif key.endswith("_impulse"):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and -1e9 < value < 1e9
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok:
                raise LearningRuleError(f"plasticity entry: {key} = {value!r} has the wrong type")
            out[key] = value
        return cls(**out)


def as_rule(plasticity: str | LearningRule) -> LearningRule:
    """A :class:`LearningRule` from a rule string (documented defaults) or a rule object."""
    if isinstance(plasticity, LearningRule):
        return plasticity
    if isinstance(plasticity, str):
        return LearningRule(plasticity)
    raise LearningRuleError(
        f"plasticity={plasticity!r}: pass a rule string such as 'dw = 2^-2*x1*y0 - 2^-2*y1*x0' or an "
        "emulator.learning.LearningRule")


def engine_of(spec: HwSpec) -> Any:
    """The family's learning module; :class:`LearningRuleError` for a target without a learning engine."""
    module = families.get(spec.family).learning
    if module is None:
        learners = [n for n in families.names() if families.get(n).learns]
        raise LearningRuleError(
            f"target {spec.name} ({spec.family} family) has no on-chip learning engine: plasticity cannot run on "
            f"it; train off the chip and connect the learned weights, or choose a target of the "
            f"{', '.join(learners)} family")
    return module


@dataclass(frozen=True)
class Plasticity:
    """A rule compiled for a target: what both engines run.

    ``config``: the rule's integer form; ``decay``, ``impulse``: per trace (:data:`TRACES` order)
    the integer decay factor and the impulse with 8 fractional bits; ``trace_hi``: the largest
    trace value; ``widths``: factor widths by variable; ``targets``: the synaptic variables the rule
    updates (``w``, ``d``, ``t``); ``decimate``: per target the k of its u_k (0 without one).
    """

    rule: LearningRule
    config: rules.RuleConfig
    epoch: int
    decay: tuple[int, ...]
    impulse: tuple[int, ...]
    trace_hi: int
    widths: Mapping[str, int]
    engine: Any
    lava_decay: tuple[float, ...] = ()

    @property
    def equations(self) -> tuple[rules.Equation, ...]:
        return self.config.equations()

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(eq.target[1] for eq in self.equations)


def compile_plasticity(plasticity: str | LearningRule, spec: HwSpec) -> Plasticity:
    """Check ``plasticity`` against ``spec`` and compile it (:class:`Plasticity`).

    Raises :class:`LearningRuleError`: a target without a learning engine (named), a rule the engine
    cannot run (the term and its column), a trace parameter or epoch outside the engine's range.
    """
    rule = as_rule(plasticity)
    engine = engine_of(spec)
    lim = engine.limits(spec)
    where = spec.where()
    equations = rule.equations
    rules.check(equations, lim, rule.rule, where)
    lo, hi = lim["epoch_steps"]
    e = rule.epoch
    if not isinstance(e, int) or not lo <= e <= hi or e & (e - 1):
        raise LearningRuleError(f"epoch = {e!r}: a learning epoch is a power of two in [{lo}, {hi}] steps ({where}: "
                                "[learning] epoch_steps)")
    bits = int(lim["trace_bits"])
    trace_hi = (1 << bits) - 1
    tlo, thi = lim["tau"]
    decay, impulse = [], []
    for trace in TRACES:
        tau = rule.tau(trace)
        if not tlo <= tau <= thi:
            raise LearningRuleError(f"{trace}_tau = {tau}: outside [{tlo}, {thi}] steps of the {spec.family} "
                                    "learning engine (0: no memory between spikes)")
        fixed_impulse = engine.impulse_fixed(rule.impulse(trace))
        if not 0 <= fixed_impulse <= (trace_hi << engine.IMPULSE_FRACTION_BITS):
            raise LearningRuleError(f"{trace}_impulse = {rule.impulse(trace)}: outside [0, {trace_hi}] "
                                    f"({bits}-bit traces, {where})")
        decay.append(engine.decay_factor(tau))
        impulse.append(fixed_impulse)
    widths = {v: engine.factor_bits(v, bits) for v in rules.FACTOR_VARS}
    lava_decay: tuple[float, ...] = ()
    if rule.random not in RANDOM:
        raise LearningRuleError(f"random = {rule.random!r}; choose one of {', '.join(map(repr, RANDOM))}")
    if rule.random == "lava":
        ks = {p.decimate for eq in equations for p in eq.products if p.dependency == "u"}
        if rule.reward is not None or rule.nearest or len(ks) > 1:
            raise LearningRuleError(
                "random='lava' reproduces Lava's two-factor learning engine: no reward channel, no nearest "
                "pairing, one u_k period for all equations")
        if not isinstance(rule.rng_seed, int) or not 0 <= rule.rng_seed < 2**62:
            raise LearningRuleError(f"rng_seed = {rule.rng_seed!r}; expected an integer in [0, 2^62)")
        lava_decay = tuple(engine.lava_decay_factors([rule.tau(t) for t in TRACES]))
    return Plasticity(rule, rules.compile_rule(equations), e, tuple(decay), tuple(impulse), trace_hi, widths, engine,
                      lava_decay)

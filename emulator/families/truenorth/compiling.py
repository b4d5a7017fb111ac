"""TrueNorth compile hooks: the per-neuron registers of a fitted binary crossbar, the rules' family
facts, and the float model of one population (the network the quantised one approximates).

numpy only (no torch, no compiler imports): the compiler reaches this module through
``emulator.families.get(spec.family).compiling``. The weight fit itself (binary crossbar × four
axon-type weights per neuron) is :func:`compiler.passes.truenorth.truenorth_weights`.

Only IF neurons: the leak is a constant (the bias), so time constants have no counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "neuron_registers", "coarsen", "FloatNeurons", "QUANTISER", "OVERFLOW_STATE",
    "OVERFLOW_FIX", "WEIGHT_EXPONENT", "WEIGHT_ERROR_KEYS", "WEIGHT_ERROR_FIX", "REGISTER_KEYS", "FAN_OUT_LABEL",
    "FAN_OUT_FIX", "FAN_OUT_PER_CORE", "TIME_CONSTANTS",
]

# ----------------------------------------------------------------------------- rule facts
QUANTISER = "binary_type_weights"
OVERFLOW_STATE = "v"
OVERFLOW_FIX = "smaller type weights or fewer simultaneous inputs"
#: no per-projection exponent: a large weight error is a warning with this fix
WEIGHT_EXPONENT: str | None = None
WEIGHT_ERROR_KEYS = "registers.type_weights, synapse.axon_types"
WEIGHT_ERROR_FIX = ("4 axon-type weights per neuron cannot express this matrix: prune or cluster the weights "
                    "(fewer distinct values per neuron), or choose loihi")
REGISTER_KEYS = "registers.threshold, registers.leak"
#: what the fan-out rule counts: target axons, one route per destination core
FAN_OUT_LABEL = "fan-out (target axons of one neuron)"
FAN_OUT_FIX = ("neurons are replicated so that each copy targets one core; this one could not be: reduce its "
               "fan-out")
FAN_OUT_PER_CORE = True
#: the leak is linear: membrane / synaptic time constants have no counterpart
TIME_CONSTANTS = False


# --------------------------------------------------------------------------- weight format
def coarsen(bias: NDArray[Any], scale: NDArray[np.float64], leak_hi: int) -> NDArray[np.float64]:
    """Per neuron factor ``≥ 1`` by which a bias beyond the leak range coarsens the state scale."""
    return np.maximum(1.0, np.abs(bias / scale) / leak_hi)


def neuron_registers(threshold: float, bias: NDArray[Any], scale: NDArray[np.float64],
                     type_weights: NDArray[np.int64], worst: NDArray[np.float64], spec: Any
                     ) -> tuple[dict[str, NDArray[np.int64]], tuple[str, float, float]]:
    """Registers of ``n`` neurons at per-neuron state scale ``1/scale``, and the first register out of
    range ``(name, value, limit)`` (``("", 0, 0)`` when all fit).

    ``α = round(θ/scale)``, ``λ = round(b/scale)`` (the leak is the constant bias), reset by
    subtraction (γ = 1), κ = 1 with the floor ``−β`` as deep as ``v`` allows less one step of
    worst-case input (``worst``, per neuron), so that ``v`` may go negative but never saturates.
    """
    regs_rng = spec.registers
    v_limit = int(spec.state["v"].hi)
    n = scale.size
    thr = np.round(threshold / scale)
    leak = np.round(bias / scale)
    why: tuple[str, float, float] = ("", 0.0, 0.0)
    t_rng, l_rng = regs_rng["threshold"], regs_rng["leak"]
    if thr.max() > t_rng.hi:
        why = ("threshold register", float(thr.max()), t_rng.hi)
    elif np.abs(leak).max(initial=0) > l_rng.hi:
        why = ("|leak| register (bias)", float(np.abs(leak).max()), l_rng.hi)
    thr = np.clip(thr, max(1, t_rng.lo), t_rng.hi).astype(np.int64)
    leak = np.clip(leak, l_rng.lo, l_rng.hi).astype(np.int64)
    regs = {"type_weights": type_weights, "leak": leak, "threshold": thr,
            # β leaves one step of worst-case input as headroom, so V never saturates mid-step
            "neg_threshold": np.clip(v_limit - worst, 0, regs_rng["neg_threshold"].hi),
            "reset_mode": np.full(n, 1), "reset_value": np.zeros(n),
            "neg_saturate": np.ones(n), "leak_reversal": np.zeros(n),
            "stochastic_synapse": np.zeros(n), "stochastic_leak": np.zeros(n),
            "threshold_mask_bits": np.zeros(n)}
    return {key: np.asarray(v, dtype=np.int64) for key, v in regs.items()}, why


# ----------------------------------------------------------------------------- simulation
class FloatNeurons:
    """The float model of one population: IF with a linear leak (the bias), ``v ≥ θ`` spikes and
    subtracts θ, no floor::

        v ← v + a + b;   s = [v ≥ θ];   v ← v − θ where s
    """

    def __init__(self, *, size: int, threshold: float, bias: NDArray[Any] | None, tau_mem: float | None,
                 tau_syn: float | None, dt: float, max_spikes: int = 1) -> None:
        self.alpha = np.full(size, threshold)
        self.leak = bias if bias is not None else np.zeros(size)
        self.size = size

    def state(self, batch: int) -> dict[str, NDArray[np.float64]]:
        return {"v": np.zeros((batch, self.size))}

    dtype: Any = np.float64

    def input(self, current: NDArray[np.float64], params: Mapping[str, int]) -> NDArray[np.float64]:
        return current

    def step(self, state: dict[str, NDArray[np.float64]], a: NDArray[np.float64]) -> NDArray[np.float64]:
        v = state["v"] + a + self.leak
        s = v >= self.alpha
        state["v"] = np.where(s, v - self.alpha, v)
        return s.astype(np.float64)

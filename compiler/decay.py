"""Time constants → decay registers (torch-free; shared by the neuron modules and the quantiser).

Loihi: 12-bit multiplicative decays ``du``, ``dv`` (``x ← x·(4096 − d)/4096``, the current with an
extra ``+1``); Xylo: bit-shift decays ``dash`` (``x ← x − x·2^−dash``).
"""

from __future__ import annotations

import math

__all__ = ["loihi_decay", "xylo_dash", "bias_gain"]


def loihi_decay(tau: float | None, dt: float, offset: int = 0) -> int:
    """Loihi 12-bit decay register for time constant ``tau`` (s) at step ``dt`` (s).

    ``d = round(4096·(1 − exp(−dt/τ))) − offset`` clipped to ``[0, 4095]``; ``offset`` is 1 for
    the current decay ``du`` (the chip multiplies by ``4096 − (du + 1)``), 0 for ``dv``.
    ``tau=None`` means no state: ``du = 4095`` (current does not persist), ``dv = 0`` (no leak).
    """
    if tau is None:
        return 4095 if offset else 0
    if tau <= 0:
        return 4095
    return int(min(4095, max(0, round(4096 * (1 - math.exp(-dt / tau))) - offset)))


def xylo_dash(tau: float | None, dt: float, max_dash: int = 15) -> int:
    """Xylo bit-shift decay ``dash = round(log2(τ/dt))`` in ``[0, max_dash]`` (Rockpool's mapping).

    ``tau=None`` means as slow as the chip allows (``max_dash``).
    """
    if tau is None:
        return max_dash
    if tau <= dt:
        return 0
    return int(min(max_dash, max(0, round(math.log2(tau / dt)))))


def bias_gain(kind_tau_syn: float | None, dt: float, datapath: str) -> float:
    """Factor mapping a constant input current ``b`` (a Linear bias, which enters ``u`` in these
    modules) onto the chip's bias register, which adds to ``v`` every step: the steady-state
    current, ``b / δu`` on Loihi (``1`` without a synaptic state), ``b·k/(1 − k)`` with
    ``k = 1 − 2^−dash_syn`` on Xylo. Exact without a synaptic time constant; with one, only the
    transient after the first step differs.
    """
    if datapath == "loihi":
        du = loihi_decay(kind_tau_syn, dt, offset=1)
        return 4096.0 / (du + 1)
    dash = xylo_dash(kind_tau_syn, dt) if kind_tau_syn is not None else 1
    k = 1 - 2.0 ** -dash
    return k / (1 - k)

"""Time constants → decay registers (torch-free; shared by the neuron modules and the quantiser).

The arithmetic lives with each family's compile hooks (``emulator.families.<f>.compiling``):
Loihi's 12-bit multiplicative decays ``du``, ``dv`` (``x ← x·(4096 − d)/4096``, the current with an
extra ``+1``), Xylo's bit-shift decays ``dash`` (``x ← x − x·2^−dash``). The names below are the
compiler's public spelling of them.
"""

from __future__ import annotations

from emulator import families
from emulator.families.loihi.compiling import decay as loihi_decay
from emulator.families.xylo.compiling import dash as xylo_dash

__all__ = ["loihi_decay", "xylo_dash", "bias_gain", "keep_factors"]


def bias_gain(kind_tau_syn: float | None, dt: float, datapath: str) -> float:
    """Factor mapping a constant input current ``b`` (a Linear bias, which enters ``u`` in the
    neuron modules) onto the chip's bias register, which adds to ``v`` every step: the
    steady-state current of family ``datapath`` (``b / δu`` on Loihi, ``b·k/(1 − k)`` with
    ``k = 1 − 2^−dash_syn`` on Xylo). Exact without a synaptic time constant; with one, only the
    transient after the first step differs.
    """
    return float(families.get(datapath).compiling.bias_gain(kind_tau_syn, dt))


def keep_factors(tau_mem: float | None, tau_syn: float | None, dt: float, datapath: str) -> tuple[float, float]:
    """``(keep_current, keep_membrane)``: the per-step factors family ``datapath`` applies to its
    synaptic current and membrane for these time constants (s) at step ``dt`` (s)."""
    ku, kv = families.get(datapath).compiling.keep_factors(tau_mem, tau_syn, dt)
    return float(ku), float(kv)

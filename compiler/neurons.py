"""Trainable spiking neuron modules whose forward pass follows a chip family's datapath.

Import as ``compiler.nn`` (this module imports torch). Each module is **stateful and one step per
call**: ``forward(x)`` takes the input current of one step ``[batch, ...]`` and returns that
step's spikes; :func:`run` resets every neuron of a model and loops it over ``[batch, time, ...]``.
Float parameters map to registers (``compiler.passes.quantize``):

``datapath="loihi"`` (Lava ``PyLifModelBitAcc``)::

    u ← u·(1 − δu) + x              δu = (du + 1)/4096,  du = round(4096·(1 − e^(−dt/τ_syn))) − 1
    v ← v·(1 − δv) + u              δv = dv/4096,        dv = round(4096·(1 − e^(−dt/τ_mem)))
    s = [v > θ]; v ← 0 where s      (strict '>', reset to zero)
    output = s of the previous step (the chip delivers a spike one step after it is emitted)

``datapath="xylo"`` (XyloSim)::

    i ← (i + x)·(1 − 2^−dash_syn)   dash = round(log2(τ/dt))  (bit-shift decay; 0 → no synaptic state)
    v ← v·(1 − 2^−dash_mem) + i
    n = min(⌊v/θ⌋, 31) where v ≥ θ; v ← v − n·θ   (subtractive reset, up to 31 spikes per step)

The decay factors used in training are the *quantised* ones the chip will use, so training in
these modules predicts the deployed behaviour (up to weight/threshold rounding). The spike
non-linearity has a fast-sigmoid surrogate gradient ``∂s/∂v = 1/(1 + k·|v − θ|)²`` (Zenke &
Ganguli 2018, "SuperSpike"), ``k = surrogate_slope / θ``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .decay import bias_gain, keep_factors, loihi_decay, xylo_dash

__all__ = ["SpikingNeuron", "LIF", "CubaLIF", "IF", "run", "reset", "loihi_decay", "xylo_dash", "bias_gain",
           "DATAPATHS", "HPARAMS_BUFFER", "from_hparams"]

DATAPATHS = ("loihi", "xylo")
_MAX_SPIKES = 31  # XyloSim MAX_NUM_SPIKES (hw_specs/xylo.toml chip.max_spikes_per_step)

#: name of the non-persistent buffer that records a neuron's hyper-parameters (see :meth:`SpikingNeuron.hparams`)
HPARAMS_BUFFER = "spikeforge_hparams"
_HPARAMS = ("threshold", "tau_mem", "tau_syn", "dt", "surrogate_slope", "datapath")
_KINDS = ("IF", "LIF", "CUBA")


def _spikes(x: Tensor, counts: bool, strict: bool) -> Tensor:
    """The spike non-linearity's forward: Heaviside of ``x`` (or the Xylo spike count)."""
    if counts:
        return torch.clamp(torch.floor(x + 1.0), 0, _MAX_SPIKES)  # x = v/θ − 1: n = ⌊v/θ⌋ for v ≥ θ
    return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)


class _SpikeFn(torch.autograd.Function):
    """Heaviside (or floor count) forward, fast-sigmoid surrogate backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, slope: float, counts: bool, strict: bool) -> Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return _spikes(x, counts, strict)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * x.abs()) ** 2, None, None, None


def _traced_spike(x: Tensor, slope: float, counts: bool, strict: bool) -> Tensor:
    """:class:`_SpikeFn` without the autograd wrapper, for ``torch.jit.trace`` (same forward values)."""
    return _spikes(x, counts, strict)


class SpikingNeuron(nn.Module):
    """Base of the neuron modules: float ``threshold`` θ, time constants (s), step ``dt`` (s).

    State (``u``, ``v`` and the delayed spikes) persists between calls; :meth:`reset` clears it.

    The hyper-parameters are plain attributes; a copy is kept in the non-persistent buffer
    :data:`HPARAMS_BUFFER` (float64 bits in an int64 tensor: exact, untouched by ``.half()``, not in
    the state dict) so that ``torch.export`` and TorchScript files still carry them
    (:func:`from_hparams` rebuilds the module). Under ``torch.jit.trace`` the spike function runs
    without its surrogate-gradient wrapper (a Python autograd function cannot be saved).
    """

    kind = "IF"

    def __init__(self, threshold: float = 1.0, tau_mem: float | None = None, tau_syn: float | None = None,
                 dt: float = 1e-3, datapath: str = "loihi", surrogate_slope: float = 5.0) -> None:
        super().__init__()
        if datapath not in DATAPATHS:
            raise ValueError(f"datapath {datapath!r}; choose one of {DATAPATHS}")
        if threshold <= 0:
            raise ValueError(f"threshold {threshold} must be > 0")
        self.threshold = float(threshold)
        self.tau_mem = tau_mem
        self.tau_syn = tau_syn
        self.dt = float(dt)
        self.datapath = datapath
        self.surrogate_slope = float(surrogate_slope)
        self.u: Tensor | None = None
        self.v: Tensor | None = None
        self._prev: Tensor | None = None
        self.register_buffer(HPARAMS_BUFFER, self.hparams(), persistent=False)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _HPARAMS and HPARAMS_BUFFER in self._buffers:
            old = self._buffers[HPARAMS_BUFFER]
            self._buffers[HPARAMS_BUFFER] = self.hparams().to(old.device if old is not None else "cpu")

    def hparams(self) -> Tensor:
        """``[kind, threshold, tau_mem, tau_syn, dt, surrogate_slope, datapath]`` as float64 bits in int64
        (``kind`` and ``datapath`` as indices into ``("IF", "LIF", "CUBA")`` and :data:`DATAPATHS`, no time
        constant = NaN)."""
        vals = [float(_KINDS.index(self.kind) if self.kind in _KINDS else -1)]
        for name in _HPARAMS:
            v = getattr(self, name)
            if name == "datapath":
                vals.append(float(DATAPATHS.index(v) if v in DATAPATHS else -1))
            else:
                vals.append(float("nan") if v is None else float(v))
        return torch.tensor(vals, dtype=torch.float64).view(torch.int64)

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, tau_mem={self.tau_mem}, tau_syn={self.tau_syn}, dt={self.dt}, "
                f"datapath={self.datapath!r}")

    def reset(self) -> None:
        """Forget the state (call before every new sample sequence; :func:`run` does)."""
        self.u = self.v = self._prev = None

    def decay_factors(self) -> tuple[float, float]:
        """``(keep_u, keep_v)``: the per-step factors the chip applies to ``u`` and ``v`` (the
        family's compile hooks: the same decays the quantiser writes into the registers)."""
        return keep_factors(self.tau_mem, self.tau_syn, self.dt, self.datapath)

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None or self.v.shape != x.shape:
            self.u = torch.zeros_like(x)
            self.v = torch.zeros_like(x)
            self._prev = torch.zeros_like(x)
        assert self.u is not None and self._prev is not None
        keep_u, keep_v = self.decay_factors()
        theta = self.threshold
        slope = self.surrogate_slope
        spike = _traced_spike if torch.jit.is_tracing() else _SpikeFn.apply
        if self.datapath == "loihi":
            self.u = self.u * keep_u + x
            v = self.v * keep_v + self.u
            s = spike(v / theta - 1.0, slope, False, True)
            self.v = v * (1.0 - s.detach())
            out, self._prev = self._prev, s
            return out
        self.u = (self.u + x) * keep_u
        v = self.v * keep_v + self.u
        n = spike(v / theta - 1.0, slope, True, False)
        self.v = v - n.detach() * theta
        return n


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire: membrane time constant ``tau_mem`` (s), no synaptic current state."""

    kind = "LIF"

    def __init__(self, tau_mem: float = 20e-3, threshold: float = 1.0, **kw: Any) -> None:
        super().__init__(threshold=threshold, tau_mem=tau_mem, tau_syn=None, **kw)


class CubaLIF(SpikingNeuron):
    """Current-based LIF: synaptic current ``tau_syn`` (s) feeding a leaky membrane ``tau_mem`` (s)."""

    kind = "CUBA"

    def __init__(self, tau_syn: float = 5e-3, tau_mem: float = 20e-3, threshold: float = 1.0, **kw: Any) -> None:
        super().__init__(threshold=threshold, tau_mem=tau_mem, tau_syn=tau_syn, **kw)


class IF(SpikingNeuron):
    """Integrate-and-fire without leak (the spiking counterpart of ReLU, for conversion)."""

    kind = "IF"

    def __init__(self, threshold: float = 1.0, **kw: Any) -> None:
        super().__init__(threshold=threshold, tau_mem=None, tau_syn=None, **kw)


def from_hparams(hparams: Tensor | Any) -> SpikingNeuron:
    """Rebuild a neuron module (LIF, CubaLIF or IF) from its :meth:`SpikingNeuron.hparams` buffer."""
    t = torch.as_tensor(hparams).detach().cpu().reshape(-1)
    if t.dtype != torch.int64 or t.numel() != len(_HPARAMS) + 1:
        raise ValueError(f"not a spiking neuron hyper-parameter record: {t.dtype} tensor of {t.numel()} values")
    vals = t.view(torch.float64).tolist()
    hp: dict[str, Any] = {name: (None if v != v else v) for name, v in zip(_HPARAMS, vals[1:], strict=True)}
    if vals[0] not in range(len(_KINDS)) or hp["datapath"] not in range(len(DATAPATHS)):
        raise ValueError(f"unknown neuron kind or datapath in the hyper-parameter record {vals}")
    kind = _KINDS[int(vals[0])]
    datapath = DATAPATHS[int(hp.pop("datapath"))]
    common: dict[str, Any] = {"threshold": hp["threshold"], "dt": hp["dt"], "datapath": datapath,
              "surrogate_slope": hp["surrogate_slope"]}
    if kind == "CUBA":
        return CubaLIF(tau_syn=hp["tau_syn"], tau_mem=hp["tau_mem"], **common)
    if kind == "LIF":
        return LIF(tau_mem=hp["tau_mem"], **common)
    neuron = IF(**common)
    neuron.tau_mem, neuron.tau_syn = hp["tau_mem"], hp["tau_syn"]  # an IF whose attributes were changed
    return neuron


def reset(model: nn.Module) -> None:
    """Reset the state of every :class:`SpikingNeuron` in ``model``."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()


def run(model: nn.Module, x: Tensor) -> Tensor:
    """Run a per-step ``model`` over ``x`` ``[batch, time, ...]``; returns ``[batch, time, ...]``."""
    reset(model)
    outs = [model(x[:, t]) for t in range(x.shape[1])]
    return torch.stack(outs, dim=1)

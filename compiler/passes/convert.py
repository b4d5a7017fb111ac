"""ANN → SNN conversion: ReLU layers become IF neurons, with data-based threshold balancing.

An IF neuron driven by a constant current ``z`` fires at rate ``≈ z/θ`` per step, clipped to 1:
a rectifier (the seed notes' "IAF ≈ ReLU"). Following Rueckauer et al. 2017 (Front. Neurosci.
11:682, "robust normalisation"), each ReLU layer ``l`` gets a scale ``λ_l`` = the ``p``-th
percentile (default 99.9) of its activations on a calibration batch:

* the ReLU becomes ``Neuron(IF, threshold=λ_l)`` — its rate ``r_l = a_l/λ_l`` stays in ``[0, 1]``
  for all but the top ``(100 − p)`` % of activations, which saturate;
* its spikes are worth ``λ_l`` to the next layer: an ``Affine(λ_l)`` after it, folded into the next
  weights by lowering (``W_{l+1} ← λ_l · W_{l+1}``);
* the input is rate coded: ``x / λ_in`` spikes per step (:func:`encode_rate`), ``λ_in`` the
  input's percentile, so the first layer's weights get ``· λ_in``;
* a final linear layer gets an IF readout population (threshold ``λ_out`` from its positive
  activations); the class is the output neuron that spikes most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spikeforge.errors import CompileError

from .. import ir
from .lower import csr_of_dense, linear_matrix

__all__ = ["convert", "evaluate_analog", "encode_rate", "ConversionReport", "needs_conversion",
           "calibration_input"]


@dataclass
class ConversionReport:
    """Threshold balancing results: ``scales`` ``{layer: λ}``, ``percentile``, ANN accuracy (if labels)."""

    percentile: float
    input_scale: float
    scales: dict[str, float] = field(default_factory=dict)
    ann_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "input_scale": self.input_scale, "scales": dict(self.scales),
                "ann_accuracy": self.ann_accuracy}


def needs_conversion(graph: ir.Graph) -> bool:
    """True for an analog (ReLU) network, False for a spiking one; mixed graphs are rejected."""
    relus, neurons = graph.of_type(ir.ReLU), graph.of_type(ir.Neuron)
    if relus and neurons:
        raise CompileError(f"the model mixes ReLU ({relus[0].name!r}) and spiking neurons ({neurons[0].name!r}); "
                           "use one or the other")
    if not relus and not neurons:
        return True  # a purely linear model: converted with an IF readout
    return bool(relus)


def evaluate_analog(graph: ir.Graph, x: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
    """Run the ANN layer graph on ``x`` ``[batch, *input_shape]``; activations ``{node: [batch, n]}``."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    acts: dict[str, NDArray[np.float64]] = {}
    for node in graph:
        if isinstance(node, ir.Input):
            acts[node.name] = x
        elif isinstance(node, ir.ReLU):
            acts[node.name] = np.maximum(acts[node.inputs[0]], 0.0)
        elif isinstance(node, ir.Add):
            acts[node.name] = sum(acts[i] for i in node.inputs)  # type: ignore[assignment]
        elif isinstance(node, ir.Output):
            acts[node.name] = acts[node.inputs[0]]
        elif isinstance(node, ir.Neuron):
            raise CompileError(f"evaluate_analog: {node.name!r} is a spiking neuron")
        elif isinstance(node, ir.Dense) and np.isfinite(acts[node.inputs[0]]).all():
            # zeros stored too: no pass to find them, and the matrix's data is the weight array itself
            b = np.asarray(node.bias if node.bias is not None else np.zeros(node.weight.shape[0]), dtype=np.float64)
            acts[node.name] = np.asarray(csr_of_dense(node.weight, keep_zeros=True) @ acts[node.inputs[0]].T).T + b
        else:
            m, b = linear_matrix(node, graph.shape(node.inputs[0]))
            acts[node.name] = np.asarray(m @ acts[node.inputs[0]].T).T + b
    return acts


def encode_rate(x: NDArray[Any], steps: int, scale: float = 1.0) -> NDArray[np.int8]:
    """Deterministic rate code: ``[batch, *shape]`` values → ``[batch, steps, n]`` 0/1 spikes.

    ``r = clip(x/scale, 0, 1)``; step ``t`` spikes iff ``⌊(t+1)·r⌋ > ⌊t·r⌋`` (``r·steps`` spikes,
    evenly spaced).
    """
    r = np.clip(np.asarray(x, dtype=np.float64).reshape(len(x), -1) / scale, 0.0, 1.0)
    t = np.arange(steps + 1, dtype=np.float64)[None, :, None]
    cum = np.floor(t * r[:, None, :] + 1e-9)
    return np.diff(cum, axis=1).astype(np.int8)


def _percentile(a: NDArray[Any], p: float) -> float:
    pos = a[a > 0]
    if pos.size == 0:
        return 1.0
    return float(np.percentile(pos, p))


def calibration_input(calibration: Any) -> NDArray[np.float64]:
    """``calibration`` as float64 ``[batch, *input_shape]``, checked (at least one sample, no
    negative value); raises :class:`CompileError`."""
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim < 2 or len(x) == 0:
        raise CompileError(f"calibration data has shape {x.shape}; expected [batch, *input_shape] with batch >= 1")
    if x.min() < 0:
        raise CompileError(f"calibration input has negative values (min {x.min():.3g}); rate coding needs inputs "
                           ">= 0: shift or rescale the input (e.g. to [0, 1])")
    return x


def convert(graph: ir.Graph, calibration: NDArray[Any], *, percentile: float = 99.9,
            labels: NDArray[Any] | None = None, activations: dict[str, NDArray[np.float64]] | None = None
            ) -> tuple[ir.Graph, ConversionReport]:
    """Turn the ReLU layer graph into an IF layer graph balanced on ``calibration`` ``[batch, *shape]``.

    ``activations``: ``evaluate_analog(graph, calibration)`` when the caller has it already (it
    keeps the ANN's outputs), else it is computed here."""
    ir.validate(graph, "frontend")
    x = calibration_input(calibration)
    acts = evaluate_analog(graph, x) if activations is None else activations
    in_scale = _percentile(x, percentile)
    report = ConversionReport(percentile=percentile, input_scale=in_scale)
    (out_node,) = graph.of_type(ir.Output)
    if labels is not None:
        pred = acts[out_node.name].argmax(axis=1)
        report.ann_accuracy = float((pred == np.asarray(labels).ravel()).mean())
    new = ir.Graph(meta={**graph.meta, "converted": True})
    rename: dict[str, str] = {}
    for node in graph:
        ins = tuple(rename.get(i, i) for i in node.inputs)
        if isinstance(node, ir.Input):
            new.add(node)
            new.add(ir.Affine(f"{node.name}_rate", (node.name,), scale=np.array([in_scale]), shift=np.zeros(1)))
            rename[node.name] = f"{node.name}_rate"
        elif isinstance(node, ir.ReLU):
            lam = _percentile(acts[node.name], percentile)
            report.scales[node.name] = lam
            new.add(ir.Neuron(node.name, ins, kind="IF", threshold=lam))
            new.add(ir.Affine(f"{node.name}_value", (node.name,), scale=np.array([lam]), shift=np.zeros(1)))
            rename[node.name] = f"{node.name}_value"
        elif isinstance(node, ir.Output):
            src = ins[0]
            if not isinstance(graph[node.inputs[0]], ir.ReLU):
                lam = _percentile(acts[node.inputs[0]], percentile)
                report.scales["readout"] = lam
                new.add(ir.Neuron("readout", (src,), kind="IF", threshold=lam, readout=True))
                src = "readout"
            else:
                src = node.inputs[0]
            new.add(ir.Output(node.name, (src,)))
        else:
            new.add(type(node)(**{**node.__dict__, "inputs": ins}))
    return ir.validate(new, "spiking"), report

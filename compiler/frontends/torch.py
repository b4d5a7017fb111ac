"""PyTorch frontend: a ``torch.nn.Module`` (or a saved one) → a layer :class:`~compiler.ir.Graph`.

Capture uses ``torch.fx`` symbolic tracing with every ``torch.nn`` module and every
:class:`compiler.nn.SpikingNeuron` as a leaf; when tracing fails (data-dependent control flow) an
``nn.Sequential`` is walked module by module instead. Each leaf is lowered by :data:`LOWERINGS`
(module type → function); functions and methods (``x + y``, ``torch.flatten``, ``F.relu`` …) by
:data:`FUNCTIONS` / :data:`METHODS`. Anything else raises :class:`UnsupportedOperator` naming the
module path and type and listing what is supported.

The model is a *per-step* function: it maps one step's input ``[batch, *input_shape]`` to one
step's output (ReLU networks: one static input). Supported modules: Linear, Conv2d, AvgPool2d
(sum pooling + threshold scaling), Flatten, Dropout (ignored), BatchNorm1d/2d (folded into the
previous Linear/Conv2d), Identity, ReLU (conversion) and ``compiler.nn`` LIF / CubaLIF / IF.

The CLI reads a trained model as ``module:Class`` + a state dict file (:func:`load_model`);
``torch.export`` and TorchScript files go through :mod:`compiler.frontends.saved`, which rebuilds
their modules and lowers them with the functions here.
"""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from spikeforge.errors import CompileError, UnsupportedOperator

from .. import ir
from ..neurons import SpikingNeuron

__all__ = ["from_torch", "load_model", "LOWERINGS", "FUNCTIONS", "METHODS", "supported"]


class _Ctx:
    """What a lowering may use: the graph under construction and a unique-name helper."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph

    def name(self, path: str) -> str:
        base = (path or "node").replace(".", "_")
        name, k = base, 1
        while name in self.graph.nodes:
            k += 1
            name = f"{base}_{k}"
        return name

    def add(self, node: ir.Node) -> str:
        self.graph.add(node)
        return node.name


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().double().numpy()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ------------------------------------------------------------------------------- lowerings
Lowering = Callable[[_Ctx, str, Any, list[str]], str]


def _linear(ctx: _Ctx, path: str, m: nn.Linear, ins: list[str]) -> str:
    w = _np(m.weight)
    assert w is not None
    return ctx.add(ir.Dense(ctx.name(path), tuple(ins), weight=w, bias=_np(m.bias)))


def _conv2d(ctx: _Ctx, path: str, m: nn.Conv2d, ins: list[str]) -> str:
    if m.dilation not in (1, (1, 1)) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedOperator(f"module {path!r} (Conv2d): dilation {m.dilation}, padding {m.padding!r}, "
                                  f"padding_mode {m.padding_mode!r}; supported: dilation 1, integer zero padding")
    w = _np(m.weight)
    assert w is not None
    return ctx.add(ir.Conv2d(ctx.name(path), tuple(ins), weight=w, bias=_np(m.bias), stride=_pair(m.stride),
                             padding=_pair(m.padding), groups=int(m.groups)))


def _avgpool(ctx: _Ctx, path: str, m: nn.AvgPool2d, ins: list[str]) -> str:
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    if _pair(m.padding) != (0, 0) or m.ceil_mode:
        raise UnsupportedOperator(f"module {path!r} (AvgPool2d): padding/ceil_mode are not supported")
    return ctx.add(ir.Pool(ctx.name(path), tuple(ins), kernel=k, stride=s, mode="avg"))


def _flatten(ctx: _Ctx, path: str, m: Any, ins: list[str]) -> str:
    if len(ctx.graph.shape(ins[0])) == 1:
        return ins[0]
    return ctx.add(ir.Flatten(ctx.name(path), tuple(ins)))


def _identity(ctx: _Ctx, path: str, m: Any, ins: list[str]) -> str:
    return ins[0]  # Identity; Dropout is the identity at inference


def _relu(ctx: _Ctx, path: str, m: Any, ins: list[str]) -> str:
    return ctx.add(ir.ReLU(ctx.name(path), tuple(ins)))


def _batchnorm(ctx: _Ctx, path: str, m: nn.modules.batchnorm._BatchNorm, ins: list[str]) -> str:
    """Fold ``γ (x − μ)/√(σ² + ε) + β`` into the previous Linear/Conv2d (its only reader)."""
    prev = ctx.graph[ins[0]]
    if not isinstance(prev, (ir.Dense, ir.Conv2d)) or ctx.graph.users(prev.name):
        raise UnsupportedOperator(f"module {path!r} ({type(m).__name__}): BatchNorm is folded into the Linear or "
                                  "Conv2d right before it; here it follows "
                                  f"{type(prev).__name__} {prev.name!r}")
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedOperator(f"module {path!r}: BatchNorm without running statistics cannot be folded")
    mean, var = _np(m.running_mean), _np(m.running_var)
    assert mean is not None and var is not None
    gamma = _np(m.weight) if m.weight is not None else np.ones_like(mean)
    beta = _np(m.bias) if m.bias is not None else np.zeros_like(mean)
    assert gamma is not None and beta is not None
    scale = gamma / np.sqrt(var + m.eps)
    shape = (-1,) + (1,) * (prev.weight.ndim - 1)
    weight = prev.weight * scale.reshape(shape)
    bias = ((prev.bias if prev.bias is not None else 0.0) - mean) * scale + beta
    ctx.graph.replace(type(prev)(**{**prev.__dict__, "weight": weight, "bias": bias}))
    return prev.name


def _neuron(ctx: _Ctx, path: str, m: SpikingNeuron, ins: list[str]) -> str:
    return ctx.add(ir.Neuron(ctx.name(path), tuple(ins), kind=m.kind, threshold=m.threshold, tau_mem=m.tau_mem,
                             tau_syn=m.tau_syn, datapath=m.datapath))


#: module type → lowering; the first type in this order the module is an instance of wins
LOWERINGS: dict[type, Lowering] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.AvgPool2d: _avgpool,
    nn.Flatten: _flatten,
    nn.Dropout: _identity,
    nn.Identity: _identity,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.ReLU: _relu,
    SpikingNeuron: _neuron,
}


def _add(ctx: _Ctx, path: str, args: tuple[Any, ...], ins: list[str]) -> str:
    if len(ins) != 2 or any(not isinstance(a, fx.Node) for a in args[:2]):
        raise UnsupportedOperator(f"{path!r}: only the sum of two tensors (a residual) is supported")
    return ctx.add(ir.Add(ctx.name(path), tuple(ins)))


def _fn_flatten(ctx: _Ctx, path: str, args: tuple[Any, ...], ins: list[str]) -> str:
    return _flatten(ctx, path, None, ins)


def _fn_relu(ctx: _Ctx, path: str, args: tuple[Any, ...], ins: list[str]) -> str:
    return _relu(ctx, path, None, ins)


def _fn_identity(ctx: _Ctx, path: str, args: tuple[Any, ...], ins: list[str]) -> str:
    return ins[0]


FnLowering = Callable[[_Ctx, str, tuple[Any, ...], list[str]], str]
#: called functions → lowering (``x + y``, ``torch.flatten(x, 1)``, ``F.relu`` …)
FUNCTIONS: dict[Any, FnLowering] = {
    operator.add: _add, torch.add: _add, operator.iadd: _add,
    torch.flatten: _fn_flatten, torch.relu: _fn_relu, F.relu: _fn_relu, F.dropout: _fn_identity,
}
#: tensor methods → lowering
METHODS: dict[str, FnLowering] = {
    "add": _add, "flatten": _fn_flatten, "relu": _fn_relu, "view": _fn_flatten, "reshape": _fn_flatten,
    "contiguous": _fn_identity,
}


def supported() -> str:
    """The supported modules and functions, for error messages."""
    mods = ", ".join(t.__name__ for t in LOWERINGS)
    return f"modules {mods}; functions +, torch.flatten, relu; methods {', '.join(METHODS)}"


def _lowering(m: nn.Module) -> Lowering | None:
    for t, fn in LOWERINGS.items():
        if isinstance(m, t):
            return fn
    return None


def _unsupported(path: str, what: str) -> UnsupportedOperator:
    return UnsupportedOperator(f"{path!r} ({what}) is not supported by the torch frontend; supported: {supported()}")


_SHAPE = "<shape>"  # env marker of a shape query (not a tensor)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikingNeuron) or _lowering(m) is not None or super().is_leaf_module(m, qualname)


# ------------------------------------------------------------------------------- capture
def from_torch(model: nn.Module, input_shape: tuple[int, ...]) -> ir.Graph:
    """Capture ``model`` (per-sample input shape ``input_shape``) as a layer graph."""
    if not isinstance(model, nn.Module):
        raise CompileError(f"expected a torch.nn.Module, got {type(model).__name__}")
    graph = ir.Graph(meta={"frontend": "torch", "model": type(model).__name__})
    ctx = _Ctx(graph)
    graph.add(ir.Input("input", (), shape=tuple(int(s) for s in input_shape)))
    try:
        traced = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError ...)
        if isinstance(model, nn.Sequential):
            last = _walk(ctx, model, "", "input")
            graph.add(ir.Output("output", (last,)))
            return graph
        raise UnsupportedOperator(
            f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}); write forward() without "
            "data-dependent control flow, or pass an nn.Sequential"
        ) from None
    env: dict[str, str] = {}
    for node in traced.nodes:
        # tensor inputs only: shape queries (x.size(0), x.shape) feed view/reshape arguments, not data
        ins = [env[a.name] for a in node.all_input_nodes if env.get(a.name, _SHAPE) is not _SHAPE]
        shape_only = bool(node.all_input_nodes) and all(env.get(a.name) is _SHAPE for a in node.all_input_nodes)
        if node.op == "call_method" and node.target in ("size", "dim") or (
                node.op == "call_function" and (node.target in (getattr, len) or shape_only)):
            env[node.name] = _SHAPE
            continue
        if node.op == "placeholder":
            if env:
                raise UnsupportedOperator(f"forward has several inputs ({node.name!r}); one input tensor is supported")
            env[node.name] = "input"
        elif node.op == "call_module":
            m = model.get_submodule(str(node.target))
            fn = _lowering(m)
            if fn is None:
                raise _unsupported(str(node.target), type(m).__name__)
            try:
                env[node.name] = fn(ctx, str(node.target), m, ins)
            except CompileError:
                raise
            except Exception as exc:
                raise CompileError(f"module {node.target!r} ({type(m).__name__}): {exc}") from None
        elif node.op == "call_function":
            ffn = FUNCTIONS.get(node.target)
            if ffn is None:
                raise _unsupported(node.name, f"function {getattr(node.target, '__name__', node.target)}")
            env[node.name] = _guard(ffn, ctx, node.name, node.args, ins)
        elif node.op == "call_method":
            mfn = METHODS.get(str(node.target))
            if mfn is None:
                raise _unsupported(node.name, f"method .{node.target}()")
            env[node.name] = _guard(mfn, ctx, node.name, node.args, ins)
        elif node.op == "output":
            if len(ins) != 1:
                raise UnsupportedOperator("forward must return exactly one tensor")
            graph.add(ir.Output("output", (ins[0],)))
        else:
            raise _unsupported(node.name, f"{node.op} {node.target}")
    return graph


def _guard(fn: FnLowering, ctx: _Ctx, where: str, args: tuple[Any, ...], ins: list[str]) -> str:
    """Run a function lowering; anything but a CompileError becomes one naming the node."""
    try:
        return fn(ctx, where, args, ins)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(f"{where!r}: cannot lower ({type(exc).__name__}: {exc})") from None


def _walk(ctx: _Ctx, seq: nn.Module, prefix: str, cur: str) -> str:
    for name, m in seq.named_children():
        path = f"{prefix}{name}"
        if isinstance(m, nn.Sequential):
            cur = _walk(ctx, m, path + ".", cur)
            continue
        fn = _lowering(m)
        if fn is None:
            raise _unsupported(path, type(m).__name__)
        cur = fn(ctx, path, m, [cur])
    return cur


def infer_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-sample input shape when the first weight layer is a Linear (else None)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return (int(m.in_features),)
        if isinstance(m, nn.Conv2d):
            return None
    return None


# ------------------------------------------------------------------------------- files
def load_model(path: str | Path, model_class: str | None = None) -> nn.Module:
    """Load a trained model for the CLI: a state dict file ``path`` (``torch.save(model.state_dict())``)
    for ``model_class`` given as ``"package.module:Class"``, built without arguments.

    The state dict is read with ``weights_only=True``: no pickled code runs. ``torch.export`` and
    TorchScript files need no class: :mod:`compiler.frontends.saved` reads them.
    """
    p = Path(path)
    if not p.is_file():
        raise CompileError(f"model file {p} does not exist")
    if not model_class:
        raise UnsupportedOperator(
            f"{p}: pass the model's class as --model-class package.module:Class and {p.name} as its state dict "
            "(torch.save(model.state_dict(), path)), or save the whole model with torch.export.save / torch.jit.save"
        )
    mod_name, _, cls_name = model_class.partition(":")
    if not mod_name or not cls_name:
        raise CompileError(f"--model-class {model_class!r}: expected 'package.module:Class'")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise CompileError(f"--model-class {model_class!r}: cannot import ({exc})") from None
    model = cls()
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CompileError(f"{p}: not a readable state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompileError(f"state dict {p} does not match {model_class}: {exc}") from None
    return model.eval()

"""TorchScript frontend: a ``torch.jit.load``-ed module (scripted or traced) → a layer graph.

The module's ``forward`` graph is interpreted node by node: ``prim::GetAttr`` finds submodules (their
path is the attribute chain), ``prim::CallMethod[name="forward"]`` calls them. A submodule whose class
the torch frontend lowers (Linear, Conv2d, AvgPool2d, BatchNorm1d/2d, Flatten, Dropout, Identity,
ReLU) is rebuilt from its tensors and hyper-parameters — attributes of a scripted module, operator
arguments in a traced module's graph — and lowered by :data:`compiler.frontends.torch.LOWERINGS`;
one holding the ``spikeforge_hparams`` buffer is a ``compiler.nn`` neuron. Containers and the user's
own modules are interpreted recursively. Free operators: ``aten::add`` (two tensors), ``relu``,
``flatten``, ``view``/``reshape``, ``dropout``, ``contiguous``, and shape arithmetic (``size``,
``ListConstruct`` …) feeding them. Control flow (``prim::If``, ``prim::Loop``) and any other operator
raise :class:`UnsupportedOperator`.

``compiler.nn`` neurons cannot be scripted (their surrogate gradient is a Python autograd
function); trace them: ``torch.jit.trace(model, x, check_trace=False)`` (the state makes the trace
check fail). The per-sample input shape comes from a first Linear, else pass ``input_shape``.
"""

from __future__ import annotations

import operator
import re
from typing import Any

import torch
from torch.nn import functional as F

from spikeforge.errors import CompileError, UnsupportedOperator

from .. import ir
from ..neurons import HPARAMS_BUFFER
from .rebuild import Kind, classify, demangle, lowering, rebuild
from .torch import FUNCTIONS, FnLowering, _Ctx, _guard, _unsupported

__all__ = ["from_script"]

#: aten operator → the torch frontend's function lowering
ATEN: dict[str, FnLowering] = {
    "aten::add": FUNCTIONS[operator.add], "aten::add_": FUNCTIONS[operator.add],
    "aten::relu": FUNCTIONS[torch.relu], "aten::relu_": FUNCTIONS[torch.relu],
    "aten::flatten": FUNCTIONS[torch.flatten], "aten::view": FUNCTIONS[torch.flatten],
    "aten::reshape": FUNCTIONS[torch.flatten],
    "aten::dropout": FUNCTIONS[F.dropout], "aten::contiguous": FUNCTIONS[F.dropout],
    "aten::detach": FUNCTIONS[F.dropout], "aten::clone": FUNCTIONS[F.dropout],
}
#: operators that read a tensor's shape (their result is not data)
_SHAPE_OPS = ("aten::size", "aten::dim", "aten::len", "aten::numel", "prim::shape")
#: constructor argument names of each module, read as attributes (scripted) or from the traced graph
_ARGS = {
    "Conv2d": ("stride", "padding", "dilation", "groups", "padding_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode"),
    "BatchNorm1d": ("eps",), "BatchNorm2d": ("eps",),
}
_TRACED_OPS = {"Conv2d": ("aten::_convolution", "aten::conv2d"), "AvgPool2d": ("aten::avg_pool2d",),
               "BatchNorm1d": ("aten::batch_norm",), "BatchNorm2d": ("aten::batch_norm",)}

# env values: ("data", ir name) | ("module", module, path) | ("value", python value) | ("shape",)
Entry = tuple[Any, ...]


def _const(value: Any) -> Any:
    """The Python value of a constant (or a list of constants) in a TorchScript graph, else None."""
    node = value.node()
    if node.kind() == "prim::Constant":
        return value.toIValue()
    if node.kind() == "prim::ListConstruct":
        return [_const(v) for v in node.inputs()]
    return None


def _traced_args(graph: Any, cls_name: str) -> dict[str, Any]:
    """A traced module's hyper-parameters, from the arguments of its operator in ``graph``."""
    kinds = [n.kind() for n in graph.nodes()]
    if cls_name == "Conv2d" and any("pad" in k for k in kinds):
        return {"padding_mode": "not zeros"}
    for node in graph.nodes():
        if node.kind() in _TRACED_OPS.get(cls_name, ()):
            schema = torch._C.parse_schema(node.schema())
            return {a.name: _const(v) for a, v in zip(schema.arguments, node.inputs(), strict=False)}
    raise CompileError(f"{cls_name}: none of the operators {_TRACED_OPS.get(cls_name)} in its TorchScript graph")


def _module_args(module: Any, cls_name: str, graph: Any) -> dict[str, Any]:
    names = _ARGS.get(cls_name, ())
    if not names:
        return {}
    if all(hasattr(module, n) for n in names):
        return {n: getattr(module, n) for n in names}
    return _traced_args(graph, cls_name)


def _tensor(module: Any, name: str) -> torch.Tensor | None:
    t = getattr(module, name, None)
    return t if isinstance(t, torch.Tensor) else None


class _Script:
    """Interprets a TorchScript module's forward graphs (see the module doc)."""

    def __init__(self, module: Any) -> None:
        self.graph = ir.Graph(meta={"frontend": "torchscript", "model": str(getattr(module, "original_name", ""))})
        self.ctx = _Ctx(self.graph)

    def call(self, module: Any, path: str, args: list[Entry], method: str = "forward") -> Entry:
        """Call ``module.<method>`` (``forward``) with ``args``: lower it, or interpret its graph."""
        qualname = demangle(module._c._type().qualified_name())
        has_hp = HPARAMS_BUFFER in dict(module.named_buffers(recurse=False))
        kind = classify(path, qualname, has_hp)
        if kind[0] in ("lower", "neuron"):
            return self._lower(module, path, kind, args, getattr(module, method).graph)
        return self._interpret(module, path, args, getattr(module, method).graph)

    def _lower(self, module: Any, path: str, kind: Kind, args: list[Entry], graph: Any) -> Entry:
        ins = [a[1] for a in args if a[0] == "data"]
        cls_name = kind[1].__name__ if kind[1] is not None else "neuron"
        if not ins and list(graph.outputs())[0].type().kind() != "TensorType":
            return ("value", None)  # a traced Identity: called without arguments, returns None
        if len(ins) != 1:
            raise UnsupportedOperator(f"module {path!r} ({cls_name}): called with {len(ins)} tensors; one is "
                                      "supported")
        params = _module_args(module, cls_name, graph) if kind[0] == "lower" else {}
        rebuilt = rebuild(path, kind, lambda n: _tensor(module, n), params)
        try:
            return ("data", lowering(rebuilt)(self.ctx, path, rebuilt, ins))
        except CompileError:
            raise
        except Exception as exc:
            raise CompileError(f"module {path!r} ({type(rebuilt).__name__}): {exc}") from None

    def _interpret(self, module: Any, path: str, args: list[Entry], graph: Any) -> Entry:
        inputs = list(graph.inputs())
        if len(inputs) - 1 != len(args):
            raise UnsupportedOperator(f"module {path or 'model'!r}: forward takes {len(inputs) - 1} inputs, "
                                      f"called with {len(args)}; one input tensor is supported")
        env: dict[str, Entry] = {inputs[0].debugName(): ("module", module, path)}
        env.update({v.debugName(): a for v, a in zip(inputs[1:], args, strict=True)})
        for node in graph.nodes():
            outs = list(node.outputs())
            entry = self._node(node, env, path)
            if outs:
                env[outs[0].debugName()] = entry
        (ret,) = list(graph.outputs())
        return env[ret.debugName()]

    def _node(self, node: Any, env: dict[str, Entry], path: str) -> Entry:
        kind = node.kind()
        ins = [env.get(v.debugName(), ("shape",)) for v in node.inputs()]
        if kind == "prim::Constant":
            return ("value", _const(node.output()))
        if kind == "prim::GetAttr":
            return self._getattr(node, ins[0])
        if kind == "prim::CallMethod":
            method = node.s("name")
            if not re.fullmatch(r"forward\d*", method) or ins[0][0] != "module":  # traced re-calls: forward1 ...
                raise _unsupported(path or "model", f"TorchScript call of method {method!r}")
            return self.call(ins[0][1], ins[0][2], ins[1:], method)
        data = [e[1] for e in ins if e[0] == "data"]
        fn = ATEN.get(kind)
        if fn is not None and data:
            if kind.startswith("aten::add") and (len(set(data)) != 2 or ins[2][0] != "value" or ins[2][1] != 1):
                raise UnsupportedOperator(f"{path or 'model'!r}: only the sum of two tensors (a residual) is "
                                          "supported")
            name = kind.partition("::")[2].rstrip("_")
            return ("data", _guard(fn, self.ctx, name, (), data))
        if kind in _SHAPE_OPS or not data:  # shape arithmetic (ListConstruct, Int, mul of ints ...)
            return ("shape",)
        where = f"{path!r}" if path else "the model's forward"
        raise _unsupported(f"{where}: {kind}", f"TorchScript operator {kind}")

    def _getattr(self, node: Any, parent: Entry) -> Entry:
        if parent[0] != "module":
            return ("shape",)
        name = node.s("name")
        child = getattr(parent[1], name)
        if isinstance(child, torch.jit.ScriptModule):
            return ("module", child, f"{parent[2]}.{name}" if parent[2] else name)
        return ("value", child)


def infer_input_shape(module: Any) -> tuple[int, ...] | None:
    """The per-sample input shape when the first weight layer is a Linear (else None)."""
    for m in module.modules():
        name = getattr(m, "original_name", "")
        if name == "Linear" and isinstance(_tensor(m, "weight"), torch.Tensor):
            w = _tensor(m, "weight")
            assert w is not None
            return (int(w.shape[1]),)
        if name == "Conv2d":
            return None
    return None


def from_script(module: Any, input_shape: tuple[int, ...] | None = None) -> ir.Graph:
    """Capture a TorchScript module (``torch.jit.load``, ``torch.jit.script``/``trace``) as a layer graph."""
    if not isinstance(module, torch.jit.ScriptModule):
        raise CompileError(f"expected a TorchScript module, got {type(module).__name__}")
    shape = input_shape if input_shape is not None else infer_input_shape(module)
    if shape is None:
        raise CompileError("cannot infer the input shape of the TorchScript model (the first layer is not a "
                           "Linear); pass input_shape=(C, H, W) (CLI: --input-shape)")
    s = _Script(module)
    s.graph.add(ir.Input("input", (), shape=tuple(int(d) for d in shape)))
    out = s.call(module, "", [("data", "input")])
    if out[0] != "data":
        raise UnsupportedOperator("forward must return exactly one tensor")
    s.graph.add(ir.Output("output", (out[1],)))
    return s.graph

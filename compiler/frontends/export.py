"""``torch.export`` frontend: an ``ExportedProgram`` (``torch.export.load("model.pt2")``) → a layer graph.

An exported program is a flat graph of aten operators; every operator node records the chain of
modules it ran in (``node.meta["nn_module_stack"]``: path → (path, qualified class name)) and the
parameters and buffers are in ``ep.state_dict`` / ``ep.constants`` under their module paths. So:

* the operators of one call of a module the torch frontend lowers (the outermost such module in the
  chain: Linear, Conv2d, AvgPool2d, BatchNorm1d/2d, Flatten, Dropout, Identity, ReLU) form a group;
  the module is rebuilt from its tensors and the group's main operator arguments (stride, eps ...)
  and lowered by :data:`compiler.frontends.torch.LOWERINGS` — the same IR nodes, with the same names,
  as the fx frontend makes for the in-memory module;
* a module holding the ``spikeforge_hparams`` buffer is a ``compiler.nn`` neuron (LIF, CubaLIF, IF),
  rebuilt from that record (tau, threshold, dt, datapath survive the export);
* containers and the user's own modules are transparent; their free operators (``x + y``, ``relu``,
  ``flatten``, ``view``/``reshape``, ``dropout``) go to :data:`compiler.frontends.torch.FUNCTIONS`;
* any other ``torch.nn`` module or operator raises :class:`UnsupportedOperator` naming it.

Both the default (training IR: ``aten.linear``, ``aten.conv2d`` …) and decomposed programs
(``ep.run_decompositions()``: ``addmm``, ``convolution`` …) are read, since modules are recognised by
their path, not by their operators. The per-sample input shape is the example input's shape.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
from torch.nn import functional as F

from spikeforge.errors import CompileError, UnsupportedOperator

from .. import ir
from ..neurons import HPARAMS_BUFFER
from .rebuild import Kind, classify, lowering, rebuild
from .torch import FUNCTIONS, FnLowering, _Ctx, _guard, _unsupported

__all__ = ["from_exported"]

_PARAM = "<param>"  # env marker: a parameter, buffer, constant or shape value (not data)

#: aten operator (overload packet name) outside a lowered module → the torch frontend's function lowering
ATEN: dict[str, FnLowering] = {
    "add": FUNCTIONS[operator.add], "add_": FUNCTIONS[operator.add],
    "relu": FUNCTIONS[torch.relu], "relu_": FUNCTIONS[torch.relu],
    "flatten": FUNCTIONS[torch.flatten], "view": FUNCTIONS[torch.flatten], "reshape": FUNCTIONS[torch.flatten],
    "_unsafe_view": FUNCTIONS[torch.flatten],
    "dropout": FUNCTIONS[F.dropout], "clone": FUNCTIONS[F.dropout], "contiguous": FUNCTIONS[F.dropout],
    "alias": FUNCTIONS[F.dropout], "detach": FUNCTIONS[F.dropout],
}
#: the operator whose arguments hold a module's hyper-parameters
_MAIN_OPS = {
    "Conv2d": ("conv2d", "convolution", "_convolution"),
    "AvgPool2d": ("avg_pool2d",),
    "BatchNorm1d": ("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
                    "_native_batch_norm_legit_functional", "native_batch_norm"),
}
_MAIN_OPS["BatchNorm2d"] = _MAIN_OPS["BatchNorm1d"]
_SHAPE_OPS = ("sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "size", "dim", "numel")
_PAD_OPS = ("pad", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "_pad_circular")


def _op_name(target: Any) -> str:
    """``aten.add.Tensor`` → ``"add"``; Python callables → their name."""
    packet = getattr(target, "overloadpacket", None)
    return str(getattr(packet, "__name__", None) or getattr(target, "__name__", target))


def op_args(node: fx.Node) -> dict[str, Any]:
    """An aten call's arguments by schema name, defaults filled in."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


class _Exported:
    """One pass over an exported graph (see the module doc)."""

    def __init__(self, ep: Any, input_shape: tuple[int, ...] | None) -> None:
        self.ep = ep
        self.tensors = {k: v for k, v in {**ep.state_dict, **ep.constants}.items() if isinstance(v, torch.Tensor)}
        sig = ep.graph_signature
        self.user_inputs = set(sig.user_inputs)
        self.fqns = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
        self.input_shape = input_shape
        self.env: dict[str, str] = {}
        self.groups: dict[str, list[fx.Node]] = {}
        self.owner: dict[str, tuple[str, str, Kind]] = {}  # node → (group key, module path, kind)
        self.state_of: dict[str, str] = {}  # placeholder of a neuron's saved state (u, v, _prev) → neuron path
        self.lowered: dict[str, str] = {}  # module path → its IR node (the latest call)
        self.graph = ir.Graph(meta={"frontend": "torch.export", "model": _root_class(ep)})
        self.ctx = _Ctx(self.graph)

    # ---------------------------------------------------------------------- grouping
    def _has(self, path: str, name: str) -> bool:
        return (f"{path}.{name}" if path else name) in self.tensors

    def _owner(self, node: fx.Node) -> tuple[str, str, Kind] | None:
        """The outermost lowered module (or neuron) ``node`` runs in, else None."""
        for key, (path, qualname) in (node.meta.get("nn_module_stack") or {}).items():
            kind = classify(path, str(qualname), self._has(path, HPARAMS_BUFFER))
            if kind[0] in ("lower", "neuron"):
                return key, path, kind
        return None

    def _group(self) -> None:
        for node in self.ep.graph.nodes:
            if node.op != "call_function":
                continue
            own = self._owner(node)
            if own is not None:
                self.owner[node.name] = own
                self.groups.setdefault(own[0], []).append(node)

    # ---------------------------------------------------------------------- lowering
    def run(self) -> ir.Graph:
        self._group()
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "get_attr":
                self.env[node.name] = _PARAM
            elif node.op == "output":
                self._output(node)
            elif node.name in self.owner:
                key = self.owner[node.name][0]
                if self.groups[key][-1] is node:
                    self._module(*self.owner[node.name], self.groups[key])
            else:
                self._function(node)
        return self.graph

    def _data(self, nodes: list[fx.Node], where: str) -> list[str]:
        ins: list[str] = []
        for a in nodes:
            if a.name not in self.env:
                raise CompileError(f"{where!r}: reads {a.name!r} before it is computed; the exported graph "
                                   "interleaves two module calls (not supported)")
            name = self.env[a.name]
            if name is _PARAM and a.name in self.state_of:  # the neuron ran before export: its state was saved
                name = self._state(a.name, where)
            if name is not _PARAM and name not in ins:
                ins.append(name)
        return ins

    def _state(self, placeholder: str, where: str) -> str:
        """A read of a neuron's saved state (a loihi neuron outputs the spikes of its previous step) is a
        read of the neuron's output."""
        path = self.state_of[placeholder]
        if path not in self.lowered:
            raise CompileError(f"{where!r} reads the state of neuron {path!r} before the neuron runs")
        return self.lowered[path]

    def _placeholder(self, node: fx.Node) -> None:
        if node.name not in self.user_inputs:
            self.env[node.name] = _PARAM
            fqn = self.fqns.get(node.name, "")
            owner = fqn.rpartition(".")[0]
            if self._has(owner, HPARAMS_BUFFER) and not fqn.endswith(HPARAMS_BUFFER):
                self.state_of[node.name] = owner
            return
        if self.graph.nodes:
            raise UnsupportedOperator(f"the exported model has several inputs ({node.name!r}); one input tensor is "
                                      "supported")
        shape = self.input_shape
        if shape is None:
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor) or val.dim() < 2:
                raise CompileError(f"input {node.name!r}: export the model with an example input [batch, ...] or "
                                   "pass input_shape")
            shape = tuple(int(s) for s in val.shape[1:])
        self.graph.add(ir.Input("input", (), shape=tuple(int(s) for s in shape)))
        self.env[node.name] = "input"

    def _output(self, node: fx.Node) -> None:
        ins = self._data(node.all_input_nodes, "output")
        if len(ins) != 1:
            raise UnsupportedOperator("forward must return exactly one tensor")
        self.graph.add(ir.Output("output", (ins[0],)))

    def _module(self, key: str, path: str, kind: Kind, group: list[fx.Node]) -> None:
        names = {n.name for n in group}
        outside = [a for n in group for a in n.all_input_nodes
                   if a.name not in names and self.state_of.get(a.name) != path]
        ins = self._data(outside, path)
        cls_name = kind[1].__name__ if kind[1] is not None else "neuron"
        if not ins:
            raise CompileError(f"module {path!r} ({cls_name}): no tensor input")
        args = self._main_args(path, cls_name, group)
        module = rebuild(path, kind, lambda n: self.tensors.get(f"{path}.{n}" if path else n), args)
        fn = lowering(module)
        try:
            out = fn(self.ctx, path, module, ins)
        except CompileError:
            raise
        except Exception as exc:
            raise CompileError(f"module {path!r} ({type(module).__name__}): {exc}") from None
        outputs = [n for n in group if any(u.name not in names for u in n.users)]
        if len(outputs) > 1:
            raise UnsupportedOperator(f"module {path!r} ({cls_name}) returns {len(outputs)} tensors; one is supported")
        for n in group:
            self.env[n.name] = out
        self.lowered[path] = out

    def _main_args(self, path: str, cls_name: str, group: list[fx.Node]) -> dict[str, Any]:
        ops = _MAIN_OPS.get(cls_name, ())
        if cls_name == "Conv2d" and any(_op_name(n.target) in _PAD_OPS for n in group):
            raise UnsupportedOperator(f"module {path!r} (Conv2d): padding_mode other than 'zeros'; supported: "
                                      "dilation 1, integer zero padding")
        for n in group:
            if _op_name(n.target) in ops:
                return op_args(n)
        if ops:
            raise CompileError(f"module {path!r} ({cls_name}): none of the operators {ops} in the exported graph")
        return {}

    def _function(self, node: fx.Node) -> None:
        ins = self._data(node.all_input_nodes, node.name)
        name = _op_name(node.target)
        if not ins or not node.users or name in _SHAPE_OPS:
            self.env[node.name] = _PARAM  # shape queries and arithmetic, constants, assertions
            return
        fn = ATEN.get(name)
        if fn is None or (name.startswith("add") and op_args(node).get("alpha", 1) != 1):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            where = f" in module {stack[-1][0]!r} ({stack[-1][1]})" if stack and stack[-1][0] else ""
            raise _unsupported(node.name, f"operator {node.target}{where}")
        self.env[node.name] = _guard(fn, self.ctx, node.name, tuple(node.args), ins)


def _root_class(ep: Any) -> str:
    """The exported model's class name (from the module stack of its first operator)."""
    for node in ep.graph.nodes:
        for path, qualname in (node.meta.get("nn_module_stack") or {}).values():
            if not path:
                return str(qualname).rpartition(".")[2]
    return "ExportedProgram"


def from_exported(ep: Any, input_shape: tuple[int, ...] | None = None) -> ir.Graph:
    """Capture an ``ExportedProgram`` as a layer graph (``input_shape``: per sample, default the
    example input's)."""
    if not isinstance(ep, torch.export.ExportedProgram):
        raise CompileError(f"expected a torch.export.ExportedProgram, got {type(ep).__name__}")
    return _Exported(ep, input_shape).run()

"""Rebuild the ``torch.nn`` module a saved model (``torch.export`` / TorchScript) was made of.

A saved model keeps each module's class name, its tensors and — depending on the format — its
hyper-parameters as attributes or as arguments of the operator it called. :func:`classify` names
what a module path is (a module the torch frontend lowers, a spiking neuron, a container, something
unsupported); :func:`rebuild` makes a real ``torch.nn`` module from the saved pieces so that the
torch frontend's own lowerings (:data:`compiler.frontends.torch.LOWERINGS`) lower it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import skip_init

from spikeforge.errors import CompileError

from ..neurons import HPARAMS_BUFFER, from_hparams
from .torch import LOWERINGS, Lowering, _lowering, _unsupported

__all__ = ["Kind", "classify", "rebuild", "demangle"]

#: torch.nn classes that only group other modules: their contents are lowered, not the container
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: what a module is: ("lower", its class) | ("neuron", None) | ("container", None) | ("user", None)
Kind = tuple[str, "type | None"]
#: a tensor of the module by attribute name (``"weight"``, ``"running_mean"`` ...), or None
Tensors = Callable[[str], "torch.Tensor | None"]


def demangle(qualname: str) -> str:
    """A TorchScript type name (``__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear``) → the Python
    qualified class name (``torch.nn.modules.linear.Linear``)."""
    name = qualname.removeprefix("__torch__.")
    return re.sub(r"\.___torch_mangle_\d+", "", name)


def _torch_class(qualname: str) -> type | None:
    """The ``torch.nn`` class of a qualified name; other names are never imported (no user code runs)."""
    if not qualname.startswith("torch.nn."):
        return None
    mod_name, _, cls_name = qualname.rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) else None


def classify(path: str, qualname: str, has_hparams: bool) -> Kind:
    """What the module at ``path`` of class ``qualname`` is; raises :class:`UnsupportedOperator` for a
    ``torch.nn`` module the torch frontend does not lower (a user's own module is a container)."""
    if has_hparams:
        return ("neuron", None)
    if qualname.startswith("compiler.neurons."):
        raise CompileError(f"module {path!r} ({qualname}) was saved without its hyper-parameters (buffer "
                           f"{HPARAMS_BUFFER!r}): export it again with this version of spikeforge")
    cls = _torch_class(qualname)
    if cls is None:
        return ("user", None)
    if issubclass(cls, CONTAINERS):
        return ("container", None)
    fn = _lowering_of(cls)
    if fn is None:
        raise _unsupported(path, cls.__name__)
    return ("lower", cls)


def _lowering_of(cls: type) -> Lowering | None:
    for t, fn in LOWERINGS.items():
        if issubclass(cls, t):
            return fn
    return None


def lowering(module: nn.Module) -> Lowering:
    """The torch frontend's lowering of a rebuilt module."""
    fn = _lowering(module)
    assert fn is not None
    return fn


def rebuild(path: str, kind: Kind, tensors: Tensors, args: Mapping[str, Any]) -> nn.Module:
    """A ``torch.nn`` module equal to the saved one (``args``: its hyper-parameters by constructor name).

    No initialisation runs (the global random state is untouched)."""
    what, cls = kind
    if what == "neuron":
        record = tensors(HPARAMS_BUFFER)
        if record is None:
            raise CompileError(f"module {path!r}: spiking neuron without its {HPARAMS_BUFFER!r} buffer")
        try:
            return from_hparams(record)
        except ValueError as exc:
            raise CompileError(f"module {path!r}: {exc}") from None
    assert cls is not None
    try:
        return _build(cls, tensors, args)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(f"module {path!r} ({cls.__name__}): cannot rebuild it from the saved model "
                           f"({type(exc).__name__}: {exc})") from None


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=False)


def _need(tensors: Tensors, name: str) -> torch.Tensor:
    t = tensors(name)
    if t is None:
        raise CompileError(f"the saved model has no tensor {name!r}")
    return t


def _build(cls: type, tensors: Tensors, args: Mapping[str, Any]) -> nn.Module:
    if issubclass(cls, nn.Linear):
        w = _need(tensors, "weight")
        lin = skip_init(nn.Linear, int(w.shape[1]), int(w.shape[0]), bias=False)
        lin.weight, lin.bias = _param(w), _param(tensors("bias"))
        return lin
    if issubclass(cls, nn.Conv2d):
        w = _need(tensors, "weight")
        groups = int(args.get("groups", 1))
        conv = skip_init(nn.Conv2d, int(w.shape[1]) * groups, int(w.shape[0]), tuple(w.shape[2:]), bias=False,
                         stride=_tup(args.get("stride", 1)), padding=_padding(args.get("padding", 0)),
                         dilation=_tup(args.get("dilation", 1)), groups=groups,
                         padding_mode=str(args.get("padding_mode", "zeros")))
        conv.weight, conv.bias = _param(w), _param(tensors("bias"))
        return conv
    if issubclass(cls, nn.AvgPool2d):
        kernel = _tup(args["kernel_size"])
        stride = args.get("stride")
        return nn.AvgPool2d(kernel, _tup(stride) if stride else kernel, padding=_tup(args.get("padding", 0)),
                            ceil_mode=bool(args.get("ceil_mode", False)))
    if issubclass(cls, nn.modules.batchnorm._BatchNorm):
        mean = _need(tensors, "running_mean")
        bn = skip_init(cls, int(mean.numel()), eps=float(args.get("eps", 1e-5)), affine=False)
        bn.weight, bn.bias = _param(tensors("weight")), _param(tensors("bias"))
        bn.running_mean, bn.running_var = mean.detach().clone(), _need(tensors, "running_var").detach().clone()
        return bn
    module = cls()
    if not isinstance(module, nn.Module):  # pragma: no cover - classify only passes torch.nn classes
        raise CompileError(f"{cls.__name__} is not a torch.nn.Module")
    return module


def _tup(v: Any) -> Any:
    """An int or a list of ints (a 1-element list repeated) as the constructor takes it."""
    if isinstance(v, (list, tuple)):
        return (int(v[0]),) * 2 if len(v) == 1 else tuple(int(x) for x in v)
    return int(v)


def _padding(v: Any) -> Any:
    return v if isinstance(v, str) else _tup(v)


"""Saved models: tell a ``torch.export`` archive, a TorchScript file and a state dict apart, load them.

Dispatch is by content, not by suffix: all three are zip archives written by torch, told apart by
their members (``<name>/archive_format`` or ``<name>/models/*.json``: ``torch.export.save``;
``<name>/code/__torch__/…`` or ``<name>/constants.pkl``: ``torch.jit.save``; ``<name>/data.pkl``
alone: ``torch.save``, a state dict). A state dict holds weights but not the model's structure: it
needs the model's class (:func:`compiler.frontends.torch.load_model`, CLI ``--model-class``). Any
other file, or an archive torch cannot read, raises :class:`CompileError` naming the file and what
was expected.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

from spikeforge.errors import CompileError

from .. import ir

__all__ = ["detect", "load", "from_file", "from_saved", "is_saved", "EXPECTED"]

EXPECTED = ("a torch.export archive (torch.export.save, .pt2), a TorchScript file (torch.jit.save) or a state "
            "dict (torch.save(model.state_dict()), with the model's class)")

#: kinds of model file
EXPORT, TORCHSCRIPT, STATE_DICT = "torch.export", "TorchScript", "state dict"


def _members(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CompileError(f"{p}: a corrupt zip archive ({exc}); expected {EXPECTED}") from None


def detect(path: str | Path) -> str:
    """``"torch.export"``, ``"TorchScript"`` or ``"state dict"``: what the file ``path`` holds."""
    p = Path(path)
    if not p.is_file():
        raise CompileError(f"model file {p} does not exist")
    if zipfile.is_zipfile(p):
        names = _members(p)
        if any(n.endswith("/archive_format") or "/models/" in n and n.endswith(".json") for n in names):
            return EXPORT
        if any("/code/__torch__" in n or n.endswith("/constants.pkl") for n in names):
            return TORCHSCRIPT
        if any(n.endswith("/data.pkl") for n in names):
            return STATE_DICT
        raise CompileError(f"{p}: a zip archive that torch did not write (members {names[:3]} ...); expected "
                           f"{EXPECTED}")
    with p.open("rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return STATE_DICT
    raise CompileError(f"{p}: not a model file (neither a zip archive nor a pickle); expected {EXPECTED}")


def load(path: str | Path) -> Any:
    """The ``ExportedProgram`` or TorchScript module saved in ``path``; a state dict raises
    :class:`CompileError` asking for the model's class."""
    p = Path(path)
    kind = detect(p)
    if kind == STATE_DICT:
        raise CompileError(f"{p} is a state dict: it holds the weights but not the model's structure. Pass the "
                           "model's class (CLI: --model-class package.module:Class; Python: build the model, "
                           "load_state_dict, compile the module), or save the model with torch.export.save / "
                           "torch.jit.save")
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notes from inside torch's deserialisers
            if kind == EXPORT:
                return torch.export.load(str(p))
            return torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:  # torch raises many types for a damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompileError(f"{p}: a {kind} file torch cannot read ({type(exc).__name__}: {first[:200]}); "
                           f"expected {EXPECTED}") from None


def is_saved(model: Any) -> bool:
    """``model`` is an ``ExportedProgram`` or a TorchScript module (compiled by :func:`from_saved`)."""
    import torch

    return isinstance(model, (torch.export.ExportedProgram, torch.jit.ScriptModule))


def from_saved(model: Any, input_shape: tuple[int, ...] | None = None) -> ir.Graph:
    """An ``ExportedProgram`` or a TorchScript module → a layer graph."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        from .export import from_exported

        return from_exported(model, input_shape)
    from .torchscript import from_script

    return from_script(model, input_shape)


def from_file(path: str | Path, input_shape: tuple[int, ...] | None = None) -> ir.Graph:
    """A ``torch.export`` or TorchScript file → a layer graph (see the module doc)."""
    return from_saved(load(path), input_shape)

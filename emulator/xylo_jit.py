"""The compiled Xylo kernel lives with its family: :mod:`emulator.families.xylo.kernel`."""

from __future__ import annotations

from .families.xylo.kernel import load

__all__ = ["load"]

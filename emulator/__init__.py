"""Bit-accurate emulation of spikeforge Programs.

``Program`` is the artefact; ``ProgramBuilder`` makes one from register values; ``run`` and
``Simulator`` execute one with the ``reference`` engine (the living definition) or the
``fast`` engine (vectorised, batched; bit-identical).
"""

from .builder import Node, ProgramBuilder
from .engine import ENGINES, Simulator, Trace, run
from .program import Population, Program, Projection

__all__ = ["Program", "ProgramBuilder", "Population", "Projection", "Node", "Simulator", "Trace", "run", "ENGINES"]

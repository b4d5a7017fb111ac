"""Bit-accurate emulation of spikeforge Programs.

``Program`` is the artefact; ``ProgramBuilder`` makes one from register values; ``run`` and
``Simulator`` execute one with the ``reference`` engine (the living definition) or the
``fast`` engine (vectorised, batched; bit-identical). ``emulator.learning`` holds on-chip learning:
``LearningRule`` (a rule with its trace parameters) and the ready-made rules of ``emulator.learning.stdp``.
"""

from . import learning
from .builder import Node, ProgramBuilder
from .engine import ENGINES, Simulator, Trace, run
from .program import Population, Program, Projection

__all__ = ["learning", "Program", "ProgramBuilder", "Population", "Projection", "Node", "Simulator", "Trace", "run",
           "ENGINES"]

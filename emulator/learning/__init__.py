"""On-chip learning: sum-of-products plasticity rules, compiled for a target and emulated bit-exactly.

>>> b = emulator.ProgramBuilder("loihi")                                              # doctest: +SKIP
>>> b.connect(x, l1, weights=W, name="p1", plasticity="dw = 2^-2*x1*y0 - 2^-2*y1*x0")  # doctest: +SKIP
>>> trace = emulator.run(b.build(), spikes, probes=["p1.w"])   # [batch, time, post, pre]  # doctest: +SKIP

:mod:`.rules` is the rule language (parse, check, integer form, print back); :mod:`.plasticity` the
rule object with its trace parameters; a family's learning engine arithmetic is its ``learning``
module (``emulator/families/loihi/learning.py``); :mod:`.epoch` applies it per learning epoch
(the definition, Python integers) and :mod:`.vectorised` does the same over arrays for the fast
engine; :mod:`.stdp` holds ready-made rules. ``docs/learning.md`` is the user's guide.
"""

from __future__ import annotations

from .plasticity import PROBES, TRACES, LearningRule, Plasticity, as_rule, compile_plasticity, engine_of
from .rules import Equation, Factor, Product, RuleConfig, check, compile_rule, decode, format_rule, parse

__all__ = ["LearningRule", "Plasticity", "TRACES", "PROBES", "as_rule", "compile_plasticity", "engine_of",
           "Equation", "Factor", "Product", "RuleConfig", "parse", "check", "compile_rule", "decode", "format_rule"]

"""Compiler passes: each a function of a graph (and the spec) returning a new value.

``convert`` (ReLU → IF), ``lower`` (layers → populations), ``quantize`` (→ registers), ``rules``
(design rules), ``emit`` (→ ProgramBuilder → Program); ``partition`` and ``truenorth`` belong to
the partitioner.
"""

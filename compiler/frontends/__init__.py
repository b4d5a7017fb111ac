"""Frontends: each turns a source model into a layer :class:`compiler.ir.Graph`.

``torch`` (this issue) imports torch when used; ``onnx`` and ``nir`` are later issues.
"""

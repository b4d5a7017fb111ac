"""Frontends: each turns a source model into a layer :class:`compiler.ir.Graph`.

``torch`` (a ``torch.nn.Module``, fx) imports torch when used; ``saved`` reads ``torch.export`` archives
(``export``) and TorchScript files (``torchscript``), rebuilding their modules (``rebuild``) and lowering
them with ``torch``'s lowerings. There is no ``onnx`` or ``nir`` frontend: those paths raise
:class:`~spikeforge.errors.UnsupportedOperator`.
"""

"""The compiler's intermediate representation: a small vocabulary of frozen nodes in a graph.

Two levels share one vocabulary:

* the **layer graph** a frontend produces: ``Input``, ``Dense``, ``Conv2d``, ``Pool``,
  ``Flatten``, ``ReLU`` (analog, before conversion), ``Neuron``, ``Add``, ``Output``. Shapes are
  per sample, channels first (``(C, H, W)`` or ``(n,)``); weights are float ``[post, pre]``
  (``Dense``) or ``[out, in, kh, kw]`` (``Conv2d``), as in torch.
* the **population graph** :func:`compiler.passes.lower.lower` makes of it: ``Input``,
  ``Neuron`` (a population with a per-neuron ``bias``), ``Synapses`` (one projection
  ``pre → post`` as COO ``[post, pre]``), ``Output``. Quantisation turns its float values into
  chip registers (``Neuron.registers``, integer ``Synapses.values`` + ``Synapses.params``).

:func:`validate` checks a graph between passes; after ``quantize`` no float weight remains.
Nodes hold numpy arrays, so they compare by identity (``eq=False``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spikeforge.errors import CompileError

__all__ = [
    "Node", "Input", "Dense", "Conv2d", "Pool", "Flatten", "Affine", "ReLU", "Neuron", "Add", "Output", "Synapses",
    "Graph", "validate", "STAGES", "NEURON_KINDS",
]

#: neuron kinds of the IR: leaky (no synaptic current), current-based leaky, non-leaky integrate-and-fire
NEURON_KINDS = ("LIF", "CUBA", "IF")
#: the stages :func:`validate` knows, in pipeline order
STAGES = ("frontend", "spiking", "lowered", "quantized")


@dataclass(frozen=True, eq=False)
class Node:
    """A node: its unique ``name`` and the names of the nodes it reads (``inputs``)."""

    name: str
    inputs: tuple[str, ...]

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Per-sample output shape from the input shapes (elementwise nodes keep the shape)."""
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class Input(Node):
    """A host input port; ``shape`` per sample (``(n,)`` or ``(C, H, W)``); values are spike counts."""

    shape: tuple[int, ...] = ()

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return self.shape


@dataclass(frozen=True, eq=False)
class Dense(Node):
    """``y = W x + b``; ``weight`` float ``[out, in]``, ``bias`` ``[out]`` or None."""

    weight: NDArray[Any] = field(default_factory=lambda: np.zeros((0, 0)))
    bias: NDArray[Any] | None = None

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = in_shapes
        if len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise CompileError(f"layer {self.name!r}: Dense expects input ({self.weight.shape[1]},), got {shape}; "
                               "insert a Flatten before it")
        return (int(self.weight.shape[0]),)


@dataclass(frozen=True, eq=False)
class Conv2d(Node):
    """2-D cross-correlation (torch semantics); ``weight`` ``[out, in / groups, kh, kw]``."""

    weight: NDArray[Any] = field(default_factory=lambda: np.zeros((0, 0, 1, 1)))
    bias: NDArray[Any] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = in_shapes
        o, ci, kh, kw = self.weight.shape
        if len(shape) != 3 or shape[0] != ci * self.groups:
            raise CompileError(f"layer {self.name!r}: Conv2d expects input (C={ci * self.groups}, H, W), got {shape}")
        h = (shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        w = (shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if h < 1 or w < 1:
            raise CompileError(f"layer {self.name!r}: kernel {kh}x{kw} larger than the padded input {shape[1:]}")
        return (int(o), int(h), int(w))


@dataclass(frozen=True, eq=False)
class Pool(Node):
    """Pooling over ``kernel`` windows: ``mode`` ``"sum"`` (Σ window) or ``"avg"`` (Σ / kh·kw)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    mode: str = "avg"

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        (shape,) = in_shapes
        if len(shape) != 3:
            raise CompileError(f"layer {self.name!r}: pooling expects input (C, H, W), got {shape}")
        h = (shape[1] - self.kernel[0]) // self.stride[0] + 1
        w = (shape[2] - self.kernel[1]) // self.stride[1] + 1
        if h < 1 or w < 1:
            raise CompileError(f"layer {self.name!r}: pooling window {self.kernel} larger than input {shape[1:]}")
        return (shape[0], int(h), int(w))


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """``(C, H, W) → (C·H·W,)`` in row-major (torch) order."""

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return (int(np.prod(in_shapes[0])),)


@dataclass(frozen=True, eq=False)
class Affine(Node):
    """``y = scale · x + shift`` per channel (first axis) or scalar: scalings from conversion and
    BatchNorm that cannot be folded into a weight layer; lowering composes it into the weights."""

    scale: NDArray[Any] = field(default_factory=lambda: np.ones(1))
    shift: NDArray[Any] = field(default_factory=lambda: np.zeros(1))


@dataclass(frozen=True, eq=False)
class ReLU(Node):
    """An analog rectifier (ANN); :func:`compiler.passes.convert.convert` turns it into an IF ``Neuron``."""


@dataclass(frozen=True, eq=False)
class Neuron(Node):
    """Spiking neurons, elementwise over the input shape (layer graph) or a population (lowered).

    ``kind``: ``LIF`` (membrane decay ``tau_mem``, input current is instantaneous), ``CUBA``
    (current decay ``tau_syn`` then membrane decay ``tau_mem``), ``IF`` (no decay). Time constants
    in seconds (None = no decay); ``threshold`` in the same units as the weights. ``datapath``
    names the family whose semantics the model was trained with (None: unknown).
    Lowered: ``size`` neurons, float ``bias`` ``[size]`` added to the membrane each step;
    quantised: ``registers`` of the target family (int64 ``[size]`` each).
    """

    kind: str = "IF"
    threshold: float = 1.0
    tau_mem: float | None = None
    tau_syn: float | None = None
    datapath: str | None = None
    readout: bool = False
    size: int = 0
    bias: NDArray[Any] | None = None
    registers: Mapping[str, NDArray[np.int64]] = field(default_factory=lambda: MappingProxyType({}))
    scale: float = 1.0  # quantised: integer state = float state × scale


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Elementwise sum of its inputs (residual connections); all inputs have one shape."""

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        if any(s != in_shapes[0] for s in in_shapes):
            raise CompileError(f"layer {self.name!r}: Add of different shapes {in_shapes}")
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class Output(Node):
    """An output port: the spikes of the node it reads."""


@dataclass(frozen=True, eq=False)
class Synapses(Node):
    """A projection ``inputs[0] → post``: COO ``[post, pre]`` (``post_idx``, ``pre_idx``, ``values``).

    Indices are int32 or int64 (lowering makes int32 unless a population has 2^31 neurons or more).
    Float ``values`` before quantisation; afterwards the chip's integer weights, with ``params``
    (Loihi ``weight_exp``, ``num_weight_bits``; Xylo ``weight_shift``, ``synapse``) and
    ``delay`` in steps. ``source`` names the layers it was composed from (for messages).
    """

    post: str = ""
    shape: tuple[int, int] = (0, 0)
    post_idx: NDArray[np.signedinteger[Any]] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pre_idx: NDArray[np.signedinteger[Any]] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    values: NDArray[Any] = field(default_factory=lambda: np.zeros(0))
    params: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    delay: int | None = None
    source: tuple[str, ...] = ()
    axon_types: NDArray[np.int64] | None = None  # TrueNorth: type of every pre unit's axon ([pre])

    def effective(self, type_weights: NDArray[np.int64] | None = None) -> NDArray[Any]:
        """The weight each synapse adds: ``values``, or on TrueNorth ``bit · s_post[G_pre]``."""
        if self.axon_types is None or type_weights is None:
            return self.values
        return self.values * type_weights[self.post_idx, self.axon_types[self.pre_idx]]

    def dense(self) -> NDArray[Any]:
        """The weights as a dense ``[post, pre]`` array (small projections and tests only)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        out[self.post_idx, self.pre_idx] = self.values
        return out


class Graph:
    """An ordered set of nodes (insertion order is a topological order) with per-sample shapes.

    >>> g = Graph(); _ = g.add(Input("x", (), shape=(4,)))
    >>> g.shape("x")
    (4,)
    """

    def __init__(self, nodes: list[Node] | None = None, meta: Mapping[str, Any] | None = None) -> None:
        self.nodes: dict[str, Node] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.meta: dict[str, Any] = dict(meta or {})
        for n in nodes or []:
            self.add(n)

    def add(self, node: Node) -> Node:
        """Append ``node`` (its inputs must exist) and infer its shape."""
        if not node.name or node.name in self.nodes:
            raise CompileError(f"IR: node name {node.name!r} is empty or used twice")
        missing = [i for i in node.inputs if i not in self.nodes]
        if missing:
            raise CompileError(f"IR: node {node.name!r} reads unknown node(s) {missing}")
        self.nodes[node.name] = node
        if isinstance(node, Neuron) and node.size:
            self.shapes[node.name] = (node.size,)
        elif isinstance(node, Synapses):
            self.shapes[node.name] = (node.shape[0],)
        else:
            self.shapes[node.name] = node.out_shape([self.shapes[i] for i in node.inputs])
        return node

    def replace(self, node: Node) -> None:
        """Swap the node of the same name (same inputs order is kept by the caller)."""
        if node.name not in self.nodes:
            raise CompileError(f"IR: no node {node.name!r} to replace")
        self.nodes[node.name] = node

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def size(self, name: str) -> int:
        return int(np.prod(self.shapes[name]))

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes.values()))

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def users(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def of_type(self, kind: type[Node]) -> list[Any]:
        return [n for n in self.nodes.values() if isinstance(n, kind)]

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` with an edge for every input (passes may use graph algorithms)."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes.values():
            g.add_node(n.name, node=n)
            for i in n.inputs:
                g.add_edge(i, n.name)
        return g

    def copy(self) -> Graph:
        return Graph(list(self.nodes.values()), self.meta)


_ALLOWED = {
    "frontend": (Input, Dense, Conv2d, Pool, Flatten, Affine, ReLU, Neuron, Add, Output),
    "spiking": (Input, Dense, Conv2d, Pool, Flatten, Affine, Neuron, Add, Output),
    "lowered": (Input, Neuron, Synapses, Output),
    "quantized": (Input, Neuron, Synapses, Output),
}


def validate(graph: Graph, stage: str) -> Graph:
    """Check ``graph`` is well formed for ``stage`` (one of :data:`STAGES`); return it.

    Every stage: unique names, inputs exist, acyclic, at least one Input and one Output, only the
    stage's node types, finite weights. ``spiking``: no ``ReLU`` left. ``quantized``: every
    ``Synapses.values`` is an integer array, every ``Neuron`` has registers. Raises
    :class:`CompileError` naming the node.
    """
    if stage not in _ALLOWED:
        raise CompileError(f"validate: unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    import networkx as nx

    if not graph.of_type(Input):
        raise CompileError(f"IR ({stage}): the graph has no Input")
    if not graph.of_type(Output):
        raise CompileError(f"IR ({stage}): the graph has no Output")
    if not nx.is_directed_acyclic_graph(graph.to_networkx()):
        raise CompileError(f"IR ({stage}): the graph has a cycle; recurrent models are not supported")
    allowed = _ALLOWED[stage]
    for node in graph:
        if not isinstance(node, allowed):
            raise CompileError(f"IR ({stage}): node {node.name!r} is a {type(node).__name__}, not allowed after "
                               f"this stage (allowed: {', '.join(t.__name__ for t in allowed)})")
        for i in node.inputs:
            if i not in graph.nodes:
                raise CompileError(f"IR ({stage}): node {node.name!r} reads unknown {i!r}")
        for attr in ("weight", "bias", "values"):
            arr = getattr(node, attr, None)
            if arr is not None and arr.size and not np.all(np.isfinite(arr)):
                raise CompileError(f"IR ({stage}): node {node.name!r} has non-finite {attr}")
        if isinstance(node, Neuron) and node.kind not in NEURON_KINDS:
            raise CompileError(f"IR ({stage}): neuron {node.name!r} kind {node.kind!r}; kinds: {NEURON_KINDS}")
        if stage == "quantized":
            if isinstance(node, Synapses) and node.values.dtype.kind not in "iu":
                raise CompileError(f"IR (quantized): projection {node.name!r} still has {node.values.dtype} weights")
            if isinstance(node, Neuron) and not node.registers:
                raise CompileError(f"IR (quantized): population {node.name!r} has no registers")
    return graph

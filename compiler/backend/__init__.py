"""The compiler's back end: a :class:`Netlist` → placement → crossbar layout → :class:`emulator.Program`.

::

    Netlist    emulator.ProgramBuilder.netlist(), checked against the spec     netlist.py
    place      netlist, spec            → Placement (core of every neuron)    placement.py
    layout     netlist, placement, spec → Program   (axons, synapses, routes) crossbar.py

``emulator.ProgramBuilder.build`` runs ``place(strategy="per_population")`` then ``layout``; the
compiler's emission runs ``place`` (``greedy``) or the TrueNorth replication, then the same ``layout``.
No module here imports torch.
"""

from .crossbar import layout
from .netlist import InputPort, Netlist, Population, Projection
from .placement import STRATEGIES, Placement, mesh_order, mesh_position, place, traffic

__all__ = ["Netlist", "InputPort", "Population", "Projection", "Placement", "place", "layout", "STRATEGIES",
           "traffic", "mesh_order", "mesh_position"]

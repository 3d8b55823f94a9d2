"""``Graph.validate()``: a lint over the whole graph, like ``torch.fx.Graph.lint``.

It re-checks what building guarantees, so it finds what editing the graph by
hand (``g.nx``, node fields) or a corrupted file broke: the networkx graph and
the node handles agree, there is no cycle (:class:`CycleError` shows it as
``a -> b -> a``), every op is registered, every input of a node is a node of
this graph built before it, names are unique, and every node's shape and
dtype still follow from its inputs. Runs in one loop: no recursion.

>>> import tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> y = tg.tanh(x)
>>> g.nx.add_edge("tanh", "x")  # a hand edit that makes a cycle
>>> g.validate()
Traceback (most recent call last):
...
tinygraph.errors.CycleError: graph 'graph': the graph has a cycle: x -> tanh -> x
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

from ..errors import CycleError, GraphError, NodeNameError, ShapeError
from .op import LEAF_OPS, OPS, infer
from .shapes import format_shape

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["validate"]


def validate(graph: Graph) -> None:
    """Raise a GraphError subclass naming the first problem found in ``graph``."""
    if set(graph.nx.nodes) != set(graph._nodes):
        extra = sorted(set(graph.nx.nodes) ^ set(graph._nodes))[:3]
        raise GraphError(f"graph '{graph.name}': g.nx and g.nodes disagree about {extra}")
    try:
        cycle = nx.find_cycle(graph.nx)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        raise CycleError([u for u, _ in cycle], context=f"graph '{graph.name}'")
    for position, (name, node) in enumerate(graph._nodes.items()):
        if node.name != name or node.graph is not graph:
            raise NodeNameError(f"node registered as {name!r} is named {node.name!r}")
        if node.op not in OPS and node.op not in LEAF_OPS:
            raise GraphError(f"node '{name}' has unknown op {node.op!r}")
        edges = set(graph.nx.predecessors(name))
        if edges != {n.name for n in node.inputs}:
            raise GraphError(f"node '{name}': g.nx edges {sorted(edges)} disagree with its "
                             f"inputs {[n.name for n in node.inputs]}")
        for src in node.inputs:
            if graph._nodes.get(src.name) is not src:
                raise GraphError(f"node '{name}' reads '{src.name}', which is not a node "
                                 "of this graph; run g.validate() after editing g.nx")
            if src.index >= node.index:
                raise GraphError(f"node '{name}' reads '{src.name}', built after it")
        if node.index != position:
            raise GraphError(f"node '{name}' is out of insertion order")
        if node.op in OPS:
            specs = [(n.shape, n.dtype) for n in node.inputs]
            shape, dtype = infer(node.op, name, specs, node.attrs)
            if shape != node.shape or dtype != node.dtype:
                raise ShapeError(
                    f"node '{name}' ({node.op}) records {format_shape(node.shape)} "
                    f"{node.dtype} but its inputs give {format_shape(shape)} {dtype}"
                )

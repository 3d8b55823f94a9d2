"""``g.nx``: the graph as a ``networkx.DiGraph`` that networkx's writers accept.

Each node's attributes are plain strings and ints, so
``networkx.write_graphml(g.nx, path)`` and ``json_graph.node_link_data(g.nx)``
work and networkx users can filter by op, kind or shape:

- ``op`` (``'matmul'``), ``kind`` (``'input'``, ``'param'``, ``'const'``, ``'op'``),
  ``shape`` (``'(?, 3)'``, ``?`` for an unknown size), ``dtype`` (``'float64'``);
- ``t`` and ``template`` for the nodes of an unrolled step (``node.meta``, as
  recorded when the node entered ``g.nx``).

An edge runs from each input to its user; ``slot`` is the first argument
position it feeds and ``slots`` all of them (``x * x``: one edge, ``slots``
``'0,1'``). ``g.nx.nodes[name]["node"]`` still gives the :class:`Node`, but is
not an attribute (writers never see it).

>>> import networkx as nx, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(None, 3))
>>> y = x * x
>>> g.nx.nodes["mul"]["op"], g.nx.nodes["x"]["shape"], g.nx.edges["x", "mul"]["slots"]
('mul', '(?, 3)', '0,1')
>>> g.nx.nodes["mul"]["node"] is y
True
>>> [n for n, op in g.nx.nodes(data="op") if op == "mul"]
['mul']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import networkx as nx

from .shapes import format_shape

if TYPE_CHECKING:
    from .node import Node

__all__ = ["NodeData", "TinygraphDiGraph", "node_attributes", "add_to_nx", "make_nx"]


class NodeData(dict):
    """A node's attribute dict; ``["node"]`` reaches the Node without being an attribute."""

    node: Node | None = None

    def __missing__(self, key: Any) -> Any:
        if key == "node" and self.node is not None:
            return self.node
        raise KeyError(key)


class TinygraphDiGraph(nx.DiGraph):
    """A ``networkx.DiGraph`` whose node attribute dicts are :class:`NodeData`."""

    node_attr_dict_factory = NodeData


def node_attributes(node: Node) -> dict[str, str | int]:
    """The GraphML-friendly attributes of ``node`` (see the module docstring)."""
    attrs: dict[str, str | int] = {"op": node.op, "kind": node.kind,
                                   "shape": format_shape(node.shape), "dtype": str(node.dtype)}
    t, template = node.meta.get("t"), node.meta.get("template")
    if isinstance(t, int):
        attrs["t"] = t
    if isinstance(template, str):
        attrs["template"] = template
    return attrs


def add_to_nx(graph: nx.DiGraph, nodes: Iterable[Node]) -> None:
    """Add ``nodes`` (their inputs already in ``graph``) with attributes and edges."""
    for node in nodes:
        graph.add_node(node.name, **node_attributes(node))
        data = graph.nodes[node.name]
        if isinstance(data, NodeData):
            data.node = node
        slots: dict[str, list[int]] = {}
        for position, src in enumerate(node.inputs):
            slots.setdefault(src.name, []).append(position)
        graph.add_edges_from((src, node.name, {"slot": where[0],
                                               "slots": ",".join(map(str, where))})
                             for src, where in slots.items())


def make_nx(name: str, nodes: Iterable[Node]) -> TinygraphDiGraph:
    """A new networkx graph of ``nodes`` (in insertion order)."""
    graph = TinygraphDiGraph(name=name)
    add_to_nx(graph, nodes)
    return graph

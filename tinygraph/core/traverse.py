"""Walking a graph without recursion: fetch structures, ancestors, the run order.

Nodes are only ever added after their inputs, so insertion order is a
topological order; the ancestors of some roots, sorted by insertion index,
are the order every evaluator runs them in (ties broken by insertion, so the
same graph always schedules the same way).

>>> import tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=())
>>> unused = tg.exp(x)
>>> [n.name for n in schedule(g, {"y": tg.tanh(x)})]
['x', 'tanh']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GraphError
from .node import Node

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["Fetches", "ancestors", "schedule"]


class Fetches:
    """A fetch structure (node, name, list, tuple or dict) flattened to nodes.

    ``rebuild(values)`` puts one value per node back into the same structure.
    """

    def __init__(self, graph: Graph, fetches: Any):
        self.nodes: list[Node] = []
        self.template = self._flatten(graph, fetches)
        self.key = self._key(self.template)

    def _resolve(self, graph: Graph, item: Any) -> Node:
        if isinstance(item, Node):
            if item.graph is not graph:
                raise GraphError(f"cannot fetch node '{item.name}': it belongs to graph "
                                 f"'{item.graph.name}', not '{graph.name}'")
            return item
        if isinstance(item, str):
            return graph.node(item)
        raise GraphError(f"a fetch must be a node, a node name, or a list/tuple/dict of those; "
                         f"got {type(item).__name__}")

    def _flatten(self, graph: Graph, fetches: Any) -> Any:
        if isinstance(fetches, dict):
            return dict, [(k, self._flatten(graph, v)) for k, v in fetches.items()]
        if isinstance(fetches, list | tuple):
            if all(type(v) is Node and v.graph is graph for v in fetches):
                # The common long case (the T states of an unroll): a slice of values.
                start = len(self.nodes)
                self.nodes.extend(fetches)
                return type(fetches), range(start, len(self.nodes))
            return type(fetches), [self._flatten(graph, v) for v in fetches]
        self.nodes.append(self._resolve(graph, fetches))
        return len(self.nodes) - 1

    def _key(self, template: Any) -> Any:
        if isinstance(template, int):
            return self.nodes[template].name
        kind, items = template
        if kind is dict:
            return ("dict", tuple((k, self._key(v)) for k, v in items))
        if isinstance(items, range):
            return (kind.__name__, tuple(n.name for n in self.nodes[items.start:items.stop]))
        return (kind.__name__, tuple(self._key(v) for v in items))

    def rebuild(self, values: Sequence[Any], template: Any = None) -> Any:
        template = self.template if template is None else template
        if isinstance(template, int):
            return values[template]
        kind, items = template
        if kind is dict:
            return {k: self.rebuild(values, v) for k, v in items}
        if isinstance(items, range):
            return kind(values[items.start:items.stop])
        return kind(self.rebuild(values, v) for v in items)


# ----------------------------------------------------------------- schedule


def ancestors(graph: Graph, roots: Sequence[Node]) -> list[Node]:
    """``roots`` and everything they read, in insertion (= topological) order."""
    seen = bytearray(len(graph))
    stack = list(roots)
    order: list[int] = []
    while stack:
        node = stack.pop()
        if seen[node.index]:
            continue
        seen[node.index] = 1
        order.append(node.index)
        stack.extend(node.inputs)
    nodes = list(graph.nodes.values())
    return [nodes[i] for i in sorted(order)]


def schedule(graph: Graph, fetches: Any) -> list[Node]:
    """Exactly the ancestors of ``fetches`` in the order :func:`run` evaluates them.

    >>> import tinygraph as tg
    >>> g = tg.Graph()
    >>> x = g.input("x", shape=())
    >>> unused = tg.exp(x)
    >>> [n.name for n in g.schedule(tg.tanh(x * 2.0))]
    ['x', 'const', 'mul', 'tanh']
    """
    return ancestors(graph, Fetches(graph, fetches).nodes)

"""Running a graph: culling, ordering, feeding, evaluating, freeing.

Policy
------
1. **Cull**: only the ancestors of the requested fetches run.
2. **Order**: nodes run in topological order with ties broken by insertion
   index. Nodes are only ever added after their inputs, so this is simply
   the ancestors sorted by insertion index — no recursion, O(n log n).
3. **Feed**: every needed input is fed (or has a default); feeds are checked
   against the input's declared shape and dtype before anything runs.
4. **Free**: a value is dropped right after its last consumer, so a long
   chain keeps a flat peak memory.

::

    fetches ──cull──▶ ancestors ──sort by index──▶ [x, W, matmul, b, add, tanh]
                                                        │
    feeds ──check──▶ slots[0..n) ◀── step: slots[out] = forward(slots[a], slots[b])
                                       then slots[dead] = None

Two evaluators share this policy: :class:`Interpreter`, a plain loop over
nodes with an ``env`` dict and an overridable :meth:`Interpreter.run_node`
(the reference, ``g.run(..., optimize=False)``), and
:class:`tinygraph.plan.Plan`, the graph rewritten by
:mod:`tinygraph.passes` and compiled to straight-line code (what ``g.run``
caches and ``g.compile`` returns).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import FeedError, GraphError
from .graph import Graph, Node
from .ops import OPS
from .plan import CompiledGraph, Plan, _last_uses, failure, missing_feed
from .shapes import format_shape

__all__ = ["schedule", "run", "compile_plan", "Interpreter", "Fetches", "check_feed",
           "resolve_feeds", "ancestors"]

_PLAN_CACHE_SIZE = 64


# ------------------------------------------------------------------ fetches


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


# -------------------------------------------------------------------- feeds


def check_feed(node: Node, value: Any) -> np.ndarray:
    """``value`` as an array of ``node``'s dtype; FeedError if it does not fit."""
    # Fast path (the common case, checked per input on every run): a numpy
    # array of the right dtype whose sizes match the declared ones.
    if type(value) is np.ndarray and value.dtype == node.dtype:
        shape, want = value.shape, node.shape
        if shape == want or (len(shape) == len(want) and (
                shape[1:] == want[1:] and want[0] is None  # the usual (batch, …) input
                or all(d is None or d == s for d, s in zip(want, shape, strict=True)))):
            return value
    want = f"shape {format_shape(node.shape)} {node.dtype}"
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FeedError(f"input '{node.name}' wants {want}; the fed value is not an array "
                        f"({exc})") from None
    if arr.dtype != node.dtype:
        if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, node.dtype, "same_kind"):
            raise FeedError(f"input '{node.name}' wants {want}; got dtype {arr.dtype}, which "
                            f"does not convert safely (cast it with .astype({node.dtype.name!r}))")
        arr = arr.astype(node.dtype)
    if arr.ndim != len(node.shape) or any(
        d is not None and d != s for d, s in zip(node.shape, arr.shape, strict=True)
    ):
        raise FeedError(f"input '{node.name}' wants {want}; got shape {format_shape(arr.shape)}")
    return arr


def resolve_feeds(graph: Graph, feeds: Mapping[Any, Any]) -> dict[str, np.ndarray]:
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be a dict of input -> array, got {type(feeds).__name__}")
    resolved: dict[str, np.ndarray] = {}
    for key, value in feeds.items():
        if isinstance(key, Node):
            if key.graph is not graph:
                raise FeedError(f"fed node '{key.name}' belongs to graph '{key.graph.name}', "
                                f"not '{graph.name}'")
            node = key
        elif isinstance(key, str) and key in graph._nodes:
            node = graph._nodes[key]
        else:
            inputs = list(graph.inputs)
            close = difflib.get_close_matches(str(key), inputs, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise FeedError(f"feed {key!r} names no input of graph '{graph.name}'; {hint}"
                            f"inputs: {', '.join(map(repr, inputs)) or 'none'}")
        if node.op != "input":
            raise FeedError(f"feed {node.name!r} is a {node.op} node; only inputs "
                            f"(g.input) can be fed")
        resolved[node.name] = check_feed(node, value)
    return resolved


# ----------------------------------------------------------------- evaluate


class Interpreter:
    """The reference evaluator: one node at a time over an ``env`` dict.

    Subclass and override :meth:`run_node` to observe or change evaluation
    (e.g. record every value for a debugger).
    """

    def __init__(self, graph: Graph, fetches: Any):
        self.graph = graph
        self.fetches = Fetches(graph, fetches)
        self.order = ancestors(graph, self.fetches.nodes)
        self.dying = _last_uses(self.order, {n.name for n in self.fetches.nodes})

    def run_node(self, node: Node, args: list[np.ndarray]) -> np.ndarray:
        return OPS[node.op].forward(*args, **node.attrs)

    def run(self, feeds: Mapping[Any, Any]) -> Any:
        fed = resolve_feeds(self.graph, feeds)
        env: dict[str, Any] = {}
        for node in self.order:
            if node.op == "input":
                if node.name in fed:
                    env[node.name] = fed[node.name]
                elif "default" in node.attrs:
                    env[node.name] = node.attrs["default"]
                else:
                    raise missing_feed(node, self.fetches.nodes)
            elif node.op in ("param", "const"):
                env[node.name] = node.value
            else:
                args = [env[src.name] for src in node.inputs]
                try:
                    env[node.name] = self.run_node(node, args)
                except GraphError:
                    raise
                except Exception as exc:
                    raise failure(node, args, exc) from exc
            for name in self.dying.get(node.name, ()):
                del env[name]
        return self.fetches.rebuild([_detach(n, env[n.name]) for n in self.fetches.nodes])


def _detach(node: Node, value: Any) -> Any:
    # A fetched param must not alias the live array the optimizer updates.
    return value.copy() if node.op == "param" else value


def _cached_plan(graph: Graph, fetches: Any, fed: frozenset[str]) -> Plan:
    key = (Fetches(graph, fetches).key, fed)
    plan = graph._plans.get(key)
    if plan is None:
        plan = Plan(graph, fetches, fed, optimize=True)
        if len(graph._plans) >= _PLAN_CACHE_SIZE:
            graph._plans.pop(next(iter(graph._plans)))
        graph._plans[key] = plan
    return plan


def run(graph: Graph, fetches: Any, feeds: Mapping[Any, Any], optimize: bool = True) -> Any:
    """Evaluate ``fetches`` given ``feeds``; see :meth:`Graph.run`."""
    if not optimize:
        return Interpreter(graph, fetches).run(feeds)
    fed = resolve_feeds(graph, feeds)
    return _cached_plan(graph, fetches, frozenset(fed))(fed)


def compile_plan(graph: Graph, fetches: Any, inputs: Sequence[Any] | None = None,
                 optimize: bool = True) -> CompiledGraph:
    """See :meth:`Graph.compile`."""
    return CompiledGraph(graph, fetches, inputs, optimize=optimize)

"""``g.compile(...)``'s result: a plan you call with arrays, by name or position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.node import Node
from ..core.traverse import Fetches, ancestors
from ..errors import FeedError
from .feeds import check_feed, missing_feed, resolve_feeds
from .threads import call_with_threads

if TYPE_CHECKING:
    from ..core.graph import Graph
    from .interpreter import Interpreter
    from .plan import Plan

__all__ = ["CompiledGraph", "input_names"]


class CompiledGraph:
    """A callable plan: ``fn(x=arr, h0=arr)`` or positionally in ``inputs`` order.

    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> x = g.input("x", shape=(None,))
    >>> fn = g.compile(tg.sum(x * x), inputs=["x"])
    >>> float(fn(np.array([3.0, 4.0])))
    25.0
    """

    def __init__(self, graph: Graph, plan: Plan, input_names: Sequence[str],
                 finite: Interpreter | None = None, fetches: Any = None):
        self.graph = graph
        # What was asked for, as given (nodes of ``graph``; the plan may hold rewritten ones).
        self.fetches = plan.fetches.nodes if fetches is None else fetches
        self.finite = finite  # check_finite=True: this interpreter runs instead of the plan
        self.input_names = list(input_names)
        self.plan = plan
        self._input_nodes = {name: graph.nodes[name] for name in self.input_names}
        self.schedule = plan.order

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Under the BLAS thread count chosen for this plan (see threads.py).
        return call_with_threads(self.plan, lambda: self._call(args, kwargs))

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nodes = self._input_nodes
        if not args and len(kwargs) == len(nodes) and all(name in nodes for name in kwargs):
            # The usual call, every input by name: check each feed and run.
            return self._evaluate({name: check_feed(nodes[name], value)
                                   for name, value in kwargs.items()})
        if len(args) > len(self.input_names):
            raise FeedError(f"compiled graph takes {len(self.input_names)} positional inputs "
                            f"({', '.join(self.input_names)}), got {len(args)}")
        feeds = dict(zip(self.input_names, args, strict=False))
        for name, value in kwargs.items():
            if name in feeds:
                raise FeedError(f"input '{name}' was given twice")
            feeds[name] = value
        fed = resolve_feeds(self.graph, feeds)
        for name in self.input_names:
            if name not in fed:
                raise missing_feed(self.graph.nodes[name], self.plan.fetches.nodes)
        extra = set(fed) - set(self.input_names)
        if extra:
            raise FeedError(f"input(s) {sorted(extra)} are not inputs of this compiled graph; "
                            f"it takes {self.input_names}")
        return self._evaluate(fed)

    def call_checked(self, fed: dict[str, Any]) -> Any:
        """Evaluate feeds the caller has checked itself: every input by name, each an
        ndarray of its node's dtype and declared sizes (no conversion, no check here).

        For front ends that validate their arrays anyway and are called in loops
        (``UnrolledRNN.run``): the per-call checks of ``fn(...)`` cost more than a
        small net's arithmetic once other work has run in between.

        >>> import numpy as np, tinygraph as tg
        >>> g = tg.Graph()
        >>> x = g.input("x", shape=(None,))
        >>> fn = g.compile(x * 2.0, inputs=["x"])
        >>> fn.call_checked({"x": np.array([1.0, 2.0])})
        array([2., 4.])
        """
        return call_with_threads(self.plan, lambda: self._evaluate(fed))

    def _evaluate(self, fed: dict[str, Any]) -> Any:
        return self.plan(fed) if self.finite is None else self.finite.run(fed)

    def __repr__(self) -> str:
        return (f"<CompiledGraph of '{self.graph.name}': inputs {self.input_names}, "
                f"{len(self.plan.steps)} steps>")


def input_names(graph: Graph, fetches: Any, inputs: Sequence[Any] | None) -> list[str]:
    """The names a compiled graph takes: ``inputs``, or every needed input without a default."""
    if inputs is None:
        needed = ancestors(graph, Fetches(graph, fetches).nodes)
        return [n.name for n in needed if n.op == "input" and "default" not in n.attrs]
    return [_input_name(graph, item) for item in inputs]


def _input_name(graph: Graph, item: Any) -> str:
    node = item if isinstance(item, Node) else graph.node(item) if isinstance(item, str) else None
    if node is None or node.graph is not graph or node.op != "input":
        raise FeedError(f"compile(inputs=...) takes input nodes or their names; got {item!r}")
    return node.name

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
:class:`tinygraph.exec.plan.Plan`, a schedule compiled to straight-line code
(what ``g.run`` caches and ``g.compile`` returns, after the rewrites of
:mod:`tinygraph.passes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.node import Node
from ..core.op import bind_forward
from ..core.shapes import format_shape
from ..core.traverse import Fetches, ancestors
from ..errors import EvaluationError, GraphError
from .feeds import missing_feed, resolve_feeds
from .scan import empty_outputs, scan_steps

if TYPE_CHECKING:
    from ..core.graph import Graph

__all__ = ["Interpreter", "interpret_scan", "last_uses", "failure"]


def last_uses(order: list[Node], keep: set[str]) -> dict[str, list[str]]:
    """step name -> names of the values that die right after that step (not ``keep``)."""
    last: dict[str, str] = {}
    for node in order:
        for src in node.inputs:
            last[src.name] = node.name
    dying: dict[str, list[str]] = {}
    for value, step in last.items():
        if value not in keep:
            dying.setdefault(step, []).append(value)
    return dying


def failure(node: Node, args: Sequence[Any], exc: Exception) -> EvaluationError:
    """The error for numpy failing on ``node`` with arguments ``args``."""
    shapes = ", ".join(format_shape(np.shape(a)) for a in args)
    return EvaluationError(f"node '{node.name}' ({node.op}) failed on inputs of shape "
                           f"[{shapes}]: {exc}")


class Interpreter:
    """The reference evaluator: one node at a time over an ``env`` dict.

    Subclass and override :meth:`run_node` to observe or change evaluation
    (e.g. record every value for a debugger).
    """

    def __init__(self, graph: Graph, fetches: Any):
        self.graph = graph
        self.fetches = Fetches(graph, fetches)
        self.order = ancestors(graph, self.fetches.nodes)
        self.dying = last_uses(self.order, {n.name for n in self.fetches.nodes})

    def run_node(self, node: Node, args: list[np.ndarray]) -> Any:
        if node.op == "scan":
            return interpret_scan(node, args)
        return bind_forward(node.op, node.attrs, [n.dtype for n in node.inputs],
                            node.dtype)(*args)

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
            elif node.op == "param":  # a pass-built graph's param reads the original's value
                env[node.name] = self.graph.param_source(node).value
            elif node.op == "const":
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


def interpret_scan(node: Node, args: Sequence[np.ndarray]) -> tuple:
    """The reference: the body run by the :class:`Interpreter`, one step at a time."""
    a = node.attrs
    k, m, ny = a["num_carry"], a["num_xs"], a["num_ys"]
    body = a["body"]
    outs = [body.node(n) for n in a["outputs"][:k + ny]]
    run = Interpreter(body, outs)
    xs = args[k:k + m]
    steps = scan_steps(node, xs)
    carry = list(args[:k])
    ys: list[list] = [[None] * steps for _ in range(ny)]
    saved: list[Any] = [[None] * steps for _ in range(k)]
    order = range(steps - 1, -1, -1) if a["reverse"] else range(steps)
    for t in order:
        feeds = dict(zip(a["inputs"], [*carry, *[x[t] for x in xs], *args[k + m:]], strict=True))
        out = run.run(feeds)
        for i in range(k):
            saved[i][t] = carry[i]
        for j in range(ny):
            ys[j][t] = out[k + j]
        carry = list(out[:k])
    if steps == 0:
        return (*carry, *empty_outputs(node, carry, args))
    # A (1, H) initial carry may have met a batch of B: rows share the broadcast shape,
    # saved carries that of every carry (the final one too).
    saved = [np.stack(np.broadcast_arrays(*v, c)[:-1]) for v, c in zip(saved, carry, strict=True)]
    return (*carry, *[np.stack(np.broadcast_arrays(*v)) for v in ys], *saved)

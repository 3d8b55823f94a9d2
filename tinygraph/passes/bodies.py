"""Scan bodies copied node by node: how the loop passes rewrite a body.

A body is an ordinary :class:`~tinygraph.core.graph.Graph`, and a pass never
edits one in place: it builds a new body with :func:`copy_body` (replacing the
nodes it rewrites), then points the draft's scan record at it with
:func:`use_body`, which also drops what no output needs (:func:`prune`).

>>> import tinygraph as tg
>>> body = tg.Graph("body")
>>> x = body.input("x", shape=(2,))
>>> y = tg.tanh(x * 2.0, name="y")
>>> new, made = copy_body(body, lambda node, g, m: tg.exp(m[node.inputs[0]])
...                       if node.op == "tanh" else None)
>>> made[y].op, [n.op for n in prune(new, (made[y].name,)).nodes.values()]
('exp', ['input', 'const', 'mul', 'exp'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.traverse import ancestors
from .draft import Draft, Rec

__all__ = ["copy_body", "prune", "use_body", "read_counts"]

Rewrite = Callable[[Any, Any, dict], Any]


def copy_body(body: Any, rewrite: Rewrite | None = None,
              skip: Callable[[Any], bool] | None = None) -> tuple[Any, dict]:
    """A copy of ``body`` and the map from its nodes to their copies.

    ``rewrite(node, new_body, mapping)`` may return the node's replacement,
    built in ``new_body`` from ``mapping`` (None: copy it as is); inputs and
    consts are always copied. Nodes for which ``skip(node)`` holds are left
    out (nothing copied may read them). Names are kept where still free.
    """
    new = type(body)(body.name)
    mapping: dict[Any, Any] = {}
    for node in body.nodes.values():
        if skip is not None and skip(node):
            continue
        if node.op == "input":
            mapping[node] = new.input(node.name, shape=node.shape, dtype=node.dtype)
        elif node.op == "const":
            mapping[node] = new.const(node.value, name=node.name if node.name not in new.nodes
                                      else None, dtype=node.dtype)
        else:
            made = rewrite(node, new, mapping) if rewrite is not None else None
            mapping[node] = made if made is not None else new.add_node(
                node.op, [mapping[s] for s in node.inputs], dict(node.attrs),
                name=node.name if node.name not in new.nodes else None)
    return new, mapping


def prune(body: Any, outputs: tuple) -> Any:
    """A copy of ``body`` without the nodes no output needs (every input kept, names kept)."""
    needed = set(ancestors(body, [body.node(n) for n in outputs]))
    return copy_body(body, skip=lambda node: node.op != "input" and node not in needed)[0]


def use_body(draft: Draft, rec: Rec, new: Any, mapping: dict) -> None:
    """Point scan ``rec`` at ``new`` (made from its body through ``mapping``), pruned."""
    a = rec.attrs
    body = a["body"]
    outputs = tuple(mapping[body.node(n)].name for n in a["outputs"])
    rec.attrs = {**a, "body": prune(new, outputs), "outputs": outputs,
                 "inputs": tuple(mapping[body.node(n)].name for n in a["inputs"])}
    draft._edits += 1


def read_counts(body: Any) -> dict[Any, int]:
    """How many times the body's nodes read each value (a node reading it twice: 2)."""
    counts: dict[Any, int] = {}
    for node in body.nodes.values():
        for src in node.inputs:
            counts[src] = counts.get(src, 0) + 1
    return counts

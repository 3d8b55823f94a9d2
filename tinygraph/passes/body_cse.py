"""Common subexpressions inside scan bodies: a value the step computes twice is computed once.

The outer graph's CSE (:func:`tinygraph.passes.cse`) does not look inside a
scan's body, a graph of its own. Cells written by hand often repeat a product
(``h @ W`` in two gates) or a small expression (``1 - f``), and every step of
the loop paid for each copy. Merging them before hoisting also lets the other
loop passes see one node where there were two.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> W = g.param("W", np.eye(2))
>>> step = lambda h, x: (tg.tanh(h @ W + x) + tg.sigmoid(h @ W), None)
>>> xs = g.input("xs", shape=(3, 2))
>>> h, _ = tg.scan(step, g.input("h0", shape=(2,)), xs)
>>> matmuls = lambda body: sum(n.op == "matmul" for n in body.nodes.values())
>>> from tinygraph.passes.draft import Draft
>>> draft = Draft(g, [h])
>>> body_cse_pass(draft)
>>> scan = next(r for r in draft.live() if r.op == "scan")
>>> matmuls(h.inputs[0].attrs["body"]), matmuls(scan.attrs["body"])
(2, 1)
"""

from __future__ import annotations

from typing import Any

from .bodies import use_body
from .draft import Draft, Rec, freeze, per_scan

__all__ = ["body_cse_pass"]

# Larger consts are compared by identity only: hashing their bytes costs more than it saves.
_CONST_MAX_ELEMENTS = 4096


def merged_copy(body: Any) -> tuple[Any, dict] | None:
    """A copy of ``body`` with equal nodes merged, and the map from old nodes to new ones;
    None when no two nodes are equal (same op, attrs and inputs, or equal small consts)."""
    new = type(body)(body.name)
    mapping: dict[Any, Any] = {}
    seen: dict[Any, Any] = {}
    merged = False
    for node in body.nodes.values():
        if node.op == "input":
            mapping[node] = new.input(node.name, shape=node.shape, dtype=node.dtype)
            continue
        if node.op == "const":
            value = node.value
            key: Any = (("const", node.dtype.str, value.shape, value.tobytes())
                        if value.size <= _CONST_MAX_ELEMENTS else ("const", id(value)))
        else:
            key = (node.op, tuple(id(mapping[s]) for s in node.inputs),
                   freeze(node.attrs) if node.attrs else None)
        if key in seen:
            mapping[node] = seen[key]
            merged = True
            continue
        if node.op == "const":
            made = new.const(node.value, name=node.name, dtype=node.dtype)
        else:
            made = new.add_node(node.op, [mapping[s] for s in node.inputs], dict(node.attrs),
                                name=node.name)
        seen[key] = mapping[node] = made
    return (new, mapping) if merged else None


def _merge(draft: Draft, rec: Rec) -> None:
    copy = merged_copy(rec.attrs["body"])
    if copy is not None:
        use_body(draft, rec, *copy)


body_cse_pass = per_scan(_merge, "Merge equal nodes inside every scan body.")

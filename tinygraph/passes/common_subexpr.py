"""Common subexpressions: nodes computing the same op on the same inputs are one node.

Safe only after rerolling: before it, merging the steps' equal consts would
join nodes that belong to different steps and hide the loop's shape.

>>> import tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> draft = Draft(g, [tg.tanh(x * 2.0) + tg.tanh(x * 2.0)])
>>> cse_pass(draft)
>>> [r.op for r in draft.live()]
['input', 'const', 'mul', 'tanh', 'add']
"""

from __future__ import annotations

from typing import Any

from .draft import Draft, freeze

__all__ = ["cse_pass"]

_LARGEST_CONST = 4096  # comparing big consts by value would cost more than merging saves


def cse_pass(draft: Draft) -> None:
    """Replace every node by the first earlier one with its op, inputs and attrs."""
    seen: dict[Any, int] = {}
    for rec in draft.live():
        if rec.op in ("input", "param"):
            continue
        if rec.op == "const" and rec.attrs["value"].size > _LARGEST_CONST:
            continue
        key = (rec.op, tuple(rec.inputs), freeze(rec.attrs) if rec.attrs else None)
        if key in seen:
            draft.replace(rec.id, seen[key])
        else:
            seen[key] = rec.id

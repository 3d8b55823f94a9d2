"""Slices of a sum in loop bodies: ``(h @ W + b)[:, k]`` -> ``(h @ W)[:, k] + b[k]``.

Gated cells compute all gates' pre-activations at once and slice them:
``gh = h @ W_hh + b_hh``, then ``x_i + gh[:, :H]``, ``x_f + gh[:, H:2H]``, …
The bias is added to the whole ``(B, 4H)`` block at every step, though it does
not depend on the carry. Sliced term by term, each gate's sum holds
``b[k]`` next to the carry-free input part, and
:func:`tinygraph.passes.sink.reassociate_pass` with
:mod:`tinygraph.passes.hoist` add the two once for all steps: one add of the
``(B, 4H)`` block fewer per step. Exact: each element gets the same two terms.

Only sums whose every reader is a plain slice (ranges on each axis, no ints,
``None`` or ``...``) added to a carry-free term of its own are split (so all
of the term leaves the loop), only when the term can be sliced alike (an axis
it broadcasts along is taken whole), and not in a forward loop that a backward
loop reads (measured slower there).

>>> import numpy as np, tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> W, b = g.param("W", np.eye(4)), g.param("b", np.arange(4.0))
>>> def step(h, x):
...     gh = h @ W + b
...     new = tg.tanh(x + gh[:, :2]) * tg.sigmoid(x + gh[:, 2:])
...     return tg.concat([new, new], axis=-1), None
>>> h, _ = tg.scan(step, g.input("h0", shape=(None, 4)), g.input("xs", shape=(5, None, 2)))
>>> draft = Draft(g, [h])
>>> slice_sums_pass(draft)
>>> body = next(r for r in draft.live() if r.op == "scan").attrs["body"]
>>> sorted(n.name for n in body.nodes.values() if n.op == "add" and n.shape == (None, 4))
[]
"""

from __future__ import annotations

from typing import Any

from .bodies import copy_body, use_body
from .draft import Draft, Rec, per_scan
from .sink import _carry_dependent

__all__ = ["slice_sums_pass"]

_WHOLE = (None, None, None)


def _split(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body = a["body"]
    if any(draft.recs[r.id].op == "scan" for u in draft.readers(rec.id)
           for r in draft.readers(u.id)):
        # A forward whose values a backward loop reads: the sliced sums there cost the
        # backward more than the loop saves (LSTM training: 3 % slower, measured).
        return
    dependent = _carry_dependent(body, a["num_carry"], a["inputs"])
    outputs = {body.node(n) for n in a["outputs"]}
    readers: dict[Any, list[Any]] = {}
    for node in body.nodes.values():
        for src in node.inputs:
            readers.setdefault(src, []).append(node)
    plans: dict[Any, tuple[int, int]] = {}  # a slice -> (bound term, free term) slots
    for node in body.nodes.values():
        if node.op != "add" or node not in dependent or node in outputs:
            continue
        free = [i for i, src in enumerate(node.inputs) if src not in dependent]
        users = readers.get(node, [])
        if len(free) != 1 or not users:
            continue
        term = node.inputs[free[0]]
        # Every slice must meet a carry-free term of its own, so that all of the term
        # leaves the loop (the slices then join back into one sum there, passes/joins.py):
        # moving only some blocks out costs more outside than it saves inside.
        if all(_sliceable(u, node, term) and _meets_free_term(u, readers, dependent)
               for u in users):
            plans.update({u: (1 - free[0], free[0]) for u in users})
    if not plans:
        return
    def sliced(node: Any, new: Any, mapping: dict) -> Any:
        if node not in plans:
            return None
        bound, free = (node.inputs[0].inputs[i] for i in plans[node])
        index = node.attrs["index"]
        parts = [new.add_node("getitem", [mapping[bound]], {"index": index}),
                 new.add_node("getitem", [mapping[free]],
                              {"index": index[len(index) - len(free.shape):]})]
        if plans[node][0] == 1:
            parts.reverse()  # the operands in their order: the same sum, bit for bit
        return new.add_node("add", parts)

    new, mapping = copy_body(body, sliced)
    if any(mapping[node].shape != node.shape for node in plans):
        return  # a broadcast the slicing would change: leave the body as it is
    use_body(draft, rec, new, mapping)


def _meets_free_term(user: Any, readers: dict, dependent: set) -> bool:
    """``user`` is read only by sums with a carry-free other term."""
    return bool(readers.get(user)) and all(
        r.op == "add" and all(src is user or src not in dependent for src in r.inputs)
        for r in readers[user])


def _sliceable(user: Any, total: Any, term: Any) -> bool:
    """``user`` is ``total[ranges]`` and ``term`` (broadcast in ``total``) slices alike."""
    if user.op != "getitem" or user.inputs[0] is not total:
        return False
    index = user.attrs.get("index")
    if (not isinstance(index, tuple) or len(index) != len(total.shape)
            or not all(isinstance(i, tuple) and len(i) == 3 for i in index)):
        return False
    rank = len(term.shape)
    if rank > len(index):
        return False
    for part, size, whole in zip(index[len(index) - rank:], term.shape,
                                 total.shape[len(index) - rank:], strict=True):
        if part != _WHOLE and (size is None or size != whole):
            return False  # an axis the term broadcasts along (or of unknown size)
    return True


slice_sums_pass = per_scan(
    _split, "Slices of a sum with a carry-free term, sliced term by term (module doc).")

"""A cross-entropy and its gradient from one softmax.

Training fetches a loss and its gradient: ``cross_entropy(logits, targets)``
and, from ``tg.grad``, ``cross_entropy_grad(g, logits, targets)``. Each
computes ``exp(logits - max)`` and its row sums on its own. When both read the
same logits and targets with the same options, and ``g`` (the gradient
arriving at the loss) does not depend on the loss's value, one
``cross_entropy_and_grad`` node computes both, read through two ``unpack``
nodes: the max, exp and sums run once. Each result equals its op's exactly.

Reverse mode reads the loss for its shape (``g`` is often ``broadcast_to(s, like)``
with the like reading the loss): such reads become broadcasts to the fixed
shape, so the fused node does not read itself.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> z = g.input("z", shape=(4, 3))
>>> loss = tg.cross_entropy(z, g.const(np.array([0, 2, 1, 1])))
>>> (dz,) = tg.grad(loss, [z])
>>> draft = Draft(g, [loss, dz])
>>> fuse_cross_entropy_pass(draft)
>>> sorted({r.op for r in draft.live()} & {"cross_entropy", "cross_entropy_and_grad"})
['cross_entropy_and_grad']
"""

from __future__ import annotations

from .draft import Draft, Rec, freeze

__all__ = ["fuse_cross_entropy_pass"]


def fuse_cross_entropy_pass(draft: Draft) -> None:
    """Every loss whose gradient the draft also computes -> one fused node."""
    losses: dict[tuple, Rec] = {}
    for rec in draft.live():
        if rec.op == "cross_entropy":
            losses.setdefault((*rec.inputs, freeze(rec.attrs)), rec)
    for rec in draft.live():
        if rec.op != "cross_entropy_grad":
            continue
        g, logits, targets = rec.inputs
        loss = losses.pop((logits, targets, freeze(rec.attrs)), None)
        if loss is None:
            continue
        scale = _without_shape_reads(draft, g, loss.id, {})
        if scale is None:
            continue  # the gradient depends on the loss's value (a loss squared, say)
        both = draft.add("cross_entropy_and_grad", [scale, logits, targets], dict(rec.attrs),
                         name=f"{loss.name}/and_grad")
        for index, old in enumerate((loss, rec)):
            draft.replace(old.id, draft.add("unpack", [both], {
                "index": index, "shape": old.shape, "dtype": old.dtype.name}, name=old.name))


def _without_shape_reads(draft: Draft, rec_id: int, loss: int, memo: dict) -> int | None:
    """``rec_id``'s value computed without reading ``loss``, or None if it needs its value.

    Reverse mode reads the loss for its shape only (``broadcast_to(g, like)``, the
    like reading the loss): such a read is replaced by a fixed-shape broadcast when
    the shape is known, and the nodes between are copied.
    """
    if rec_id in memo:
        return memo[rec_id]
    rec = draft.recs[rec_id]
    result: int | None = rec_id
    if rec_id == loss:
        result = None
    elif _reaches(draft, rec_id, loss):
        if rec.op == "broadcast_to" and not _reaches(draft, rec.inputs[0], loss):
            result = (draft.add("broadcast_to_shape", [rec.inputs[0]], {"shape": rec.shape},
                                name=rec.name) if None not in rec.shape else None)
        else:
            inputs = [_without_shape_reads(draft, i, loss, memo) for i in rec.inputs]
            kept = [i for i in inputs if i is not None]
            result = (None if len(kept) < len(inputs) or rec.op in ("input", "param", "const")
                      else draft.add(rec.op, kept, dict(rec.attrs), name=rec.name))
    memo[rec_id] = result
    return result


def _reaches(draft: Draft, start: int, target: int) -> bool:
    """Does ``start`` depend on ``target`` (or is it ``target``)?"""
    seen, stack = set(), [start]
    while stack:
        rec_id = stack.pop()
        if rec_id == target:
            return True
        if rec_id not in seen:
            seen.add(rec_id)
            stack.extend(draft.recs[rec_id].inputs)
    return False

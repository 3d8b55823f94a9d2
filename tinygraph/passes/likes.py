"""Shape helpers whose like is a value a forward loop stored: dropped from backward loops.

Reverse mode wraps cotangents in ``sum_to(g, like)`` (and ``broadcast_to``,
``reshape_like``), which undo broadcasting by reading the *shape* of a forward
value. In a backward scan that value is a per-step input: a forward loop
stores it for every step only so the helper can look at its shape — a copy
per step (a GRU's backward read eleven such stores).

A forward scan allocates each stored output in the shape its first two steps
broadcast to, so a stored row never shows a broadcast the helper could undo:
when the helper's operand and like have the same static shape, the helper is
the identity on every step and goes. The forward then stops storing the value
(:func:`tinygraph.passes.tidy.unread_outputs_pass`). A like that the caller
feeds (a sequence) keeps its helper.
"""

from __future__ import annotations

from ..core.op import OPS
from .bodies import copy_body, use_body
from .draft import Draft, Rec, per_scan

__all__ = ["stored_likes_pass", "stored_by_a_scan"]


def stored_by_a_scan(draft: Draft, value: int) -> bool:
    """``value`` is a forward scan's stacked per-step output (or saved carries)."""
    rec = draft.recs[value]
    if rec.op != "unpack":
        return False
    scan = draft.recs[rec.inputs[0]]
    return scan.op == "scan" and rec.attrs["index"] >= scan.attrs["num_carry"]


def _drop_helpers(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, m = a["body"], a["num_carry"], a["num_xs"]
    stored = {body.node(n) for i, n in enumerate(a["inputs"])
              if k <= i < k + m and stored_by_a_scan(draft, rec.inputs[i])}
    drop = {node for node in body.nodes.values()
            if node.op in OPS and OPS[node.op].identity_when_shapes_agree
            and node.inputs[1] in stored and node.inputs[0].shape == node.shape
            and node.inputs[1].shape == node.shape}
    if not drop:
        return
    new, mapping = copy_body(body, lambda node, new, mapping: mapping[node.inputs[0]]
                             if node in drop else None)
    use_body(draft, rec, new, mapping)


stored_likes_pass = per_scan(
    _drop_helpers,
    "Drop the shape helpers of every scan body whose like is a stored forward value.")

"""A join of a loop's stacked outputs that the loop already stores joined.

An LSTM's backward loop joins its four gate adjoints every step
(``concat([d_i, d_f, d_g, d_o])``, for ``dz @ W_hhᵀ``) and stores that join;
the gradient of ``W_ih`` joins the same four, stacked over time, after the
loop — 6.4 MB copied again at T=100, B=32, H=256, and four more stacks stored
per step. When a ``concat`` after a scan joins stacked outputs whose body
values are exactly the parts of a body ``concat`` the scan also stores, it
reads that stored output instead; the four stacks then go unread and leave
the loop (:func:`tinygraph.passes.tidy.unread_outputs_pass`).

Reverse mode may wrap each part in ``sum_to(part, like)`` (a shape helper);
when the likes are the matching slices of one array, the join becomes one
``sum_to(stored join, that array)``.
"""

from __future__ import annotations

from typing import Any

from .draft import Draft, Rec

__all__ = ["stored_concats_pass"]

_WHOLE = (None, None, None)


def stored_concats_pass(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op == "concat" and rec.inputs:
            _reuse(draft, rec)


def _reuse(draft: Draft, rec: Rec) -> None:
    axis = rec.attrs.get("axis", 0) % len(rec.shape)
    if axis != len(rec.shape) - 1:
        return
    parts = [_unwrap(draft, draft.recs[i]) for i in rec.inputs]
    if None in parts:
        return
    scans = {draft.recs[u].inputs[0] for u, _ in parts}  # type: ignore[misc]
    if len(scans) != 1:
        return
    scan = draft.recs[scans.pop()]
    a = scan.attrs
    k, ny, names = a["num_carry"], a["num_ys"], a["outputs"]
    wanted = [names[draft.recs[u].attrs["index"]] for u, _ in parts]  # type: ignore[misc]
    body = a["body"]
    stored = None
    for j in range(k, k + ny):
        node = body.node(names[j])
        if (node.op == "concat" and [s.name for s in node.inputs] == wanted
                and node.attrs.get("axis", 0) % len(node.shape) == len(node.shape) - 1):
            stored = j
            break
    if stored is None:
        return
    whole = draft.add("unpack", [scan.id], {"index": stored, "shape": rec.shape,
                                            "dtype": rec.dtype.name}, name=f"{rec.name}/stored")
    likes = [like for _, like in parts]  # type: ignore[misc]
    if any(like is not None for like in likes):
        source = _tiled_source(draft, likes, rec.shape[-1])
        if source is None:
            return
        whole = draft.add("sum_to", [whole, source], name=rec.name)
    if draft.recs[whole].shape == rec.shape:
        draft.replace(rec.id, whole)


def _unwrap(draft: Draft, rec: Rec) -> tuple[int, int | None] | None:
    """``(unpack id, like id or None)`` for ``unpack`` or ``sum_to(unpack, like)``."""
    like = None
    if rec.op == "sum_to":
        rec, like = draft.recs[rec.inputs[0]], rec.inputs[1]
    if rec.op != "unpack" or draft.recs[rec.inputs[0]].op != "scan":
        return None
    return rec.id, like


def _tiled_source(draft: Draft, likes: list[Any], width: Any) -> int | None:
    """The array whose last-axis slices, in order and tiling it, the likes all are."""
    if None in likes:
        return None
    source, at = None, 0
    for like_id in likes:
        like = draft.recs[like_id]
        if like.op != "getitem":
            return None
        index = like.attrs.get("index")
        src = draft.recs[like.inputs[0]]
        if (source not in (None, src.id) or not isinstance(index, tuple)
                or len(index) != len(src.shape) or any(p != _WHOLE for p in index[:-1])):
            return None
        start, stop, step = index[-1] if isinstance(index[-1], tuple) else (None, None, 1)
        start = 0 if start is None else start
        stop = src.shape[-1] if stop is None else stop
        if step is not None or start != at or not isinstance(stop, int):
            return None
        source, at = src.id, stop
    if source is None or draft.recs[source].shape[-1] != at or at != width:
        return None
    return source

"""Slices of joined arrays read from their parts: ``concat(a, S[:-1], S[-1:])[1:]`` is ``S``.

Reverse mode through a loop joins the states it saved: the initial one, then
the stacked states but the last (:func:`tinygraph.passes.tidy.saved_carries_pass`),
then the last, and reads rows ``1:`` of that: a copy of the whole (T, B, H)
state array to get back the array it came from (in a vanilla cell's training
at W2's sizes, two copies of 6.5 MB a call). Two rewrites, each exact (the
same rows in the same order):

- a leading-axis slice of a ``concat`` reads only the parts it covers (each
  part whole, or a slice of it);
- a ``concat`` of adjacent row ranges of one array (``S[i:j]``, ``S[j:k]``,
  ``S[k][None]``) is one range, and a range covering the array is the array.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> S, h0 = g.input("S", shape=(5, 2)), g.input("h0", shape=(2,))
>>> saved = tg.concat([tg.expand_dims(h0, 0), S[:-1]])
>>> states = tg.concat([saved, tg.expand_dims(S[-1], 0)])[1:]
>>> draft = Draft(g, [states * 2.0])
>>> concat_slices_pass(draft)
>>> [r.op for r in draft.live() if r.op in ("concat", "getitem")]
[]
"""

from __future__ import annotations

from .draft import Draft, Rec

__all__ = ["concat_slices_pass"]

_ROUNDS = 8  # each round may expose one more level (a slice of a slice of a concat)


def concat_slices_pass(draft: Draft) -> None:
    """Read slices of concats from their parts, and join adjacent row ranges (above)."""
    for _ in range(_ROUNDS):
        changed = False
        for rec in draft.live():
            new = (_slice_of_concat(draft, rec) if rec.op == "getitem" else
                   _joined_ranges(draft, rec) if rec.op == "concat" else None)
            if new is not None and new != rec.id:
                draft.replace(rec.id, new)
                changed = True
        if not changed:
            return


def _length(rec: Rec) -> int | None:
    first = rec.shape[0] if rec.shape else None
    return first if type(first) is int else None


def _span(rec: Rec, length: int) -> tuple[int, int] | None:
    """``(start, stop)`` when ``rec`` is ``x[start:stop]`` (step 1) of an ``x`` of ``length``
    rows, bounds resolved as numpy does; None for any other index."""
    index = rec.attrs.get("index") if rec.op == "getitem" else None
    if not isinstance(index, tuple) or len(index) != 1 or not isinstance(index[0], tuple) \
            or index[0][2] not in (None, 1):
        return None
    start, stop, _ = slice(index[0][0], index[0][1]).indices(length)
    return start, stop


def _joined(draft: Draft, pieces: list[int], rec: Rec) -> int | None:
    """The one piece, or a concat of the pieces, when it has ``rec``'s shape and dtype (an
    int part of a float join alone would come out as ints)."""
    new = pieces[0] if len(pieces) == 1 else draft.add("concat", pieces, {"axis": 0},
                                                       name=rec.name)
    found = draft.recs[new]
    return new if found.shape == rec.shape and found.dtype == rec.dtype else None


def _slice_of_concat(draft: Draft, rec: Rec) -> int | None:
    source = draft.recs[rec.inputs[0]]
    if source.op != "concat" or source.attrs.get("axis", 0) != 0:
        return None
    parts = [draft.recs[i] for i in source.inputs]
    lengths = [n for n in (_length(p) for p in parts) if n is not None]
    total = sum(lengths)
    span = _span(rec, total) if len(lengths) == len(parts) else None
    if span is None or span[0] >= span[1] or span == (0, total):
        return None
    start, stop = span
    pieces, offset = [], 0
    for part, n in zip(parts, lengths, strict=True):
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(part.id if (lo, hi) == (offset, offset + n) else draft.add(
                "getitem", [part.id], {"index": ((lo - offset, hi - offset, None),)},
                name=f"{rec.name}/part"))
        offset += n
    return _joined(draft, pieces, rec)


def _rows(draft: Draft, rec: Rec) -> tuple[int, int, int] | None:
    """``(array, start, stop)`` when ``rec`` is rows ``start:stop`` of one array of known
    length: ``S[i:j]`` or ``expand_dims(S[i], 0)``."""
    if rec.op == "expand_dims" and rec.attrs.get("axis") in (0, (0,)):
        row = draft.recs[rec.inputs[0]]
        index = row.attrs.get("index") if row.op == "getitem" else None
        source = draft.recs[row.inputs[0]] if row.op == "getitem" else None
        n = None if source is None else _length(source)
        if source is None or n is None or not isinstance(index, tuple) or len(index) != 1 \
                or type(index[0]) is not int:
            return None
        i = index[0] + n if index[0] < 0 else index[0]
        return (source.id, i, i + 1) if 0 <= i < n else None
    if rec.op != "getitem":
        return None
    source = draft.recs[rec.inputs[0]]
    n = _length(source)
    span = None if n is None else _span(rec, n)
    return (source.id, *span) if span is not None and span[0] < span[1] else None


def _joined_ranges(draft: Draft, rec: Rec) -> int | None:
    if rec.attrs.get("axis", 0) != 0:
        return None
    merged: list[tuple[int, int, int] | int] = []  # a range of an array, or a part as is
    for part in (draft.recs[i] for i in rec.inputs):
        rows = _rows(draft, part)
        last = merged[-1] if merged else None
        if rows is not None and isinstance(last, tuple) and last[0] == rows[0] \
                and last[2] == rows[1]:
            merged[-1] = (last[0], last[1], rows[2])
        else:
            merged.append(rows if rows is not None else part.id)
    if len(merged) == len(rec.inputs):
        return None  # nothing joined
    pieces = []
    for piece in merged:
        if isinstance(piece, int):
            pieces.append(piece)
            continue
        array, start, stop = piece
        whole = (start, stop) == (0, _length(draft.recs[array]))
        pieces.append(array if whole else draft.add(
            "getitem", [array], {"index": ((start, stop, None),)}, name=f"{rec.name}/rows"))
    return _joined(draft, pieces, rec)

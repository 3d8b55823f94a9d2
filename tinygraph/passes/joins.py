"""Sums of slices joined back, small terms added first: tidying what hoisting leaves.

After :mod:`tinygraph.passes.slices` a gated cell's biases leave the loop slice
by slice: ``A[..., k] + b[k]`` for every gate block ``k`` of the hoisted input
projection ``A``. When the slices tile the last axis, one sum over the whole
array does the same work in one call: ``(A + b)[..., k]``. And ``(X + b1) + b2``,
with two small terms broadcast over a large ``X``, becomes ``X + (b1 + b2)``:
one pass over ``X`` instead of two.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> A = g.input("A", shape=(None, 4))
>>> b1, b2 = g.param("b1", np.ones(4)), g.param("b2", np.ones(4))
>>> s = A + b1
>>> draft = Draft(g, [s[:, :2] + b2[:2], s[:, 2:] + b2[2:]])
>>> join_slice_sums_pass(draft)
>>> [(r.op, [draft.recs[i].name for i in r.inputs]) for r in draft.live() if r.op == "add"]
[('add', ['b1', 'b2']), ('add', ['A', 'add/joined_sum/small_terms'])]
"""

from __future__ import annotations

from .draft import Draft, Rec

__all__ = ["join_slice_sums_pass"]

# A term this small (values) broadcast over a larger one is "small" for regrouping.
_SMALL = 1 << 16
_WHOLE = (None, None, None)


def join_slice_sums_pass(draft: Draft) -> None:
    """Tiling slice sums joined into one sum; small broadcast terms added together first."""
    _join(draft)
    _small_terms_first(draft)


def _join(draft: Draft) -> None:
    groups: dict[tuple[int, int], list[tuple[Rec, tuple, tuple]]] = {}
    for rec in draft.live():
        if rec.op != "add":
            continue
        sides = [_last_axis_slice(draft, draft.recs[i]) for i in rec.inputs]
        if None in sides:
            continue
        (a, span_a), (b, span_b) = sides  # type: ignore[misc]
        if span_a != span_b:
            continue
        groups.setdefault((a, b), []).append((rec, span_a, span_b))
    for (a, b), members in groups.items():
        width = draft.recs[a].shape[-1]
        spans = sorted(span for _, span, _ in members)
        if (not isinstance(width, int) or spans[0][0] != 0 or spans[-1][1] != width
                or any(x[1] != y[0] for x, y in zip(spans, spans[1:], strict=False))
                or len({span for _, span, _ in members}) != len(members)):
            continue  # the slices do not tile the last axis once
        whole = draft.add("add", [a, b], name=f"{draft.recs[a].name}/joined_sum")
        if draft.recs[whole].shape != draft.recs[a].shape:
            continue  # b would broadcast a to a larger shape: leave the slices
        for rec, (start, stop), _ in members:
            index = (_WHOLE,) * (len(rec.shape) - 1) + ((start, stop, None),)
            part = draft.add("getitem", [whole], {"index": index}, name=rec.name)
            draft.replace(rec.id, part)


def _last_axis_slice(draft: Draft, rec: Rec) -> tuple[int, tuple[int, int]] | None:
    """``(source, (start, stop))`` when ``rec`` is ``source[..., start:stop]`` (every other
    axis whole), or ``(rec, (0, n))`` for a value taken whole."""
    if rec.op != "getitem":
        return None
    index = rec.attrs.get("index")
    source = draft.recs[rec.inputs[0]]
    if (not isinstance(index, tuple) or len(index) != len(source.shape) or not index
            or any(part != _WHOLE for part in index[:-1])):
        return None
    last, width = index[-1], source.shape[-1]
    if not (isinstance(last, tuple) and len(last) == 3 and last[2] is None
            and isinstance(width, int)):
        return None
    start = 0 if last[0] is None else last[0]
    stop = width if last[1] is None else last[1]
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= width):
        return None  # negative bounds and empty slices: left alone
    return source.id, (start, stop)


def _small_terms_first(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op != "add":
            continue
        inner, small = (draft.recs[i] for i in rec.inputs)
        if _is_small(inner) and not _is_small(small):
            inner, small = small, inner
        if (inner.op != "add" or not _is_small(small) or _is_small(inner)
                or len(draft.users[inner.id]) != 1 or inner.id in draft.root_set):
            continue
        large, other = (draft.recs[i] for i in inner.inputs)
        if _is_small(large):
            large, other = other, large
        if not _is_small(other) or _is_small(large):
            continue
        terms = draft.add("add", [other.id, small.id], name=f"{rec.name}/small_terms")
        total = draft.add("add", [large.id, terms], name=rec.name)
        if draft.recs[total].shape == rec.shape and draft.recs[total].dtype == rec.dtype:
            draft.replace(rec.id, total)


def _is_small(rec: Rec) -> bool:
    size = 1
    for d in rec.shape:
        if d is None:
            return False
        size *= d
    return size <= _SMALL and rec.op in ("param", "const", "add", "getitem")

"""Passes for the backward pass of a fused recurrence.

Reverse mode through an unrolled vanilla cell builds, step by step from the
last, ``dz_t = (g[t] + dz_{t+1} @ Wt) * d[t]`` with ``g`` the gradient from
the output layer and ``d`` the activation's slope — batched over time by
:mod:`tinygraph.passes.batching`, but still five or six nodes a step, and every
value wrapped in ``sum_to(x, like)`` (an identity when shapes agree).

- :func:`fuse_reverse_recurrences` finds those chains and replaces each with
  one ``reverse_recurrence`` node (:mod:`tinygraph.core.reverse_recurrence`),
  reading through the wrappers and handing their likes to the op, which
  checks at run time that the shapes agree.
- :func:`unstack_rows` turns a stack of the rows of one array into the array,
  also through ``sum_to`` wrappers and for a range read from a stack, so the
  parameter gradients read the fused results whole.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph import passes
>>> g = tg.Graph()
>>> X = g.input("X", shape=(3, None, 2))
>>> rows = tg.stack([X[0], X[1], X[2]])
>>> [n.op for n in passes.unstack_rows(g, [rows * 2.0]).nodes.values()]
['input', 'const', 'mul']
"""

from __future__ import annotations

import numpy as np

from .draft import Draft, Rec
from .rows import unstack_rows

__all__ = ["fuse_reverse_recurrences", "unstack_rows"]


def fuse_reverse_recurrences(draft: Draft) -> None:
    """Replace reverse mode's chains ``dz_t = (G[t] + dz_{t+1} @ Wt) * D[t]`` by one
    ``reverse_recurrence`` node (see :mod:`tinygraph.core.reverse_recurrence`)."""
    steps = {}  # dz id -> _Back
    for rec in draft.live():
        found = _back_step(draft, rec)
        if found is not None:
            steps[rec.id] = found
    earlier: dict[int, int | None] = {}  # dz_{t+1} id -> dz_t id (None: more than one)
    for dz_id, step in steps.items():
        later = steps.get(step.later) if step.later is not None else None
        if later is not None and later.family == step.family:
            earlier[step.later] = None if step.later in earlier else dz_id  # type: ignore[index]  # not None: checked above
    for start, step in steps.items():
        if step.later is not None:
            continue
        chain = [start]
        while earlier.get(chain[-1]) is not None:
            chain.append(earlier[chain[-1]])  # type: ignore[arg-type]  # not None: the loop test
        likes = {like for dz_id in chain for like in steps[dz_id].likes}
        weights = {steps[dz_id].wt for dz_id in chain[1:]}
        if len(chain) >= 2 and len(likes) <= 1 and len(weights) == 1:
            _fuse_back(draft, chain, steps, likes.pop() if likes else None)


class _Back:
    """One backward step: where g[t] and d[t] come from, and the later step it reads."""

    def __init__(self, g: Rec, d: Rec, wt: int | None, later: int | None, likes: set[int]):
        self.g_seq, self.g_row = g.inputs[0], g.attrs["index"][0]
        self.d_seq, self.d_row = d.inputs[0], d.attrs["index"][0]
        self.wt, self.later, self.likes = wt, later, likes
        self.family = (self.g_seq, self.d_seq)


def _back_step(draft: Draft, rec: Rec) -> _Back | None:
    """``rec = u * D[t]`` with ``u = G[t]`` or ``G[t] + dz' @ Wt`` (through identity
    ``sum_to`` wrappers), every part private to this step."""
    if rec.op != "mul" or len(rec.shape) != 2 or rec.dtype not in (np.float64, np.float32):
        return None
    for u_id, d_id in (rec.inputs, rec.inputs[::-1]):
        d, u = draft.recs[d_id], draft.recs[u_id]
        if u_id == d_id or not _row_of(d, rec) or not _only_user(draft, d, rec) \
                or not _only_user(draft, u, rec):
            continue
        likes: set[int] = set()
        g = _through_wrappers(draft, u, likes, private=True)
        if g is not None and _row_of(g, rec):
            return _Back(g, d, None, None, likes)
        if u.op != "add":
            continue
        for p_id, c_id in (u.inputs, u.inputs[::-1]):
            p, c = draft.recs[p_id], draft.recs[c_id]
            if p_id == c_id or not _only_user(draft, p, u) or not _only_user(draft, c, u):
                continue
            found = set(likes)
            g = _through_wrappers(draft, p, found, private=True)
            product = _through_wrappers(draft, c, found, private=True)
            if g is None or product is None or not _row_of(g, rec) or product.op != "matmul":
                continue
            x, wt = (draft.recs[i] for i in product.inputs)
            later = _through_wrappers(draft, x, found, private=False)
            if (later is not None and len(wt.shape) == 2 and wt.dtype == rec.dtype
                    and later.op == "mul" and later.shape == rec.shape):
                return _Back(g, d, wt.id, later.id, found)
    return None


def _row_of(rec: Rec, step: Rec) -> bool:
    """``rec`` is a row ``X[k]`` of a (T, B, H) array of the step's dtype."""
    index = rec.attrs.get("index") if rec.op == "getitem" else None
    return (index is not None and len(index) == 1 and isinstance(index[0], int)
            and index[0] >= 0 and rec.dtype == step.dtype and len(rec.shape) == 2)


def _only_user(draft: Draft, rec: Rec, user: Rec) -> bool:
    return (list(draft.users[rec.id]) == [user.id] and rec.id not in draft.root_set
            and user.inputs.count(rec.id) == 1)


def _through_wrappers(draft: Draft, rec: Rec, likes: set[int], private: bool) -> Rec | None:
    """The value under ``sum_to(…, like)`` wrappers, collecting each like's source."""
    while rec.op == "sum_to":
        like = draft.recs[rec.inputs[1]]
        inner = draft.recs[rec.inputs[0]]
        if not _row_of(like, like) or (private and not _only_user(draft, inner, rec)):
            return None
        likes.add(like.inputs[0])
        rec = inner
    return rec


def _fuse_back(draft: Draft, chain: list[int], steps: dict, like: int | None) -> None:
    """``chain`` runs from the last step back to the first."""
    first = steps[chain[0]]
    wt = steps[chain[1]].wt
    if draft.descendants(chain).intersection((first.g_seq, first.d_seq, wt, like)):
        # Only Wt can be: the last step does not read it, so it may be computed from
        # that step's dz, and one fused node would need its own output as an input.
        return
    n = len(chain)
    rows_in_time = list(reversed(chain))  # time order: t = 0 … n-1
    g = _rows(draft, first.g_seq, [steps[i].g_row for i in rows_in_time])
    d = _rows(draft, first.d_seq, [steps[i].d_row for i in rows_in_time])
    fused = draft.add("reverse_recurrence", [g, d, wt, *([] if like is None else [like])],
                      name=draft.recs[chain[0]].name + "/reverse_recurrence",
                      meta=draft.recs[chain[0]].meta)
    for t, dz_id in zip(range(n - 1, -1, -1), chain, strict=True):
        draft.replace(dz_id, draft.add("getitem", [fused], {"index": (t,)},
                                       name=draft.recs[dz_id].name))


def _rows(draft: Draft, seq: int, rows: list[int]) -> int:
    """``seq`` with its rows picked in time order (itself when they already are)."""
    rec = draft.recs[seq]
    if rows == list(range(len(rows))) and rec.shape[0] == len(rows):
        return seq
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return draft.add("getitem", [seq], {"index": ((rows[0], rows[0] + len(rows), 1),)},
                         name=rec.name + "/window")
    picks = draft.add_const(np.array(rows, dtype=np.int64), name=rec.name + "/order")
    return draft.add("take", [seq, picks], {"axis": 0}, name=rec.name + "/in_order")

"""Vectorizing per-step work outside a loop: T isomorphic nodes on rows -> one op on the stack.

After rerolling, what the steps' values fed outside the loop reads row t of a
stacked output (``ys[t]``): an output head, a per-step loss. When, for every
t = 0 … T-1, a node of the same op and attrs reads row t of the same stacked
arrays (and otherwise the same values), the T nodes are one op on the whole
stacks, built through the op's batch rule; each old node becomes row t of it,
so the next level vectorizes the same way. Finally a tree of adds whose terms
are the rows 0 … T-1 of one array becomes a sum over the time axis::

    loss = ce(ys[0], y[0]) + ce(ys[1], y[1]) + … + ce(ys[T-1], y[T-1])
       ==>  loss = sum(ce_per_step(ys, y), axis=0)

Only rows proved to come from one array, indices 0 … T-1 each once, count, or
evenly spaced ones (a loss on every k-th step reads ``ys[0::k]``, a view).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.op import OPS
from .draft import Draft, Rec, Value, freeze
from .rows import row_of, single_row_slices, unstack_rows

__all__ = ["vectorize_pass"]


def vectorize_pass(draft: Draft) -> None:
    """Batch groups of per-step nodes on rows of stacked arrays; sum rows over time."""
    single_row_slices(draft)
    for _ in range(64):  # each round lifts one level of per-step nodes; bounded
        if not _one_round(draft):
            break
    _sum_rows(draft)
    unstack_rows(draft)  # a stack of the rows of one vectorized op is that op


def _one_round(draft: Draft) -> bool:
    live = draft.live()
    rows: dict[int, dict[int, int]] = {}  # array id -> t -> row rec id
    for rec in live:
        found = row_of(rec)
        if found is not None:
            rows.setdefault(found[0], {})[found[1]] = rec.id
    # One row is no loop: lifting a lone step onto a stack of one adds a copy per node.
    lengths = {a: draft.recs[a].shape[0] for a, r in rows.items()
               if len(r) >= 2 and type(draft.recs[a].shape[0]) is int}
    if not lengths:
        return False
    row_at = {rid: (a, t) for a, r in rows.items() if a in lengths for t, rid in r.items()}
    exact, general, twins = _groups(draft, live, row_at)
    if twins:  # a step computing one value twice (softmax(z_t) and log_softmax(z_t) of
        draft.replace_all(twins)  # z_t = h_t @ V written twice) would hide the loop
        return True
    changed = False
    done: set[int] = set()
    for groups in (exact, general):
        for signature, members in groups:
            steps = sorted(members)
            lo, count = steps[0], len(steps)
            # Steps evenly spaced: every step, or every k-th (a loss on every other step)
            stride = steps[1] - lo if count >= 2 else 1
            if done.intersection(members.values()) or count < 2 \
                    or steps != list(range(lo, lo + stride * count, stride)) \
                    or any(not 0 <= lo + off and lo + off + stride * (count - 1) < lengths[a]
                           for kind, (a, off) in _row_slots(signature)):
                continue
            if any(kind == "leaf" for kind, _ in signature):
                concrete = _leaf_slots(draft, signature, members)
                if concrete is None:
                    continue
                signature = concrete
            signature = tuple((kind, _window(draft, detail, lo, count, lengths[detail[0]],
                                             stride))
                              if kind == "row" and isinstance(detail, tuple) else
                              (kind, detail) for kind, detail in signature)
            if _lift_group(draft, signature, members, lo, stride):
                done.update(members.values())
                changed = True
    return changed


def _row_slots(signature: tuple) -> list:
    """The signature's ``("row", (array, offset))`` slots (not yet windowed)."""
    return [(kind, detail) for kind, detail in signature
            if kind == "row" and isinstance(detail, tuple)]


def _window(draft: Draft, row: tuple[int, int], lo: int, count: int, length: int,
            stride: int = 1) -> int:
    """The rows ``lo + offset``, ``+ stride`` … of an array that a group of ``count``
    steps reads (the array itself when that is all of it): ``ids[t + 1]`` beside
    ``logits[t]``; ``ys[0::2]`` for a loss on every other step (a view either way)."""
    array, offset = row
    start = lo + offset
    if start == 0 and count == length and stride == 1:
        return array
    stop = start + stride * (count - 1) + 1
    return draft.add("getitem", [array],
                     {"index": ((start, stop, None if stride == 1 else stride),)},
                     name="vectorized/rows")


_Groups = list[tuple[tuple, dict[int, int]]]


def _groups(draft: Draft, live: list[Rec], row_at: dict[int, tuple[int, int]]
            ) -> tuple[_Groups, _Groups, dict[int, int]]:
    """Per-step nodes grouped by op, attrs and what they read: ``exact`` groups read
    equal consts at every step; ``general`` ones may read a different const at each
    step (``w_t * loss_t``), which becomes one stacked const, or an input of its own
    (targets fed as ``y_t``), which become one stack. Two nodes of one step with the
    same exact key compute the same value: the third result maps the second to the
    first (twins, to merge). Otherwise a group whose key two nodes of one step share
    is no loop (dropped)."""
    exact: dict[Any, dict[int, int]] = {}
    general: dict[Any, dict[int, int]] = {}
    twins: dict[int, int] = {}
    clashes: set[Any] = set()
    consts: dict[Any, int] = {}  # equal consts (each step builds its own) count as one
    for rec in live:
        if rec.op in ("input", "param", "const") or rec.id in row_at or OPS[rec.op].batch is None:
            continue
        same: list[tuple[str, Any]] = []
        loose: list[tuple[str, Any]] = []
        step = None
        for src in rec.inputs:
            if src in row_at:  # the step is the first row's t; others may be t + offset
                array, t = row_at[src]
                step = t if step is None else step
                same.append(("row", (array, t - step)))
                loose.append(("row", (array, t - step)))
            elif draft.recs[src].op == "const":
                const = draft.recs[src]
                value = (freeze(const.attrs), const.dtype.str)
                same.append(("same", consts.setdefault(value, src)))
                loose.append(("leaf", ("const", const.shape, const.dtype.str)))
            elif draft.recs[src].op == "input":  # a target fed per step: y_t
                leaf = draft.recs[src]
                same.append(("same", src))
                loose.append(("leaf", ("input", leaf.shape, leaf.dtype.str)))
            else:
                same.append(("same", src))
                loose.append(("same", src))
        else:
            if step is None:
                continue
            head = (rec.op, freeze(rec.attrs))
            twin = exact.get((*head, tuple(same)), {}).get(step)
            if twin is not None:
                twins[rec.id] = twin
                continue
            for groups, signature in ((exact, same), (general, loose)):
                key = (*head, tuple(signature))
                if step in groups.setdefault(key, {}):
                    clashes.add(key)
                groups[key][step] = rec.id
    return ([(key[2], m) for key, m in exact.items() if key not in clashes],
            [(key[2], m) for key, m in general.items()
             if key not in clashes and any(kind == "leaf" for kind, _ in key[2])], twins)


def _leaf_slots(draft: Draft, signature: tuple, members: dict[int, int]) -> tuple | None:
    """A general signature with each leaf slot made concrete: ``("same", id)`` when every
    step reads the same input or an equal const; else ``("row", id)`` of a new (T, ...)
    const of the consts' values, or of the stack of T distinct inputs (one per step)."""
    out = []
    for j, (kind, detail) in enumerate(signature):
        if kind != "leaf":
            out.append((kind, detail))
            continue
        srcs = [draft.recs[members[t]].inputs[j] for t in sorted(members)]
        if detail[0] == "input":
            if len(set(srcs)) == 1:
                out.append(("same", srcs[0]))
            elif len(set(srcs)) == len(srcs):
                out.append(("row", draft.add("stack", srcs, {"axis": 0},
                                             name="vectorized/inputs")))
            else:
                return None  # some steps share an input, others not: no one array
            continue
        values = [draft.recs[s].attrs["value"] for s in srcs]
        if all(np.array_equal(values[0], v) for v in values):
            out.append(("same", srcs[0]))
            continue
        stacked = np.stack([np.asarray(v, dtype=detail[2]) for v in values])
        out.append(("row", draft.add_const(stacked, name="vectorized/consts")))
    return tuple(out)


def _lift_group(draft: Draft, signature: tuple, members: dict[int, int], lo: int,
                stride: int = 1) -> bool:
    """The members as rows of one op on the stacks, through the op's batch rule."""
    first = draft.recs[members[lo]]
    args = [Value(draft, a) for _, a in signature]
    flags = [kind == "row" for kind, _ in signature]

    def emit(name: str, *xs: Value, **attrs: Any) -> Value:
        return Value(draft, draft.add(name, [x.id for x in xs], attrs,
                                      name=f"vectorized/{name}"))

    rule = OPS[first.op].batch
    assert rule is not None  # only ops with a batch rule were grouped (above)
    out = rule(emit, _Shaped(first), args, flags)
    if out is None:
        return False
    for t, member in members.items():
        draft.replace(member, draft.add("getitem", [out.id], {"index": ((t - lo) // stride,)},
                                        name=draft.recs[member].name))
    return True


class _Shaped:
    """A record seen as the per-step node of a batch rule (op, attrs, shape)."""

    def __init__(self, rec: Rec):
        self.op, self.attrs, self.shape, self.dtype = rec.op, rec.attrs, rec.shape, rec.dtype


def _sum_rows(draft: Draft) -> None:
    """A tree of adds and subtractions whose terms are rows 0 … T-1 of an array, all of
    one sign -> ``sum(array, axis=0)`` (or its negative: ``-l_0 - l_1 - …``), one such
    sum per array (``entropy + smoothness``, each a sum over steps), plus the tree's
    other terms (the 0 that Python's ``sum`` starts from)."""
    live = draft.live()
    users = {rec.id: draft.readers(rec.id) for rec in live}
    for rec in live:
        if rec.op not in _SIGNS or rec.id not in draft.recs:
            continue
        readers = users.get(rec.id, ())
        if len(readers) == 1 and readers[0].op in _SIGNS:
            continue  # inside a larger tree: walked from its top (once, not T times)
        terms: list[tuple[int, int]] = []
        stack = [(rec.id, 1)]
        while stack:
            rid, sign = stack.pop()
            part = draft.recs[rid]
            if part.op in _SIGNS and (rid == rec.id or len(users.get(rid, ())) == 1):
                stack.extend((src, sign * s) for src, s in zip(part.inputs, _SIGNS[part.op],
                                                              strict=True))
            else:
                terms.append((rid, sign))
        by_array: dict[int, list[tuple[int, int, int]]] = {}
        others = []
        for rid, sign in terms:
            row = row_of(draft.recs[rid])
            if row is None:
                others.append((rid, sign))
            else:
                by_array.setdefault(row[0], []).append((rid, sign, row[1]))
        sums = []  # (array, sign): every row of the array, all of one sign, is a term
        for array, rows in by_array.items():
            signs = {sign for _, sign, _ in rows}
            steps = sorted(t for _, _, t in rows)
            shape = draft.recs[array].shape
            if len(rows) >= 2 and len(signs) == 1 and steps == list(range(len(steps))) \
                    and shape[:1] == (len(steps),) and shape[1:] == rec.shape:
                sums.append((array, signs.pop()))
            else:
                others.extend((rid, sign) for rid, sign, _ in rows)
        if not sums:
            continue
        first, sign = sums[0]  # entropy + smoothness: one sum over time per array
        total = draft.add("sum", [first], {"axis": 0, "keepdims": False}, name=rec.name)
        if sign < 0:
            total = draft.add("neg", [total], {}, name=rec.name)
        for array, sign in sums[1:]:
            over_time = draft.add("sum", [array], {"axis": 0, "keepdims": False}, name=rec.name)
            total = draft.add("add" if sign > 0 else "sub", [total, over_time], {},
                              name=rec.name)
        for rid, sign in others:  # sum(losses) starts from 0: `0 + l_0 + l_1 + ...`
            total = draft.add("add" if sign > 0 else "sub", [total, rid], {}, name=rec.name)
        draft.replace(rec.id, total)


# The sign each input of an add, a subtraction or a negation enters the result with.
_SIGNS = {"add": (1, 1), "sub": (1, -1), "neg": (-1,)}

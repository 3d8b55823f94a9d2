"""Proposing the steps of an unrolled loop: which nodes step t built, and as what.

:mod:`tinygraph.passes.reroll` PROVES that T groups of nodes are one step
before it makes a scan of them; this module only proposes the groups, as
``{record id: (t, template)}`` (template: what the node is within its step,
the same name at every step). Three sources, the first that marks anything:

1. ``meta["t"]`` and ``meta["template"]``, set by :func:`tinygraph_rnn.unroll`;
2. a ``t=<k>/`` scope in the name — a loop written by hand in
   ``with g.scope(f"t={t}")`` blocks names its nodes alike at every step
   (``t=0/s``, ``t=1/s``, …): the template is the name inside the scope.
   Each outer scope is a loop of its own (``fwd/t=<k>/``, ``bwd/t=<k>/``),
   proposed in time order and backwards (a loop from t = T-1 down to 0);
3. the loop's shape — a loop written without either still builds the same
   ops in the same order at every step. Each step reads a row ``A[k]`` of one
   array (or ``A[:, k]``: batch-first data), or an input of its own; at a
   constant distance apart in building order, those reads mark the steps, and
   if the ops from one mark to the next repeat at every mark, each period is a
   step (started earlier than its mark when the step builds something before
   it reads its row, as in ``s @ W + a[t]``), its nodes named by their place
   in the period. Inputs or rows all made before the loop
   (``xs = [g.input(...) for t in range(T)]``, ``[X[:, t] for t in range(T)]``)
   mark the steps by where each is first read, and join their steps as
   leaves. A first step written apart (no initial state) stays outside: the
   loop is the steps after it. Every group of such reads (each array's rows,
   each kind of input) is a proposal, the longest first: a loss loop over
   ``Y[t]`` after the network's loop is proposed too, and refused by the
   proof. Last, a loop that reads nothing per step (a generator feeding its
   output back) is marked by its reads of one weight.

A wrong proposal costs nothing but the proof's time: the graph stays as built;
the reroll pass takes the first proposal it can prove.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .draft import Rec

__all__ = ["propose_steps", "row_pick"]

_SCOPE = re.compile(r"(.*?)t=(0|[1-9][0-9]*)/(.+)", re.DOTALL)

Marks = dict[int, tuple[int, str]]


def propose_steps(live: list[Rec], min_steps: int) -> Iterator[tuple[Marks, bool]]:
    """Proposals ``({record id: (step, template)}, backwards)`` for the records a loop
    seems to have built, the likeliest first (the caller proves them in turn).
    ``backwards``: the steps were numbered from the end (step 0 is the loop's last
    time index), so the loop's outputs run in reverse time order."""
    marks: Marks = {}
    for rec in live:
        t, template = rec.meta.get("t"), rec.meta.get("template")
        if isinstance(t, int) and not isinstance(t, bool) and isinstance(template, str):
            marks[rec.id] = (t, template)
    if marks:
        yield marks, False
        return
    scoped: dict[str, Marks] = {}  # per loop: what comes before t=<k>/ in the names
    for rec in live:
        found = _SCOPE.fullmatch(rec.name)
        if found:
            scoped.setdefault(found.group(1), {})[rec.id] = (int(found.group(2)),
                                                               found.group(3))
    for marks in sorted(scoped.values(), key=len, reverse=True):
        yield marks, False
        last = max(t for t, _ in marks.values())  # a loop run backwards in time
        yield {rid: (last - t, name) for rid, (t, name) in marks.items()}, True
    if scoped:
        return
    yield from _from_loop_shape(live, min_steps)


def row_pick(rec: Rec) -> tuple[int, int] | None:
    """``(axis, k)`` when ``rec`` picks entry ``k >= 0`` of one axis of its input:
    ``a[k]`` (axis 0) or ``a[:, k]`` (axis 1: batch-first data read step by step)."""
    index = rec.attrs.get("index") if rec.op == "getitem" and len(rec.inputs) == 1 else None
    if not isinstance(index, tuple) or not index:
        return None
    *before, k = index
    if type(k) is not int or k < 0 or any(part != (None, None, None) for part in before):
        return None
    return len(before), k


def _from_loop_shape(live: list[Rec], min_steps: int) -> Iterator[tuple[Marks, bool]]:
    order = sorted((r for r in live if r.op != "param"), key=lambda r: r.key)  # as built
    ops = [r.op for r in order]
    first_reader: dict[int, int] = {}  # leaf id -> place of its first reader in build order
    for place, rec in enumerate(order):
        for source in rec.inputs:
            first_reader.setdefault(source, place)
    groups: dict[Any, list[int]] = {}  # what each step reads -> its places in building order
    for place, rec in enumerate(order):
        pick = row_pick(rec)
        if pick is not None:
            groups.setdefault(("row", rec.inputs[0], pick[0]), []).append(place)
        elif rec.op == "input":
            groups.setdefault(("input", rec.shape, rec.dtype.str), []).append(place)
    for places in sorted(groups.values(), key=len, reverse=True):
        if len(places) < min_steps:
            break
        # The group's reads in building order: one loop, or several (a loop forwards
        # and one backwards over the same rows), each a run of equally spaced reads.
        for run in [places, *_runs(places, min_steps)]:
            yield from _loop_over(order, ops, run, run, min_steps)
        # Inputs or rows made before the loop (``xs = [X[t] for t in range(T)]``): the
        # loop starts where each is first read; each joins its step as a leaf.
        if any(order[p].id not in first_reader for p in places):
            continue
        readers = {p: first_reader[order[p].id] for p in places}
        if list(readers.values()) != places:
            by_reader = sorted(places, key=readers.__getitem__)  # in the order steps read
            reads = [readers[p] for p in by_reader]
            for start, stop in _run_bounds(reads, min_steps):
                yield from _loop_over(order, ops, reads[start:stop], by_reader[start:stop],
                                      min_steps)
    # Last, a loop that reads nothing per step (a generator feeding its output back):
    # each step reads the same weight the same way, at a constant distance apart.
    params = {rec.id for rec in live if rec.op == "param"}
    weight_reads: dict[Any, list[int]] = {}
    for place, rec in enumerate(order):
        for slot, src in enumerate(rec.inputs):
            if src in params:
                weight_reads.setdefault((src, rec.op, slot), []).append(place)
    for places in sorted(weight_reads.values(), key=len, reverse=True):
        if len(places) < min_steps:
            break
        for start, stop in _run_bounds(places, min_steps):
            yield from _loop_over(order, ops, places[start:stop], places[start:stop], min_steps)


def _loop_over(order: list[Rec], ops: list[str], marked: list[int], leaves: list[int],
               min_steps: int) -> Iterator[tuple[Marks, bool]]:
    """The loop whose step t reads leaf ``leaves[t]`` at place ``marked[t]`` (the leaf
    itself, or its first reader), if the ops between the reads repeat. A first step
    written apart (no initial state: ``h = tanh(x_0 @ U)``) stays outside; the steps
    after it are the loop, its value their initial carry. Backwards when the leaves
    run backwards in time (rows ``X[T-1]``, ``X[T-2]``, …, or inputs made in order
    and read last first)."""
    for skip in (0, 1):
        reads = marked[skip:]
        found = list(_periods(order, ops, reads)) if len(reads) >= min_steps else []
        picks = [row_pick(order[p]) for p in leaves[skip:]]
        when = [pick[1] if pick is not None else p for pick, p in zip(picks, leaves[skip:],
                                                                        strict=True)]
        for marks in found:
            for t, p in enumerate(leaves[skip:]):
                if order[p].id not in marks:
                    marks[order[p].id] = (t, "leaf")
            yield marks, when[0] > when[-1]
        if found:
            return


def _run_bounds(places: list[int], min_steps: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the maximal runs of equally spaced places (min_steps or more)."""
    bounds, start = [], 0
    for k in range(2, len(places) + 1):
        if k == len(places) or places[k] - places[k - 1] != places[start + 1] - places[start]:
            if k - start >= min_steps:
                bounds.append((start, k))
            start = k - 1 if k - start == 2 else k  # a pair starts the next run's spacing
    return bounds


def _runs(places: list[int], min_steps: int) -> list[list[int]]:
    bounds = _run_bounds(places, min_steps)
    return [places[a:b] for a, b in bounds if (a, b) != (0, len(places))]


def _periods(order: list[Rec], ops: list[str], places: list[int]) -> Iterator[Marks]:
    """Marks for steps that repeat one op pattern, one period per place in ``places``:
    for every start that repeats, the earliest first. A node built just before the
    loop may have the op a step ends with (an encoder's ``tanh`` before a decoder's
    steps, each ending in ``tanh``); the start that leaves it out is the next one."""
    period = places[1] - places[0]
    if period < 1 or any(b - a != period for a, b in zip(places, places[1:], strict=False)):
        return
    for shift in range(period - 1, -1, -1):
        starts = [p - shift for p in places]
        if starts[0] < 0 or starts[-1] + period > len(order):
            continue
        pattern = ops[starts[0]:starts[0] + period]
        if all(ops[s:s + period] == pattern for s in starts):
            yield {order[s + j].id: (t, f"{j}:{pattern[j]}")
                   for t, s in enumerate(starts) for j in range(period)}

"""Rerolling: the T copies of a step in an unrolled graph become one ``scan`` node.

:mod:`tinygraph.passes.steps` proposes which nodes form step t (from
``node.meta["t"]`` set by :func:`tinygraph_rnn.unroll`, a ``t=<k>/`` scope, or
the repeating shape of a hand-written loop); :mod:`tinygraph.passes.proof`
PROVES the steps are one body; this pass then rewrites them: one scan whose
sequences are the per-step leaves stacked (``xs`` itself, not a copy, when
its rows 0 … T-1 are read in order; a reversed view for a loop backwards in
time; a window or a ``take`` of its rows else), whose per-step outputs the
readers outside read as ``ys[t]`` (through ``ys[::-1]`` for a backward loop,
so rows line up in time), and whose final carries replace the last step's.
Every loop of a graph is rerolled, one per round. A proposal whose body a
shape rule refuses leaves the graph as it was.

::

    s0 ─▶ [t=0] ─▶ [t=1] ─▶ … ─▶ [t=T-1] ─▶ s        s0 ─▶ ┌ scan ┐ ─▶ s
           ▲ │      ▲ │            ▲ │          ==>  x ──▶ │ body │ ─▶ o[0] … o[T-1]
          x0 o0    x1 o1         xT-1 oT-1             └──────┘
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError
from .draft import Draft, Rec
from .proof import MIN_STEPS, StepPlan, delayed, only_common_nodes, prove
from .rows import single_row_slices
from .steps import Marks, propose_steps

__all__ = ["reroll_pass", "MIN_STEPS"]

MAX_LOOPS = 16  # separate loops rerolled in one graph (layers, directions)


def reroll_pass(draft: Draft) -> None:
    """Replace the steps of an unrolled graph by one scan node, when they provably are one."""
    live = draft.live()
    if any(rec.meta.get("grad") for rec in live):
        return  # backward nodes: passes.regrad rerolls the forward and differentiates the scan
    single_row_slices(draft)  # Y[t:t+1] read per step: row t, a sequence like Y[t]
    live = draft.live()
    for _ in range(MAX_LOOPS):  # one loop per round: a bidirectional net has two
        if not _reroll_one(draft, live):
            return
        live = draft.live()


def _reroll_one(draft: Draft, live: list[Rec]) -> bool:
    for proposed, backwards in propose_steps(live, MIN_STEPS):
        marks = dict(proposed)  # trimmed below; the proposer may build on its own copy
        steps: dict[int, list[Rec]] = {}
        for rec in live:
            if rec.id in marks:
                steps.setdefault(marks[rec.id][0], []).append(rec)
        count = len(steps)
        if count < MIN_STEPS or sorted(steps) != list(range(count)):
            continue
        missing = only_common_nodes(steps, count, marks)
        plan = prove(draft, steps, count, marks, missing)
        if plan is not None and _rewrite(draft, steps, count, plan, marks, backwards, missing):
            return True
    return False


def _rows_in_order(draft: Draft, source: int, rows: tuple[int, ...], axis: int) -> int:
    """``stack(source[k] for k in rows)`` without a copy when the rows are a range (the
    picked axis moved to the front first: a transposed view)."""
    if axis:
        rank = len(draft.recs[source].shape)
        source = draft.add("transpose", [source],
                           {"axes": (axis, *[i for i in range(rank) if i != axis])},
                           name="opt/time_major")
    count, start = len(rows), rows[0]
    if rows == tuple(range(start, start + count)):
        if start == 0 and draft.recs[source].shape[:1] == (count,):
            return source
        return draft.add("getitem", [source], {"index": ((start, start + count, None),)},
                         name="opt/steps")
    if rows == tuple(range(start, start - count, -1)):  # a loop backwards in time: a view
        stop = start - count if start - count >= 0 else None
        return draft.add("getitem", [source], {"index": ((start, stop, -1),)},
                         name="opt/steps")
    picks = draft.add_const(np.array(rows, dtype=np.int64), name="opt/step_rows")
    return draft.add("take", [source, picks], {"axis": 0}, name="opt/steps")


def _build_body(draft: Draft, steps: dict[int, list[Rec]], count: int, plan: StepPlan,
                marks: Marks) -> tuple[dict, dict, dict]:
    """The scan's body and attrs from the proved plan: ``(attrs, ref, carry_in)``. Builds
    only the body graph (the draft is untouched), so a shape rule that refuses it leaves
    the graph as it was."""
    from ..core.graph import Graph  # the body is a graph of the same kind as the outer one

    graph_type = type(draft.graph) if isinstance(draft.graph, Graph) else Graph
    body = graph_type(f"{draft.graph.name}/step")
    ref = {marks[r.id][1]: r for r in steps[min(1, count - 1)]}
    carry_in = {}
    for i, name in enumerate(plan.carries):
        value = ref[delayed(name)[0]]
        shape = tuple(None if d == 1 else d for d in value.shape)
        carry_in[name] = body.input(f"carry{i}", shape=shape, dtype=value.dtype)
    seq_in = {}
    for i, seq in enumerate(plan.sequences):
        if seq[0] == "slice":
            rec = draft.recs[seq[1][0]]
            shape = tuple(d for i, d in enumerate(rec.shape) if i != seq[1][2])
        else:
            rec = ref[seq[1]] if seq[0] in ("leaf", "consts") else draft.recs[seq[1][0]]
            shape = rec.shape
        seq_in[seq] = body.input(f"x{i}", shape=shape, dtype=rec.dtype)
    cap_in = {c: body.input(f"c{i}", shape=draft.recs[c].shape, dtype=draft.recs[c].dtype)
              for i, c in enumerate(plan.captures)}
    made: dict[str, Any] = {}
    for (name, rec), wiring in zip(ref.items(), plan.wiring, strict=True):
        if rec.op == "input":
            made[name] = seq_in[("leaf", name)]
        elif rec.op == "const":
            made[name] = (seq_in[("consts", name)] if wiring else
                          body.const(rec.attrs["value"], dtype=rec.dtype))
        elif wiring and wiring[0][0] == "slice":
            made[name] = seq_in[("slice", wiring[0][1])]
        else:
            args = [made[d] if k == "inner" else carry_in[d] if k == "carry" else
                    seq_in[("slice", d)] if k == "picked" else
                    seq_in[("stack", d)] if k == "stacked" else cap_in[d] for k, d in wiring]
            made[name] = body.add_node(rec.op, args, dict(rec.attrs),
                                       name=name if name not in body.nodes else None)
    outs = [_new_carry(n, made, carry_in) for n in plan.carries] + [made[n] for n in plan.outputs]
    attrs = {"body": body, "num_carry": len(plan.carries), "num_xs": len(plan.sequences),
             "num_ys": len(plan.outputs), "length": count, "reverse": False,
             "inputs": tuple(n.name for n in body.inputs.values()),
             "outputs": tuple(n.name for n in [*outs, *carry_in.values()])}
    return attrs, ref, carry_in


def _new_carry(name: str, made: dict[str, Any], carry_in: dict[str, Any]) -> Any:
    """A carry's value for the next step: its template's new value, or for a value from
    k steps back, the carry of k - 1 steps back."""
    base, k = delayed(name)
    return made[base] if k == 1 else carry_in[base if k == 2 else f"{base}@{k - 1}"]


def _rewrite(draft: Draft, steps: dict[int, list[Rec]], count: int, plan: StepPlan,
             marks: Marks, backwards: bool, missing: set[str]) -> bool:
    try:
        attrs, ref, carry_in = _build_body(draft, steps, count, plan, marks)
    except GraphError:  # the proof admits steps a shape rule refuses: keep the graph
        return False
    xs = []
    for seq in plan.sequences:
        if seq[0] == "slice":
            xs.append(_rows_in_order(draft, *seq[1]))
        elif seq[0] == "stack":
            xs.append(draft.add("stack", list(seq[1]), {"axis": 0}, name="opt/steps"))
        elif seq[0] == "consts":
            values = [_rec_of(steps[t], seq[1], marks).attrs["value"] for t in range(count)]
            xs.append(draft.add_const(np.stack(values), name=f"opt/{seq[1]}"))
        else:
            rows = [_rec_of(steps[t], seq[1], marks).id for t in range(count)]
            xs.append(draft.add("stack", rows, {"axis": 0}, name=f"opt/{seq[1]}"))
    scan = draft.add("scan", [*plan.carries.values(), *xs, *plan.captures], attrs, name="scan")
    last = {marks[r.id][1]: r for r in steps[count - 1]}
    last_shape = {n: (last[b] if b in last else ref[b])
                  for n, b in ((n, delayed(n)[0]) for n in plan.carries)}
    specs = ([(last_shape[n].shape, last_shape[n].dtype) for n in plan.carries]
             + [((count, *ref[n].shape), ref[n].dtype) for n in plan.outputs]
             + [((count, *n.shape), n.dtype) for n in carry_in.values()])
    unpacked = [draft.add("unpack", [scan], {"index": i, "shape": shape, "dtype": dt.name},
                          name=f"scan.out{i}") for i, (shape, dt) in enumerate(specs)]
    k = len(plan.carries)
    for i, name in enumerate(plan.carries):
        if name in missing or name in plan.outputs or delayed(name)[1] > 1:
            continue
        if draft.users[last[name].id] or last[name].id in draft.root_set:
            draft.replace(last[name].id, unpacked[i])
    for j, name in enumerate(plan.outputs):
        ys = unpacked[k + j]
        if backwards:  # in time order (a view): readers at time k and k+1 then line up
            ys = draft.add("getitem", [ys], {"index": ((None, None, -1),)},
                           name=f"scan.out{k + j}_in_time_order")
        row_of: dict[int, int] = {}
        for t in range(count - 1 if name in missing else count):
            rec = _rec_of(steps[t], name, marks)
            row_of[rec.id] = draft.add("getitem", [ys],
                                       {"index": (count - 1 - t if backwards else t,)},
                                       name=rec.name)
        draft.replace_all(row_of)
    return True


def _rec_of(recs: list[Rec], name: str, marks: Marks) -> Rec:
    return next(r for r in recs if marks[r.id][1] == name)


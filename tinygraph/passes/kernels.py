"""Scan bodies that one fused kernel runs faster: ``act(carry @ W + a_t)`` -> ``recurrence``.

After hoisting and sinking, a vanilla cell's loop is exactly that: one matmul,
one add, one activation per step. The ``recurrence`` op
(:mod:`tinygraph.core.recurrence`) runs such a loop with preallocated rows
and, for small steps, the adds folded into the matmul — the one place where
a hand-written kernel beats the generic scan loop (its per-step overhead is
~3 numpy calls instead of a generated body). This is the single rule applied
to scan bodies; any other body runs through the scan kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.op import OPS
from ..core.recurrence import ACTIVATIONS
from .draft import Draft, Rec
from .likes import stored_by_a_scan
from .tidy import carries_before_steps, unread_outputs_pass

__all__ = ["recurrence_kernel_pass"]


def recurrence_kernel_pass(draft: Draft) -> None:
    # Backward loops first: the fused one no longer reads the forward values it only
    # checked shapes against, and a forward scan freed of those outputs may fuse too.
    for rec in draft.live():
        if rec.op == "scan" and rec.attrs["reverse"]:
            _to_reverse_recurrence(draft, rec)
    unread_outputs_pass(draft)
    for rec in draft.live():
        if rec.op == "scan" and not rec.attrs["reverse"]:
            _to_recurrence(draft, rec)


def _strip(node: Any) -> Any:
    """Through reverse mode's shape helpers (``sum_to(x, like)`` is x when shapes agree)."""
    while OPS[node.op].identity_when_shapes_agree if node.op in OPS else False:
        node = node.inputs[0]
    return node


def _to_reverse_recurrence(draft: Draft, rec: Rec) -> None:
    """A backward loop ``c' = ((c + g_t) * d_t) @ Wt`` handing out ``dz_t = (c + g_t) * d_t``:
    the ``reverse_recurrence`` op, ``dz_t = (g_t + dz_{t+1} @ Wt) * d_t``, from a zero carry;
    or ``c' = (c * d_t) @ Wt`` from a given carry (a loss on the last step only): the op
    with ``carry_in``."""
    a = rec.attrs
    body, k, m, ny = a["body"], a["num_carry"], a["num_xs"], a["num_ys"]
    if k != 1 or ny < 1:
        return
    inputs = [body.node(n) for n in a["inputs"]]
    outs = [body.node(n) for n in a["outputs"]]
    carry_in, position = inputs[0], {n: i for i, n in enumerate(inputs)}
    mm = _strip(outs[0])
    if mm.op != "matmul":
        return
    dz, weight = _strip(mm.inputs[0]), mm.inputs[1]
    if dz.op != "mul" or position.get(weight, 0) < k + m:
        return
    found = _summed(dz, carry_in, position, k + m)
    if found is None:
        return
    g, slope = found  # g None: the gradient enters through the initial carry alone
    if g is None and draft.recs[rec.inputs[0]].op == "zeros_like":
        return  # nothing enters at all: left to the other passes
    if g is not None and draft.recs[rec.inputs[0]].op != "zeros_like":
        return
    if any(_strip(y) is not dz for y in outs[1:1 + ny]):
        return
    if any(len(n.shape) != 2 for n in (carry_in if g is None else g, slope, weight, carry_in)):
        return
    for y in outs[1:1 + ny]:  # shape helpers must read per-step values, like dz itself
        if any(not k <= position.get(w.inputs[1], -1) < k + m for w in _wrappers(y, dz)):
            return
    users = draft.readers(rec.id)
    if any(u.op != "unpack" or not 1 <= u.attrs["index"] < 1 + ny for u in users):
        return  # the first step's carry or the saved carries are read: keep the scan
    outer = {n: rec.inputs[i] for n, i in position.items()}
    # Shape helpers between dz and an output whose like has dz's static shape change
    # nothing unless a step broadcast a batch of 1 against B: they are dropped, and the
    # kernel checks at run time that every per-step input has the same steps and batch
    # (else the plan runs the graph as built). Their likes are recomputed forward values;
    # the checked inputs are already there.
    # A forward scan's stored output is allocated in the shape its first two steps
    # broadcast to, so it cannot show a batch broadcast: it is no like worth reading.
    likes = [rec.inputs[i] for i in range(k, k + m)
             if len(inputs[i].shape) >= 1 and len(draft.recs[rec.inputs[i]].shape) >= 2
             and not stored_by_a_scan(draft, rec.inputs[i])]
    attrs: dict[str, Any] = {} if g is not None else {"carry_in": True}
    d = outer[slope]
    states = _tanh_states(draft, d, rec)
    if states is not None:  # d = 1 - s*s: the kernel computes it a step at a time
        d, attrs = states, {**attrs, "slope": "tanh"}
        likes = [states if like == outer[slope] else like for like in likes]
    first = outer[g] if g is not None else rec.inputs[0]
    dz_all = draft.add("reverse_recurrence", [first, d, outer[weight], *likes], attrs,
                       name=rec.name)
    for u in users:
        y = outs[u.attrs["index"]]
        value = dz_all
        for wrapper in _wrappers(y, dz):
            if wrapper.inputs[1].shape == dz.shape:
                continue
            value = draft.add(wrapper.op, [value, outer.get(wrapper.inputs[1], value)],
                              name=f"{rec.name}/{wrapper.op}")
        draft.replace(u.id, value)


def _summed(dz: Any, carry_in: Any, position: dict, sequences_end: int) -> tuple | None:
    """``(g, slope)`` when ``dz`` is ``(carry + g_t) * slope_t``, ``(None, slope)`` when it is
    ``carry * slope_t`` (both per-step inputs); else None."""
    for total, slope in (dz.inputs, dz.inputs[::-1]):
        if not 1 <= position.get(slope, 0) < sequences_end:
            continue
        if _strip(total) is carry_in:
            return None, slope
        if total.op == "add":
            terms = [_strip(t) for t in total.inputs]
            if carry_in in terms:
                g = total.inputs[1 - terms.index(carry_in)]
                return (g, slope) if 1 <= position.get(g, 0) < sequences_end else None
    return None


def _tanh_states(draft: Draft, d: int, scan: Rec) -> int | None:
    """``s`` when ``d`` is ``1 - s * s`` (tanh's slope, as its vjp writes it) of ``s``'s shape
    and dtype, read by ``scan`` alone; else None."""
    sub = draft.recs[d]
    if sub.op != "sub" or [r.id for r in draft.readers(d)] != [scan.id]:
        return None
    one, square = (draft.recs[i] for i in sub.inputs)
    if one.op != "const" or one.attrs["value"].size != 1 or square.op != "mul":
        return None
    if square.inputs[0] != square.inputs[1] or len(draft.readers(square.id)) != 1:
        return None
    s = draft.recs[square.inputs[0]]
    if s.shape != sub.shape or not s.dtype == sub.dtype == one.dtype:
        return None
    return s.id if np.all(one.attrs["value"] == 1) else None


def _wrappers(y: Any, inner: Any) -> list:
    """The shape helpers between ``inner`` and ``y``, innermost first."""
    chain = []
    while y is not inner:
        chain.append(y)
        y = y.inputs[0]
    return chain[::-1]


def _to_recurrence(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, m, ny = a["body"], a["num_carry"], a["num_xs"], a["num_ys"]
    if k != 1 or m < 1:
        return
    outs = [body.node(n) for n in a["outputs"]]
    carry_in = body.node(a["inputs"][0])
    act = outs[0]
    if act.op not in ACTIVATIONS or any(y is not act for y in outs[1:1 + ny]):
        return
    z = act.inputs[0]
    if z.op != "add":
        return
    left, right = z.inputs
    mm, seq = (left, right) if left.op == "matmul" else (right, left)
    if mm.op != "matmul" or mm.inputs[0] is not carry_in or seq.op != "input":
        return
    weight = mm.inputs[1]
    position = {n: i for i, n in enumerate(a["inputs"])}
    wi, si = position.get(weight.name), position.get(seq.name)
    if wi is None or si is None or not 1 <= si < 1 + m or wi < 1 + m:
        return
    if len(weight.shape) != 2 or len(seq.shape) != 2 or len(carry_in.shape) != 2:
        return
    users = draft.readers(rec.id)
    if any(u.op != "unpack" or u.attrs["index"] > 1 + ny for u in users):
        return
    if not any(u.attrs["index"] >= 1 for u in users):
        return  # only the last carry is read: the scan keeps memory flat, the kernel would not
    init, xs, w = rec.inputs[0], rec.inputs[si], rec.inputs[wi]
    states = draft.add("recurrence", [xs, w, init], {"activation": act.op}, name=rec.name)
    last = draft.add("getitem", [states], {"index": (-1,)}, name=f"{rec.name}.last")
    for u in users:
        index = u.attrs["index"]
        draft.replace(u.id, last if index == 0 else states if index < 1 + ny
                      # the carries a gradient reads: a loss on the last step only
                      # leaves no per-step output to rebuild them from but these states
                      else carries_before_steps(draft, init, states, u.name))

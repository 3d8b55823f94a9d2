"""The pass that finds recurrences in a graph and runs each as one ``recurrence`` op.

After :mod:`tinygraph.passes.batching` has moved the input projections of an
unrolled RNN out of the time loop, each step of the forward pass is still
four nodes — a slice ``a[t]`` of the batched projections, ``s_{t-1} @ W``,
the add and the activation — and a plan pays a Python line, a numpy call and
a fresh array for each. :func:`fuse_recurrences` finds chains of such steps
on the graph (slices of one sequence, in any order, one weight, each state
feeding the next product, the slice, product and sum read by nothing else)
and replaces each chain with one node of :mod:`tinygraph.recurrence`. The
per-step states become slices of its result; a stack of all of them becomes
the result itself.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph import passes
>>> g = tg.Graph()
>>> a = g.input("a", shape=(3, None, 2))
>>> W = g.param("W", np.eye(2) * 0.5)
>>> s = g.input("s0", shape=(None, 2))
>>> states = []
>>> for t in range(3):
...     s = tg.tanh(a[t] + s @ W)
...     states.append(s)
>>> [n.op for n in passes.fuse_recurrence(g, [tg.stack(states)]).nodes.values()]
['input', 'param', 'input', 'recurrence']
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..core.recurrence import ACTIVATIONS
from .draft import Draft, Rec, is_shape_helper

__all__ = ["fuse_recurrences"]


def fuse_recurrences(draft: Draft) -> None:
    """Replace chains ``s_t = act(a[t] + s_{t-1} @ W)`` by one ``recurrence`` node."""
    steps: dict[int, _Step] = {}  # activation rec id -> its step
    for rec in draft.live():
        found = _step(draft, rec)
        if found is not None:
            steps[rec.id] = found
    follows = {}  # act id -> the act id of the next step in the same chain
    for act_id, step in steps.items():
        before = steps.get(step.prev)
        if before is not None and (before.w, before.seq) == (step.w, step.seq) \
                and draft.recs[step.prev].op == draft.recs[act_id].op:
            follows[step.prev] = act_id
    followers = set(follows.values())
    starts = [i for i in steps if i not in followers]
    for start in starts:
        chain = [start]
        while chain[-1] in follows:
            chain.append(follows[chain[-1]])
        if len(chain) >= 2:
            _fuse(draft, chain, steps)


class _Step(NamedTuple):
    """One step ``act(seq[row] + prev @ w)``: ids of its parts (slice: the rec seq[row])."""

    prev: int
    w: int
    seq: int
    row: int
    slice: int


def _step(draft: Draft, rec: Rec) -> _Step | None:
    """(s_{t-1}, W, A, t, A[t]) when ``rec`` is ``act(A[t] + s_{t-1} @ W)``, parts private."""
    if rec.op not in ACTIVATIONS or rec.attrs or len(rec.shape) != 2:
        return None
    z = draft.recs[rec.inputs[0]]
    if z.op != "add" or not _private(draft, z, rec):
        return None
    for m_id, a_id in (z.inputs, z.inputs[::-1]):
        m, a = draft.recs[m_id], draft.recs[a_id]
        if (m.op == "matmul" and a.op == "getitem" and m_id != a_id
                and _private(draft, m, z) and _private(draft, a, z)):
            prev, w = (draft.recs[i] for i in m.inputs)
            seq = draft.recs[a.inputs[0]]
            index = a.attrs["index"]
            if (len(w.shape) == 2 and len(prev.shape) == 2 and len(seq.shape) == 3
                    and len(index) == 1 and isinstance(index[0], int) and index[0] >= 0
                    and seq.shape[0] is not None and index[0] < seq.shape[0]
                    and rec.dtype == z.dtype == m.dtype == a.dtype == w.dtype == prev.dtype
                    and rec.dtype in (np.float64, np.float32)):
                return _Step(prev.id, w.id, seq.id, index[0], a.id)
    return None


def _private(draft: Draft, rec: Rec, user: Rec) -> bool:
    """``rec`` is not fetched and its value is read only by ``user`` (once).

    Reverse mode's ``sum_to(g, like=rec)`` nodes read only its shape; they are
    allowed, and :func:`_fuse` points them at a value of the same shape.
    """
    return rec.id not in draft.root_set and user.inputs.count(rec.id) == 1 and [
        u for u in draft.users[rec.id] if not _reads_shape_only(draft.recs[u], rec.id)
    ] == [user.id]


def _reads_shape_only(user: Rec, rec_id: int) -> bool:
    return is_shape_helper(user.op) and user.inputs[1] == rec_id and user.inputs[0] != rec_id


def _redirect_shape_readers(draft: Draft, old: int, new: int) -> None:
    for user in list(draft.users[old]):
        if _reads_shape_only(draft.recs[user], old):
            draft.redirect(user, old, new)


def _fuse(draft: Draft, chain: list[int], steps: dict) -> None:
    first_prev, w, seq, k0, _ = steps[chain[0]]
    rows = [steps[act_id].row for act_id in chain]
    seq_rec = draft.recs[seq]
    bias: Any = _split_bias(draft, seq_rec, {steps[act_id].slice for act_id in chain})
    if bias is not None:
        seq, bias = bias
        seq_rec = draft.recs[seq]
    source = seq  # the sequence before reordering or windowing
    if rows != list(range(k0, k0 + len(rows))):
        # Batching stacks steps in the order the fetches reach them, not always
        # in time order: pick the rows in the chain's order.
        picks = draft.add_const(np.array(rows, dtype=np.int64), name=seq_rec.name + "/order")
        seq = draft.add("take", [seq, picks], {"axis": 0}, name=seq_rec.name + "/in_order")
    elif k0 != 0 or seq_rec.shape[0] != len(rows):  # the chain reads part of the sequence
        seq = draft.add("getitem", [seq], {"index": ((k0, k0 + len(rows), 1),)},
                        name=seq_rec.name + "/window")
    # Shape donors of reverse mode: the product s_{t-1} @ W has the shape of s_{t-1},
    # the sum in the activation that of s_t; a slice of A is kept (a view), or taken
    # from P when the bias moved into the kernel.
    for act_id in chain:
        prev, _, _, k, slice_id = steps[act_id]
        z = draft.recs[act_id].inputs[0]
        product = next(i for i in draft.recs[z].inputs if i != slice_id)
        _redirect_shape_readers(draft, product, prev)
        _redirect_shape_readers(draft, z, act_id)
        if bias is not None and any(_reads_shape_only(draft.recs[u], slice_id)
                                    for u in draft.users[slice_id]):
            _redirect_shape_readers(draft, slice_id,
                                    draft.add("getitem", [source], {"index": (k,)}))
    first = draft.recs[chain[0]]
    fused = draft.add("recurrence", [seq, w, first_prev, *([] if bias is None else [bias])],
                      {"activation": first.op}, name=first.name + "/recurrence",
                      meta=first.meta)
    slices = []
    for t, act_id in enumerate(chain):
        part = draft.add("getitem", [fused], {"index": (t,)}, name=draft.recs[act_id].name)
        slices.append(part)
    # In time order: each replacement then frees only its own step (the previous
    # state already has its replacement); backwards, each would walk the whole chain.
    for act_id, part in zip(chain, slices, strict=True):
        draft.replace(act_id, part)
    # A stack of every state, in order, is the fused result itself. (Replaced after
    # the states: releasing it first would free, and later re-walk, the whole chain.)
    whole = {user for user in draft.users[slices[0]]
             if draft.recs[user].op == "stack" and draft.recs[user].inputs == slices
             and draft.recs[user].attrs.get("axis", 0) == 0}
    for user in whole:
        draft.replace(user, fused)


def _split_bias(draft: Draft, seq: Rec, slices: set[int]) -> tuple[int, int] | None:
    """(P, b) when the sequence is ``P + b`` with b a param or const (H,) vector that
    only this chain's slices read: the kernel then adds b inside its steps (batching
    moved it out of them), which spares a pass over the whole (T, B, H) sequence."""
    if seq.op != "add" or seq.id in draft.root_set or set(draft.users[seq.id]) != slices:
        return None
    for p_id, b_id in (seq.inputs, seq.inputs[::-1]):
        p, b = draft.recs[p_id], draft.recs[b_id]
        if (b.op in ("param", "const") and len(b.shape) == 1 and p.shape == seq.shape
                and b.shape[0] == seq.shape[-1] is not None and p.dtype == b.dtype == seq.dtype):
            return p_id, b_id
    return None

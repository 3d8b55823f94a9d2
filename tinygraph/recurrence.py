"""A recurrence run as one op: ``s_t = act(s_{t-1} @ W + a_t)`` for every step.

After :mod:`tinygraph.batching` has moved the input projections of an
unrolled RNN out of the time loop, each step of the forward pass is still
four nodes — a slice ``a_t`` of the batched projections, ``s_{t-1} @ W``,
the add and the activation — and a plan pays one Python line, one numpy call
and one fresh array for each. The pass here (:func:`fuse_recurrences`) finds
such chains on the graph and replaces them with one ``recurrence`` node whose
kernel runs the steps in a tight loop over preallocated rows: three numpy
calls per step, each writing in place, and nothing allocated. The per-step
states become slices of its result; a stack of all of them becomes the
result itself.

The op is also registered for direct use and has a gradient rule, so graphs
holding it can be differentiated, saved and drawn like any other.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> a = g.input("a", shape=(3, 1, 2))
>>> W = g.param("W", np.eye(2))
>>> s0 = g.input("s0", shape=(1, 2))
>>> S = g.add_node("recurrence", [a, W, s0], {"activation": "tanh"})
>>> out = g.run(S, {"a": np.ones((3, 1, 2)), "s0": np.zeros((1, 2))})
>>> bool(np.allclose(out[1], np.tanh(np.tanh(1.0) + 1.0)))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .batching import SHAPE_LIKE
from .draft import Draft, Rec
from .ops import Op, _grads, _new, _sigmoid, _unbroadcast, register
from .shape_rules import DtypeMismatch, Spec
from .shapes import ShapeMismatch, broadcast_shapes, format_shape

__all__ = ["ACTIVATIONS", "fuse_recurrences"]


def _sigmoid_into(z: np.ndarray, out: np.ndarray) -> None:
    out[...] = _sigmoid(z)  # the op's own formula: results equal the unfused graph's


def _relu_into(z: np.ndarray, out: np.ndarray) -> None:
    np.maximum(z, 0, out=out)


# activation op -> f(z, row): writes act(z) into row
ACTIVATIONS = {"tanh": np.tanh, "sigmoid": _sigmoid_into, "relu": _relu_into}


def _recurrence_forward(a: np.ndarray, w: np.ndarray, s0: np.ndarray,
                        b: np.ndarray | None = None, activation: str = "tanh") -> np.ndarray:
    act = ACTIVATIONS[activation]
    dtype = np.result_type(a, w, s0) if b is None else np.result_type(a, w, s0, b)
    step = a.shape[1:]
    if s0.shape != step:
        # Broadcasting as in the unfused graph: a (1, H) s0 against a batch of B rows.
        step = np.broadcast_shapes(step, s0.shape[:-1] + w.shape[1:])
        a = np.broadcast_to(a, a.shape[:1] + step)
        s0 = np.broadcast_to(s0, step)
    if s0.size * w.shape[1] <= _AUGMENT_MAX and np.isfinite(a).all() and (
            b is None or np.isfinite(b).all()):
        return _small_steps(a, w, s0, b, act, dtype)
    if b is not None and s0.size < _BIAS_PER_STEP_MIN:
        a, b = a + b, None  # small steps: one add over all of them beats one per step
    states = np.empty(a.shape, dtype)
    z = np.empty(step, dtype)
    dot, add = np.dot, np.add
    prev = s0
    # Iterating an array yields its rows as views, at C speed.
    for a_t, row in zip(a, states, strict=True):
        dot(prev, w, z)  # out given positionally: ~20 ns less per call
        add(z, a_t, z)
        if b is not None:
            add(z, b, z)
        act(z, row)
        prev = row
    return states


# Below this many multiply-adds per step (batch x H x H) a step costs its numpy
# calls, not its arithmetic: one call fewer beats the doubled matmul.
_AUGMENT_MAX = 4096
# From this many values per step (batch x H), adding the bias inside each step
# costs less than a separate pass over the whole (T, B, H) sequence.
_BIAS_PER_STEP_MIN = 2048


def _small_steps(a: np.ndarray, w: np.ndarray, s0: np.ndarray, b: np.ndarray | None,
                 act: Any, dtype: np.dtype) -> np.ndarray:
    """Two calls per step: ``[s_{t-1} | a_t | 1] @ [[W], [I], [b]]`` adds inside the matmul.

    Row t of ``rows`` holds ``s_{t-1}`` next to ``a_t`` (and a 1 for the bias);
    the activation writes ``s_t`` into the left part of row t + 1. The
    identity block adds ``a_t`` and exact zeros, so results equal
    ``s_{t-1} @ W + a_t (+ b)`` up to the order BLAS sums in (a few ulp).
    Only for finite ``a`` and ``b``: ``inf * 0`` would be NaN.
    """
    steps, hidden = a.shape[0], w.shape[1]
    extra = 0 if b is None else 1
    rows = np.empty((steps + 1, *a.shape[1:-1], 2 * hidden + extra), dtype)
    rows[:-1, ..., hidden:2 * hidden] = a
    rows[-1, ..., hidden:] = 0
    rows[:-1, ..., 2 * hidden:] = 1
    rows[0, ..., :hidden] = s0
    blocks = [w, np.eye(hidden, dtype=dtype)] + ([] if b is None else [np.reshape(b, (1, -1))])
    stacked = np.concatenate(blocks)
    z = np.empty(a.shape[1:], dtype)
    dot = np.dot
    for row, nxt in zip(rows[:-1], rows[1:, ..., :hidden], strict=True):
        dot(row, stacked, z)
        act(z, nxt)
    return rows[1:, ..., :hidden].copy()


def _recurrence_shape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    if len(specs) not in (3, 4):
        raise ShapeMismatch(f"takes a, W, s0 and optionally b; got {len(specs)} inputs")
    (a, da), (w, dw), (s0, ds) = specs[:3]
    bias = specs[3] if len(specs) == 4 else None
    if bias is not None and (len(bias[0]) != 1 or bias[1] != da):
        raise ShapeMismatch(f"the bias must be an (H,) vector of dtype {da}; got "
                            f"{format_shape(bias[0])} {bias[1]}")
    if attrs.get("activation", "tanh") not in ACTIVATIONS:
        raise ShapeMismatch(f"activation must be one of {sorted(ACTIVATIONS)}, "
                            f"got {attrs.get('activation')!r}")
    wanted = "a (T, B, H) sequence, an (H, H) weight and a (B, H) initial state"
    if len(a) != 3 or len(w) != 2 or len(s0) != 2:
        raise ShapeMismatch(f"needs {wanted}; got {format_shape(a)}, {format_shape(w)}, "
                            f"{format_shape(s0)}")
    hidden = {d for d in (a[2], w[0], w[1], s0[1], *(bias[0] if bias else ()))
              if d is not None}
    if len(hidden) > 1:
        raise ShapeMismatch(f"needs {wanted}; the sizes disagree: {format_shape(a)}, "
                            f"{format_shape(w)}, {format_shape(s0)}")
    if not da == dw == ds or da.kind != "f":
        raise DtypeMismatch(f"needs one float dtype, got {da}, {dw} and {ds}")
    (batch,) = broadcast_shapes(a[1:2], s0[:1])  # s0 may broadcast against the batch
    return (a[0], batch, hidden.pop() if hidden else None), da


def _recurrence_vjp(node, g, needs=None):
    """Backpropagation through time, as graph nodes: two matmuls and a product per step."""
    a, w, s0, *bias = node.inputs
    steps = node.shape[0]
    act = node.attrs.get("activation", "tanh")
    dz: list[Any] = [None] * steps
    carry = None  # d loss / d s_{t} flowing back from step t + 1
    for t in reversed(range(steps)):
        ds = g[t] if carry is None else g[t] + carry
        y = node[t]
        slope = 1 - y * y if act == "tanh" else y * (1 - y) if act == "sigmoid" else \
            _new("sign", y)
        dz[t] = ds * slope
        carry = dz[t] @ w.T
    grad_w = None
    if needs is None or needs[1]:
        for t in range(steps):
            prev = node[t - 1] if t else s0 if s0.shape == dz[0].shape and None not in s0.shape \
                else _new("broadcast_to", s0, dz[0])  # s0 may have been broadcast
            term = prev.T @ dz[t]
            grad_w = term if grad_w is None else grad_w + term
    dz_all = _new("stack", *dz, axis=0) if needs is None or needs[0] or bias and needs[3] \
        else None
    return _grads(needs, lambda: _unbroadcast(dz_all, a), lambda: grad_w,
                  lambda: _unbroadcast(carry, s0),
                  *([lambda: _new("sum_to", dz_all, bias[0])] if bias else []))


register(Op("recurrence", None, _recurrence_forward, _recurrence_shape, _recurrence_vjp,
            doc="s_t = act(s_{t-1} @ w + a[t] (+ b)) for t < T from s0: all states (T, B, H)"))


# ---------------------------------------------------------------------- pass


def fuse_recurrences(draft: Draft) -> None:
    """Replace chains ``s_t = act(a[t] + s_{t-1} @ W)`` by one ``recurrence`` node."""
    steps = {}  # act rec id -> (prev id, W id, A id, k, id of the slice A[k])
    for rec in draft.live():
        found = _step(draft, rec)
        if found is not None:
            steps[rec.id] = found
    follows = {}  # act id -> the act id of the next step in the same chain
    for act_id, (prev, w, seq, _, _) in steps.items():
        before = steps.get(prev)
        if before is not None and before[1:3] == (w, seq) \
                and draft.recs[prev].op == draft.recs[act_id].op:
            follows[prev] = act_id
    followers = set(follows.values())
    starts = [i for i in steps if i not in followers]
    for start in starts:
        chain = [start]
        while chain[-1] in follows:
            chain.append(follows[chain[-1]])
        if len(chain) >= 2:
            _fuse(draft, chain, steps)


def _step(draft: Draft, rec: Rec) -> tuple[int, int, int, int, int] | None:
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
                return prev.id, w.id, seq.id, index[0], a.id
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
    return user.op in SHAPE_LIKE and user.inputs[1] == rec_id and user.inputs[0] != rec_id


def _redirect_shape_readers(draft: Draft, old: int, new: int) -> None:
    for user in list(draft.users[old]):
        if _reads_shape_only(draft.recs[user], old):
            draft.redirect(user, old, new)


def _fuse(draft: Draft, chain: list[int], steps: dict) -> None:
    first_prev, w, seq, k0, _ = steps[chain[0]]
    rows = [steps[act_id][3] for act_id in chain]
    seq_rec = draft.recs[seq]
    bias = _split_bias(draft, seq_rec, {steps[act_id][4] for act_id in chain})
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

"""The pass that finds recurrences in a graph and runs each as one ``recurrence`` op.

After :mod:`tinygraph.batching` has moved the input projections of an
unrolled RNN out of the time loop, each step of the forward pass is still
four nodes — a slice ``a[t]`` of the batched projections, ``s_{t-1} @ W``,
the add and the activation — and a plan pays a Python line, a numpy call and
a fresh array for each. :func:`fuse_recurrences` finds chains of such steps
on the graph (consecutive slices of one sequence, one weight, each state
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

import numpy as np

from . import reverse_recurrence  # noqa: F401 - registers the op the pass emits
from .batching import SHAPE_LIKE
from .draft import Draft, Rec
from .recurrence import ACTIVATIONS

__all__ = ["fuse_recurrences", "fuse_reverse_recurrences", "unstack_rows"]


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


# ------------------------------------------------------------- the backward chain


def fuse_reverse_recurrences(draft: Draft) -> None:
    """Replace reverse mode's chains ``dz_t = (G[t] + dz_{t+1} @ Wt) * D[t]`` by one
    ``reverse_recurrence`` node (see :mod:`tinygraph.reverse_recurrence`)."""
    steps = {}  # dz id -> _Back
    for rec in draft.live():
        found = _back_step(draft, rec)
        if found is not None:
            steps[rec.id] = found
    earlier: dict[int, int | None] = {}  # dz_{t+1} id -> dz_t id (None: more than one)
    for dz_id, step in steps.items():
        later = steps.get(step.later) if step.later is not None else None
        if later is not None and later.family == step.family:
            earlier[step.later] = None if step.later in earlier else dz_id
    for start, step in steps.items():
        if step.later is not None:
            continue
        chain = [start]
        while earlier.get(chain[-1]) is not None:
            chain.append(earlier[chain[-1]])
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
    n = len(chain)
    rows_in_time = list(reversed(chain))  # time order: t = 0 … n-1
    g = _rows(draft, first.g_seq, [steps[i].g_row for i in rows_in_time])
    d = _rows(draft, first.d_seq, [steps[i].d_row for i in rows_in_time])
    wt = steps[chain[1]].wt
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


def unstack_rows(draft: Draft) -> None:
    """``stack(X[0], …, X[T-1])`` -> ``X``, also through ``sum_to(…, like)`` wrappers:
    a stack of ``sum_to(X[t], L[t])`` is ``sum_to(X, L)`` (each row is reduced to its
    like's shape either way). After the fusions, reverse mode's stacks of per-step
    gradients are stacks of rows of the fused results. Rows or ranges read from a
    stack are first read from its parts, so a stack whose head is special (the
    initial state's) still yields its tail."""
    for rec in draft.live():
        if rec.op != "stack" or rec.attrs.get("axis", 0) != 0:
            continue
        for user in [draft.recs[u] for u in draft.users[rec.id]]:
            index = user.attrs.get("index") if user.op == "getitem" else None
            if index is None or len(index) != 1:
                continue
            if isinstance(index[0], int):
                draft.replace(user.id, rec.inputs[index[0]])
                continue
            picked = rec.inputs[slice(*index[0])]
            if len(picked) >= 2:
                draft.replace(user.id, draft.add("stack", picked, {"axis": 0},
                                                 name=user.name + "/parts"))
    for rec in draft.live():
        if rec.op == "stack" and rec.attrs.get("axis", 0) == 0 and len(rec.inputs) >= 2:
            whole = _stack_of_rows(draft, [draft.recs[i] for i in rec.inputs])
            if whole is not None and whole != rec.id:
                draft.replace(rec.id, whole)


def _stack_of_rows(draft: Draft, parts: list[Rec]) -> int | None:
    """A node equal to ``stack(parts)`` built from whole arrays, if there is one."""
    first = parts[0]
    if first.op == "getitem":
        source, start = first.inputs[0], first.attrs["index"][0]
        if not isinstance(start, int) or start < 0 or not all(
                p.op == "getitem" and p.inputs[0] == source and p.attrs["index"] == (start + t,)
                for t, p in enumerate(parts)):
            return None
        if start == 0 and draft.recs[source].shape[:1] == (len(parts),):
            return source
        return draft.add("getitem", [source], {"index": ((start, start + len(parts), 1),)},
                         name=first.name + "/rows")
    if first.op == "sum_to" and all(p.op == "sum_to" for p in parts):
        values = _stack_of_rows(draft, [draft.recs[p.inputs[0]] for p in parts])
        likes = _stack_of_rows(draft, [draft.recs[p.inputs[1]] for p in parts])
        if values is None or likes is None or \
                len(draft.recs[values].shape) != len(draft.recs[likes].shape):
            return None
        return draft.add("sum_to", [values, likes], name=first.name + "/rows")
    return None

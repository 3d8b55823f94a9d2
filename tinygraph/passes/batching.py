"""Batching over time: per-step work of an unrolled graph done once, for all steps.

An unrolled RNN repeats the same small ops T times. Only the recurrence
itself (``s_{t-1} @ W`` and what feeds the next state) must run step by
step; everything else can run as one large op on the stacked steps, which
costs one numpy call instead of T. :func:`batch_pass` finds that work on the
graph alone — never from names — and rewrites it::

    x_t @ U  (T matmuls, operands independent)   ->  stack(x) @ U, sliced per step
    op(B[t], k) for every slice of a batched B   ->  op(B, k), sliced
    op(s_t, k) for every s_t of an existing stack(s) -> op(stack(s), k), sliced
    (B[t] + v) + k                               ->  (B[t] + k) + v      (k invariant)
    stack(B[0], …, B[T-1])                       ->  B
    Σ_t transpose(a_t) @ g_t, Σ_t sum_to(g_t, like) (parameter gradients):
                                                 see tinygraph.time_sums

Independence is proven: a group is merged only when no member's operand has
another member among its ancestors, and ops are moved into a batch only when
nothing they feed leads back into the stacked values. Batched values are
built with ``stack``, which insists on equal runtime shapes; when sizes
known only at run time differ (a ``(1, H)`` initial state next to a
``(B, H)`` batch), the plan falls back to the unbatched graph.
"""

from __future__ import annotations

from typing import Any

from ..core.shapes import ShapeMismatch, broadcast_shapes
from .draft import Draft, Rec, freeze, is_shape_helper
from .time_sums import MIN_GROUP, batch_sums, rows

__all__ = ["batch_pass"]

# Ops that act on each time slice independently when their other operands are
# time-invariant and of rank <= the slice's rank (so broadcasting aligns).
_SLICEWISE = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "relu", "exp", "log",
              "softmax", "log_softmax"}


# ------------------------------------------------------------ shared weights


def _batch_groups(draft: Draft) -> dict[tuple, list[Rec]]:
    """Candidate groups: matmuls ``a @ W`` and takes ``take(W, ids)`` sharing W and a shape."""
    groups: dict[tuple, list[Rec]] = {}
    for rec in draft.live():
        if rec.op == "matmul":
            a, w = (draft.recs[i] for i in rec.inputs)
            if len(w.shape) == 2 and len(a.shape) >= 1 and a.shape.count(None) <= 1:
                groups.setdefault(("matmul", w.id, a.shape, a.dtype), []).append(rec)
        elif rec.op == "take" and rec.attrs.get("axis", 0) == 0:
            ids = draft.recs[rec.inputs[1]]
            groups.setdefault(("take", rec.inputs[0], ids.shape, ids.dtype), []).append(rec)
    return {k: v for k, v in groups.items() if len(v) >= MIN_GROUP}


def _slice_index(draft: Draft, rec: Rec) -> int | None:
    """t if ``rec`` is a slice ``B[t]``, possibly seen through shape adapters (sum_to …)."""
    for _ in range(4):
        if rec.op == "getitem" and len(rec.attrs["index"]) == 1 and isinstance(
                rec.attrs["index"][0], int):
            return rec.attrs["index"][0]
        if not is_shape_helper(rec.op):
            return None
        rec = draft.recs[rec.inputs[0]]
    return None


def _in_time_order(draft: Draft, members: list[Rec], operand: int) -> list[Rec]:
    """Members sorted by the time index of their operands when those are slices (reverse
    mode builds the last step first); else as found. Stacks in time order can then be
    recognised as the batched value they came from."""
    index = [_slice_index(draft, draft.recs[m.inputs[operand]]) for m in members]
    if None in index or len(set(index)) != len(index):
        return members
    return [m for _, m in sorted(zip(index, members, strict=True), key=lambda p: p[0])]  # type: ignore[arg-type, return-value]  # all known


def _batch_group(draft: Draft, kind: str, members: list[Rec]) -> int:
    """Replace independent ``members`` by slices of one batched op; the batched rec id."""
    members = _in_time_order(draft, members, 1 if kind == "take" else 0)
    count = len(members)
    first = members[0]
    meta = {"batched": count}
    if kind == "take":
        stacked = draft.add("stack", [m.inputs[1] for m in members], {"axis": 0},
                            name=first.name + "/stack_ids", meta=meta)
        batched = draft.add("take", [first.inputs[0], stacked], {"axis": 0},
                            name=first.name + "/batched", meta=meta)
    else:
        weight = first.inputs[1]
        operand = draft.recs[first.inputs[0]]
        stacked = draft.add("stack", [m.inputs[0] for m in members], {"axis": 0},
                            name=first.name + "/stack", meta=meta)
        if len(operand.shape) == 1:
            batched = draft.add("matmul", [stacked, weight], name=first.name + "/batched",
                                meta=meta)
        else:
            matrix = rows(draft, stacked, operand.shape[-1], first.name)
            product = draft.add("matmul", [matrix, weight], name=first.name + "/batched",
                                meta=meta)
            out_shape = (count, *(-1 if d is None else d for d in first.shape))
            batched = draft.add("reshape", [product], {"shape": out_shape},
                                name=first.name + "/unrows", meta=meta)
    _slice_into(draft, batched, members)
    return batched


def _slice_into(draft: Draft, batched: int, members: list[Rec]) -> None:
    for t, member in enumerate(members):
        draft.replace(member.id, draft.add("getitem", [batched], {"index": (t,)},
                                           name=member.name, meta=member.meta))


# ------------------------------------------------------- moving ops into batches


def _time_slices(draft: Draft, rec_id: int) -> list[Rec] | None:
    """The users ``B[0] … B[T-1]`` of a batched value B if they are exactly all of its slices."""
    rec = draft.recs[rec_id]
    if not rec.shape or rec.shape[0] is None:
        return None
    slices: dict[int, Rec] = {}
    for user in draft.users_of(rec_id):
        index = user.attrs.get("index") if user.op == "getitem" else None
        if (index is None or len(index) != 1 or not isinstance(index[0], int)
                or index[0] < 0 or index[0] in slices):
            continue
        slices[index[0]] = user
    if sorted(slices) != list(range(rec.shape[0])):
        return None
    return [slices[t] for t in range(rec.shape[0])]


def _invariant(draft: Draft) -> dict[int, bool]:
    """rec id -> computed from params and consts only (the same at every step)."""
    varying = draft.descendants([i for i, r in draft.recs.items() if r.op == "input"])
    return {i: i not in varying for i in draft.recs}


def _slice_source(draft: Draft, rec: Rec, t: int, count: int) -> int | None:
    """The batched value B if ``rec`` is ``B[t]`` and B holds ``count`` steps."""
    if (rec.op == "getitem" and rec.attrs.get("index") == (t,)
            and draft.recs[rec.inputs[0]].shape[:1] == (count,)):
        return rec.inputs[0]
    return None


def _signature(draft: Draft, user: Rec, piece: int, t: int, count: int, rank: int,
               invariant: dict[int, bool]) -> tuple | None:
    """How ``user`` applies to step t's value ``piece``, if it is a per-slice op: each
    other operand is time-invariant (rank <= the slice's) or the slice ``B[t]`` of
    another batched value. Shape-adapting ops (``sum_to(x, like)``) need ``like`` to be
    such a slice: against an invariant ``like`` they would also sum over time."""
    shape_like = is_shape_helper(user.op)
    if user.op not in _SLICEWISE and not (shape_like and user.inputs[0] == piece):
        return None
    parts: list[tuple[Any, ...]] = []
    for i in user.inputs:
        source = None if i == piece else _slice_source(draft, draft.recs[i], t, count)
        if i == piece:
            parts.append(("piece",))
        elif source is not None:
            parts.append(("slice", source))
        elif not shape_like and invariant.get(i, False) and len(draft.recs[i].shape) <= rank:
            parts.append(("same", i))
        else:
            return None
    return (user.op, freeze(user.attrs), tuple(parts))


def _lift(draft: Draft, batched: int, signature: tuple, users: list[Rec]) -> int:
    """``users[t] = op(pieces[t], …)`` -> slices of ``op(batched, …)``."""
    first = users[0]
    attrs = dict(first.attrs)
    if "axis" in attrs and attrs["axis"] >= 0:
        attrs["axis"] += 1
    inputs = [batched if part[0] == "piece" else part[1] for part in signature[2]]
    new = draft.add(first.op, inputs, attrs, name=first.name + "/batched",
                    meta={"batched": len(users)})
    _slice_into(draft, new, users)
    return new


def _common_users(draft: Draft, pieces: list[Rec], rank: int,
                  invariant: dict[int, bool]) -> list[tuple[tuple, list[Rec]]]:
    """Groups of per-slice users, one user per piece, applying the same op the same way."""
    by_signature: dict[tuple, list[Rec]] = {}
    for t, piece in enumerate(pieces):
        for user in draft.users_of(piece.id):
            sig = _signature(draft, user, piece.id, t, len(pieces), rank, invariant)
            if sig is not None and len(by_signature.setdefault(sig, [])) == t:
                by_signature[sig].append(user)
    return [(sig, group) for sig, group in by_signature.items() if len(group) == len(pieces)]


def _sink_slicewise(draft: Draft, batched: int, invariant: dict[int, bool]) -> list[int]:
    """``op(B[t], k)`` for every slice t of B -> ``op(B, k)[t]``; the new batched recs."""
    slices = _time_slices(draft, batched)
    if slices is None:
        return []
    rank = len(draft.recs[batched].shape) - 1
    # Slices may have other users too (a backward sum_to reading a slice's shape): they
    # keep reading the slice; the lifted op depends on B and invariants only, so no cycle.
    groups = _common_users(draft, slices, rank, invariant)
    return [_lift(draft, batched, sig, group) for sig, group in groups]


def _sink_into_stacks(draft: Draft, invariant: dict[int, bool]) -> list[int]:
    """``op(s_t, k)`` for every part of an existing ``stack(s_0 … s_T-1)`` -> slices of
    ``op(stack, k)``, when nothing those ops feed leads back into any ``s_t``."""
    made = []
    for rec in draft.live():
        if (rec.op != "stack" or rec.attrs.get("axis", 0) != 0 or len(rec.inputs) < MIN_GROUP
                or len(set(rec.inputs)) != len(rec.inputs)):
            continue
        pieces = [draft.recs[i] for i in rec.inputs]
        rank = len(pieces[0].shape)
        for sig, group in _common_users(draft, pieces, rank, invariant):
            if draft.descendants([u.id for u in group]) & set(rec.inputs):
                continue  # a user feeds a later step: batching it would make a cycle
            made.append(_lift(draft, rec.id, sig, group))
    return made


def _unstack_all(draft: Draft) -> None:
    """``stack([B[0], …, B[T-1]])`` -> ``B``, wherever such a stack is."""
    for rec in draft.live():
        if rec.op != "stack" or rec.attrs.get("axis", 0) != 0:
            continue
        parts = [draft.recs[i] for i in rec.inputs]
        source = parts[0].inputs[0] if parts[0].op == "getitem" else None
        if source is None or draft.recs[source].shape[:1] != (len(parts),):
            continue
        if all(p.op == "getitem" and p.inputs[0] == source and p.attrs["index"] == (t,)
               for t, p in enumerate(parts)):
            draft.replace(rec.id, source)


def _fits_inside(small: tuple, big: tuple) -> bool:
    """Broadcasting ``small`` against ``big`` leaves ``big``'s shape unchanged."""
    try:
        return len(small) <= len(big) and broadcast_shapes(small, big) == tuple(big)
    except ShapeMismatch:
        return False


def _reassociate(draft: Draft, invariant: dict[int, bool]) -> None:
    """``(B[t] + v) + k`` -> ``(B[t] + k) + v`` for invariant k, so ``+ k`` can join the batch.

    Changes the order of two float additions: results move by an ulp at most.
    """
    for rec in list(draft.recs.values()):
        if rec.op != "add" or not draft.users[rec.id] and rec.id not in draft.root_set:
            continue
        for inner_id, k in (rec.inputs, rec.inputs[::-1]):
            inner = draft.recs[inner_id]
            if not invariant.get(k) or inner.op != "add":
                continue
            # Besides rec, only shape readers (reverse mode's sum_to(g, like=inner)) may
            # read inner; they read the new sum instead, which has inner's shape.
            shape_readers = [u for u in draft.users_of(inner_id) if u.id != rec.id]
            if not all(is_shape_helper(u.op) and u.inputs.index(inner_id) == 1
                       for u in shape_readers):
                continue
            for p, v in (inner.inputs, inner.inputs[::-1]):
                piece = draft.recs[p]
                if (piece.op != "getitem" or invariant.get(v)
                        or not draft.recs[piece.inputs[0]].meta.get("batched")
                        or not _fits_inside(draft.recs[k].shape, piece.shape)):
                    continue
                first = draft.add("add", [p, k], name=inner.name, meta=inner.meta)
                total = draft.add("add", [first, v], name=rec.name, meta=rec.meta)
                if draft.recs[total].shape != inner.shape:
                    continue
                for reader in shape_readers:
                    draft.redirect(reader.id, inner_id, total)
                draft.replace(rec.id, total)
                break
            else:
                continue
            break


# ------------------------------------------------------------------- driver


def batch_pass(draft: Draft) -> None:
    """Every rewrite above, in an order where each one exposes work for the next."""
    for (kind, *_), members in _batch_groups(draft).items():
        hit = draft.descendants([m.id for m in members])
        operand = 1 if kind == "take" else 0
        free = [m for m in members if m.inputs[operand] not in hit]
        if len(free) >= MIN_GROUP:
            _batch_group(draft, kind, free)
    _reassociate(draft, _invariant(draft))
    invariant = _invariant(draft)
    # Every value read slice by slice (batched above, or built whole by the user, such as
    # a loss over stacked logits and its gradient) is a place to move per-step ops into.
    work = [rec.id for rec in draft.live() if _time_slices(draft, rec.id) is not None]
    work.extend(_sink_into_stacks(draft, invariant))
    while work:
        current = work.pop()
        for new in _sink_slicewise(draft, current, invariant):
            invariant[new] = False
            work.append(new)
    batch_sums(draft)
    _unstack_all(draft)

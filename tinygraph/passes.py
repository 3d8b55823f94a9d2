"""Pure graph -> graph rewrites that make a graph cheaper to run.

Each public pass takes a graph and the nodes that matter (``fetches``;
default: every node nothing reads) and returns a NEW graph computing the same
values; the input graph is untouched and ``validate()`` holds on the result.
Fetched nodes keep their names, so ``new.run("y", ...)`` works as before.

- :func:`cull`: drop nodes the fetches do not need.
- :func:`cse`: merge nodes computing the same op on the same inputs.
- :func:`fold_constants`: evaluate ops whose inputs are all consts.
- :func:`onehot_to_take`: ``one_hot(ids, n) @ M`` -> ``take(M, ids)``.
- :func:`batch_over_time`: matmuls (and takes) sharing one weight whose other
  operands do not depend on one another — ``x_t @ U`` of every step, and
  ``s_t @ V`` once the states exist — become one large matmul on the stacked
  operands; per-step ops applied to its slices with time-invariant other
  operands (``+ c``, ``softmax``) move into the batch, and a ``stack`` of
  all the slices becomes the batched value itself. Independence is proven on
  the graph (no operand has a member of the group among its ancestors), not
  read from names.
- :func:`optimize`: all of the above, in that order.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> y = tg.tanh(x * 2.0) + tg.tanh(x * 2.0)
>>> from tinygraph import passes
>>> len(g), len(passes.cse(g, [y]))
(8, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .draft import Draft, Rec
from .graph import Graph, Node
from .ops import OPS
from .shapes import ShapeMismatch, broadcast_shapes

__all__ = ["cull", "cse", "fold_constants", "onehot_to_take", "batch_over_time", "optimize",
           "rewrite"]

_FOLD_MAX_ELEMENTS = 1 << 20  # a folded const larger than this would cost more memory than time

Pass = Callable[[Draft], None]


def rewrite(graph: Graph, fetches: Any, passes: list[Pass]) -> tuple[Graph, list[Node]]:
    """Apply ``passes`` to a draft of ``fetches``' ancestors; the new graph and fetch nodes."""
    from .scheduler import Fetches

    roots = Fetches(graph, fetches).nodes if fetches is not None else _sinks(graph)
    draft = Draft(graph, roots)
    for apply in passes:
        apply(draft)
    return draft.build()


def _sinks(graph: Graph) -> list[Node]:
    read = {src.index for node in graph.nodes.values() for src in node.inputs}
    return [node for node in graph.nodes.values() if node.index not in read]


def _public(passes: list[Pass], doc: str) -> Callable[..., Graph]:
    def run_pass(graph: Graph, fetches: Any = None) -> Graph:
        return rewrite(graph, fetches, passes)[0]

    run_pass.__doc__ = doc
    return run_pass


# --------------------------------------------------------------------- cse


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return value


def _cse(draft: Draft) -> None:
    seen: dict[Any, int] = {}
    for rec in draft.live():
        if rec.op in ("input", "param"):
            continue
        if rec.op == "const" and rec.attrs["value"].size > 4096:
            continue
        key = (rec.op, tuple(rec.inputs), _freeze(rec.attrs) if rec.attrs else None)
        if key in seen:
            draft.replace(rec.id, seen[key])
        else:
            seen[key] = rec.id


# ---------------------------------------------------------- constant folding


def _fold(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op in OPS and rec.inputs and all(
            draft.recs[i].op == "const" for i in rec.inputs
        ):
            if None in rec.shape or int(np.prod(rec.shape)) > _FOLD_MAX_ELEMENTS:
                continue
            args = [draft.recs[i].attrs["value"] for i in rec.inputs]
            try:
                with np.errstate(all="ignore"):
                    value = OPS[rec.op].forward(*args, **rec.attrs)
            except Exception:  # noqa: BLE001 - a failing fold is left for run time to report
                continue
            draft.replace(rec.id, draft.add_const(np.asarray(value, dtype=rec.dtype),
                                                  name=rec.name))


# ------------------------------------------------------- one_hot @ M -> take


def _onehot_take(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op != "matmul":
            continue
        left, right = (draft.recs[i] for i in rec.inputs)
        if (left.op == "one_hot" and len(right.shape) == 2 and right.dtype == rec.dtype
                and left.attrs["depth"] == right.shape[0] and len(left.shape) >= 1):
            ids = left.inputs[0]
            draft.replace(rec.id, draft.add("take", [right.id, ids], {"axis": 0},
                                            name=rec.name + "/take", meta=rec.meta))


# -------------------------------------------------------- batching over time


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
    return {k: v for k, v in groups.items() if len(v) > 1}


def _batch_group(draft: Draft, kind: str, members: list[Rec]) -> int:
    """Replace independent ``members`` by slices of one batched op; the batched rec id."""
    count = len(members)
    first = members[0]
    meta = {"batched": count}
    if kind == "take":
        table = first.inputs[0]
        stacked = draft.add("stack", [m.inputs[1] for m in members], {"axis": 0},
                            name=first.name + "/stack_ids", meta=meta)
        batched = draft.add("take", [table, stacked], {"axis": 0},
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
            rows = draft.add("reshape", [stacked], {"shape": (-1, operand.shape[-1])},
                             name=first.name + "/rows", meta=meta)
            product = draft.add("matmul", [rows, weight], name=first.name + "/batched",
                                meta=meta)
            out_shape = (count, *(-1 if d is None else d for d in first.shape))
            batched = draft.add("reshape", [product], {"shape": out_shape},
                                name=first.name + "/unrows", meta=meta)
    for t, member in enumerate(members):
        draft.replace(member.id, draft.add("getitem", [batched], {"index": (t,)},
                                           name=member.name, meta=member.meta))
    return batched


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


# Ops that act on each time slice independently when their other operands are
# time-invariant and of rank <= the slice's rank (so broadcasting aligns).
_SLICEWISE = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "relu", "exp", "log",
              "softmax", "log_softmax"}


def _invariant(draft: Draft) -> dict[int, bool]:
    """rec id -> computed from params and consts only (the same at every step)."""
    varying = draft.descendants([i for i, r in draft.recs.items() if r.op == "input"])
    return {i: i not in varying for i in draft.recs}


def _sink_slicewise(draft: Draft, batched: int, invariant: dict[int, bool]) -> int | None:
    """``op(B[t], k)`` for every t -> ``op(B, k)[t]``; the new batched rec, if any."""
    slices = _time_slices(draft, batched)
    if slices is None:
        return None
    rank = len(draft.recs[batched].shape) - 1
    signature = None
    consumers = []
    for t, piece in enumerate(slices):
        users = draft.users_of(piece.id)
        if len(users) != 1 or users[0].op not in _SLICEWISE:
            return None
        user = users[0]
        others = [i for i in user.inputs if i != piece.id]
        if user.inputs.count(piece.id) != 1 or not all(
            invariant.get(i, False) and len(draft.recs[i].shape) <= rank for i in others
        ):
            return None
        sig = (user.op, _freeze(user.attrs), user.inputs.index(piece.id), tuple(others))
        if t == 0:
            signature = sig
        elif sig != signature:
            return None
        consumers.append(user)
    first = consumers[0]
    attrs = dict(first.attrs)
    if "axis" in attrs and attrs["axis"] >= 0:
        attrs["axis"] += 1
    inputs = [batched if i == slices[0].id else i for i in first.inputs]
    new = draft.add(first.op, inputs, attrs, name=first.name + "/batched",
                    meta={"batched": len(slices)})
    for t, user in enumerate(consumers):
        draft.replace(user.id, draft.add("getitem", [new], {"index": (t,)}, name=user.name,
                                         meta=user.meta))
    return new


def _unstack(draft: Draft, batched: int) -> None:
    """``stack([B[0], …, B[T-1]])`` -> ``B``."""
    slices = _time_slices(draft, batched)
    if slices is None:
        return
    ids = [s.id for s in slices]
    for user in list(draft.users_of(slices[0].id)):
        if user.op == "stack" and user.attrs.get("axis", 0) == 0 and user.inputs == ids:
            draft.replace(user.id, batched)


def _reassociate(draft: Draft, invariant: dict[int, bool]) -> None:
    """``(B[t] + v) + k`` -> ``(B[t] + k) + v`` for invariant k, so ``+ k`` can join the batch.

    Changes the order of two float additions: results move by an ulp at most.
    """
    for rec in list(draft.recs.values()):
        if rec.op != "add" or not draft.users[rec.id] and rec.id not in draft.roots:
            continue
        for inner_id, k in (rec.inputs, rec.inputs[::-1]):
            inner = draft.recs[inner_id]
            if not invariant.get(k) or inner.op != "add" or len(draft.users[inner_id]) != 1:
                continue
            for p, v in (inner.inputs, inner.inputs[::-1]):
                piece = draft.recs[p]
                if (piece.op != "getitem" or invariant.get(v)
                        or not draft.recs[piece.inputs[0]].meta.get("batched")
                        or not _fits_inside(draft.recs[k].shape, piece.shape)):
                    continue
                first = draft.add("add", [p, k], name=inner.name, meta=inner.meta)
                draft.replace(rec.id, draft.add("add", [first, v], name=rec.name, meta=rec.meta))
                break
            else:
                continue
            break


def _fits_inside(small: tuple, big: tuple) -> bool:
    """Broadcasting ``small`` against ``big`` leaves ``big``'s shape unchanged."""
    try:
        return len(small) <= len(big) and broadcast_shapes(small, big) == tuple(big)
    except ShapeMismatch:
        return False


def _batch(draft: Draft) -> None:
    batched_ids = []
    for (kind, *_), members in _batch_groups(draft).items():
        hit = draft.descendants([m.id for m in members])
        operand = 1 if kind == "take" else 0
        free = [m for m in members if m.inputs[operand] not in hit]
        if len(free) > 1:
            batched_ids.append(_batch_group(draft, kind, free))
    _reassociate(draft, _invariant(draft))
    invariant = _invariant(draft)
    work = list(batched_ids)
    while work:
        current = work.pop()
        new = _sink_slicewise(draft, current, invariant)
        if new is not None:
            invariant[new] = False
            work.append(new)
        _unstack(draft, current)


cull = _public([], "Drop the nodes ``fetches`` do not need.")
cse = _public([_cse], "Merge nodes that compute the same op on the same inputs.")
fold_constants = _public([_fold], "Replace ops whose inputs are all consts by their value.")
onehot_to_take = _public([_onehot_take], "Rewrite ``one_hot(ids, n) @ M`` to ``take(M, ids)``.")
batch_over_time = _public([_batch], "Merge independent matmuls that share a weight.")
OPTIMIZE_PASSES: list[Pass] = [_fold, _cse, _onehot_take, _batch, _cse]
optimize = _public(OPTIMIZE_PASSES, "All passes: fold, CSE, one_hot->take, batching, CSE.")

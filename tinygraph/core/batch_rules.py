"""Batch rules: how to run an op for every step at once (JAX's batching rules).

A rule ``rule(emit, node, args, batched) -> handle`` gets the per-step node
(for its attrs and shapes), a handle per input (``.shape``, ``.dtype``; a
batched input carries an extra leading axis, the steps) and one bool per
input. It builds the batched computation through ``emit(op, *args,
**attrs)`` and returns the handle whose leading axis is the steps — or
``None`` when it cannot (the op then stays per step). Rules are registered in
one table, :data:`BATCH_RULES`, and attached to the op records by
:mod:`tinygraph.core.ops`; the optimizer's hoisting and vectorizing passes
(:mod:`tinygraph.passes.hoist`) are their only callers.

>>> from tinygraph.core.ops import OPS
>>> OPS["tanh"].batch is not None, OPS["size"].batch is None
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BATCH_RULES"]


def _lift(emit: Callable, arg: Any, rank: int) -> Any:
    """A batched arg of per-step rank < ``rank``: size-1 axes after the steps' axis, so
    numpy broadcasting lines its per-step axes up with the others' as in one step."""
    missing = rank - (len(arg.shape) - 1)
    if missing <= 0:
        return arg
    return emit("expand_dims", arg, axis=tuple(range(1, 1 + missing)))


def elementwise(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """Broadcasting elementwise ops: the same op, batched args lifted to the step rank."""
    rank = len(node.shape)
    if any(not b and len(a.shape) > rank for a, b in zip(args, batched, strict=True)):
        return None
    lifted = [_lift(emit, a, rank) if b else a for a, b in zip(args, batched, strict=True)]
    return emit(node.op, *lifted, **node.attrs)


def _shift_axis(axis: Any, rank: int) -> Any:
    """A per-step ``axis`` (int, tuple or None = all) as the batched value's axis."""
    if axis is None:
        return tuple(range(1, rank + 1))
    if isinstance(axis, tuple):
        return tuple(a % rank + 1 for a in axis)
    return axis % rank + 1


def along_axis(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """Ops with an ``axis`` attr over their one (batched) input: softmax, sum, cumsum, …"""
    if not batched[0] or any(batched[1:]):
        return None
    rank = len(args[0].shape) - 1
    if rank == 0 or node.op in _FLATTEN_WITHOUT_AXIS and node.attrs.get("axis") is None:
        return None
    attrs = dict(node.attrs)
    attrs["axis"] = _shift_axis(attrs.get("axis", -1 if node.op in _DEFAULT_LAST else None),
                                rank)
    return emit(node.op, args[0], **attrs)


_DEFAULT_LAST = ("softmax", "log_softmax")
_FLATTEN_WITHOUT_AXIS = ("cumsum", "argmax", "argmin")  # axis=None flattens: not per step


def matmul(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """np.matmul's broadcasting does it once the steps' axis leads every batched operand:
    matrices get size-1 axes after it to line up with the other's batch axes."""
    a, b = args
    ra, rb = len(a.shape) - batched[0], len(b.shape) - batched[1]
    rank = len(node.shape)
    if ra >= 2 and rb >= 2:
        return emit("matmul", *[_lift(emit, x, rank) if f else x
                                for x, f in zip(args, batched, strict=True)])
    if ra == 1 and batched[0] and not batched[1] and rb == 2:
        return emit("matmul", a, b)  # rows v_t @ B: V @ B
    if rb == 1 and batched[1] and not batched[0] and ra == 2:
        return emit("matmul", b, emit("transpose", a))  # A @ v_t for every t: V @ Aᵀ
    if rb == 1 and batched[0] and not batched[1] and ra >= 1:
        return emit("matmul", a, b)  # M_t @ v: the vector contracts the last axis
    return None


def transpose(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    rank = len(args[0].shape) - 1
    axes = node.attrs.get("axes")
    order = tuple(reversed(range(rank))) if axes is None else tuple(x % rank for x in axes)
    return emit("transpose", args[0], axes=(0, *[x + 1 for x in order]))


def reshape(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    shape = tuple(node.attrs["shape"])
    if -1 in shape or None in node.shape:
        return None
    return emit("reshape", args[0], shape=(-1, *shape))


def getitem(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    index = node.attrs["index"]
    if not all(i is None or i == "..." or isinstance(i, int | tuple) and not isinstance(i, bool)
               for i in index):
        return None  # integer arrays: kept per step
    # ints, slices, new axes (None) and "..." all keep their meaning one axis further in
    return emit("getitem", args[0], index=((None, None, None), *index))


def expand_dims(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    rank = len(node.shape)
    axis = node.attrs["axis"]
    axes = axis if isinstance(axis, tuple) else (axis,)
    return emit("expand_dims", args[0], axis=tuple(a % rank + 1 for a in axes))


def join(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """concat / stack: every part must be batched (the axis moves past the steps)."""
    if not all(batched):
        return None
    rank = len(node.shape)
    return emit(node.op, *args, axis=node.attrs.get("axis", 0) % rank + 1)


def take(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    if batched[0] or node.attrs.get("axis", 0) != 0:
        return None
    return emit("take", *args, axis=0)


def same_op(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """Ops that act on each element and ignore the shape: one_hot, zeros_like."""
    if not all(batched):
        return None
    return emit(node.op, *args, **node.attrs)


def like(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """sum_to / broadcast_to / reshape_like: ``like`` must carry the steps (its shape is
    the target's), and so must ``x`` unless broadcasting it is the op (broadcast_to)."""
    x, shape_of = args
    if not batched[1]:
        rank_x, rank_like = len(x.shape) - batched[0], len(shape_of.shape)
        trailing = x.shape[len(x.shape) - rank_like:]
        if (node.op == "sum_to" and batched[0] and rank_x > rank_like
                and None not in shape_of.shape and trailing == shape_of.shape):
            # Summing the leading per-step axes of x down to an unbatched like: a sum over
            # those axes, keeping the steps' axis (like's own axes already agree).
            return emit("sum", x, axis=tuple(range(1, 1 + rank_x - rank_like)),
                        keepdims=False)
        return None
    if node.op == "sum_to" and batched[0] and len(x.shape) > len(shape_of.shape):
        # x has more per-step axes than like: sum them into like lifted to x's rank, so
        # the steps' axis is never summed, then drop the lifted axes.
        lifted = _lift(emit, shape_of, len(x.shape) - 1)
        return emit("reshape_like", emit("sum_to", x, lifted), shape_of)
    if len(x.shape) - batched[0] > len(shape_of.shape) - 1:
        return None
    if not batched[0]:
        if node.op != "broadcast_to":
            return None
        x = emit("expand_dims", x, axis=0)
    else:
        x = _lift(emit, x, len(shape_of.shape) - 1) if node.op != "reshape_like" else x
    return emit(node.op, x, shape_of)


def cross_entropy(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """One mean per step: the op itself with one more leading ``batch_axes``."""
    if not all(batched):
        return None
    attrs = {**node.attrs, "batch_axes": node.attrs.get("batch_axes", 0) + 1}
    return emit("cross_entropy", *args, **attrs)


def cross_entropy_grad(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """``g_t * (softmax(l_t) - target_t) / N_t`` per step: the op with one more leading
    ``batch_axes`` (g: one per step, or the same for all), so the backward of a
    per-step loss leaves its loop."""
    g_batched, logits_batched, targets_batched = batched
    if not (logits_batched and targets_batched):
        return None
    g = args[0]
    k = node.attrs.get("batch_axes", 0)
    if not g_batched and len(g.shape):  # one g per mean of a step: the same at every step
        g = emit("expand_dims", g, axis=0)
    elif g_batched and k:  # a scalar g per step, over a step's several means
        g = _lift(emit, g, k)
    attrs = {**node.attrs, "batch_axes": k + 1}
    return emit("cross_entropy_grad", g, *args[1:], **attrs)


def advanced_getitem(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """``x[:, ids]`` of each step, for indices the same at every step that sit next to each
    other (numpy then keeps their axes in place, so one more leading slice is the steps')."""
    index = node.attrs["index"]
    # ints beside an integer array index are advanced too (numpy broadcasts them together)
    advanced = [k for k, part in enumerate(index)
                if part == "[]" or isinstance(part, int) and not isinstance(part, bool)]
    if any(batched[1:]) or not batched[0] or \
            advanced != list(range(advanced[0], advanced[-1] + 1)):
        return None
    return emit("advanced_getitem", *args, index=((None, None, None), *index))


def pad(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """No padding along the steps' axis."""
    return emit("pad", args[0], **{**node.attrs,
                                   "pad_width": ((0, 0), *node.attrs["pad_width"])})


def squeeze(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """The same axes one further in; ``axis=None`` only when the size-1 axes are known
    (else a step count of 1 could be squeezed away too)."""
    axis = node.attrs.get("axis")
    if axis is None:
        shape = args[0].shape[1:]
        if None in shape:
            return None
        axis = tuple(i for i, d in enumerate(shape) if d == 1)
    return emit("squeeze", args[0], axis=_shift_axis(axis, len(args[0].shape) - 1))


def _step_axis(axis: int) -> int:
    """A per-step axis as the batched value's (negative axes count from the end)."""
    return axis + 1 if axis >= 0 else axis


def gather(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """``take_along_axis`` one axis further in; an unbatched side broadcasts over the steps."""
    x, ids = (a if b else emit("expand_dims", a, axis=0) for a, b in zip(args, batched,
                                                                         strict=True))
    return emit("gather", x, ids, axis=_step_axis(node.attrs.get("axis", -1)))


def gather_grad(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """gather's adjoint, one axis further in (g and like carry the steps: each step adds
    into its own zeros)."""
    g, ids, like = args
    if not (batched[0] and batched[2]):
        return None
    ids = ids if batched[1] else emit("expand_dims", ids, axis=0)
    return emit("gather_grad", g, ids, like, axis=_step_axis(node.attrs.get("axis", -1)))


def affine(emit: Callable, node: Any, args: list, batched: list[bool]) -> Any:
    """Rows of every step through one shared ``w`` and ``b``: x carries the steps' axis."""
    if not batched[0] or batched[1] or batched[2]:
        return None
    return emit("affine", *args)


_ELEMENTWISE = ("add", "sub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "relu", "exp",
                "log", "sign", "equal", "not_equal", "less", "less_equal", "greater",
                "greater_equal", "logical_and", "logical_or", "logical_not", "where", "maximum",
                "minimum", "clip", "abs", "sqrt", "rsqrt", "sin", "cos", "erf", "softplus",
                "logsigmoid", "leaky_relu", "silu", "gelu", "stop_gradient")
_ALONG_AXIS = ("softmax", "log_softmax", "sum", "mean", "max", "min", "logsumexp", "var", "std",
               "cumsum", "argmax", "argmin")

BATCH_RULES: dict[str, Callable[..., Any]] = {
    **dict.fromkeys(_ELEMENTWISE, elementwise),
    **dict.fromkeys(_ALONG_AXIS, along_axis),
    "matmul": matmul, "transpose": transpose, "reshape": reshape, "getitem": getitem,
    "expand_dims": expand_dims, "concat": join, "stack": join, "take": take,
    "one_hot": same_op, "zeros_like": same_op, "sum_to": like, "reshape_like": like,
    "broadcast_to": like, "cross_entropy": cross_entropy,
    "cross_entropy_grad": cross_entropy_grad, "gather": gather, "gather_grad": gather_grad,
    "advanced_getitem": advanced_getitem, "pad": pad, "squeeze": squeeze, "affine": affine,
}

"""Shape rules: the ``infer`` half of every :class:`~tinygraph.core.op.Op` record.

A rule takes the ``(shape, dtype)`` of each input and the node's attributes
and returns the output's ``(shape, dtype)``; it also validates the
attributes. It raises :class:`ShapeMismatch` (which the graph turns into a
``ShapeError`` naming the node) or :class:`DtypeMismatch`. Rules run when a
node is built, so mistakes surface at build time, not at run time.

>>> f = np.dtype("float64")
>>> elementwise([((None, 1), f), ((3,), f)], {})
((None, 3), dtype('float64'))
>>> sum_to([((None, 4), f), ((4,), f)], {})
((4,), dtype('float64'))
"""

from __future__ import annotations

import math

import numpy as np

from .shapes import (
    ShapeMismatch,
    broadcast_shapes,
    format_shape,
    matmul_shape,
    normalize_axes,
    normalize_axis,
)

__all__ = [
    "Spec", "DtypeMismatch", "FLOAT64",
    "elementwise", "elementwise_float", "unary_same", "unary_float", "along_axis", "matmul",
    "reduce", "transpose", "reshape", "concat", "stack", "take", "one_hot", "cross_entropy",
    "sum_to", "broadcast_to", "reshape_like", "expand_dims", "size", "concat_part",
    "take_grad", "cross_entropy_grad",
]

Spec = tuple[tuple, np.dtype]  # (shape, dtype) of one input

FLOAT64 = np.dtype("float64")


class DtypeMismatch(Exception):
    """Raised by shape rules; the graph turns it into a DtypeError naming the node."""


def _dims_agree(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


# ------------------------------------------------------ primitives users call


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else FLOAT64


def _require_int(spec: Spec, what: str) -> None:
    if spec[1].kind not in "iu":
        raise DtypeMismatch(f"{what} must be an integer array, got dtype {spec[1]}")


def elementwise(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape = broadcast_shapes(*(s for s, _ in specs))
    return shape, np.result_type(*(d for _, d in specs))


def elementwise_float(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = elementwise(specs, attrs)
    return shape, _float_dtype(dtype)


def unary_same(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    return specs[0]


def unary_float(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    return shape, _float_dtype(dtype)


def along_axis(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    if len(shape) == 0:
        raise ShapeMismatch("needs an input of rank >= 1, got a scalar")
    normalize_axis(attrs.get("axis", -1), len(shape))
    return shape, _float_dtype(dtype)


def matmul(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (a, da), (b, db) = specs
    return matmul_shape(a, b), np.result_type(da, db)


def reduce(specs: list[Spec], attrs: dict, mean: bool = False) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    axes = normalize_axes(attrs.get("axis"), len(shape))
    keepdims = attrs.get("keepdims", False)
    if not isinstance(keepdims, bool):
        raise ShapeMismatch(f"keepdims must be True or False, got {keepdims!r}")
    if keepdims:
        out = tuple(1 if i in axes else d for i, d in enumerate(shape))
    else:
        out = tuple(d for i, d in enumerate(shape) if i not in axes)
    # np.sum widens bool and small ints to the platform int; ask numpy rather than guess.
    return out, (_float_dtype(dtype) if mean else np.sum(np.zeros(0, dtype)).dtype)


def transpose(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    axes = attrs.get("axes")
    if axes is None:
        return tuple(reversed(shape)), dtype
    if not isinstance(axes, tuple) or sorted(
        normalize_axis(a, len(shape), "axes entry") for a in axes
    ) != list(range(len(shape))):
        raise ShapeMismatch(f"axes={axes!r} is not a permutation of the {len(shape)} axes")
    return tuple(shape[a] for a in axes), dtype


def reshape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    target = attrs.get("shape")
    if not isinstance(target, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in target
    ):
        raise ShapeMismatch(f"shape= must be a tuple of ints >= -1, got {target!r}")
    if list(target).count(-1) > 1:
        raise ShapeMismatch(f"shape={target!r} may hold at most one -1")
    # math.prod on Python ints: exact, where an int64 product would wrap around.
    known_in = None if None in shape else math.prod(shape)
    known_out = math.prod(d for d in target if d != -1)
    if -1 not in target:
        if known_in is not None and known_in != known_out:
            raise ShapeMismatch(
                f"cannot reshape {format_shape(shape)} ({known_in} elements) "
                f"to {format_shape(target)} ({known_out} elements)"
            )
        return target, dtype
    if known_in is None:
        return tuple(None if d == -1 else d for d in target), dtype
    if known_out == 0 or known_in % known_out:
        raise ShapeMismatch(f"cannot reshape {format_shape(shape)} to {format_shape(target)}")
    return tuple(known_in // known_out if d == -1 else d for d in target), dtype


def _join_dim(dims: list[int | None]) -> int | None:
    return None if None in dims else sum(dims)  # type: ignore[arg-type]  # no None left


def concat(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shapes = [s for s, _ in specs]
    ndim = len(shapes[0])
    if ndim == 0 or any(len(s) != ndim for s in shapes):
        raise ShapeMismatch(
            "concat needs inputs of one rank >= 1, got " + ", ".join(map(format_shape, shapes))
        )
    axis = normalize_axis(attrs.get("axis", 0), ndim)
    out = []
    for i in range(ndim):
        dims = [s[i] for s in shapes]
        if i == axis:
            out.append(_join_dim(dims))
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ShapeMismatch(
                f"concat inputs differ off axis {axis}: " + ", ".join(map(format_shape, shapes))
            )
        out.append(known.pop() if known else None)
    return tuple(out), np.result_type(*(d for _, d in specs))


def stack(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shapes = [s for s, _ in specs]
    ndim = len(shapes[0])
    listed = ", ".join(map(format_shape, shapes))
    if any(len(s) != ndim for s in shapes):
        raise ShapeMismatch(f"stack needs inputs of one shape, got {listed}")
    axis = normalize_axis(attrs.get("axis", 0), ndim + 1)
    common = []
    for i in range(ndim):
        known = {s[i] for s in shapes if s[i] is not None}
        if len(known) > 1:
            raise ShapeMismatch(f"stack needs inputs of one shape, got {listed}")
        common.append(known.pop() if known else None)
    return tuple(common[:axis]) + (len(shapes),) + tuple(common[axis:]), np.result_type(
        *(d for _, d in specs)
    )


def take(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (shape, dtype), ids = specs
    _require_int(ids, "take's indices")
    if len(shape) == 0:
        raise ShapeMismatch("take needs an array of rank >= 1, got a scalar")
    axis = normalize_axis(attrs.get("axis", 0), len(shape))
    return shape[:axis] + tuple(ids[0]) + shape[axis + 1 :], dtype


def one_hot(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    _require_int(specs[0], "one_hot's ids")
    depth = attrs.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ShapeMismatch(f"depth must be a positive int, got {depth!r}")
    try:
        dtype = np.dtype(attrs.get("dtype", "float64"))
    except (TypeError, ValueError, SyntaxError):
        got = attrs.get("dtype")
        raise DtypeMismatch(f"dtype must be a numpy dtype name, got {got!r}") from None
    if dtype.kind not in "biuf":
        raise DtypeMismatch(f"dtype must be a float, int or bool dtype, got {dtype}")
    return (*specs[0][0], depth), dtype


def cross_entropy(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (logits, dtype), targets = specs
    _require_int(targets, "cross_entropy's targets")
    if len(logits) == 0:
        raise ShapeMismatch("cross_entropy needs logits of rank >= 1, got a scalar")
    want = logits[:-1]
    got = targets[0]
    if len(got) != len(want) or not all(map(_dims_agree, want, got)):
        raise ShapeMismatch(
            f"targets must have shape logits.shape[:-1] = {format_shape(want)}, "
            f"got {format_shape(got)} (logits {format_shape(logits)})"
        )
    k = attrs.get("batch_axes", 0)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(logits):
        raise ShapeMismatch(f"batch_axes must be an int in [0, {len(logits) - 1}] for logits "
                            f"{format_shape(logits)}, got {k!r}")
    return logits[:k], _float_dtype(dtype)


# -------------------------------------- helper ops emitted by reverse mode


def sum_to(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``sum_to(x, like)``: x summed down to like's (broadcast-compatible) shape."""
    (shape, dtype), (like, _) = specs
    if len(shape) < len(like):
        raise ShapeMismatch(f"cannot sum {format_shape(shape)} down to the higher rank "
                            f"{format_shape(like)}")
    broadcast_shapes(shape, like)  # raises if like could not have broadcast to shape
    return like, dtype


def broadcast_to(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``broadcast_to(x, like)``: x repeated to like's shape."""
    (shape, dtype), (like, _) = specs
    out = broadcast_shapes(shape, like)
    if len(shape) > len(like) or any(d is not None and d != o for d, o in zip(like, out,
                                                                            strict=True)):
        raise ShapeMismatch(f"cannot broadcast {format_shape(shape)} to {format_shape(like)}")
    return out, dtype


def reshape_like(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``reshape_like(x, like)``: x's elements in like's shape."""
    (shape, dtype), (like, _) = specs
    if None not in shape and None not in like and np.prod(shape) != np.prod(like):
        raise ShapeMismatch(f"cannot reshape {format_shape(shape)} to {format_shape(like)}")
    return like, dtype


def expand_dims(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``expand_dims(x, axis=...)``: size-1 axes inserted (numpy's rule for tuples)."""
    shape, dtype = specs[0]
    axis = attrs.get("axis")
    if axis is None:
        raise ShapeMismatch("expand_dims needs axis= (an int or a tuple of ints)")
    axes = normalize_axes(axis, len(shape) + (len(axis) if isinstance(axis, tuple) else 1))
    rest = iter(shape)
    return tuple(1 if i in axes else next(rest) for i in range(len(shape) + len(axes))), dtype


def size(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``size(x, axis=None, dtype=...)``: the number of elements along axes, a scalar."""
    normalize_axes(attrs.get("axis"), len(specs[0][0]))
    return (), np.dtype(attrs.get("dtype", "float64"))


def concat_part(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``concat_part(g, *xs, index=i, axis=a)``: the slice of g that xs[i] filled in a concat."""
    (shape, dtype), *parts = specs
    index = attrs.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(parts):
        raise ShapeMismatch(f"index must pick one of the {len(parts)} parts, got {index!r}")
    axis = normalize_axis(attrs.get("axis", 0), len(shape))
    part = parts[index][0]
    if len(part) != len(shape):
        raise ShapeMismatch(f"part {format_shape(part)} and whole {format_shape(shape)} differ "
                            "in rank")
    return tuple(p if i == axis else d for i, (d, p) in enumerate(zip(shape, part,
                                                                        strict=True))), dtype


def take_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``take_grad(g, ids, like, axis=a)``: g scattered (added) into zeros of like's shape."""
    (_, dtype), ids, (like, _) = specs
    _require_int(ids, "take_grad's indices")
    normalize_axis(attrs.get("axis", 0), len(like))
    return like, dtype


def cross_entropy_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``cross_entropy_grad(g, logits, targets)``: g * d cross_entropy / d logits."""
    (g, _), logits, targets = specs
    per_mean, _ = cross_entropy([logits, targets], attrs)
    if g != () and (len(g) != len(per_mean) or not all(
            b == 1 or _dims_agree(a, b) for a, b in zip(per_mean, g, strict=True))):
        raise ShapeMismatch(f"the incoming gradient must be a scalar or one per mean "
                            f"{format_shape(per_mean)}, got {format_shape(g)}")
    return logits[0], _float_dtype(logits[1])

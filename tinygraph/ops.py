"""The primitive registry: one :class:`Op` record per primitive.

A record holds everything tinygraph knows about a primitive — its numpy
``forward``, its ``infer`` shape rule (run when a node is built, so mistakes
surface at build time) and its ``vjp`` (the backward rule, a graph-to-graph
function used by :mod:`tinygraph.autodiff`). Adding a primitive touches this
file only: write the record and call :func:`register`.

Forward functions take numpy arrays positionally and the node's attributes as
keywords; they never mutate their inputs. Shape rules take ``(shape, dtype)``
pairs and the attributes, and raise :class:`ShapeMismatch` (turned into a
``ShapeError`` naming the node by the graph) or :class:`DtypeMismatch`.

>>> OPS["tanh"].forward(np.zeros(2))
array([0., 0.])
>>> OPS["matmul"].infer([((None, 3), np.dtype("float64")), ((3, 4), np.dtype("float64"))], {})
((None, 4), dtype('float64'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .shapes import (
    ShapeMismatch,
    broadcast_shapes,
    format_shape,
    matmul_shape,
    normalize_axes,
    normalize_axis,
)

__all__ = ["Op", "OPS", "LEAF_OPS", "register", "DtypeMismatch"]

Spec = tuple[tuple, np.dtype]  # (shape, dtype) of one input

FLOAT64 = np.dtype("float64")


class DtypeMismatch(Exception):
    """Raised by shape rules; the graph turns it into a DtypeError naming the node."""


@dataclass(frozen=True)
class Op:
    """Everything about one primitive.

    name:    the op's registry key and the default node name.
    arity:   number of inputs, or ``None`` for variadic (concat, stack).
    forward: ``forward(*arrays, **attrs) -> ndarray``; pure numpy.
    infer:   ``infer(specs, attrs) -> (shape, dtype)``; validates attrs too.
    vjp:     ``vjp(node, grad_out) -> tuple of grad nodes or None per input``,
             building graph nodes; ``None`` until autodiff registers one.
    """

    name: str
    arity: int | None
    forward: Callable[..., np.ndarray]
    infer: Callable[[list[Spec], dict[str, Any]], tuple[tuple, np.dtype]]
    vjp: Callable[..., Any] | None = None
    doc: str = ""


OPS: dict[str, Op] = {}

# Source nodes: their values come from feeds, param storage or the graph itself.
LEAF_OPS = ("input", "param", "const")


def register(op: Op) -> Op:
    """Add ``op`` to the registry (a name may be registered once)."""
    if op.name in OPS or op.name in LEAF_OPS:
        raise ValueError(f"op {op.name!r} is already registered")
    OPS[op.name] = op
    return op


# ---------------------------------------------------------------- shape rules


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else FLOAT64


def _require_int(spec: Spec, what: str) -> None:
    if spec[1].kind not in "iu":
        raise DtypeMismatch(f"{what} must be an integer array, got dtype {spec[1]}")


def _elementwise(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape = broadcast_shapes(*(s for s, _ in specs))
    return shape, np.result_type(*(d for _, d in specs))


def _elementwise_float(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = _elementwise(specs, attrs)
    return shape, _float_dtype(dtype)


def _unary_same(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    return specs[0]


def _unary_float(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    return shape, _float_dtype(dtype)


def _along_axis(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    if len(shape) == 0:
        raise ShapeMismatch("needs an input of rank >= 1, got a scalar")
    normalize_axis(attrs.get("axis", -1), len(shape))
    return shape, _float_dtype(dtype)


def _matmul(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (a, da), (b, db) = specs
    return matmul_shape(a, b), np.result_type(da, db)


def _reduce(specs: list[Spec], attrs: dict, mean: bool = False) -> tuple[tuple, np.dtype]:
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


def _transpose(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    axes = attrs.get("axes")
    if axes is None:
        return tuple(reversed(shape)), dtype
    if not isinstance(axes, tuple) or sorted(
        normalize_axis(a, len(shape), "axes entry") for a in axes
    ) != list(range(len(shape))):
        raise ShapeMismatch(f"axes={axes!r} is not a permutation of the {len(shape)} axes")
    return tuple(shape[a] for a in axes), dtype


def _reshape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    target = attrs.get("shape")
    if not isinstance(target, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in target
    ):
        raise ShapeMismatch(f"shape= must be a tuple of ints >= -1, got {target!r}")
    if list(target).count(-1) > 1:
        raise ShapeMismatch(f"shape={target!r} may hold at most one -1")
    known_in = None if None in shape else int(np.prod(shape, dtype=np.int64))
    known_out = int(np.prod([d for d in target if d != -1], dtype=np.int64))
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
    return None if None in dims else sum(dims)


def _concat(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
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


def _stack(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shapes = [s for s, _ in specs]
    ndim = len(shapes[0])
    if any(len(s) != ndim for s in shapes):
        raise ShapeMismatch("stack needs inputs of one shape, got " + ", ".join(map(format_shape, shapes)))
    axis = normalize_axis(attrs.get("axis", 0), ndim + 1)
    common = []
    for i in range(ndim):
        known = {s[i] for s in shapes if s[i] is not None}
        if len(known) > 1:
            raise ShapeMismatch("stack needs inputs of one shape, got " + ", ".join(map(format_shape, shapes)))
        common.append(known.pop() if known else None)
    return tuple(common[:axis]) + (len(shapes),) + tuple(common[axis:]), np.result_type(
        *(d for _, d in specs)
    )


def _take(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (shape, dtype), ids = specs
    _require_int(ids, "take's indices")
    if len(shape) == 0:
        raise ShapeMismatch("take needs an array of rank >= 1, got a scalar")
    axis = normalize_axis(attrs.get("axis", 0), len(shape))
    return shape[:axis] + tuple(ids[0]) + shape[axis + 1 :], dtype


def _one_hot(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    _require_int(specs[0], "one_hot's ids")
    depth = attrs.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ShapeMismatch(f"depth must be a positive int, got {depth!r}")
    dtype = np.dtype(attrs.get("dtype", "float64"))
    return (*specs[0][0], depth), dtype


def _cross_entropy(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (logits, dtype), targets = specs
    _require_int(targets, "cross_entropy's targets")
    if len(logits) == 0:
        raise ShapeMismatch("cross_entropy needs logits of rank >= 1, got a scalar")
    want = logits[:-1]
    got = targets[0]
    if len(got) != len(want) or not all(map(_dims_agree_, want, got)):
        raise ShapeMismatch(
            f"targets must have shape logits.shape[:-1] = {format_shape(want)}, "
            f"got {format_shape(got)} (logits {format_shape(logits)})"
        )
    return (), _float_dtype(dtype)


def _dims_agree_(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _getitem(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    index = attrs.get("index")
    if not isinstance(index, tuple) or len(index) > len(shape):
        raise ShapeMismatch(f"index {index!r} does not fit shape {format_shape(shape)}")
    out: list[int | None] = []
    for d, item in zip(shape, index, strict=False):
        if isinstance(item, int) and not isinstance(item, bool):
            if d is not None and not -d <= item < d:
                raise ShapeMismatch(f"index {item} is out of range for size {d}")
        elif isinstance(item, tuple) and len(item) == 3 and item[2] != 0 and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in item
        ):
            out.append(None if d is None else len(range(*slice(*item).indices(d))))
        else:
            raise ShapeMismatch(f"index entries must be ints or slices, got {item!r}")
    return (*out, *shape[len(index) :]), dtype


# ------------------------------------------------------------ forward rules


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for large |x|, unlike 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_ids(ids: np.ndarray, size: int, what: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise IndexError(f"{what} {int(bad)} is out of range [0, {size})")


def _take_forward(a: np.ndarray, ids: np.ndarray, axis: int = 0) -> np.ndarray:
    _check_ids(ids, a.shape[axis], "index")
    return np.take(a, ids, axis=axis)


def _one_hot_forward(ids: np.ndarray, depth: int, dtype: str = "float64") -> np.ndarray:
    _check_ids(ids, depth, "id")
    return np.eye(depth, dtype=dtype)[ids]


def _cross_entropy_forward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    _check_ids(targets, logits.shape[-1], "target")
    logp = _log_softmax(logits, axis=-1)
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)
    return -picked.mean()


def _getitem_forward(x: np.ndarray, index: tuple) -> np.ndarray:
    return x[tuple(slice(*i) if isinstance(i, tuple) else i for i in index)]


def _reshape_forward(x: np.ndarray, shape: tuple) -> np.ndarray:
    return np.reshape(x, shape)


def _transpose_forward(x: np.ndarray, axes: tuple | None = None) -> np.ndarray:
    return np.transpose(x, axes)


def _concat_forward(*xs: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def _stack_forward(*xs: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.stack(xs, axis=axis)


def _sum_forward(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    return np.asarray(np.sum(x, axis=axis, keepdims=keepdims))


def _mean_forward(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis, keepdims=keepdims))


# ------------------------------------------------------------------ registry

for _op in [
    Op("add", 2, np.add, _elementwise, doc="a + b, broadcasting"),
    Op("sub", 2, np.subtract, _elementwise, doc="a - b, broadcasting"),
    Op("mul", 2, np.multiply, _elementwise, doc="a * b, broadcasting"),
    Op("div", 2, np.true_divide, _elementwise_float, doc="a / b, broadcasting"),
    Op("pow", 2, np.power, _elementwise, doc="a ** b, broadcasting"),
    Op("neg", 1, np.negative, _unary_same, doc="-a"),
    Op("matmul", 2, np.matmul, _matmul, doc="a @ b with np.matmul rules"),
    Op("tanh", 1, np.tanh, _unary_float, doc="hyperbolic tangent"),
    Op("sigmoid", 1, _sigmoid, _unary_float, doc="logistic function 1 / (1 + exp(-x))"),
    Op("relu", 1, lambda x: np.maximum(x, 0), _unary_same, doc="max(x, 0)"),
    Op("exp", 1, np.exp, _unary_float, doc="e ** x"),
    Op("log", 1, np.log, _unary_float, doc="natural logarithm"),
    Op("softmax", 1, _softmax, _along_axis, doc="stable softmax along axis"),
    Op("log_softmax", 1, _log_softmax, _along_axis, doc="stable log-softmax along axis"),
    Op("sum", 1, _sum_forward, _reduce, doc="sum over axis (None: all)"),
    Op("mean", 1, _mean_forward, lambda s, a: _reduce(s, a, mean=True), doc="mean over axis"),
    Op("transpose", 1, _transpose_forward, _transpose, doc="permute axes (default: reverse)"),
    Op("reshape", 1, _reshape_forward, _reshape, doc="reshape to shape (one -1 allowed)"),
    Op("concat", None, _concat_forward, _concat, doc="join along an existing axis"),
    Op("stack", None, _stack_forward, _stack, doc="join along a new axis"),
    Op("take", 2, _take_forward, _take, doc="pick entries of a along axis (default 0) by ids"),
    Op("one_hot", 1, _one_hot_forward, _one_hot, doc="ids -> one-hot vectors of length depth"),
    Op("cross_entropy", 2, _cross_entropy_forward, _cross_entropy,
       doc="mean negative log-likelihood of int targets under softmax(logits)"),
    Op("getitem", 1, _getitem_forward, _getitem, doc="basic indexing with ints and slices"),
]:
    register(_op)

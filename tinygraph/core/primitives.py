"""The primitives: forward and backward rule of each, side by side, and their records.

Adding a primitive means writing its forward (numpy), its vjp (graph nodes,
reading stored forward values) and one ``Op(...)`` line in :data:`PRIMITIVES`;
:mod:`tinygraph.core.ops` registers the list. The ops after the user-facing
ones (``sum_to``, ``broadcast_to``, …) are the helpers reverse mode emits:
they take a ``like`` input and read its RUNTIME shape, so gradients work for
shapes with unknown (``None``) sizes.

>>> from tinygraph.core.ops import OPS
>>> OPS["tanh"].forward(np.zeros(2))
array([0., 0.])
>>> OPS["matmul"].infer([((None, 3), np.dtype("float64")), ((3, 4), np.dtype("float64"))], {})
((None, 4), dtype('float64'))
>>> OPS["sum_to"].forward(np.ones((2, 3)), np.zeros((1, 3)))
array([[2., 2., 2.]])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from . import shape_rules as rules
from . import shape_rules_numpy as nrules
from .arith_vjps import add_vjp, div_vjp, mul_vjp, pow_vjp, sub_vjp
from .forwards import (
    check_ids,
    concat_forward,
    expand_dims_forward,
    log_softmax_forward,
    mean_forward,
    reshape_forward,
    sigmoid_forward,
    softmax_forward,
    sum_forward,
    transpose_forward,
)
from .op import Op, new_node, unbroadcast, wanted_grads
from .shapes import normalize_axes, normalize_axis

__all__ = ["PRIMITIVES", "sigmoid_forward", "softmax_forward", "log_softmax_forward",
           "check_ids"]


def _matmul_vjp(node, g, needs=None):
    a, b = node.inputs
    # np.matmul promotes 1-D operands to matrices; undo that on g, then use the 2-D rules.
    if len(a.shape) == 1 and len(b.shape) == 1:
        g2 = new_node("expand_dims", g, axis=(0, 1))
    elif len(a.shape) == 1:
        g2 = new_node("expand_dims", g, axis=-2)
    elif len(b.shape) == 1:
        g2 = new_node("expand_dims", g, axis=-1)
    else:
        g2 = g
    a2 = new_node("expand_dims", a, axis=0) if len(a.shape) == 1 else a
    b2 = new_node("expand_dims", b, axis=-1) if len(b.shape) == 1 else b

    def swap(x):
        axes = list(range(len(x.shape)))
        axes[-2:] = axes[-1], axes[-2]
        return new_node("transpose", x, axes=tuple(axes))

    def grad_b():
        gb = new_node("matmul", swap(a2), g2)
        if len(b.shape) == 1:  # (…, k, 1) -> (…, k), then sum the batch axes
            gb = new_node("sum", gb, axis=-1, keepdims=False)
        return unbroadcast(gb, b)

    if len(a.shape) == 2 and len(b.shape) == 2:  # no batch axes: the shapes come out exact
        return wanted_grads(needs, lambda: new_node("matmul", g, swap(b)),
                            lambda: new_node("matmul", swap(a), g))
    return wanted_grads(needs, lambda: unbroadcast(new_node("matmul", g2, swap(b2)), a), grad_b)


def _softmax_vjp(node, g, needs=None):
    axis = node.attrs.get("axis", -1)
    return (node * (g - new_node("sum", g * node, axis=axis, keepdims=True)),)


def _log_softmax_vjp(node, g, needs=None):
    total = new_node("sum", g, axis=node.attrs.get("axis", -1), keepdims=True)
    return (g - new_node("exp", node) * total,)


def _take_forward(a: np.ndarray, ids: np.ndarray, axis: int = 0) -> np.ndarray:
    check_ids(ids, a.shape[axis], "index")
    return np.take(a, ids, axis=axis)


def _take_vjp(node, g, needs=None):
    a, ids = node.inputs
    axis = node.attrs.get("axis", 0)
    return wanted_grads(needs, lambda: new_node("take_grad", g, ids, a, axis=axis), None)


# From this many table rows on the scatter is one weighted np.bincount over (row, column)
# cells (cost per pick), below it one_hot(ids)ᵀ @ g (per pick and row). Measured (AMD
# EPYC, one thread): 800 picks of 64 values into 66 rows 119 µs against 175 for runs of
# sorted ids summed by reduceat (the earlier way) and 260 one-hot; into 1,000 rows of
# 128, 335 against 858; into 8 rows of 64, one-hot 95 against 117.
_BINCOUNT_MIN_ROWS = 32
_BINCOUNT_TYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _take_grad_forward(g: np.ndarray, ids: np.ndarray, like: np.ndarray,
                       axis: int = 0) -> np.ndarray:
    rows = like.shape[0] if like.ndim else 0
    if (axis % max(like.ndim, 1) == 0 and like.ndim >= 1 and rows >= _BINCOUNT_MIN_ROWS
            and ids.size and g.dtype in _BINCOUNT_TYPES):
        check_ids(ids, rows, "id")
        width = math.prod(like.shape[1:])
        # Cell (id, column) of the table is id * width + column: bincount adds each
        # cell's picks in pick order, in float64.
        cells = (ids.reshape(-1, 1).astype(np.intp, copy=False) * width
                 + np.arange(width)).reshape(-1)
        out = np.bincount(cells, weights=g.reshape(-1), minlength=rows * width)
        return out.reshape(like.shape).astype(g.dtype, copy=False)
    if axis % max(like.ndim, 1) == 0 and like.ndim >= 1 and ids.size * rows <= 1 << 22:
        # Scatter-add as one_hot(ids)ᵀ @ g: one BLAS call, ~3.5x faster than np.add.at
        # for a batch of steps. 0 * inf would turn into NaN, so a non-finite result is
        # recomputed the exact way below.
        flat = ids.reshape(-1)
        picks = (flat[:, None] == np.arange(rows)).astype(g.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            out = (picks.T @ g.reshape(flat.size, -1)).reshape(like.shape)
        if np.isfinite(out).all():
            return out
    out = np.zeros(like.shape, dtype=g.dtype)
    # add.at, not assignment: a row picked twice gets both gradients.
    np.add.at(out, (slice(None),) * (axis % like.ndim) + (ids,), g)  # type: ignore[arg-type]  # numpy stubs: at() takes any index tuple
    return out


def _one_hot_forward(ids: np.ndarray, depth: int, dtype: str = "float64") -> np.ndarray:
    check_ids(ids, depth, "id")
    return np.eye(depth, dtype=dtype)[ids]


def _getitem_forward(x: np.ndarray, index: tuple) -> np.ndarray:
    return x[nrules.to_numpy_index(index)]


def _getitem_grad_forward(g: np.ndarray, like: np.ndarray, index: tuple) -> np.ndarray:
    out = np.zeros(like.shape, dtype=g.dtype)
    out[nrules.to_numpy_index(index)] = g  # basic indexing never repeats an element
    return out


def _reduce_vjp(node, g, needs=None):
    x = node.inputs[0]
    axes = normalize_axes(node.attrs.get("axis"), len(x.shape))
    # A full reduction broadcasts back as is; otherwise the reduced axes go back in first.
    if axes and len(axes) < len(x.shape) and not node.attrs.get("keepdims", False):
        g = new_node("expand_dims", g, axis=axes)
    if node.op == "mean":
        # Divided before it is broadcast: one division per mean, not one per value of x.
        dims = [x.shape[a] for a in axes]
        g = g / (float(math.prod(dims)) if None not in dims else
                 new_node("size", x, axis=axes, dtype=g.dtype.name))
    return (new_node("broadcast_to", g, x),)


def _transpose_vjp(node, g, needs=None):
    axes = node.attrs.get("axes")
    inverse = None if axes is None else tuple(int(i) for i in np.argsort(
        [normalize_axis(a, len(axes)) for a in axes]))
    return (new_node("transpose", g, axes=inverse),)


_SHAPE = operator.attrgetter("shape")


def _stack_forward(*xs: np.ndarray, axis: int = 0) -> np.ndarray:
    first = xs[0]
    if axis == 0 and list(map(_SHAPE, xs)).count(first.shape) == len(xs):  # C-speed test
        # np.stack costs ~0.7 µs per part in Python; this is ~4x faster for many parts.
        return np.concatenate([x.reshape(1, *first.shape) for x in xs]) if first.ndim == 0 \
            else np.concatenate(xs).reshape(len(xs), *first.shape)
    return np.stack(xs, axis=axis)


def _concat_vjp(node, g, needs=None):
    axis = node.attrs.get("axis", 0)
    return wanted_grads(needs, *[
        (lambda i=i: new_node("concat_part", g, *node.inputs, index=i, axis=axis))
        for i in range(len(node.inputs))
    ])


def _concat_part_forward(g: np.ndarray, *parts: np.ndarray, index: int,
                         axis: int = 0) -> np.ndarray:
    sizes = [p.shape[axis] for p in parts]
    start = sum(sizes[:index])
    return g[(slice(None),) * (axis % g.ndim) + (slice(start, start + sizes[index]),)]


def _concat_part_vjp(node, gg, needs=None):
    g, *parts = node.inputs
    index = node.attrs["index"]
    pieces = [gg if i == index else new_node("zeros_like", p) for i, p in enumerate(parts)]
    return wanted_grads(needs, lambda: new_node("concat", *pieces, axis=node.attrs.get("axis", 0)),
                  *[None] * len(parts))


def _stack_vjp(node, g, needs=None):
    axis = normalize_axis(node.attrs.get("axis", 0), len(node.shape))
    whole = (None, None, None)
    return wanted_grads(needs, *[(lambda i=i: new_node("getitem", g, index=(whole,) * axis + (i,)))
                           for i in range(len(node.inputs))])


def _like_vjp(op: str) -> Callable:
    """vjp of ``op_x(x, like)`` whose adjoint is ``op(g, x)``: sum_to <-> broadcast_to."""
    def vjp(node, g, needs=None):
        return wanted_grads(needs, lambda: new_node(op, g, node.inputs[0]), None)
    return vjp


def _no_grad(node, g, needs=None):
    """For outputs that are piecewise constant in (or do not depend on) float inputs."""
    return (None,) * len(node.inputs)


def _sum_to_forward(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    if x.shape == like.shape:
        return x
    lead = x.ndim - like.ndim
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(like.shape)
                                      if d == 1 and x.shape[lead + i] != 1)
    return x.sum(axis=axes).reshape(like.shape)


def _broadcast_to_forward(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    # A fresh array: copyto into empty is 2.1 µs for (32, 1) -> (32, 128), where
    # np.broadcast_to (a Python function) and .copy() take 5.5.
    out = np.empty(like.shape, dtype=np.asarray(x).dtype)
    np.copyto(out, x)
    return out


def _size_forward(x: np.ndarray, axis: Any = None, dtype: str = "float64") -> np.ndarray:
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    return np.array(np.prod([x.shape[a] for a in axes]), dtype=dtype)


def _unary(formula: Callable) -> Callable:
    """vjp of a one-input op from ``formula(g, x, y)``."""
    return lambda node, g, needs=None: (formula(g, node.inputs[0], node),)


# ------------------------------------------------------------------ records

PRIMITIVES = [
    Op("add", 2, np.add, rules.elementwise, add_vjp, doc="a + b, broadcasting",
            elementwise=True, fresh=True),
    Op("sub", 2, np.subtract, rules.elementwise, sub_vjp, doc="a - b, broadcasting",
            elementwise=True, fresh=True),
    Op("mul", 2, np.multiply, rules.elementwise, mul_vjp, doc="a * b, broadcasting",
            elementwise=True, fresh=True),
    Op("div", 2, np.true_divide, rules.elementwise_float, div_vjp, doc="a / b, broadcasting",
            elementwise=True, fresh=True),
    Op("pow", 2, np.power, rules.elementwise, pow_vjp,
       doc="a ** b, broadcasting (d/db needs a > 0, or a = 0 with b >= 0)", elementwise=True,
       fresh=True),
    Op("neg", 1, np.negative, rules.unary_same, _unary(lambda g, x, y: -g), doc="-a",
        elementwise=True, fresh=True),
    Op("matmul", 2, np.matmul, rules.matmul, _matmul_vjp, doc="a @ b with np.matmul rules",
        fresh=True),
    Op("tanh", 1, np.tanh, rules.unary_float, _unary(lambda g, x, y: g * (1 - y * y)),
       doc="hyperbolic tangent", elementwise=True, fresh=True),
    Op("sigmoid", 1, sigmoid_forward, rules.unary_float, _unary(lambda g, x, y: g * (y * (1 - y))),
       doc="logistic function 1 / (1 + exp(-x))", elementwise=True, fresh=True),
    Op("relu", 1, lambda x: np.maximum(x, 0), rules.unary_same,
       _unary(lambda g, x, y: g * new_node("sign", y)), doc="max(x, 0)", fresh=True),
    Op("exp", 1, np.exp, rules.unary_float, _unary(lambda g, x, y: g * y), doc="e ** x",
        elementwise=True, fresh=True),
    Op("log", 1, np.log, rules.unary_float, _unary(lambda g, x, y: g / x),
       doc="natural logarithm", elementwise=True, fresh=True),
    Op("softmax", 1, softmax_forward, rules.along_axis, _softmax_vjp,
       doc="stable softmax along axis",
        fresh=True),
    Op("log_softmax", 1, log_softmax_forward, rules.along_axis, _log_softmax_vjp,
       doc="stable log-softmax along axis", fresh=True),
    Op("sum", 1, sum_forward,
       rules.reduce, _reduce_vjp, doc="sum over axis (None: all)", fresh=True),
    Op("mean", 1, mean_forward,
       lambda s, a: rules.reduce(s, a, mean=True), _reduce_vjp, doc="mean over axis", fresh=True),
    Op("transpose", 1, transpose_forward, rules.transpose,
       _transpose_vjp, doc="permute axes (default: reverse)", view=True),
    Op("reshape", 1, reshape_forward, rules.reshape,
       _unary(lambda g, x, y: new_node("reshape_like", g, x)), doc="reshape (one -1 allowed)",
           view=True),
    Op("concat", None, concat_forward, rules.concat,
       _concat_vjp, doc="join along an existing axis", fresh=True),
    Op("stack", None, _stack_forward, rules.stack, _stack_vjp,
       doc="join along a new axis", fresh=True),
    Op("take", 2, _take_forward, rules.take, _take_vjp,
       doc="pick entries of a along axis (default 0) by ids", fresh=True),
    Op("one_hot", 1, _one_hot_forward, rules.one_hot, _no_grad,
       doc="ids -> one-hot vectors of length depth", fresh=True),
    Op("getitem", 1, _getitem_forward, nrules.basic_getitem,
       _unary(lambda g, x, y: new_node("getitem_grad", g, x, index=y.attrs["index"])),
       doc="basic indexing: ints, slices, None, '...'", view=True),
    Op("sign", 1, np.sign, rules.unary_same, _no_grad, doc="-1, 0 or 1 by the sign of x",
        elementwise=True, fresh=True),
    Op("zeros_like", 1, np.zeros_like, rules.unary_same, _no_grad, doc="zeros of x's shape",
        fresh=True),
    # Helpers emitted by reverse mode; ``like`` inputs only lend their runtime shape.
    Op("sum_to", 2, _sum_to_forward, rules.sum_to, _like_vjp("broadcast_to"),
       doc="x summed down to like's shape (undoes broadcasting)",
           view=True, identity_when_shapes_agree=True),
    Op("broadcast_to", 2, _broadcast_to_forward,
       rules.broadcast_to, _like_vjp("sum_to"), doc="x repeated to like's shape",
           view=True, identity_when_shapes_agree=True),
    Op("reshape_like", 2, lambda x, like: np.reshape(x, like.shape), rules.reshape_like,
       _like_vjp("reshape_like"), doc="x reshaped to like's shape",
           view=True, identity_when_shapes_agree=True),
    Op("expand_dims", 1, expand_dims_forward, rules.expand_dims,
       _unary(lambda g, x, y: new_node("reshape_like", g, x)), doc="insert size-1 axes", view=True),
    Op("size", 1, _size_forward, rules.size, _no_grad,
       doc="number of elements of x along axis (None: all), as a scalar", fresh=True),
    Op("concat_part", None, _concat_part_forward, rules.concat_part, _concat_part_vjp,
       doc="the slice of g along axis that part index filled in a concat", view=True),
    Op("take_grad", 3, _take_grad_forward, rules.take_grad,
       lambda node, gg, needs=None: wanted_grads(needs, lambda: new_node(
           "take", gg, node.inputs[1], axis=node.attrs.get("axis", 0)), None, None),
       doc="g added into zeros of like's shape at ids along axis (take's adjoint)", fresh=True),
    Op("getitem_grad", 2, _getitem_grad_forward, nrules.basic_getitem_grad,
       lambda node, gg, needs=None: wanted_grads(needs, lambda: new_node(
           "getitem", gg, index=node.attrs["index"]), None),
       doc="g written into zeros of like's shape at index (getitem's adjoint)", fresh=True),
]

"""Reductions and scans with numpy's names: max, min, argmax, argmin, logsumexp, var, std, cumsum.

One :class:`~tinygraph.core.op.Op` record each in :data:`REDUCE`. The vjp of
max/min shares the gradient evenly among tied maxima (PyTorch's rule for a
full ``max()``); argmax/argmin have no gradient by definition.

>>> from tinygraph.core.ops import OPS
>>> OPS["logsumexp"].forward(np.array([1000.0, 1000.0]))
array(1000.69314718)
>>> OPS["var"].forward(np.array([1.0, 2.0, 3.0, 4.0]), ddof=1)
array(1.66666667)
"""

from __future__ import annotations

import numpy as np

from . import shape_rules_numpy as nrules
from .op import Op, new_node, no_gradient, select
from .shapes import normalize_axes, normalize_axis

__all__ = ["REDUCE"]


def _restore(node, value):
    """``value`` (shaped like the reduction ``node``) with its reduced axes back as size 1."""
    x = node.inputs[0]
    axes = normalize_axes(node.attrs.get("axis"), len(x.shape))
    if axes and len(axes) < len(x.shape) and not node.attrs.get("keepdims", False):
        return new_node("expand_dims", value, axis=axes)
    return value


def _spread(node, g):
    """The incoming gradient broadcast back to the input's shape."""
    return new_node("broadcast_to", _restore(node, g), node.inputs[0])


def _extreme_vjp(node, g, needs=None):
    x = node.inputs[0]
    hit = select(new_node("equal", x, _restore(node, node)),
                 x.graph.const(1.0, dtype=x.dtype), 0.0)
    axis = node.attrs.get("axis")
    count = new_node("sum", hit, axis=axis, keepdims=True)
    return (_spread(node, g) * hit / count,)


def _logsumexp(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)  # all -inf (or inf) rows: no nan from inf - inf
    out = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return np.asarray(out if keepdims else np.squeeze(out, axis=axis))


def _logsumexp_vjp(node, g, needs=None):
    x = node.inputs[0]
    return (_spread(node, g) * new_node("exp", x - _restore(node, node)),)


def _moment_vjp(node, g, needs=None):
    x = node.inputs[0]
    axis, ddof = node.attrs.get("axis"), node.attrs.get("ddof", 0)
    centred = x - new_node("mean", x, axis=axis, keepdims=True)
    count = new_node("size", x, axis=axis, dtype=node.dtype.name) - float(ddof)
    if node.op == "var":
        return (_spread(node, g) * centred * 2.0 / count,)
    return (_spread(node, g) * centred / (count * _restore(node, node)),)


def _flip(node, axis: int):
    whole = (None, None, None)
    return new_node("getitem", node, index=(whole,) * axis + ((None, None, -1),))


def _cumsum_vjp(node, g, needs=None):
    # The adjoint of a running sum is the running sum from the end: flip, cumsum, flip.
    x = node.inputs[0]
    axis = node.attrs.get("axis")
    if axis is None:
        return (new_node("reshape_like", _flip(new_node("cumsum", _flip(g, 0), axis=0), 0), x),)
    axis = normalize_axis(axis, len(x.shape))
    return (_flip(new_node("cumsum", _flip(g, axis), axis=axis), axis),)


def _reduction(fn):
    return lambda x, axis=None, keepdims=False: np.asarray(fn(x, axis=axis, keepdims=keepdims))


def _moment(fn):
    return lambda x, axis=None, ddof=0, keepdims=False: np.asarray(
        fn(x, axis=axis, ddof=ddof, keepdims=keepdims))


REDUCE = [
    Op("max", 1, _reduction(np.max), nrules.reduce_same, _extreme_vjp,
       doc="largest entry over axis (None: all); ties share the gradient", fresh=True),
    Op("min", 1, _reduction(np.min), nrules.reduce_same, _extreme_vjp,
       doc="smallest entry over axis (None: all); ties share the gradient", fresh=True),
    Op("argmax", 1, _reduction(np.argmax), nrules.arg_reduce, no_gradient,
       doc="index of the largest entry along axis (None: flattened)", fresh=True),
    Op("argmin", 1, _reduction(np.argmin), nrules.arg_reduce, no_gradient,
       doc="index of the smallest entry along axis (None: flattened)", fresh=True),
    Op("logsumexp", 1, _logsumexp, nrules.reduce_float, _logsumexp_vjp,
       doc="log(sum(exp(x))) over axis, stable (the max is taken out first)", fresh=True),
    Op("var", 1, _moment(np.var), nrules.moments, _moment_vjp,
       doc="variance over axis with ddof (numpy's default 0)", fresh=True),
    Op("std", 1, _moment(np.std), nrules.moments, _moment_vjp,
       doc="standard deviation over axis with ddof (numpy's default 0)", fresh=True),
    Op("cumsum", 1, lambda x, axis=None: np.cumsum(x, axis=axis), nrules.cumsum, _cumsum_vjp,
       doc="running sum along axis (None: of the flattened array)", fresh=True),
]

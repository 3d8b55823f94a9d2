"""Shape and indexing primitives with numpy's names: pad, broadcast_to, squeeze, gather, x[arrays].

One :class:`~tinygraph.core.op.Op` record each in :data:`SHAPE`, with the
scatter-add adjoints reverse mode emits (``gather_grad``,
``advanced_getitem_grad``). ``broadcast_to_shape`` is ``np.broadcast_to``
(the op named ``broadcast_to`` is reverse mode's helper that reads a
``like`` input's runtime shape). An advanced index is stored as the
``index`` attr with ``"[]"`` where each integer-array input goes.

>>> from tinygraph.core.ops import OPS
>>> OPS["gather"].forward(np.array([[1, 2], [3, 4]]), np.array([[1], [0]]), axis=1)
array([[2],
       [3]])
>>> OPS["advanced_getitem"].forward(np.arange(6).reshape(2, 3), np.array([2, 0]),
...                                 index=((None, None, None), "[]"))
array([[2, 0],
       [5, 3]])
"""

from __future__ import annotations

import numpy as np

from . import shape_rules_numpy as nrules
from .op import Op, new_node, wanted_grads
from .shapes import normalize_axis

__all__ = ["SHAPE"]


def _pad_vjp(node, g, needs=None):
    index = tuple((before, -after if after else None, None)
                  for before, after in node.attrs["pad_width"])
    return (new_node("getitem", g, index=index),)


def _check_range(ids: np.ndarray, size: int) -> None:
    if ids.size and (ids.min() < -size or ids.max() >= size):
        bad = ids.min() if ids.min() < -size else ids.max()
        raise IndexError(f"index {int(bad)} is out of range for size {size}")


def _gather_forward(x: np.ndarray, ids: np.ndarray, axis: int = -1) -> np.ndarray:
    _check_range(ids, x.shape[axis])
    return np.take_along_axis(x, ids, axis=axis)


def _gather_index(g: np.ndarray, ids: np.ndarray, like: np.ndarray, axis: int) -> tuple:
    """The full fancy index that sends each entry of g (gather's output) to its source in like."""
    axis = normalize_axis(axis, like.ndim)
    index = []
    for i, (out, src) in enumerate(zip(g.shape, like.shape, strict=True)):
        if i == axis:
            index.append(np.broadcast_to(ids, g.shape))
        else:  # a size-1 source axis was broadcast: every output row came from its row 0
            shape = [1] * g.ndim
            shape[i] = out
            index.append((np.arange(out) if src == out else np.zeros(out, int)).reshape(shape))
    return tuple(index)


def _gather_grad_forward(g: np.ndarray, ids: np.ndarray, like: np.ndarray,
                         axis: int = -1) -> np.ndarray:
    _check_range(ids, like.shape[axis])
    out = np.zeros(like.shape, dtype=g.dtype)
    np.add.at(out, _gather_index(g, ids, like, axis), g)  # add.at: repeated ids accumulate
    return out


def _advanced_forward(x: np.ndarray, *arrays: np.ndarray, index: tuple) -> np.ndarray:
    return x[nrules.to_numpy_index(index, arrays)]


def _advanced_grad_forward(g: np.ndarray, like: np.ndarray, *arrays: np.ndarray,
                           index: tuple) -> np.ndarray:
    out = np.zeros(like.shape, dtype=g.dtype)
    np.add.at(out, nrules.to_numpy_index(index, arrays), g)
    return out


def _advanced_vjp(node, g, needs=None):
    x, *arrays = node.inputs
    return wanted_grads(needs, lambda: new_node("advanced_getitem_grad", g, x, *arrays,
                                                index=node.attrs["index"]),
                        *[None] * len(arrays))


def _advanced_grad_vjp(node, gg, needs=None):
    _, like, *arrays = node.inputs
    return wanted_grads(needs, lambda: new_node("advanced_getitem", gg, *arrays,
                                                index=node.attrs["index"]),
                        None, *[None] * len(arrays))


SHAPE = [
    Op("pad", 1, lambda x, pad_width, constant_values=0: np.pad(
        x, pad_width, constant_values=constant_values), nrules.pad, _pad_vjp,
       doc="x with constant_values added before and after each axis (np.pad)", fresh=True),
    Op("broadcast_to_shape", 1, lambda x, shape: np.broadcast_to(x, shape).copy(),
       nrules.broadcast_to_shape,
       lambda node, g, needs=None: (new_node("sum_to", g, node.inputs[0]),),
       doc="x repeated to shape (np.broadcast_to)", fresh=True),
    Op("squeeze", 1, lambda x, axis=None: np.squeeze(x, axis=axis), nrules.squeeze,
       lambda node, g, needs=None: (new_node("reshape_like", g, node.inputs[0]),),
       doc="x without size-1 axes (np.squeeze)", view=True),
    Op("gather", 2, _gather_forward, nrules.gather,
       lambda node, g, needs=None: wanted_grads(needs, lambda: new_node(
           "gather_grad", g, node.inputs[1], node.inputs[0], axis=node.attrs.get("axis", -1)),
           None),
       doc="entries of x picked along axis by same-rank indices (np.take_along_axis)",
       fresh=True),
    Op("gather_grad", 3, _gather_grad_forward, nrules.gather_grad,
       lambda node, gg, needs=None: wanted_grads(needs, lambda: new_node(
           "gather", gg, node.inputs[1], axis=node.attrs.get("axis", -1)), None, None),
       doc="g added into zeros of like's shape where gather read (gather's adjoint)",
       fresh=True),
    Op("advanced_getitem", None, _advanced_forward, nrules.advanced_getitem, _advanced_vjp,
       doc="x[index] with integer arrays (numpy's advanced indexing)", fresh=True),
    Op("advanced_getitem_grad", None, _advanced_grad_forward, nrules.advanced_getitem_grad,
       _advanced_grad_vjp,
       doc="g added into zeros of like's shape at index (advanced_getitem's adjoint)",
       fresh=True),
]

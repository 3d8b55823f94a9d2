"""``affine(x, w, b) = x @ w + b``: a product and a bias added along its rows, as one op.

The optimizer emits it (:mod:`tinygraph.passes.affine`) for products computed
once over a whole sequence: a loop's hoisted input projection ``X @ W_ih + b``
is a (T·B, n) array, far larger than the caches, and adding ``b`` to it after
the product is one more pass over memory. Measured with one BLAS thread on a
(100·32, 64) @ (64, 768) projection (a GRU's): product 5.5 ms, the bias add 3.6
ms more. When the rows come out wider than they go in (``n > k``) and are many
(:func:`bias_in_product`), the bias instead rides in the product: ``x`` gets a
column of ones and ``w`` the row ``b``, and copying them costs less than the
pass over the result (5.7 ms in all, a GRU forward 3-9 % faster). Otherwise the
bias is added in place, and a C-ordered stack of rows is one 2-D product.

Each element is ``Σ x_i w_i + 1·b`` from one BLAS call; OpenBLAS accumulates the
inner dimension in order, so here it equals the product plus ``b`` bit for bit
(in general, to rounding).

>>> import numpy as np
>>> from tinygraph.core.ops import OPS
>>> x, w, b = np.arange(6.0).reshape(3, 2), np.ones((2, 4)), np.arange(4.0)
>>> OPS["affine"].forward(x, w, b).tolist() == (x @ w + b).tolist()
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import shape_rules as rules
from .forwards import dot
from .op import Op, new_node, unbroadcast, wanted_grads
from .shape_rules import Spec
from .shapes import ShapeMismatch

__all__ = ["AFFINE", "affine_forward", "bias_as_row", "bias_in_product", "stacked_product"]

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def bias_in_product(rows: int, k: int, n: int) -> bool:
    """Whether ``x @ w + b`` of ``rows`` rows adds ``b`` inside the product.

    The product then reads copies of ``x`` (rows x (k+1)) and ``w`` ((k+1) x n)
    instead of passing over its (rows x n) result once more: worth it when the
    rows come out wider than they go in and are many next to ``k``. At W1's
    sizes (50 rows, 64 -> 128) copying ``w`` cost more than the add it saves
    (72 against 61 µs, one BLAS thread).
    """
    return n > k and rows >= 4 * (k + 1)


def bias_as_row(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[x | 1]`` and ``[[w], [b]]``, whose product is ``x @ w + b`` (``x``'s dtype)."""
    k, n = w.shape
    ones = np.empty((*x.shape[:-1], k + 1), dtype=x.dtype)
    ones[..., :k] = x
    ones[..., k] = 1.0
    weights = np.empty((k + 1, n), dtype=x.dtype)
    weights[:k] = w
    weights[k] = b.reshape(n)
    return ones, weights


# ``[x | 1]`` is one copy up to this size; a larger ``x`` is copied in blocks of rows of
# about ``_COPY_BLOCK_BYTES``, whose copy would add all of its size to the peak memory (a
# 10,000-step sequence's projection: 1.21x the budget of 1.5x the inputs plus one (T, H)
# array; 0.97x in blocks). Blocks cost ~3 % more on a (3200, 65) @ (65, 768) product.
_COPY_WHOLE_MAX_BYTES = 4 << 20
_COPY_BLOCK_BYTES = 1 << 20


def _bias_in_rows(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w + b`` for a matrix ``x``, as ``[x | 1] @ [[w], [b]]``: in one product, or for a
    large ``x`` one block of rows at a time through one reused ``[x | 1]`` buffer (the
    same bits: each row meets the same matrix)."""
    rows, k = x.shape
    row_bytes = (k + 1) * x.itemsize
    block = rows if rows * row_bytes <= _COPY_WHOLE_MAX_BYTES else max(
        256, _COPY_BLOCK_BYTES // row_bytes)
    ones, weights = bias_as_row(x[:block], w, b)
    if block >= rows:
        return dot(ones, weights)
    out = np.empty((rows, w.shape[1]), x.dtype)
    for start in range(0, rows, block):
        part = x[start:start + block]
        ones[:len(part), :k] = part
        dot(ones[:len(part)], weights, out[start:start + len(part)])
    return out


def stacked_product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for a stack of rows ``x`` (…, k) and a matrix ``w`` (k, n).

    A C-ordered float stack is one (rows, k) @ (k, n) BLAS call: numpy's matmul
    of a stack runs one small product per leading index (measured: (100, 32, 64)
    @ (64, 768) in 36 ms against 7 ms as one product; a (50, 1, 128) @ (128, 64)
    output head: 50 calls). Values are the same: each row meets the same matrix.
    """
    if (x.ndim >= 3 and x.flags.c_contiguous and x.dtype == w.dtype
            and x.dtype in _FLOATS and w.ndim == 2):
        return dot(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[1])
    return np.matmul(x, w)


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w + b`` for ``x`` (…, k), ``w`` (k, n) and ``b`` broadcasting along rows."""
    k, n = w.shape
    floats = x.dtype == w.dtype and x.dtype in _FLOATS
    rows = math.prod(x.shape[:-1])
    if (floats and x.ndim >= 2 and b.size == n and b.dtype == x.dtype
            and bias_in_product(rows, k, n)):
        return _bias_in_rows(x.reshape(rows, k), w, b).reshape(*x.shape[:-1], n)
    y = stacked_product(x, w)
    if y.ndim >= 1 and (b.ndim == 1 and b.shape[0] == y.shape[-1] and b.dtype == y.dtype
                        or y.dtype == np.result_type(y, b)
                        and np.broadcast_shapes(y.shape, b.shape) == y.shape):
        return np.add(y, b, out=y)  # the product is a new array: add in place
    return np.add(y, b)


def _infer(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (x, dx), (w, dw), bias = specs
    if len(x) < 2 or len(w) != 2:
        raise ShapeMismatch(f"affine needs x of 2 or more axes and a matrix w, "
                            f"got x {x} and w {w}")
    product = rules.matmul([(x, dx), (w, dw)], {})
    shape, dtype = rules.elementwise([product, bias], {})
    if shape != product[0]:
        raise ShapeMismatch(f"affine's bias {bias[0]} must broadcast along the rows of "
                            f"x @ w {product[0]}, not widen it to {shape}")
    return shape, dtype


def _swap(node: Any) -> Any:
    axes = list(range(len(node.shape)))
    axes[-2:] = axes[-1], axes[-2]
    return new_node("transpose", node, axes=tuple(axes))


def _affine_vjp(node: Any, g: Any, needs: Any = None) -> tuple:
    x, w, b = node.inputs
    return wanted_grads(needs, lambda: new_node("matmul", g, _swap(w)),
                        lambda: unbroadcast(new_node("matmul", _swap(x), g), w),
                        lambda: unbroadcast(g, b))


AFFINE = Op("affine", 3, affine_forward, _infer, _affine_vjp,
            doc="x @ w + b, b broadcast along the rows (made by the optimizer)", fresh=True)

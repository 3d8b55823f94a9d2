"""Forward kernels several ops share: softmax, log-softmax, sigmoid, index checks, dot.

Each is numerically careful numpy that the op records (and the fused
kernels that must agree with them to the bit) call; one place, so a change
to the formula changes every caller.

>>> import numpy as np
>>> float(sigmoid_forward(np.array([-800.0]))[0]), softmax_forward(np.zeros(2)).tolist()
(0.0, [0.5, 0.5])
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

__all__ = ["softmax_forward", "log_softmax_forward", "exp_shifted", "row_sums",
           "sigmoid_forward", "sigmoid_unguarded", "check_ids", "dot", "concat_forward",
           "transpose_forward", "reshape_forward", "expand_dims_forward", "sum_forward",
           "mean_forward"]

# ``np.dot`` without its ``__array_function__`` dispatch. numpy 2 sends every ``np.dot``
# call through a Python-level dispatcher first: 0.33 µs of the 1.09 µs a (1, 8) @ (8, 8)
# product costs on a 2.0 GHz Xeon, and a loop of small steps pays it on every step.
# Plans only hold plain ndarrays (feeds and params are converted on entry), for which
# the dispatch finds nothing to do, so they call the C function it wraps where numpy
# exposes it (numpy >= 1.25), the same function with the same results.
dot: Any = getattr(np.dot, "_implementation", np.dot)


def softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z, sums, _ = exp_shifted(x, axis)
    z /= sums
    return z


def log_softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z, sums, shift = exp_shifted(x, axis)
    np.log(sums, out=sums)
    np.subtract(x, shift, out=z)  # z held exp(x - shift): now x - shift, minus the lse below
    z -= sums
    return z


def exp_shifted(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, Any]:
    """``exp(x - shift)`` (a new float array), its sums along ``axis`` (kept) and the shift.

    The shift keeps exp from overflowing: each row's max, as usual, or — when every
    row's max is within ~30 of it, so no row loses precision — the one max of the
    whole array. Along a short last axis (the classes of a batch of logits) numpy
    reduces row by row, slowly: for (100, 32, 64) logits the rows' maxes take 183 µs,
    the array's max 16 µs; the row sums are a BLAS product with ones for the same
    reason (70 against 17 µs). A non-finite max, or a row whose sum shows its max far
    below the array's, takes the per-row way.
    """
    if axis in (-1, x.ndim - 1) and x.size and x.dtype.kind == "f":
        top = x.max()
        if math.isfinite(top):  # a numpy float is a Python float: no ufunc call
            z = np.subtract(x, top)
            np.exp(z, out=z)
            sums = row_sums(z)
            if sums.min() >= _SUM_FLOOR:
                return z, sums, top
    shift = x.max(axis=axis, keepdims=True)
    z = x - shift  # the one new array; the rest works in place
    if z.dtype.kind != "f":
        z = z.astype(np.float64)  # integer logits: the shape rule promises float64
    np.exp(z, out=z)
    return z, z.sum(axis=axis, keepdims=True), shift


_BLAS_ROW_MAX = 4096
# With fewer rows numpy's reduction is as fast (AMD EPYC, one thread: 50 rows of 64,
# 5.1 against 7.7 µs; 200 rows, 11.8 against 8.9), and a BLAS call right after other
# work costs far more than its arithmetic (W1's 50 x 64 logits: 93 against 19 µs).
_BLAS_ROWS_MIN = 128
# The smallest row sum of exp(x - max(x)) taken as is: the row's own max is then
# within ~30 + log(classes) of the array's, and what underflows in it weighs < 1e-290.
_SUM_FLOOR = float(np.exp(-30.0))


def row_sums(z: np.ndarray) -> np.ndarray:
    """Sums along the last axis, kept: ``z @ ones`` (one BLAS call) for a C-ordered float64
    array of many short rows, numpy's (pairwise, more accurate) reduction otherwise. BLAS
    adds a row in a few running sums: for up to 4,096 float64 values the error stays
    below ~1e-13 relative; float32 or longer rows keep numpy's reduction, which is
    also fast on long rows."""
    if (z.flags.c_contiguous and z.dtype == np.float64 and z.ndim >= 1 and z.size
            and z.shape[-1] <= _BLAS_ROW_MAX and z.size >= _BLAS_ROWS_MIN * z.shape[-1]):
        classes = z.shape[-1]
        flat = np.dot(z.reshape(-1, classes), np.ones(classes, z.dtype))
        return flat.reshape(*z.shape[:-1], 1)
    return z.sum(axis=-1, keepdims=True)


def sigmoid_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``1 / (1 + exp(-x))``, into ``out`` when given (it may be ``x`` itself).

    This form keeps full relative precision in both tails (the tanh form
    0.5*(1+tanh(x/2)) cancels to 0 below about -17); below -709 exp(-x) overflows to
    inf and the result is 0, which the true value (under 1e-308) rounds to anyway.
    Four numpy calls on one array; ``divide(1, z)``, not ``reciprocal(z)``, which
    numpy does not vectorize (2.6 against 4.3 µs on (32, 256)). Up to 256 values
    (float32, float64), SciPy's ``expit``: the same function in one call, which
    neither overflows nor warns (see :func:`sigmoid_unguarded`).
    """
    if x.dtype.kind != "f" or np.ndim(x) == 0:
        with np.errstate(over="ignore"):
            z = np.exp(np.negative(x))
        if not isinstance(z, np.ndarray):  # a 0-d input gives a numpy scalar
            return 1.0 / (1.0 + z)
        z += 1.0
        return np.divide(1.0, z, out=z)
    if x.size <= _SMALL_SIGMOID or (x.size <= _EXPIT_MAX and x.dtype.char in _EXPIT_TYPES):
        return sigmoid_unguarded(x, out)
    with np.errstate(over="ignore"):
        return sigmoid_unguarded(x, out)


def sigmoid_unguarded(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`sigmoid_forward` of a float array, for callers that already ignore overflow
    (``np.errstate(over="ignore")``: a scan's loop, once for all its steps)."""
    if x.size <= _EXPIT_MAX and x.dtype.char in _EXPIT_TYPES:
        return _expit()(x, out=out)
    z = np.negative(x, out=out)
    if z.size <= _SMALL_SIGMOID:
        # exp(-log(1 + exp(-x))): accurate in both tails and never overflows, so no
        # errstate (whose enter and exit cost more than the arithmetic of a few values)
        np.logaddexp(0.0, z, out=z)
        np.negative(z, out=z)
        return np.exp(z, out=z)
    np.exp(z, out=z)
    np.add(z, 1.0, out=z)
    return np.divide(1.0, z, out=z)


# Up to this many values the logaddexp form is faster (1.3 against 2.3 µs for 8 values:
# the errstate dominates); numpy does not vectorize logaddexp, so beyond it is slower.
_SMALL_SIGMOID = 64
# Up to this many values SciPy's expit (one ufunc call: a scalar loop of ~13 ns a value)
# beats the four vectorized numpy calls, whose per-call cost dominates a small step: on
# an Intel Xeon, 1.4 against 5.4 µs for 8 values, 3.1 against 6.1 for 128, 4.9 against
# 6.3 for 256, but 56 against 18 µs for 4,096 (gated cells at batch 1: 10-39 % faster).
_EXPIT_MAX = 256
_EXPIT_TYPES = "fdg"  # expit's own loops: float32, float64, long double (float16 would cast)


@functools.cache
def _expit() -> Any:
    """``scipy.special.expit``, imported at the first small sigmoid (the import takes ~0.2 s)."""
    from scipy.special import expit

    return expit


sigmoid_forward.takes_out = True  # type: ignore[attr-defined]  # plans may pass a dead operand
sigmoid_unguarded.takes_out = True  # type: ignore[attr-defined]


def check_ids(ids: np.ndarray, size: int, what: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise IndexError(f"{what} {int(bad)} is out of range [0, {size})")


# Shape and reduction forwards a loop may run on every step (a layer-normalized cell's
# means, a backward's expand_dims and concat), without numpy's Python-level wrappers:
# measured on a (1, 8) array, mean 4.0 -> 2.0 µs, expand_dims 3.0 -> 0.4 µs,
# transpose 0.53 -> 0.10 µs. Each computes exactly what the numpy function does.
_concatenate: Any = getattr(np.concatenate, "_implementation", np.concatenate)
_FLOAT_MEANS = (np.dtype("float32"), np.dtype("float64"))
_add_reduce: Any = np.add.reduce  # (numpy's stubs overload keepdims by literal value)


def concat_forward(*xs: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.concatenate(xs, axis)``."""
    return _concatenate(xs, axis=axis)


def transpose_forward(x: Any, axes: Any = None) -> Any:
    """``np.transpose(x, axes)``."""
    return x.transpose(axes) if isinstance(x, np.ndarray) else np.transpose(x, axes)


def reshape_forward(x: Any, shape: Any) -> Any:
    """``np.reshape(x, shape)``."""
    return x.reshape(shape) if isinstance(x, np.ndarray) else np.reshape(x, shape)


def expand_dims_forward(x: Any, axis: Any) -> Any:
    """``np.expand_dims(x, axis)``: a view with size-1 axes inserted."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    rank = np.ndim(x) + len(axes)
    places = sorted(a + rank if type(a) is int and a < 0 else a for a in axes)
    if not isinstance(x, np.ndarray) or any(type(a) is not int or not 0 <= a < rank
                                            for a in places) or len(set(places)) < len(places):
        return np.expand_dims(x, axis)  # numpy's own error for a bad axis
    shape = list(x.shape)
    for a in places:
        shape.insert(a, 1)
    return x.reshape(shape)


def sum_forward(x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """``np.sum(x, axis, keepdims=keepdims)`` as an array (0-d for a full sum)."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return np.asarray(_add_reduce(x, axis=axis, keepdims=keepdims))
    return np.asarray(np.sum(x, axis, keepdims=keepdims))


def mean_forward(x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """``np.mean(x, axis, keepdims=keepdims)`` as an array: for float32/64, the sum divided
    by the count, as numpy's mean computes it."""
    if isinstance(x, np.ndarray) and x.dtype in _FLOAT_MEANS and x.size:
        total = _add_reduce(x, axis=axis, keepdims=keepdims)
        count = x.size // max(np.size(total), 1)
        return np.asarray(np.true_divide(total, count))
    return np.asarray(np.mean(x, axis, keepdims=keepdims))

"""Output buffers a compiled plan keeps from one call to the next.

Allocating a large numpy array is not free: glibc hands out blocks above
~128 KiB as fresh pages from the kernel, and the first touch of each 4 KiB
page faults. For the batched ops of an unrolled graph (a (T·B, H) matmul, its
bias add) that costs more than the arithmetic — ``a @ U + b`` on a 6.5 MB
result took 4.6 ms here against 1.0 ms for the matmul alone. So a plan keeps
the result array of each large step and, on the next call, has numpy write
into it with ``out=``. With glibc's malloc tuned (:mod:`.allocator`, the
default) freed memory stays mapped and only results above 32 MiB fault
again, so only those get a buffer (:func:`buffer_min_bytes`).

Only steps whose value never leaves the plan use a buffer (a fetched array,
or a view of one, must stay the caller's), and buffers are per thread, so a
plan may run in several threads at once.

>>> import numpy as np
>>> buffers = {}
>>> a = np.ones((200, 100))
>>> first = into_buffer(np.add, 0, buffers, a, a)
>>> second = into_buffer(np.add, 0, buffers, a, 2 * a)
>>> second is first, float(second[0, 0])
(True, 3.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.forwards import dot
from ..core.prim_affine import stacked_product
from .allocator import MMAP_THRESHOLD, tune_allocator

__all__ = ["BUFFER_MIN_BYTES", "TUNED_BUFFER_MIN_BYTES", "buffer_min_bytes", "into_buffer",
           "result_shape", "stack_into", "stack_buffer", "stacked_matmul"]

# Below this, allocation is cheap (glibc's small-block arena) and the check
# would cost more than it saves.
BUFFER_MIN_BYTES = 1 << 15
# With malloc tuned (allocator.py), only arrays from glibc's mmap threshold on still come
# fresh from the kernel and fault on every page; below it a freed array's memory is
# reused at no cost, and a kept buffer's bookkeeping (~1.5 µs a call) only costs time
# (measured: a GRU forward 2-4 % faster without buffers for its (32, 768) steps).
TUNED_BUFFER_MIN_BYTES = MMAP_THRESHOLD


def buffer_min_bytes() -> int:
    """The smallest step result a plan keeps a buffer for (see the constants above)."""
    return TUNED_BUFFER_MIN_BYTES if tune_allocator() else BUFFER_MIN_BYTES


def stack_into(*parts: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.stack(parts)`` along a new first axis, optionally into ``out``."""
    return np.stack(parts, out=out)


def stacked_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for a stack of matrices ``a`` (…, m, k) and one matrix ``b``: one BLAS call
    (:func:`~tinygraph.core.prim_affine.stacked_product`), optionally into ``out``."""
    if out is None:
        return stacked_product(a, b)
    if a.ndim < 3 or b.ndim != 2 or not a.flags.c_contiguous or not out.flags.c_contiguous:
        return np.matmul(a, b, out=out)
    np.matmul(a.reshape(-1, a.shape[-1]), b, out=out.reshape(-1, b.shape[1]))
    return out


def result_shape(forward: Callable, args: tuple[Any, ...]) -> tuple[int, ...]:
    """The shape ``forward(*args)`` will have (elementwise ufunc, matmul or stack)."""
    if forward is stack_into:
        return (len(args), *np.shape(args[0]))
    if forward is np.matmul or forward is stacked_matmul or forward is dot:
        a, b = args
        if a.ndim == 2 and b.ndim == 2:
            return (a.shape[0], b.shape[1])
        return np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    shapes = [np.shape(x) for x in args]
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    return np.broadcast_shapes(*shapes)


def into_buffer(forward: Callable, key: int, buffers: dict[int, np.ndarray],
                *args: Any) -> np.ndarray:
    """``forward(*args)``, written into the array kept under ``key`` when it fits."""
    buffer = buffers.get(key)
    if buffer is not None and buffer.shape == result_shape(forward, args):
        return forward(*args, out=buffer)
    result = forward(*args)
    if isinstance(result, np.ndarray) and result.nbytes >= BUFFER_MIN_BYTES:
        buffers[key] = result
    return result


def stack_buffer(key: int, buffers: dict[int, np.ndarray] | None, count: int,
                 part_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array a stack of ``count`` parts is written into, part by part.

    ``buffers`` is None when the stack (or one of its parts) reaches the
    caller: then a new array every call; else the one kept under ``key``.
    """
    shape = (count, *part_shape)
    if buffers is None:
        return np.empty(shape, dtype=dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = buffers[key] = np.empty(shape, dtype=dtype)
    return buffer

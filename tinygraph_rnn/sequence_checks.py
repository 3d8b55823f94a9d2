"""The checks ``UnrolledRNN.run`` makes of the sequence it is given, before any step runs.

A sequence is ``(T, D)`` or ``(T, B, D)`` values of the cell's dtype, or, for a
net unrolled with ``ids=True``, ``(T,)`` or ``(T, B)`` integer ids in
``[0, D)``. Anything else is a :class:`tinygraph.FeedError` naming the step
inputs, what they want and what came. The usual call (an ndarray of the right
dtype and sizes) returns at once: no message is built, nothing is converted.

>>> import numpy as np
>>> xs = np.zeros((4, 2, 3))
>>> arr, batched = check_xs(xs, steps=4, size=3, dtype=np.dtype("float64"), names=("x0", "x3"))
>>> arr is xs, batched
(True, True)
>>> try:
...     check_ids([[1], [5]], steps=2, size=4, names=("x0", "x1"))
... except tg.FeedError as e:
...     print(str(e).split("; ")[-1])
got ids from 1 to 5
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.shapes import format_shape

from .stepping import fed_array

__all__ = ["check_xs", "check_ids"]


def check_xs(xs: Any, steps: int, size: int, dtype: np.dtype,
             names: tuple[str, str]) -> tuple[np.ndarray, bool]:
    """``xs`` as a ``(T, D)`` or ``(T, B, D)`` array of ``dtype``, and whether it has a batch."""
    if (type(xs) is np.ndarray and xs.dtype == dtype and xs.ndim in (2, 3)
            and xs.shape[0] == steps and xs.shape[-1] == size):
        return xs, xs.ndim == 3
    want = (f"the step inputs '{names[0]}' … '{names[1]}' want xs of shape "
            f"(T={steps}, D={size}) or (T={steps}, B, D={size})")
    arr = fed_array(xs, dtype, want)
    if arr.ndim not in (2, 3) or arr.shape[0] != steps or arr.shape[-1] != size:
        raise tg.FeedError(f"{want}; got shape {format_shape(arr.shape)}")
    return arr, arr.ndim == 3


def check_ids(xs: Any, steps: int, size: int, names: tuple[str, str]) -> tuple[np.ndarray, bool]:
    """``xs`` as ``(T,)`` or ``(T, B)`` int64 ids in ``[0, size)``, and whether it has a batch."""
    want = (f"the step inputs '{names[0]}' … '{names[1]}' want integer ids in [0, {size}) "
            f"of shape (T={steps},) or (T={steps}, B)")
    arr = np.asarray(xs)
    if arr.dtype.kind not in "iu":
        raise tg.FeedError(f"{want}; got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[0] != steps:
        raise tg.FeedError(f"{want}; got shape {format_shape(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        raise tg.FeedError(f"{want}; got ids from {arr.min()} to {arr.max()}")
    return arr.astype(np.int64, copy=False), arr.ndim == 2

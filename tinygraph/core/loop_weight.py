"""A loop's weight in the memory layout that multiplies fastest on this machine.

A recurrent loop multiplies a few rows by the same weight on every step
(``h @ W_hh``). Whether OpenBLAS does that faster with the weight stored
row by row (C order) or column by column (its "transposed B" kernel) depends
on the processor, not on the maths. Measured with one thread:

========================  ==========================  ============================
product                   AMD EPYC: C / column-major  Intel Xeon (KVM): C / column-major
========================  ==========================  ============================
(32, 256) @ (256, 768)    330 / 236 µs                442 / 528 µs
(32, 128) @ (128, 128)    (not measured)              30 / 47 µs
(8, 256) @ (256, 256)     60 / 28 µs                  (not measured)
========================  ==========================  ============================

A fixed rule fitted to one of them costs up to 1.6x on the other, so the
choice is measured: the first time a loop needs a product of a given shape
and dtype, :func:`layout_speed` times both layouts side by side (a few
milliseconds at most, once per process) and keeps the answer. A weight is
copied to the other layout only when that one is clearly faster (``MARGIN``):
a C-order weight to column-major, or a transposed view (the backward loop's
``dz @ Wᵀ``, column-major already) to C order; a near tie keeps the weight
as it is. The two layouts round differently in the last bit; every choice
gives the same values to ~1e-15.

>>> import numpy as np
>>> w = np.arange(6.0).reshape(2, 3)
>>> laid = loop_weight(w, rows=4, steps=100)
>>> faster = layout_speed(4, 2, 3, w.dtype) < MARGIN   # column-major clearly faster here?
>>> laid.tolist() == w.tolist(), laid.flags.f_contiguous == faster
(True, True)
>>> loop_weight(w, rows=1, steps=100) is w      # one row: a matrix-vector product, no copy
True
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .forwards import dot

__all__ = ["LOOP_WEIGHT_MIN_STEPS", "MARGIN", "layout_speed", "loop_weight"]

# Below this many steps a loop does not earn back the copy a new layout makes.
LOOP_WEIGHT_MIN_STEPS = 4
# The other layout must take at most this fraction of the time to be worth a copy. Where
# the layouts tie, the timed ratio is noise: on a later AMD EPYC (Zen 3) every loop shape
# measured 0.82-1.08 from process to process, so a margin of 0.9 picked column-major in
# some runs and not others, and the same script's results differed in the last bits from
# run to run. The wins worth having are far below it (0.47 and 0.72 in the table above).
MARGIN = 0.8
# Products beyond this many multiply-adds are not timed (their packing dominates and
# either layout runs at the BLAS peak): they keep the C order.
_MAX_TIMED = 1 << 24
_ROUNDS = 5

_speeds: dict[tuple[int, int, int, str], float] = {}


def loop_weight(w: Any, rows: int, steps: int) -> Any:
    """``w`` laid out for ``steps`` products ``(rows, k) @ w``: ``w`` or a copy in the other layout.

    Only float matrices, loops of at least ``LOOP_WEIGHT_MIN_STEPS`` steps and
    products of more than one row are considered (one row is a matrix-vector
    product, where the copy does not pay); then :func:`layout_speed` decides.
    """
    if (not isinstance(w, np.ndarray) or w.ndim != 2 or w.dtype.kind != "f"
            or rows <= 1 or steps < LOOP_WEIGHT_MIN_STEPS):
        return w
    ratio = layout_speed(rows, w.shape[0], w.shape[1], w.dtype)
    if w.flags.f_contiguous:
        return np.ascontiguousarray(w) if ratio * MARGIN > 1.0 else w
    if not w.flags.c_contiguous:
        return np.asfortranarray(w) if ratio < 1.0 else np.ascontiguousarray(w)
    return np.asfortranarray(w) if ratio < MARGIN else w


def layout_speed(rows: int, k: int, n: int, dtype: Any) -> float:
    """Time of ``(rows, k) @ (k, n)`` with the weight column-major over C order (1.0 untimed).

    Measured once per shape and dtype in this process (under the BLAS thread
    count in force at that moment, the one the loop runs with), then remembered.
    """
    key = (int(rows), int(k), int(n), np.dtype(dtype).str)
    if key not in _speeds:
        _speeds[key] = _measure(*key) if 0 < rows * k * n <= _MAX_TIMED else 1.0
    return _speeds[key]


def _measure(rows: int, k: int, n: int, dtype: str) -> float:
    a = np.full((rows, k), 0.5, dtype)
    c_order = np.full((k, n), 0.25, dtype)
    columns = np.asfortranarray(c_order)
    out = np.empty((rows, n), dtype)
    best = {"C": np.inf, "F": np.inf}
    dot(a, c_order, out)  # first calls pay for page faults and BLAS's start-up
    dot(a, columns, out)
    for _ in range(_ROUNDS):  # interleaved, the best of each: noise only slows a call down
        for name, w in (("C", c_order), ("F", columns)):
            start = time.perf_counter()
            dot(a, w, out)
            dot(a, w, out)
            best[name] = min(best[name], time.perf_counter() - start)
    return float(best["F"] / best["C"])

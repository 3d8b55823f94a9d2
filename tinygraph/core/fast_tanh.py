"""tanh of large float64 arrays from ``exp``, on machines where that beats numpy's tanh.

numpy has a vectorized float64 tanh only for some processors; elsewhere it calls
the C library's scalar tanh for every value. Measured on an AMD EPYC (Zen 3,
AVX2, one thread): 14-19 ns a value for ``np.tanh``, 5.6 for ``np.exp``. A
vanilla RNN step of 32 x 256 values spends more time in that tanh than in its
``(32, 256) @ (256, 256)`` matmul. Seven numpy calls compute the same function
from one exp::

    e = exp(-|x|) ** 2              # exp(-2|x|), without overflowing 2|x|
    tanh(x) = sign(x) * (1 - e) / (1 + e)

0.62-0.80 of ``np.tanh``'s time on 4,096 to 32,768 values there, 0.68-0.74 on 2,048.

Accuracy: within 2.3e-16 of the exact value (|tanh| <= 1, so that is about
one unit in the last place of values near 1), and within 4.5e-16 relative for
|x| >= 0.5. Near 0 the subtraction ``1 - e`` cancels: the relative error grows
to about 1e-16 / |x| (1e-13 at |x| = 1e-3), and values under ~1e-16 come out
as 0 or +-5.6e-17. So it is used only inside recurrent loops, where a
pre-activation is a sum of products of O(1) values and carries rounding of
that order already (~1e-16 absolute), far inside the 1e-12 the optimizer
promises (``docs/performance.md``): the vanilla recurrence kernel and the tanh
steps of scan bodies, for float64 steps of at least ``FAST_TANH_MIN_VALUES``
values, through :func:`tanh_kernel`. A tanh anywhere else is ``np.tanh``.
The recurrence kernel goes one step further: it multiplies by ``-2 W`` and
adds ``-2 a`` (exact), so its product is ``-2 z`` and ``2 / (1 + exp(-2 z)) - 1``
takes four calls (within 3.4e-16; a zero comes out as +0.0).
``inf``, ``nan`` and the sign of zero come out as numpy's.

It is used only where it is clearly faster: the first time it is wanted,
:func:`exp_form_faster` times both on 8,192 values (a few milliseconds, once
per process). The interpreter (``g.run(..., optimize=False)``) always calls
``np.tanh``; so does every loop when ``TINYGRAPH_EXACT_TANH=1`` is set.

>>> import numpy as np
>>> x = np.linspace(-5, 5, 11)
>>> bool(np.max(np.abs(tanh_from_exp(x) - np.tanh(x))) <= 3.4e-16)   # numpy: 1.1e-16 off
True
>>> tanh_from_exp(np.array([-np.inf, -0.0, 0.0, np.inf, np.nan])).tolist()
[-1.0, -0.0, 0.0, 1.0, nan]
>>> tanh_kernel(100, np.dtype("float64")) is np.tanh   # a small step: numpy's own
True
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np

__all__ = ["EXACT_TANH_ENV", "FAST_TANH_MIN_VALUES", "MARGIN", "exp_form_faster",
           "UNGUARDED_TANH", "large_tanh_unguarded", "tanh_from_exp", "tanh_kernel",
           "tanh_from_minus_2z"]

# From this many values the seven calls' overhead is paid back (measured on the AMD
# EPYC above, medians of 21 interleaved rounds in three processes: 0.84-1.02 of np.tanh's
# time at 1,024 values, 0.68-0.74 at 2,048, 0.62-0.64 at 4,096).
FAST_TANH_MIN_VALUES = 2048
# The exp form must take at most this fraction of np.tanh's time to be used. On the AMD
# EPYC a process runs exp either fast or ~1.6x slower for its whole life (where its pages
# land): the best-of-15 ratio was 0.58-0.87 over 16 processes, and a margin of 0.85 on
# medians of cold calls chose np.tanh in 2 of 4. Where numpy's tanh is vectorized
# (AVX-512: 1.5 ns a value) the ratio is well above 1.
MARGIN = 0.95
EXACT_TANH_ENV = "TINYGRAPH_EXACT_TANH"
_TIMED_VALUES = 8192
_ROUNDS = 15


def tanh_from_exp(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``tanh(x)`` as ``sign(x) (1 - e) / (1 + e)``, ``e = exp(-|x|)²``; ``out`` may be ``x``.

    For float arrays; see the module's docstring for its accuracy.
    """
    e = np.copysign(x, -1.0)  # -|x|: exp of it never overflows
    np.exp(e, out=e)
    np.multiply(e, e, out=e)  # exp(-2|x|)
    den = np.add(e, 1.0)
    np.subtract(1.0, e, out=e)
    np.copysign(e, x, out=e)  # x is read for the last time here: out may be x
    return np.divide(e, den, out=out)


def _large_tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`tanh_from_exp` for large float64 arrays, ``np.tanh`` for anything else
    (a step's size can change from call to call)."""
    if x.size < FAST_TANH_MIN_VALUES or x.dtype != np.float64:
        return np.tanh(x, out=out)
    return tanh_from_exp(x, out)


_large_tanh.takes_out = True  # type: ignore[attr-defined]  # plans may pass a dead operand


def large_tanh_unguarded(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`_large_tanh` for a loop that ignores overflow for all its steps
    (``np.errstate(over="ignore")``, entered once): ``2 / (1 + exp(-2 x)) - 1``, five
    calls instead of seven. ``exp(-2 x)`` overflows to inf below about -354, which gives
    -1 as it should. Within 3.4e-16 of the exact value; a zero comes out as +0.0."""
    if x.size < FAST_TANH_MIN_VALUES or x.dtype != np.float64:
        return np.tanh(x, out=out)
    e = np.multiply(x, -2.0, out=out)  # x is not read again: out may be x
    return tanh_from_minus_2z(e, e)


def tanh_from_minus_2z(e: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``tanh(z)`` from ``e = -2 z``, as ``2 / (1 + exp(e)) - 1`` in four calls; ``e`` is
    overwritten, ``out`` may be ``e``. For callers under ``np.errstate(over="ignore")``:
    ``exp(e)`` overflows to inf for z below about -354, which gives -1 as it should."""
    np.exp(e, out=e)
    np.add(e, 1.0, out=e)
    np.divide(2.0, e, out=out)
    return np.subtract(out, 1.0, out=out)


large_tanh_unguarded.takes_out = True  # type: ignore[attr-defined]
# What a loop that ignores overflow calls in place of the guarded kernel (exec/scan_loop.py).
UNGUARDED_TANH = ((_large_tanh, large_tanh_unguarded),)


def tanh_kernel(values: int, dtype: Any) -> Any:
    """The tanh a kernel should call for steps of ``values`` values of ``dtype``:
    ``np.tanh``, or a function taking ``(x, out=None)`` that uses :func:`tanh_from_exp`
    on large float64 arrays when :func:`exp_form_faster`."""
    if values < FAST_TANH_MIN_VALUES or np.dtype(dtype) != np.float64:
        return np.tanh
    return _large_tanh if exp_form_faster() else np.tanh


def exp_form_faster() -> bool:
    """Whether :func:`tanh_from_exp` clearly beats ``np.tanh`` on this machine (timed once).

    False when ``TINYGRAPH_EXACT_TANH`` is set to anything but ``0`` or empty.
    """
    if os.environ.get(EXACT_TANH_ENV, "").strip() not in ("", "0"):
        return False
    return _measured()


@functools.cache
def _measured() -> bool:
    x = np.random.default_rng(0).standard_normal(_TIMED_VALUES)
    out = np.empty_like(x)
    forms: list[Any] = [np.tanh, tanh_from_exp]
    spent: dict[Any, list[float]] = {f: [] for f in forms}
    for f in forms:  # untimed: a process's first calls run up to 1.5x slower
        f(x, out=out)
    for _ in range(_ROUNDS):  # interleaved, so a slow moment of the machine hits both
        for f in forms:
            start = time.perf_counter()
            f(x, out=out)
            spent[f].append(time.perf_counter() - start)
    # The best of each: noise only ever slows a call down.
    ratio = float(min(spent[tanh_from_exp]) / min(spent[np.tanh]))
    return ratio < MARGIN

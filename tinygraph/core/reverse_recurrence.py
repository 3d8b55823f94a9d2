"""The ``reverse_recurrence`` op: backpropagation through time's chain as one op.

Reverse mode through an unrolled vanilla cell gives, for every step t from
the last to the first, ``dz_t = (g[t] + dz_{t+1} @ Wt) * d[t]`` — ``g[t]``
the gradient arriving at state t from the output layer, ``d[t]`` the
activation's slope (``1 - s_t**2`` for tanh), ``Wt`` the transposed
recurrent weight. Once the forward is a scan, its gradient is a reverse scan
whose body is that step, with ``g`` and ``d`` whole ``(T, B, H)`` arrays
computed outside the loop; the optimizer's kernel rule
(:mod:`tinygraph.passes.kernels`) puts this op in place of such a loop. Its
kernel runs the steps over preallocated rows with three in-place numpy calls
each, where the generic scan would run a generated body per step.

With ``slope="tanh"`` the second input holds the states ``s`` themselves
and the kernel computes ``d[t] = 1 - s[t]**2`` (the optimizer's kernel rule
sets it when ``d`` is exactly that): on large steps, one step's slope at a
time while its rows are in cache, instead of two passes over a (T, B, H)
array far larger than the caches (W2's backward loop 12 % faster, the same
bits: each ``d[t]`` is computed by the same two numpy calls).

With ``carry_in=True`` the first input is one (B, H) carry instead of ``g``:
the gradient enters at the last step only (a loss on the last state, as in
sequence classification), ``dz_{T-1} = c * d[T-1]`` and ``dz_t = (dz_{t+1} @
Wt) * d[t]`` before it, two numpy calls a step.

An optional fourth input only lends its shape: reverse mode wraps values in
``sum_to(x, like)``, which changes nothing when x already has like's shape.
The kernel checks at run time that the likes' rows have the shape of the
rows of ``g`` and ``d`` (and raises otherwise, so a plan falls back to the
graph as built).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> G = g.input("g", shape=(2, 1, 2))
>>> D = g.input("d", shape=(2, 1, 2))
>>> Wt = g.param("Wt", np.eye(2))
>>> dz = g.add_node("reverse_recurrence", [G, D, Wt], {})
>>> g.run(dz, {"g": np.ones((2, 1, 2)), "d": np.full((2, 1, 2), 0.5)})[:, 0, 0].tolist()
[0.75, 0.5]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .forwards import dot as fast_dot
from .loop_weight import loop_weight
from .op import Op, new_node, unbroadcast, wanted_grads
from .recurrence import AUGMENT_MAX
from .shape_rules import DtypeMismatch, Spec
from .shapes import ShapeMismatch, broadcast_shapes, format_shape

__all__ = ["REVERSE_RECURRENCE", "SLOPE_PER_STEP_MIN", "tanh_slope"]


# From this many values per step, a tanh slope is computed step by step (see the module):
# measured 0.87 of the whole-array slope's time at 4,096 and 8,192 values, 1.05 at 2,048.
SLOPE_PER_STEP_MIN = 4096
SLOPES = ("tanh",)


def tanh_slope(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``1 - s**2`` as the unfused graph computes it (``s * s``, then ``1 - that``)."""
    out = np.multiply(s, s, out=out)
    return np.subtract(1.0, out, out=out)  # a Python 1.0 keeps out's dtype (float32 too)


def _slopes(d: np.ndarray, slope: str | None, step_values: int, dtype: np.dtype
            ) -> tuple[np.ndarray, bool]:
    """``d`` as the loop reads it, and whether it still holds states whose tanh slope the
    loop computes a step at a time (large steps), or already the slopes (all at once)."""
    per_step = slope is not None and step_values >= SLOPE_PER_STEP_MIN and d.dtype == dtype
    return (tanh_slope(d) if slope is not None and not per_step else d), per_step


def _reverse_forward(g: np.ndarray, d: np.ndarray, wt: np.ndarray, *likes: np.ndarray,
                     slope: str | None = None, carry_in: bool = False) -> np.ndarray:
    if carry_in:
        return _from_carry(g, d, wt, likes, slope)
    # ``likes`` stand for values whose shape the graph before fusion tested step by step
    # (reverse mode's sum_to wrappers); fusing assumed no step broadcast a batch of 1
    # against a batch of B. Steps and batch sizes must agree, else the plan runs the
    # graph as built.
    if g.shape != d.shape or any(like.shape[:2] != g.shape[:2] for like in likes):
        raise ValueError(f"reverse_recurrence: the steps of g {format_shape(g.shape)}, d "
                         f"{format_shape(d.shape)} and the likes "
                         f"{[format_shape(like.shape) for like in likes]} differ")
    dtype = np.result_type(g, d, wt)
    if not len(g):
        return np.empty(g.shape, dtype)
    d, per_step = _slopes(d, slope, g[0].size, dtype)
    if not per_step and g[0].size * wt.shape[1] <= AUGMENT_MAX and np.isfinite(g).all() \
            and np.isfinite(wt).all():  # inf * 0 would be NaN in the identity block
        return _small_steps(g, d, wt, dtype)
    dz = np.empty(g.shape, dtype)
    carry = np.empty(g.shape[1:], dz.dtype)
    wt = loop_weight(wt, rows=math.prod(g.shape[1:-1]), steps=len(g))
    dot, add, mul = fast_dot, np.add, np.multiply
    mul(g[-1], tanh_slope(d[-1], dz[-1]) if per_step else d[-1], dz[-1])
    later = dz[-1]
    # Rows from the second last back to the first, as views, at C speed.
    for g_t, d_t, row in zip(g[-2::-1], d[-2::-1], dz[-2::-1], strict=True):
        dot(later, wt, carry)
        add(carry, g_t, carry)
        mul(carry, tanh_slope(d_t, row) if per_step else d_t, row)  # the slope in row first
        later = row
    return dz


def _from_carry(c: np.ndarray, d: np.ndarray, wt: np.ndarray, likes: tuple,
                slope: str | None) -> np.ndarray:
    """``dz_{T-1} = c * d[T-1]``, then ``dz_t = (dz_{t+1} @ wt) * d[t]``: two calls a step.

    ``c`` and a row of ``d`` broadcast as in the loop it replaces (a (1, H) carry against
    a batch); the likes' steps and batch must be the result's.
    """
    try:
        rows = np.broadcast_shapes(c.shape, d.shape[1:])
    except ValueError:
        rows = ()
    if len(rows) != 2 or any(like.shape[:2] != (len(d), rows[0]) for like in likes):
        raise ValueError(f"reverse_recurrence: the carry {format_shape(c.shape)}, the rows of "
                         f"d {format_shape(d.shape)} and the likes "
                         f"{[format_shape(like.shape) for like in likes]} differ")
    dtype = np.result_type(c, d, wt)
    dz = np.empty((len(d), *rows), dtype)
    if not len(d):
        return dz
    d, per_step = _slopes(d, slope, d[0].size, dtype)
    row_slope = np.empty(d.shape[1:], dtype) if per_step else None
    wt = loop_weight(wt, rows=math.prod(d.shape[1:-1]), steps=len(d))
    dot, mul = fast_dot, np.multiply
    mul(c, tanh_slope(d[-1], row_slope) if per_step else d[-1], dz[-1])
    later = dz[-1]
    for d_t, row in zip(d[-2::-1], dz[-2::-1], strict=True):
        dot(later, wt, row)
        mul(row, tanh_slope(d_t, row_slope) if per_step else d_t, row)
        later = row
    return dz


def _small_steps(g: np.ndarray, d: np.ndarray, wt: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Two calls per step: ``[dz_{t+1} | g_t] @ [[Wt], [I]]``, then the product with d_t.

    Row t of ``rows`` holds ``dz_{t+1}`` next to ``g_t``; the product writes
    ``dz_t`` into the left half of row t - 1. As in the forward kernel, the
    identity block adds ``g_t`` and exact zeros (finite ``g`` and ``Wt`` only).
    """
    steps, hidden = g.shape[0], wt.shape[1]
    rows = np.empty((steps, *g.shape[1:-1], 2 * hidden), dtype)
    rows[..., hidden:] = g
    rows[-1, ..., :hidden] = 0  # no later step: dz_{T-1} = g_{T-1} * d_{T-1}
    stacked = np.concatenate([wt, np.eye(hidden, dtype=dtype)])
    dz = np.empty(g.shape, dtype)
    carry = np.empty(g.shape[1:], dtype)
    dot, mul = fast_dot, np.multiply
    lefts = rows[:-1, ..., :hidden]  # lefts[t - 1] receives dz_t
    for row, d_t, left in zip(rows[:0:-1], d[:0:-1], lefts[::-1], strict=True):
        dot(row, stacked, carry)
        mul(carry, d_t, left)
    dot(rows[0], stacked, carry)
    mul(carry, d[0], dz[0])
    dz[1:] = rows[:-1, ..., :hidden]
    return dz




def _reverse_shape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    if attrs.get("slope") not in (None, *SLOPES):
        raise ValueError(f"slope must be one of {SLOPES} or absent, got {attrs['slope']!r}")
    if len(specs) < 3:
        raise ShapeMismatch(f"takes g, d, Wt and optionally likes; got {len(specs)} inputs")
    if attrs.get("carry_in", False) not in (True, False):
        raise ValueError(f"carry_in must be True or False, got {attrs['carry_in']!r}")
    carry_in = attrs.get("carry_in", False)
    (g, dg), (d, dd), (wt, dw) = specs[:3]
    if (len(g) != (2 if carry_in else 3) or len(d) != 3 or len(wt) != 2
            or any(len(s) < 2 for s, _ in specs[3:])):
        first = "a (B, H) carry" if carry_in else "(T, B, H) g"
        raise ShapeMismatch(f"needs {first}, a (T, B, H) d, an (H, H) Wt (and (T, B, …) "
                            "likes); got " + ", ".join(format_shape(s) for s, _ in specs))
    shape = (d[0], *broadcast_shapes(g, d[1:])) if carry_in else broadcast_shapes(g, d)
    hidden = {x for x in (shape[2], wt[0], wt[1]) if x is not None}
    if len(hidden) > 1:
        raise ShapeMismatch(f"sizes disagree: g {format_shape(g)}, d {format_shape(d)}, "
                            f"Wt {format_shape(wt)}")
    if not dg == dd == dw or dg.kind != "f":
        raise DtypeMismatch(f"needs one float dtype, got {dg}, {dd} and {dw}")
    return shape, dg


def _reverse_vjp(node, h, needs=None):
    """The adjoint, built from primitives: forward in time, as the original ran."""
    g, d, wt, *likes = node.inputs
    carry_in = node.attrs.get("carry_in", False)
    states = None
    if node.attrs.get("slope") == "tanh":
        states, d = d, 1.0 - d * d
    steps = node.shape[0]
    k: list[Any] = []  # adjoints of the sums g[t] + dz_{t+1} @ Wt
    grad_d: list[Any] = []
    grad_wt = None
    total = h[0]  # adjoint of dz_t, from h and from step t - 1
    for t in range(steps):
        k.append(total * d[t])
        later = node[t + 1] if t + 1 < steps else None
        if needs is None or needs[1]:
            grad_d.append(total * _summed(g, t, later, wt, carry_in))
        if later is not None:
            if needs is None or needs[2]:
                term = later.T @ k[t]
                grad_wt = term if grad_wt is None else grad_wt + term
            total = h[t + 1] + k[t] @ wt.T

    def d_grad() -> Any:
        grad = unbroadcast(new_node("stack", *grad_d, axis=0), d)
        return grad if states is None else grad * (states * -2.0)  # d = 1 - s**2

    def g_grad() -> Any:  # the carry enters the sum at the last step only
        return unbroadcast(k[-1], g) if carry_in else unbroadcast(
            new_node("stack", *k, axis=0), g)

    return wanted_grads(needs, g_grad, d_grad, lambda: grad_wt, *[None] * len(likes))


def _summed(g: Any, t: int, later: Any, wt: Any, carry_in: bool) -> Any:
    """What step ``t`` multiplies by its slope: ``g[t] + dz_{t+1} @ Wt`` (the carry alone
    at the last step, ``dz_{t+1} @ Wt`` alone before it, for ``carry_in``)."""
    if carry_in:
        return g if later is None else later @ wt
    return g[t] if later is None else g[t] + later @ wt


REVERSE_RECURRENCE = Op("reverse_recurrence", None, _reverse_forward, _reverse_shape, _reverse_vjp,
            doc="dz_t = (g[t] + dz_{t+1} @ wt) * d[t] for t from T-1 down: all dz (T, B, H); "
                "slope='tanh': d holds s and d[t] = 1 - s[t]**2; carry_in: g is a (B, H) "
                "carry that enters at the last step only",
                fresh=True)

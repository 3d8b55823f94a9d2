"""The ``recurrence`` op: ``s_t = act(s_{t-1} @ W + a[t] (+ b))`` for every step, as one op.

The optimizer's kernel rule (:mod:`tinygraph.passes.kernels`) puts it in place
of a scan whose body is exactly that step (a vanilla cell's loop, once its
input projection is hoisted). Its kernel runs the steps in a
tight loop over preallocated rows, every numpy call writing in place:

- three calls per step (``np.dot(s, W, z)``, add, activation), a fourth for
  a bias on large steps;
- two when a step is small (batch x H x H <= 4096 multiply-adds, where call
  overhead dominates): ``[s_{t-1} | a_t | 1] @ [[W], [I], [b]]`` does the
  adds inside the matmul.

It is registered like any primitive, with a shape rule and a gradient rule
(backpropagation through time built from primitives), so graphs holding it
can be differentiated, saved and drawn.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> a = g.input("a", shape=(3, 1, 2))
>>> W = g.param("W", np.eye(2))
>>> s0 = g.input("s0", shape=(1, 2))
>>> S = g.add_node("recurrence", [a, W, s0], {"activation": "tanh"})
>>> out = g.run(S, {"a": np.ones((3, 1, 2)), "s0": np.zeros((1, 2))})
>>> bool(np.allclose(out[1], np.tanh(np.tanh(1.0) + 1.0)))
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .fast_tanh import tanh_from_minus_2z, tanh_kernel
from .forwards import dot as fast_dot
from .loop_weight import loop_weight
from .op import Op, new_node, unbroadcast, wanted_grads
from .primitives import sigmoid_forward
from .shape_rules import DtypeMismatch, Spec
from .shapes import ShapeMismatch, broadcast_shapes, format_shape

__all__ = ["ACTIVATIONS", "AUGMENT_MAX", "RECURRENCE"]


def _sigmoid_into(z: np.ndarray, out: np.ndarray) -> None:
    if z.dtype == out.dtype and z.shape == out.shape:
        sigmoid_forward(z, out=out)  # the op's own formula: results equal the unfused graph's
    else:
        out[...] = sigmoid_forward(z)


def _relu_into(z: np.ndarray, out: np.ndarray) -> None:
    np.maximum(z, 0, out=out)


# activation op -> f(z, row): writes act(z) into row
ACTIVATIONS = {"tanh": np.tanh, "sigmoid": _sigmoid_into, "relu": _relu_into}


def _recurrence_forward(a: np.ndarray, w: np.ndarray, s0: np.ndarray,
                        b: np.ndarray | None = None, *, activation: str = "tanh") -> np.ndarray:
    act: Any = ACTIVATIONS[activation]
    dtype = np.result_type(a, w, s0) if b is None else np.result_type(a, w, s0, b)
    step = a.shape[1:]
    if s0.shape != step:
        # Broadcasting as in the unfused graph: a (1, H) s0 against a batch of B rows.
        step = np.broadcast_shapes(step, s0.shape[:-1] + w.shape[1:])
        a = np.broadcast_to(a, a.shape[:1] + step)
        s0 = np.broadcast_to(s0, step)
    if s0.size * w.shape[1] <= AUGMENT_MAX and np.isfinite(a).all() and (
            b is None or np.isfinite(b).all()):
        return _small_steps(a, w, s0, b, act, dtype)
    if b is not None and s0.size < _BIAS_PER_STEP_MIN:
        a, b = a + b, None  # small steps: one add over all of them beats one per step
    states = np.empty(a.shape, dtype)
    z = np.empty(step, dtype)
    if activation == "tanh" and tanh_kernel(z.size, dtype) is not np.tanh:
        return _tanh_steps_from_exp(a, w, s0, b, states, z)
    w = loop_weight(w, rows=math.prod(step[:-1]), steps=len(a))
    return _steps(a, w, s0, b, act, states, z)


def _steps(a: np.ndarray, w: np.ndarray, s0: np.ndarray, b: np.ndarray | None, act: Any,
           states: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The loop: ``act(s_{t-1} @ w + a_t (+ b))`` into row t of ``states``, through ``z``.
    ``a`` may be ``states`` itself (row t is read before step t writes it)."""
    dot, add = fast_dot, np.add
    prev = s0
    # Iterating an array yields its rows as views, at C speed.
    for a_t, row in zip(a, states, strict=True):
        dot(prev, w, z)  # out given positionally: ~20 ns less per call
        add(z, a_t, z)
        if b is not None:
            add(z, b, z)
        act(z, row)
        prev = row
    return states


def _tanh_steps_from_exp(a: np.ndarray, w: np.ndarray, s0: np.ndarray, b: np.ndarray | None,
                         states: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The tanh loop where numpy's tanh is slow (:mod:`tinygraph.core.fast_tanh`): with
    ``-2 W`` and ``-2 a`` (exact: a power of two), a step's product is ``-2 z`` itself and
    ``tanh(z) = 2 / (1 + exp(-2 z)) - 1`` takes four calls, not the exp form's seven.

    Within 3.4e-16 of the exact tanh (numpy's: 1.1e-16); a zero comes out as +0.0. A
    step below about -354 overflows exp to inf, which gives -1 as it should.
    """
    with np.errstate(over="ignore"):  # -2 x overflows to -inf beyond 9e307: tanh is -1 there
        w2 = loop_weight(np.multiply(w, -2.0), rows=math.prod(e.shape[:-1]), steps=len(a))
        b2 = None if b is None else np.multiply(b, -2.0)
        # Row t holds -2 a_t until step t has added it, then s_t: no second (T, B, H) array.
        np.multiply(a, -2.0, out=states)
        return _steps(states, w2, s0, b2, tanh_from_minus_2z, states, e)


# Below this many multiply-adds per step (batch x H x H) a step costs its numpy
# calls, not its arithmetic: one call fewer beats the doubled matmul.
AUGMENT_MAX = 4096
# From this many values per step (batch x H), adding the bias inside each step
# costs less than a separate pass over the whole (T, B, H) sequence.
_BIAS_PER_STEP_MIN = 2048


def _small_steps(a: np.ndarray, w: np.ndarray, s0: np.ndarray, b: np.ndarray | None,
                 act: Any, dtype: np.dtype) -> np.ndarray:
    """Two calls per step: ``[s_{t-1} | a_t | 1] @ [[W], [I], [b]]`` adds inside the matmul.

    Row t of ``rows`` holds ``s_{t-1}`` next to ``a_t`` (and a 1 for the bias);
    the activation writes ``s_t`` into the left part of row t + 1. The
    identity block adds ``a_t`` and exact zeros, so results equal
    ``s_{t-1} @ W + a_t (+ b)`` up to the order BLAS sums in (a few ulp).
    Only for finite ``a`` and ``b``: ``inf * 0`` would be NaN.
    """
    steps, hidden = a.shape[0], w.shape[1]
    extra = 0 if b is None else 1
    rows = np.empty((steps + 1, *a.shape[1:-1], 2 * hidden + extra), dtype)
    rows[:-1, ..., hidden:2 * hidden] = a
    rows[-1, ..., hidden:] = 0
    rows[:-1, ..., 2 * hidden:] = 1
    rows[0, ..., :hidden] = s0
    blocks = [w, np.eye(hidden, dtype=dtype)] + ([] if b is None else [np.reshape(b, (1, -1))])
    stacked = np.concatenate(blocks)
    z = np.empty(a.shape[1:], dtype)
    dot = fast_dot
    for row, nxt in zip(rows[:-1], rows[1:, ..., :hidden], strict=True):
        dot(row, stacked, z)
        act(z, nxt)
    return rows[1:, ..., :hidden].copy()


def _recurrence_shape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    if len(specs) not in (3, 4):
        raise ShapeMismatch(f"takes a, W, s0 and optionally b; got {len(specs)} inputs")
    (a, da), (w, dw), (s0, ds) = specs[:3]
    bias = specs[3] if len(specs) == 4 else None
    if bias is not None and (len(bias[0]) != 1 or bias[1] != da):
        raise ShapeMismatch(f"the bias must be an (H,) vector of dtype {da}; got "
                            f"{format_shape(bias[0])} {bias[1]}")
    if attrs.get("activation", "tanh") not in ACTIVATIONS:
        raise ShapeMismatch(f"activation must be one of {sorted(ACTIVATIONS)}, "
                            f"got {attrs.get('activation')!r}")
    wanted = "a (T, B, H) sequence, an (H, H) weight and a (B, H) initial state"
    if len(a) != 3 or len(w) != 2 or len(s0) != 2:
        raise ShapeMismatch(f"needs {wanted}; got {format_shape(a)}, {format_shape(w)}, "
                            f"{format_shape(s0)}")
    hidden = {d for d in (a[2], w[0], w[1], s0[1], *(bias[0] if bias else ()))
              if d is not None}
    if len(hidden) > 1:
        raise ShapeMismatch(f"needs {wanted}; the sizes disagree: {format_shape(a)}, "
                            f"{format_shape(w)}, {format_shape(s0)}")
    if not da == dw == ds or da.kind != "f":
        raise DtypeMismatch(f"needs one float dtype, got {da}, {dw} and {ds}")
    (batch,) = broadcast_shapes(a[1:2], s0[:1])  # s0 may broadcast against the batch
    return (a[0], batch, hidden.pop() if hidden else None), da


# activation op -> its derivative, from the activation's output y
_SLOPES = {"tanh": lambda y: 1 - y * y, "sigmoid": lambda y: y * (1 - y),
           "relu": lambda y: new_node("sign", y)}


def _recurrence_vjp(node, g, needs=None):
    """Backpropagation through time, as graph nodes: two matmuls and a product per step."""
    a, w, s0, *bias = node.inputs
    steps = node.shape[0]
    slope = _SLOPES[node.attrs.get("activation", "tanh")]
    dz: list[Any] = [None] * steps
    carry = None  # d loss / d s_t flowing back from step t + 1
    for t in reversed(range(steps)):
        ds = g[t] if carry is None else g[t] + carry
        dz[t] = ds * slope(node[t])
        carry = dz[t] @ w.T
    grad_w = None
    if needs is None or needs[1]:
        # s0 as step 0 used it: broadcast against the batch, unless shapes prove it is not
        first = s0 if s0.shape == dz[0].shape and None not in s0.shape else \
            new_node("broadcast_to", s0, dz[0])
        for t in range(steps):
            term = (node[t - 1] if t else first).T @ dz[t]
            grad_w = term if grad_w is None else grad_w + term
    wanted = needs is None or needs[0] or (bias and needs[3])
    dz_all = new_node("stack", *dz, axis=0) if wanted else None
    return wanted_grads(needs, lambda: unbroadcast(dz_all, a), lambda: grad_w,
                  lambda: unbroadcast(carry, s0),
                  *([lambda: new_node("sum_to", dz_all, bias[0])] if bias else []))


RECURRENCE = Op("recurrence", None, _recurrence_forward, _recurrence_shape, _recurrence_vjp,
            doc="s_t = act(s_{t-1} @ w + a[t] (+ b)) for t < T from s0: all states (T, B, H)",
                fresh=True)

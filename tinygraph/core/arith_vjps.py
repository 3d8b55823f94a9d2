"""The vjps of the broadcasting arithmetic ops (add, sub, mul, div, pow).

A gradient flows back to each operand in its own shape: where the operand was
broadcast, reverse mode sums the cotangent back down (``sum_to``), unless the
static shapes prove no broadcast happened. Linear steps that commute with
that sum run after it, on the operand's (smaller) shape: the negation in
``d(a - b)/db`` and the division by ``b`` in ``d(a / b)/db``.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x, d = g.input("x", shape=(None, 4)), g.input("d", shape=(None, 1))
>>> (gd,) = tg.grad(tg.sum(x / d), [d])
>>> gd.op, gd.shape           # -(sum_to(g * y, d) / d): d's shape throughout
('neg', (None, 1))
>>> float(g.run(gd, {"x": np.ones((1, 4)), "d": np.full((1, 1), 2.0)})[0, 0])
-1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .node import build
from .op import new_node, select, unbroadcast, wanted_grads

__all__ = ["add_vjp", "binary_vjp", "cannot_broadcast", "div_vjp", "mul_vjp", "pow_vjp",
           "sub_vjp"]


def cannot_broadcast(x: Any, other: Any) -> bool:
    """Does ``x op other`` provably have x's shape at run time (x is never broadcast)?

    True when ``other`` has no more axes than x and each of its axes is a known 1 or a
    known size equal to x's known size there. Then reverse mode needs no ``sum_to``
    for x's gradient, and the optimizer never needs x's value just for its shape.
    """
    if len(other.shape) > len(x.shape):
        return False
    pairs = zip(reversed(x.shape), reversed(other.shape), strict=False)
    return all(o == 1 or (o is not None and o == d) for d, o in pairs)


def _summed_to(grad: Any, x: Any, other: Any) -> Any:
    """``grad`` summed down to ``x``'s shape, unless ``x op other`` provably kept it."""
    return grad if cannot_broadcast(x, other) else unbroadcast(grad, x)


def binary_vjp(da: Callable, db: Callable) -> Callable:
    """A vjp for a broadcasting binary op from its two local derivatives ``d(g, a, b, y)``."""
    def vjp(node, g, needs=None):
        a, b = node.inputs
        return wanted_grads(needs, lambda: _summed_to(da(g, a, b, node), a, b),
                            lambda: _summed_to(db(g, a, b, node), b, a))
    return vjp


def sub_vjp(node, g, needs=None):
    """``d(a - b)``: ``g`` for a, ``-g`` for b, each summed to its operand's shape."""
    a, b = node.inputs
    # -g summed to b's shape as -(g summed): the negation runs on b's values, not on g's.
    return wanted_grads(needs, lambda: _summed_to(g, a, b), lambda: -_summed_to(g, b, a))


def div_vjp(node, g, needs=None):
    """``d(a / b)``: ``g / b`` for a, ``-g y / b`` for b, each summed to its operand's shape.

    b is the same along every axis the sum for b runs over, so dividing by it commutes
    with the sum: a (B, 1) divisor (a layer norm's deviation) divides B values, not B x H.
    """
    a, b = node.inputs
    return wanted_grads(needs, lambda: _summed_to(g / b, a, b),
                        lambda: -(_summed_to(g * node, b, a) / b))


def _nonzero_const(node) -> bool:
    return node.op == "const" and bool(np.all(node.value != 0))


def _pow_grad_base(g, a, b, y):
    # b * a**(b-1) is 0 * 0**-1 = nan at a = b = 0, where the derivative is 0 (as torch):
    # where b == 0 any finite power does, since b multiplies it.
    if _nonzero_const(b):
        return g * b * a ** (b - 1)
    exponent = select(build("equal", b, 0.0), 1.0, b - 1)
    return g * b * a ** exponent


def _pow_grad_exponent(g, a, b, y):
    # y * log(a) is 0 * -inf = nan at a = 0, b >= 0, where the derivative is 0 (as torch).
    if _nonzero_const(a):
        return g * y * new_node("log", a)
    return g * y * new_node("log", select(build("equal", a, 0.0), 1.0, a))


add_vjp = binary_vjp(lambda g, a, b, y: g, lambda g, a, b, y: g)
mul_vjp = binary_vjp(lambda g, a, b, y: g * b, lambda g, a, b, y: g * a)
pow_vjp = binary_vjp(_pow_grad_base, _pow_grad_exponent)

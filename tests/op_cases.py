"""Op test cases ported from tinygrad's ``test/test_ops.py``, each written twice.

A case names its input shapes, the range its float32 inputs are drawn from
(tinygrad's ``low``/``high``), a tinygraph expression and the same maths in
PyTorch. ``tests/data/make_op_goldens.py`` runs the PyTorch side and stores
inputs, outputs and gradients; ``tests/test_op_goldens.py`` runs the
tinygraph side against them. This module never imports torch: the PyTorch
functions take the module as their first argument.

Tolerances are tinygrad's defaults (forward atol 1e-6 / rtol 1e-3, gradient
atol 1e-4 / rtol 1e-3) unless a case says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tinygraph as tg


@dataclass(frozen=True)
class Case:
    shapes: tuple
    tg_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    low: float = -2.0
    high: float = 2.0
    atol: float = 1e-6
    rtol: float = 1e-3
    grad_atol: float = 1e-4
    grad_rtol: float = 1e-3
    grad: bool = True          # False: the output is not differentiable (bool, int)
    zeros: bool = False        # every third input entry set to exactly 0
    ints: dict = field(default_factory=dict)  # input position -> (high, shape) int ids


def _cat(parts, axis):
    """The parts joined back, each scaled by its position (so order and sizes both show)."""
    return tg.concat([p * float(k + 1) for k, p in enumerate(parts)], axis=axis)


def _tcat(t, parts, axis):
    return t.cat([p * float(k + 1) for k, p in enumerate(parts)], dim=axis)


A = (15, 25)  # tinygrad uses (45, 65); smaller keeps the golden file small
B = (4, 5, 6)

CASES: dict[str, Case] = {
    "maximum": Case((A, A), tg.maximum, lambda t, a, b: t.maximum(a, b)),
    "maximum_broadcast": Case(((15, 1), (1, 25)), tg.maximum, lambda t, a, b: t.maximum(a, b)),
    "maximum_scalar": Case((A,), lambda a: tg.maximum(a, 0.5), lambda t, a: t.clamp(a, min=0.5)),
    "minimum": Case((A, A), tg.minimum, lambda t, a, b: t.minimum(a, b)),
    "where": Case((A, A), lambda a, b: tg.where(a > b, a * 2, b),
                  lambda t, a, b: t.where(a > b, a * 2, b)),
    "where_scalar": Case((A,), lambda a: tg.where(a > 0, a, 0.0),
                         lambda t, a: t.where(a > 0, a, 0.0)),
    "abs": Case((A,), tg.abs, lambda t, a: t.abs(a)),
    "abs_operator": Case((A,), lambda a: abs(a) * 3, lambda t, a: t.abs(a) * 3),
    "sign": Case((A,), lambda a: tg.sign(a), lambda t, a: t.sign(a), zeros=True),
    "sqrt": Case((A,), tg.sqrt, lambda t, a: t.sqrt(a), low=0.0, high=3.0),
    "rsqrt": Case((A,), tg.rsqrt, lambda t, a: t.rsqrt(a), low=0.1, high=3.0),
    "clip": Case((A,), lambda a: tg.clip(a, -0.5, 0.5), lambda t, a: t.clamp(a, -0.5, 0.5),
                 low=-3, high=3),
    "clip_low": Case((A,), lambda a: tg.clip(a, 0.0, None), lambda t, a: t.clamp(a, min=0.0)),
    "max": Case((A,), tg.max, lambda t, a: a.max()),
    "max_axis": Case((A,), lambda a: tg.max(a, axis=1), lambda t, a: a.amax(dim=1)),
    "max_keepdims": Case((B,), lambda a: tg.max(a, axis=(0, 2), keepdims=True),
                         lambda t, a: a.amax(dim=(0, 2), keepdim=True)),
    "min": Case((A,), tg.min, lambda t, a: a.min()),
    "min_axis": Case((A,), lambda a: tg.min(a, axis=0), lambda t, a: a.amin(dim=0)),
    "max_ties": Case((A,), lambda a: tg.max(tg.clip(a, None, 1.0)),
                     lambda t, a: t.clamp(a, max=1.0).max()),
    "argmax": Case((A,), lambda a: tg.argmax(a, axis=1), lambda t, a: a.argmax(dim=1),
                   grad=False),
    "argmax_flat": Case((A,), tg.argmax, lambda t, a: a.argmax(), grad=False),
    "argmin": Case((A,), lambda a: tg.argmin(a, axis=0, keepdims=True),
                   lambda t, a: a.argmin(dim=0, keepdim=True), grad=False),
    "logsumexp": Case((A,), lambda a: tg.logsumexp(a, axis=1),
                      lambda t, a: t.logsumexp(a, dim=1)),
    "logsumexp_all": Case((B,), tg.logsumexp, lambda t, a: t.logsumexp(a, dim=(0, 1, 2))),
    "logsumexp_large": Case((A,), lambda a: tg.logsumexp(a, axis=0, keepdims=True),
                            lambda t, a: t.logsumexp(a, dim=0, keepdim=True), low=-1e3,
                            high=1e3),
    "var": Case((A,), lambda a: tg.var(a, ddof=1), lambda t, a: a.var()),
    "var_axis": Case((B,), lambda a: tg.var(a, axis=1, ddof=0),
                     lambda t, a: a.var(dim=1, correction=0)),
    "std": Case((A,), lambda a: tg.std(a, ddof=1), lambda t, a: a.std()),
    "std_axis": Case((B,), lambda a: tg.std(a, axis=(0, 2), ddof=1, keepdims=True),
                     lambda t, a: a.std(dim=(0, 2), keepdim=True)),
    "gather": Case((B,), lambda a, i: tg.gather(a, i, axis=1),
                   lambda t, a, i: t.gather(a, 1, i), ints={1: (5, (4, 3, 6))}),
    "gather_last": Case((B,), lambda a, i: tg.gather(a, i, axis=-1),
                        lambda t, a, i: t.gather(a, -1, i), ints={1: (6, (4, 5, 9))}),
    "split_sections": Case((B,), lambda a: _cat(tg.split(a, 3, axis=2), 2),
                           lambda t, a: _tcat(t, t.tensor_split(a, 3, dim=2), 2)),
    "split_indices": Case((B,), lambda a: _cat(tg.split(a, [1, 3], axis=1), 1),
                          lambda t, a: _tcat(t, t.tensor_split(a, [1, 3], dim=1), 1)),
    "pad": Case((B,), lambda a: tg.pad(a, ((0, 0), (1, 2), (3, 0))),
                lambda t, a: t.nn.functional.pad(a, (3, 0, 1, 2))),
    "pad_value": Case((A,), lambda a: tg.pad(a, 2, constant_values=1.5),
                      lambda t, a: t.nn.functional.pad(a, (2, 2, 2, 2), value=1.5)),
    "broadcast_to": Case(((15, 1),), lambda a: tg.broadcast_to(a, (3, 15, 25)),
                         lambda t, a: a.expand(3, 15, 25)),
    "expand_dims": Case((A,), lambda a: tg.expand_dims(a, (0, 2)) * 2,
                        lambda t, a: a.unsqueeze(0).unsqueeze(2) * 2),
    "squeeze": Case(((4, 1, 6, 1),), lambda a: tg.squeeze(a) * 2,
                    lambda t, a: a.squeeze() * 2),
    "cumsum": Case((A,), lambda a: tg.cumsum(a, axis=1), lambda t, a: a.cumsum(dim=1)),
    "cumsum_flat": Case((B,), tg.cumsum, lambda t, a: a.flatten().cumsum(dim=0)),
    "sin": Case((A,), tg.sin, lambda t, a: t.sin(a), low=-100, high=100),
    "cos": Case((A,), tg.cos, lambda t, a: t.cos(a), low=-100, high=100),
    "softplus": Case((A,), tg.softplus, lambda t, a: t.nn.functional.softplus(a), low=-30,
                     high=30),
    "logsigmoid": Case((A,), tg.logsigmoid, lambda t, a: t.nn.functional.logsigmoid(a),
                       low=-100, high=100),
    "sigmoid_tails": Case((A,), tg.sigmoid, lambda t, a: t.sigmoid(a), low=-80, high=80),
    "log_sigmoid_composed": Case((A,), lambda a: tg.log(tg.sigmoid(a)),
                                 lambda t, a: t.log(t.sigmoid(a)), low=-60, high=10),
    "leaky_relu": Case((A,), tg.leaky_relu, lambda t, a: t.nn.functional.leaky_relu(a)),
    "leaky_relu_slope": Case((A,), lambda a: tg.leaky_relu(a, 0.3),
                             lambda t, a: t.nn.functional.leaky_relu(a, 0.3)),
    "silu": Case((A,), tg.silu, lambda t, a: t.nn.functional.silu(a), low=-10, high=10),
    "gelu": Case((A,), tg.gelu, lambda t, a: t.nn.functional.gelu(a), low=-5, high=5),
    "gelu_tanh": Case((A,), lambda a: tg.gelu(a, approximate="tanh"),
                      lambda t, a: t.nn.functional.gelu(a, approximate="tanh"), low=-5, high=5),
    "stop_gradient": Case((A, A), lambda a, b: tg.stop_gradient(a) * b,
                          lambda t, a, b: a.detach() * b),
    "equal": Case((A,), lambda a: tg.equal(a, a * 1.0), lambda t, a: t.eq(a, a * 1.0),
                  grad=False),
    "not_equal": Case((A, A), tg.not_equal, lambda t, a, b: t.ne(a, b), grad=False),
    "less": Case((A, A), lambda a, b: a < b, lambda t, a, b: a < b, grad=False),
    "less_equal": Case((A,), lambda a: a <= 0.5, lambda t, a: a <= 0.5, grad=False),
    "greater": Case((A, A), lambda a, b: a > b, lambda t, a, b: a > b, grad=False),
    "greater_equal": Case((A,), lambda a: 0.5 >= a, lambda t, a: 0.5 >= a, grad=False),
    "compare_as_mask": Case((A, A), lambda a, b: (a > b) * a + (a <= b) * b,
                            lambda t, a, b: (a > b) * a + (a <= b) * b),
    "index_none_ellipsis": Case((B,), lambda a: a[None, ..., 1] * 2,
                                lambda t, a: a[None, ..., 1] * 2),
    "index_array": Case((B,), lambda a: a[np.array([3, 0, 3])],
                        lambda t, a: a[t.tensor([3, 0, 3])]),
    "index_array_middle": Case((B,), lambda a: a[:, [4, 0, 2], 1:],
                               lambda t, a: a[:, [4, 0, 2], 1:]),
    "index_two_arrays": Case((B,), lambda a: a[[0, 1, 1], :, [5, 0, 5]],
                             lambda t, a: a[[0, 1, 1], :, [5, 0, 5]]),
    "index_array_node": Case((B,), lambda a, i: a[i, 2], lambda t, a, i: a[i, 2],
                             ints={1: (4, (2, 3))}),
    "index_negative_step": Case((A,), lambda a: a[::-2, 3:-3], lambda t, a: a.flip(0)[::2, 3:-3]),
    "pow_zero_exponent": Case((A,), lambda a: a ** 0.0, lambda t, a: a ** 0.0, zeros=True),
    "pow_zero_base": Case((A,), lambda a: 0.0 ** a, lambda t, a: 0.0 ** a, low=0.0, high=2.0,
                          zeros=True),
    "pow_both": Case((A, A), lambda a, b: a ** b, lambda t, a, b: a ** b, low=0.0, high=2.0,
                     zeros=True),
    "pow_square": Case((A,), lambda a: a ** 2.0, lambda t, a: a ** 2.0, zeros=True),
    "pow_half": Case((A,), lambda a: a ** 0.5, lambda t, a: a ** 0.5, low=0.5, high=3.0),
    "cross_entropy_ignore": Case(
        ((10, 7),), lambda a, i: tg.cross_entropy(a, i, ignore_index=2),
        lambda t, a, i: t.nn.functional.cross_entropy(a, i, ignore_index=2), ints={1: (7, (10,))}),
    "cross_entropy_smoothing": Case(
        ((10, 7),), lambda a, i: tg.cross_entropy(a, i, label_smoothing=0.1),
        lambda t, a, i: t.nn.functional.cross_entropy(a, i, label_smoothing=0.1),
        ints={1: (7, (10,))}),
    "cross_entropy_both": Case(
        ((3, 4, 7),), lambda a, i: tg.cross_entropy(a, i, ignore_index=0, label_smoothing=0.3),
        lambda t, a, i: t.nn.functional.cross_entropy(a.reshape(12, 7), i.reshape(12),
                                                      ignore_index=0, label_smoothing=0.3),
        ints={1: (7, (3, 4))}),
}


def inputs(name: str, case: Case) -> list[np.ndarray]:
    """The case's inputs, drawn from a generator seeded by its name (the same in both scripts)."""
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)
    out: list[np.ndarray] = []
    floats = iter(case.shapes)
    for k in range(len(case.shapes) + len(case.ints)):
        if k in case.ints:
            high, shape = case.ints[k]
            out.append(rng.integers(0, high, size=shape).astype(np.int64))
            continue
        x = rng.uniform(case.low, case.high, size=next(floats)).astype(np.float32)
        if case.zeros:
            x.reshape(-1)[::3] = 0.0
        out.append(x)
    return out

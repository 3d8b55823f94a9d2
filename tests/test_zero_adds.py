"""``zeros_like(a) + b`` -> ``b`` (tinygraph/passes/__init__.py, ``_zero_adds``), and the
cross-entropy's target picking on flat indices (tinygraph/core/prim_loss.py).

References: numpy products and sums written out here; the loss's fallback path
(``take_along_axis``) on the same values in a non-contiguous layout.
"""

from __future__ import annotations

import numpy as np

import tinygraph as tg
from tinygraph import passes
from tinygraph.core.ops import OPS

RNG = np.random.default_rng(0)


def _ops(graph):
    return [n.op for n in graph.nodes.values()]


def test_a_computed_value_plus_zeros_is_that_value():
    g = tg.Graph()
    a = g.input("a", shape=(3, 4))
    w = g.param("W", RNG.normal(size=(3, 3)))
    total = g.add_node("zeros_like", [w]) + tg.matmul(a, tg.transpose(a))
    optimized = passes.optimize(g, [total])
    assert "zeros_like" not in _ops(optimized) and _ops(optimized).count("add") == 0
    av = RNG.normal(size=(3, 4))
    np.testing.assert_array_equal(g.run(total, {"a": av}), av @ av.T)


def test_an_input_a_param_or_an_already_fetched_value_keeps_its_add():
    g = tg.Graph()
    a = g.input("a", shape=(3, 3))
    w = g.param("W", RNG.normal(size=(3, 3)))
    prod = tg.matmul(a, w)
    from_input = g.add_node("zeros_like", [w]) + a  # the caller would get its own array
    from_param = g.add_node("zeros_like", [a]) + w  # the live param itself
    from_fetched = g.add_node("zeros_like", [w]) + prod  # two results, one array
    fetches = [from_input, from_param, from_fetched, prod]
    optimized = passes.optimize(g, fetches)
    assert _ops(optimized).count("add") == 3
    av = RNG.normal(size=(3, 3))
    got = g.run(fetches, {"a": av})
    assert got[0] is not av and not np.shares_memory(got[2], got[3])
    np.testing.assert_array_equal(got[2], av @ w.value)


def test_a_sum_that_broadcasts_keeps_its_add():
    g = tg.Graph()
    a = g.input("a", shape=(3, 1))
    w = g.param("W", np.ones((3, 4)))
    total = g.add_node("zeros_like", [w]) + a * 2.0  # (3, 1) widened to (3, 4)
    assert "zeros_like" in _ops(passes.optimize(g, [total]))
    av = RNG.normal(size=(3, 1))
    np.testing.assert_array_equal(g.run(total, {"a": av}), np.broadcast_to(av * 2.0, (3, 4)))


def test_cross_entropy_picks_the_same_targets_from_any_layout():
    forward = OPS["cross_entropy_and_grad"].forward
    logits = RNG.normal(size=(6, 5, 7))
    targets = RNG.integers(0, 7, size=(6, 5))
    strided = np.swapaxes(np.swapaxes(logits, 0, 1).copy(), 0, 1)  # same values, not C-ordered
    assert not strided.flags.c_contiguous
    for batch_axes, g in ((0, np.array(1.0)), (1, RNG.uniform(size=6))):
        fast = forward(g, logits, targets, batch_axes=batch_axes)
        slow = forward(g, strided, targets, batch_axes=batch_axes)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
    # And against the formula: softmax minus one-hot, times g over each mean's row count.
    e = np.exp(logits - logits.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    p[np.arange(6)[:, None], np.arange(5)[None, :], targets] -= 1.0
    np.testing.assert_allclose(fast[1], p * (g / 5)[:, None, None], rtol=1e-12, atol=1e-15)

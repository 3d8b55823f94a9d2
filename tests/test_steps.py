"""Which nodes form step t (passes/steps.py), and rerolling what they propose.

Loops written by hand — in ``t=k`` scopes, or with no marks at all — must
optimize into one loop as ``tinygraph_rnn.unroll`` graphs do; every value is
compared with a numpy loop written here.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph import passes

RNG = np.random.default_rng(11)


def _ops(graph):
    return [n.op for n in graph.nodes.values()]


@pytest.mark.parametrize("matmul_first", [False, True])
def test_a_loop_without_marks_rerolls_from_its_repeating_shape(matmul_first):
    # matmul_first: each step builds s @ W before it reads its input x_t, so the
    # period starts before the input that marks it.
    T, B, D, H = 6, 2, 3, 4
    g = tg.Graph()
    U = g.param("U", RNG.standard_normal((D, H)) * 0.5)
    W = g.param("W", RNG.standard_normal((H, H)) * 0.5)
    s = g.input("s0", shape=(None, H))
    xs, states = [], []
    for _ in range(T):
        if matmul_first:
            carried = s @ W
            xs.append(g.input(f"x{len(xs)}", shape=(None, D)))
            s = tg.tanh(carried + xs[-1] @ U)
        else:
            xs.append(g.input(f"x{len(xs)}", shape=(None, D)))
            s = tg.tanh(xs[-1] @ U + s @ W)
        states.append(s)
    fetch = tg.stack(states)
    optimized, (root,) = passes.rewrite(g, [fetch], passes.OPTIMIZE_PASSES)
    optimized.validate()
    assert "tanh" not in _ops(optimized) and _ops(optimized).count("matmul") <= 2
    x, s0 = RNG.standard_normal((T, B, D)), RNG.standard_normal((B, H))
    want, h = [], s0
    for t in range(T):
        h = np.tanh(x[t] @ U.value + h @ W.value)
        want.append(h)
    feeds = {node.name: x[t] for t, node in enumerate(xs)} | {"s0": s0}
    np.testing.assert_allclose(optimized.run(root, feeds), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.run(fetch, feeds), want, rtol=1e-12, atol=1e-14)


def test_a_loop_over_rows_in_any_order_reads_them_with_one_take():
    g = tg.Graph()
    a = g.input("a", shape=(5, None, 3))
    W = g.param("W", RNG.standard_normal((3, 3)) * 0.5)
    s = g.input("s0", shape=(None, 3))
    order, states = [4, 0, 3, 1], []
    for k in order:
        s = tg.sigmoid(s @ W + a[k])
        states.append(s)
    fetch = tg.stack(states)
    ops = _ops(passes.optimize(g, [fetch]))
    assert "take" in ops and "sigmoid" not in ops
    av, s0 = RNG.standard_normal((5, 2, 3)), RNG.standard_normal((2, 3))
    want, h = [], s0
    for k in order:
        h = 1 / (1 + np.exp(-(h @ W.value + av[k])))
        want.append(h)
    np.testing.assert_allclose(g.run(fetch, {"a": av, "s0": s0}), want, rtol=1e-12)


def test_steps_reading_a_value_computed_from_a_later_step_stay_unrolled():
    # Every step reads c, and c is computed from step 2's projection: the three steps
    # look alike, but no loop can run before c exists (rerolling would make a cycle).
    g = tg.Graph()
    U = g.param("U", RNG.standard_normal((3, 3)) * 0.5)
    W = g.param("W", RNG.standard_normal((3, 3)) * 0.5)
    s = g.input("s0", shape=(None, 3))
    xs, projections = [], []
    for t in range(3):
        with g.scope(f"t={t}"):
            xs.append(g.input("x", shape=(None, 3)))
            projections.append(xs[-1] @ U)
    c = tg.tanh(projections[2])
    states = []
    for t in range(3):
        with g.scope(f"t={t}"):
            s = tg.tanh(projections[t] + s @ W + c)
            states.append(s)
    fetch = tg.stack(states)
    optimized = passes.optimize(g, [fetch])
    optimized.validate()
    assert "scan" not in _ops(optimized) and "recurrence" not in _ops(optimized)
    x, s0 = RNG.standard_normal((3, 2, 3)), RNG.standard_normal((2, 3))
    cv = np.tanh(x[2] @ U.value)
    want, h = [], s0
    for t in range(3):
        h = np.tanh(x[t] @ U.value + h @ W.value + cv)
        want.append(h)
    feeds = {node.name: x[t] for t, node in enumerate(xs)} | {"s0": s0}
    np.testing.assert_allclose(g.run(fetch, feeds), want, rtol=1e-12)

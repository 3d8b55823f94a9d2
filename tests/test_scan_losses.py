"""A loss written inside a ``tg.scan`` body (JAX style) trains like one written after it.

Three ways to write one per-step cross-entropy: summed in a carry
(``(h, acc + ce_t)``), handed out per step (``ys = ce_t``, then ``mean``), or
computed after the loop from the stacked states. Values equal a numpy loop,
gradients central differences; the optimized plan must take the loss and its
gradient out of both loops (no ``cross_entropy``/``cross_entropy_grad`` left in a
loop body), so all three run the same work.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg

T, B, D, H, V = 6, 3, 4, 5, 7
RNG = np.random.default_rng(3)


def _graph(form):
    g = tg.Graph()
    U = g.param("U", RNG.normal(size=(D, H)) * 0.5)
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)
    Vp = g.param("V", RNG.normal(size=(H, V)) * 0.5)
    X = g.input("X", shape=(None, None, D))
    Y = g.input("Y", shape=(None, None), dtype="int64")
    h0 = g.input("h0", shape=(None, H))
    if form == "carry":
        def step(c, xy):
            (h, acc), (x, y) = c, xy
            h = tg.tanh(x @ U + h @ W)
            return (h, acc + tg.cross_entropy(h @ Vp, y)), None
        (_, total), _ = tg.scan(step, (h0, g.const(0.0)), (X, Y))
        loss = total / T
    elif form == "outputs":
        def step(h, xy):
            x, y = xy
            h = tg.tanh(x @ U + h @ W)
            return h, tg.cross_entropy(h @ Vp, y)
        _, losses = tg.scan(step, h0, (X, Y))
        loss = tg.mean(losses)
    else:
        def step(h, x):
            h = tg.tanh(x @ U + h @ W)
            return h, h
        _, hs = tg.scan(step, h0, X)
        loss = tg.cross_entropy(hs @ Vp, Y)
    return g, loss, [U, W, Vp]


def _numpy_loss(P, X, Y, h0):
    h, total = h0, 0.0
    for x, y in zip(X, Y, strict=True):
        h = np.tanh(x @ P[0] + h @ P[1])
        z = h @ P[2]
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        total += -logp[np.arange(len(y)), y].mean()
    return total / len(X)


@pytest.mark.parametrize("form", ["carry", "outputs", "after"])
def test_a_loss_inside_the_loop_leaves_it_and_keeps_the_maths(form):
    g, loss, params = _graph(form)
    X, Y, h0 = RNG.normal(size=(T, B, D)), RNG.integers(0, V, (T, B)), RNG.normal(size=(B, H))
    fn = g.compile([loss, *tg.grad(loss, params)], inputs=["X", "Y", "h0"])
    got = fn(X, Y, h0)
    P = [p.value for p in params]
    np.testing.assert_allclose(got[0], _numpy_loss(P, X, Y, h0), rtol=1e-12)
    eps = 1e-6
    for k in range(len(params)):  # one entry of each gradient by central differences
        idx = (1, 2)
        bumped = []
        for d in (eps, -eps):
            Q = [q.copy() for q in P]
            Q[k][idx] += d
            bumped.append(_numpy_loss(Q, X, Y, h0))
        np.testing.assert_allclose(got[1 + k][idx], (bumped[0] - bumped[1]) / (2 * eps),
                                   rtol=1e-5, atol=1e-8)
    in_loops = [n.op for s in fn.plan.steps if s.node.op == "scan"
                for n in s.node.attrs["body"].nodes.values()]
    assert "cross_entropy" not in in_loops and "cross_entropy_grad" not in in_loops, in_loops


def test_a_carry_that_only_accumulates_leaves_the_scan_with_its_final_value():
    # Forward only, fetched the final sum and the final state; also at T = 0
    # (the sum is then its initial value) and T = 1.
    g = tg.Graph()
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)
    X = g.input("X", shape=(None, None, H))
    h0 = g.input("h0", shape=(None, H))
    start = g.input("start", shape=())

    def step(c, x):
        h, acc = c
        h = tg.tanh(x + h @ W)
        return (h, acc - tg.sum(h * h)), h

    (last, total), hs = tg.scan(step, (h0, start), X)
    for steps in (0, 1, T):
        Xv, hv = RNG.normal(size=(steps, B, H)), RNG.normal(size=(B, H))
        want_total, h, want_states = 1.5, hv, []
        for x in Xv:
            h = np.tanh(x + h @ W.value)
            want_total -= (h * h).sum()
            want_states.append(h)
        got = g.run([total, last, hs], {"X": Xv, "h0": hv, "start": np.float64(1.5)})
        np.testing.assert_allclose(got[0], want_total, rtol=1e-12)
        np.testing.assert_allclose(got[1], h, rtol=1e-12)
        np.testing.assert_allclose(got[2], np.reshape(want_states, (steps, B, H)),
                                   rtol=1e-12)  # T = 0 too: (0, B, H), B from the feeds
    from tinygraph import passes
    optimized = passes.optimize(g, [total, last, hs])
    scan = next(n for n in optimized.nodes.values() if n.op in ("scan", "recurrence"))
    assert scan.op == "recurrence" or scan.attrs["num_carry"] == 1

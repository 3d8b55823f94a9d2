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


def _hand_loop(T, build_inputs_first):
    """A vanilla net with a per-step loss, written as a plain Python loop (no marks);
    ``build_inputs_first``: ``xs = [g.input(...) for t in range(T)]`` before the loop."""
    B, D, H, V = 3, 4, 5, 6
    g = tg.Graph()
    p = {"U": g.param("U", RNG.standard_normal((D, H)) * 0.5),
         "W": g.param("W", RNG.standard_normal((H, H)) * 0.5),
         "V": g.param("V", RNG.standard_normal((H, V)) * 0.5)}
    xs = [g.input(f"x{t}", shape=(None, D)) for t in range(T)] if build_inputs_first else []
    s = g.input("s0", shape=(None, H))
    states = []
    for t in range(T):
        if not build_inputs_first:
            xs.append(g.input(f"x{t}", shape=(None, D)))
        s = tg.tanh(xs[t] @ p["U"] + s @ p["W"])
        states.append(s)
    return g, p, xs, states, (B, D, H, V)


def _numpy_states(p, x, s0):
    h, out = s0, []
    for xt in x:
        h = np.tanh(xt @ p["U"].value + h @ p["W"].value)
        out.append(h)
    return out


@pytest.mark.parametrize("T", [6, 30])
def test_a_loop_over_inputs_made_before_it_rerolls(T):
    # The inputs are built first, so the loop's repeating shape starts at each
    # input's first reader, not at the input; the optimized graph is one loop.
    g, p, xs, states, (B, D, H, _) = _hand_loop(T, build_inputs_first=True)
    fetch = tg.stack(states)
    optimized = passes.optimize(g, [fetch])
    ops = [op for op in _ops(optimized) if op != "input"]  # the T fed inputs stay
    assert "tanh" not in ops and len(ops) < 15, ops  # one loop, whatever T
    x, s0 = RNG.standard_normal((T, B, D)), RNG.standard_normal((B, H))
    feeds = {node.name: x[t] for t, node in enumerate(xs)} | {"s0": s0}
    np.testing.assert_allclose(g.run(fetch, feeds), _numpy_states(p, x, s0), rtol=1e-12)


def _numpy_logsoftmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("form", ["weighted", "subtracted", "python_sum", "targets_per_step",
                                  "padded"])
def test_per_step_losses_written_any_way_become_one_sum(form):
    # weighted: sum_t w_t * ce_t with a different Python float per step (T consts);
    # subtracted: loss = -l_0 - l_1 - ... built with `loss - term`; python_sum:
    # Python's sum(), which starts from 0; targets_per_step: y_t fed as T inputs;
    # padded: ignore_index for padding and label smoothing.
    # All must vectorize over time (node count independent of T) and keep the maths.
    counts = {}
    for T in (5, 25):
        g, p, xs, states, (B, D, H, V) = _hand_loop(T, build_inputs_first=False)
        Y = g.input("Y", shape=(T, None), dtype="int64")
        logits = [s @ p["V"] for s in states]
        if form == "weighted":
            loss = 0.5 * tg.cross_entropy(logits[0], Y[0])
            for t in range(1, T):
                loss = loss + (0.5 + t / T) * tg.cross_entropy(logits[t], Y[t])
        elif form == "subtracted":
            loss = -tg.mean(tg.log(tg.softmax(logits[0])))
            for t in range(1, T):
                loss = loss - tg.mean(tg.log(tg.softmax(logits[t])))
        elif form == "python_sum":
            loss = sum(tg.cross_entropy(z, Y[t]) for t, z in enumerate(logits)) / T
        elif form == "padded":  # padding targets (-1) ignored, smoothed labels
            loss = sum(tg.cross_entropy(z, Y[t], ignore_index=-1, label_smoothing=0.1)
                       for t, z in enumerate(logits))
        else:
            ys = [g.input(f"y{t}", shape=(None,), dtype="int64") for t in range(T)]
            loss = tg.cross_entropy(logits[0], ys[0])
            for t in range(1, T):
                loss = loss + tg.cross_entropy(logits[t], ys[t])
        grads = tg.grad(loss, [p["U"], p["W"], p["V"]])
        x, s0 = RNG.standard_normal((T, B, D)), RNG.standard_normal((B, H))
        y = RNG.integers(0, V, (T, B))
        if form == "padded":
            y[T // 2:, 0] = -1  # the first sequence ends halfway
        feeds = {node.name: x[t] for t, node in enumerate(xs)} | {"s0": s0, "Y": y}
        if form == "targets_per_step":
            feeds |= {f"y{t}": y[t] for t in range(T)}
            del feeds["Y"]
        counts[T] = len(g.compile([loss, *grads], inputs=list(feeds)).plan.steps)
        hs = _numpy_states(p, x, s0)
        logp = [_numpy_logsoftmax(h @ p["V"].value) for h in hs]
        ce = [-lp[np.arange(B), y[t]].mean() for t, lp in enumerate(logp)]
        if form == "weighted":
            want = sum((0.5 + t / T) * c for t, c in enumerate(ce))
        elif form == "python_sum":
            want = sum(ce) / T
        elif form == "padded":
            want = 0.0
            for t, lp in enumerate(logp):
                kept = y[t] >= 0
                rows = -lp[np.arange(B), np.where(kept, y[t], 0)]
                rows = 0.9 * rows + 0.1 * -lp.mean(axis=-1)
                want += rows[kept].mean()
        elif form == "targets_per_step":
            want = sum(ce)
        else:
            want = -sum(lp.mean() for lp in logp)
        got = g.run([loss, *grads], feeds)
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
        eps, gU = 1e-6, np.zeros_like(p["U"].value)  # one gradient by central differences
        for i in range(D):
            for j in range(H):
                U0 = p["U"].value.copy()
                vals = []
                for d in (eps, -eps):
                    p["U"].value = U0 + d * (np.arange(U0.size).reshape(U0.shape) == i * H + j)
                    vals.append(g.run(loss, feeds))
                p["U"].value = U0
                gU[i, j] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(got[1], gU, rtol=1e-5, atol=1e-7)
    assert counts[5] == counts[25], counts


@pytest.mark.parametrize("layout", ["batch_first", "first_step_apart"])
def test_loops_over_batch_first_data_or_with_a_first_step_apart_reroll(layout):
    # batch_first: the data is (B, T, D) and each step reads X[:, t] (built before
    # the loop); first_step_apart: no initial state, step 0 is h = tanh(x_0 @ U) and
    # the loop runs from t = 1. The loss is next-token style: logits_t against
    # ids[t + 1]. The optimized graph must not grow with T, and keep the maths.
    B, D, H, V = 3, 4, 5, 6
    counts = {}
    for T in (6, 24):
        g = tg.Graph()
        U, W, Vp = (g.param(n, RNG.standard_normal(s) * 0.5)
                    for n, s in (("U", (D, H)), ("W", (H, H)), ("V", (H, V))))
        ids = g.input("ids", shape=(T, None), dtype="int64")
        if layout == "batch_first":
            X = g.input("X", shape=(None, T, D))
            xs = [X[:, t] for t in range(T)]
            h = g.input("h0", shape=(None, H))
        else:
            X = g.input("X", shape=(T, None, D))
            xs = [X[t] for t in range(T)]
            h = None
        states = []
        for x in xs:
            h = tg.tanh(x @ U) if h is None else tg.tanh(x @ U + h @ W)
            states.append(h)
        loss = sum(tg.cross_entropy(states[t] @ Vp, ids[t + 1]) for t in range(T - 1)) / (T - 1)
        grads = tg.grad(loss, [U, W, Vp])
        x, h0, y = (RNG.standard_normal((T, B, D)), RNG.standard_normal((B, H)),
                    RNG.integers(0, V, (T, B)))
        feeds = {"ids": y}
        feeds |= ({"X": x.transpose(1, 0, 2).copy(), "h0": h0} if layout == "batch_first"
                  else {"X": x})
        counts[T] = len(g.compile([loss, *grads], inputs=list(feeds)).plan.steps)
        hv, want = (h0 if layout == "batch_first" else None), []
        for t in range(T):
            pre = x[t] @ U.value + (0 if hv is None else hv @ W.value)
            hv = np.tanh(pre)
            if t < T - 1:
                want.append(-_numpy_logsoftmax(hv @ Vp.value)[np.arange(B), y[t + 1]].mean())
        got = g.run([loss, *grads], feeds)
        np.testing.assert_allclose(got[0], sum(want) / (T - 1), rtol=1e-12)
        eps, W0 = 1e-6, W.value.copy()  # dW[0, 1] by central differences
        vals = []
        for d in (eps, -eps):
            W.value = W0 + d * (np.arange(H * H).reshape(H, H) == 1)
            vals.append(g.run(loss, feeds))
        W.value = W0
        np.testing.assert_allclose(got[2][0, 1], (vals[0] - vals[1]) / (2 * eps), rtol=1e-5)
    assert counts[6] == counts[24], counts


def test_per_step_work_no_batch_rule_lifts_is_mapped_over_the_rows():
    # broadcast_to a fixed shape has no batch rule (the shape is a step's), so each step's
    # loss term cannot become one op on the stacked states. The T equal terms are a map
    # over the rows (a loop of their own): the plan does not grow with T, and reverse mode
    # never builds T zero arrays of (T, B, H) for the rows' gradients (quadratic in T).
    sizes = {}
    for T in (12, 30):
        g, p, xs, states, (B, D, H, _) = _hand_loop(T, build_inputs_first=False)
        loss = sum(tg.sum(tg.broadcast_to(s, (2, B, H)) ** 2) for s in states)
        fn = g.compile([loss, *tg.grad(loss, [p["U"], p["W"]])])
        ops = [s.node.op for s in fn.plan.steps]
        assert ops.count("getitem_grad") == 0, ops
        sizes[T] = len(ops)
        x, s0 = RNG.standard_normal((T, B, D)), RNG.standard_normal((B, H))
        feeds = {node.name: x[t] for t, node in enumerate(xs)} | {"s0": s0}
        got = fn(**feeds)
        hs = _numpy_states(p, x, s0)
        np.testing.assert_allclose(got[0], sum(2 * (h ** 2).sum() for h in hs), rtol=1e-12)
        W0, eps = p["W"].value.copy(), 1e-6  # dW[2, 3] by central differences
        vals = []
        for d in (eps, -eps):
            p["W"].value = W0 + d * (np.arange(H * H).reshape(H, H) == 2 * H + 3)
            vals.append(sum(2 * (h ** 2).sum() for h in _numpy_states(p, x, s0)))
        p["W"].value = W0
        np.testing.assert_allclose(got[2][2, 3], (vals[0] - vals[1]) / (2 * eps), rtol=1e-6)
    assert sizes[12] == sizes[30], sizes


def test_a_loop_adding_its_own_const_at_each_step_rerolls():
    # A time embedding row pos[t] (a numpy row, so a const of its own per step) and a
    # per-step loss weight inside the loop: each becomes a sequence of stacked values.
    sizes = {}
    for T in (5, 15):
        rng = np.random.default_rng(T)
        g = tg.Graph()
        U = g.param("U", rng.normal(size=(3, 4)))
        W = g.param("W", rng.normal(size=(4, 4)) * 0.3)
        pos = rng.normal(size=(T, 4))
        X, h, loss = g.input("X", shape=(T, None, 3)), g.input("h0", shape=(None, 4)), None
        for t in range(T):
            h = tg.tanh(X[t] @ U + h @ W + pos[t])
            term = tg.sum(h * h) * (1.0 + 0.1 * t)
            loss = term if loss is None else loss + term
        feeds = {"X": rng.normal(size=(T, 2, 3)), "h0": rng.normal(size=(2, 4))}
        fetch = [loss, *tg.grad(loss, [U, W])]
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        hv, want = feeds["h0"], 0.0
        for t in range(T):
            hv = np.tanh(feeds["X"][t] @ U.value + hv @ W.value + pos[t])
            want += (hv * hv).sum() * (1.0 + 0.1 * t)
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
        for a, b in zip(got[1:], plain[1:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        sizes[T] = len(fast.plan.steps)
    assert sizes[5] == sizes[15], sizes

"""The fused recurrence: the loops the optimizer runs in it, and the op's kernels.

Every value is compared with a numpy loop written here from the equations
``s_t = act(x_t @ U + s_{t-1} @ W + b)``, never with the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph import passes
from tinygraph.passes.rows import unstack_rows

RNG = np.random.default_rng(7)

NUMPY_ACT = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
             "relu": lambda z: np.maximum(z, 0)}
API_ACT = {"tanh": tg.tanh, "sigmoid": tg.sigmoid, "relu": tg.relu}


def chain(steps, hidden, act="tanh", vocab=3):
    """An unrolled recurrence built by hand: per-step inputs, shared U, W, b."""
    g = tg.Graph("chain")
    U = g.param("U", RNG.standard_normal((vocab, hidden)) * 0.5)
    W = g.param("W", RNG.standard_normal((hidden, hidden)) * 0.5)
    b = g.param("b", RNG.standard_normal(hidden) * 0.1)
    s = s0 = g.input("s0", shape=(None, hidden), default=np.zeros((1, hidden)))
    xs, states = [], []
    for t in range(steps):
        with g.scope(f"t={t}"):
            xs.append(g.input("x", shape=(None, vocab)))
            s = API_ACT[act](xs[-1] @ U + s @ W + b, name="s")
            states.append(s)
    return g, xs, states, s0, (U.value, W.value, b.value)


def numpy_states(x, s0, U, W, b, act="tanh"):
    s, out = s0, []
    for x_t in x:
        s = NUMPY_ACT[act](x_t @ U + s @ W + b)
        out.append(s)
    return np.stack(out)


def central_differences(loss, param, eps=1e-6):
    """d loss() / d param by central differences, moving param's live array in place."""
    base = param.value.copy()
    numeric = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        for sign in (1, -1):
            param.value[idx] = base[idx] + sign * eps
            numeric[idx] += sign * float(loss()) / (2 * eps)
        param.value[idx] = base[idx]
    return numeric


def feeds_for(xs, x, s0=None):
    feeds = {node.name: x[t] for t, node in enumerate(xs)}
    if s0 is not None:
        feeds["s0"] = s0
    return feeds


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize(("hidden", "batch"), [(4, 1), (4, 3), (80, 2), (64, 40)])
def test_fused_states_equal_a_numpy_loop(act, hidden, batch):
    # Rerolled into a scan, x_t @ U + b hoisted out of it, the loop left is one kernel.
    steps = 7
    g, xs, states, _, (U, W, b) = chain(steps, hidden, act)
    fetch = tg.stack(states)
    optimized = passes.optimize(g, [fetch])
    optimized.validate()
    ops = [n.op for n in optimized.nodes.values()]
    assert ops.count("recurrence") == 1 and act not in ops  # no step left unfused
    x = RNG.standard_normal((steps, batch, 3))
    s0 = RNG.standard_normal((batch, hidden)) * 0.5
    want = numpy_states(x, s0, U, W, b, act)
    got = g.run(fetch, feeds_for(xs, x, s0))
    # (x U + b) + s W instead of numpy's (x U + s W) + b: equal up to rounding near zero.
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
# The kernel's three ways with a bias input: 2 calls per step, b folded into the matmul
# (small steps); 3 calls with b added to the whole sequence first (80 x 2); 4 calls,
# b added per step (64 x 40 values per step).
@pytest.mark.parametrize(("hidden", "batch"), [(4, 1), (4, 3), (80, 2), (64, 40)])
def test_the_kernel_with_a_bias_equals_a_numpy_loop(act, hidden, batch):
    steps = 7
    a = RNG.standard_normal((steps, batch, hidden))
    W = RNG.standard_normal((hidden, hidden)) * 0.5
    b = RNG.standard_normal(hidden) * 0.1
    s0 = RNG.standard_normal((batch, hidden)) * 0.5
    g = tg.Graph()
    A, S0 = g.input("a", shape=(steps, None, hidden)), g.input("s0", shape=(None, hidden))
    S = g.add_node("recurrence", [A, g.param("W", W), S0, g.param("b", b)],
                   {"activation": act})
    want = numpy_states(a, s0, np.eye(hidden), W, b, act)
    for optimize in (True, False):
        got = g.run(S, {"a": a, "s0": s0}, optimize=optimize)
        # The suite's tolerance (conftest.py): a tanh from exp is within 3.4e-16 of the
        # exact value, and seven steps through this W (gain ~4) grow that to ~1e-14.
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_a_one_row_initial_state_broadcasts_against_the_batch():
    g, xs, states, _, (U, W, b) = chain(5, 4)
    x = RNG.standard_normal((5, 3, 3))
    want = numpy_states(x, np.zeros((1, 4)), U, W, b)  # s0 defaults to (1, H) zeros
    got = g.run(tg.stack(states), feeds_for(xs, x))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert got.shape == (5, 3, 4)


def test_single_states_read_elsewhere_become_slices_of_the_fused_result():
    g, xs, states, _, (U, W, b) = chain(6, 4)
    fetch = [states[2], tg.sum(states[4] * states[5]), states[-1]]
    optimized = passes.optimize(g, fetch)
    assert [n.op for n in optimized.nodes.values()].count("recurrence") == 1
    x = RNG.standard_normal((6, 2, 3))
    want = numpy_states(x, np.zeros((1, 4)), U, W, b)
    got = g.run(fetch, feeds_for(xs, x))
    np.testing.assert_allclose(got[0], want[2], rtol=1e-12)
    np.testing.assert_allclose(got[1], np.sum(want[4] * want[5]), rtol=1e-12)
    np.testing.assert_allclose(got[2], want[5], rtol=1e-12)


@pytest.mark.parametrize(("rows", "picked_by"), [(range(4), "getitem"), (range(2, 6), "getitem"),
                                               ([3, 1, 4, 0], "take")])
def test_a_chain_may_read_any_rows_of_the_sequence(rows, picked_by):
    g = tg.Graph()
    a = g.input("a", shape=(6, None, 3))
    W = g.param("W", RNG.standard_normal((3, 3)) * 0.5)
    s = g.input("s0", shape=(None, 3))
    states = []
    for k in rows:
        s = tg.tanh(a[k] + s @ W)
        states.append(s)
    fetch = tg.stack(states)
    optimized = passes.optimize(g, [fetch])
    ops = [n.op for n in optimized.nodes.values()]
    assert ops.count("recurrence") == 1 and picked_by in ops
    av, s0 = RNG.standard_normal((6, 2, 3)), RNG.standard_normal((2, 3))
    want, h = [], s0
    for k in rows:
        h = np.tanh(av[k] + h @ W.value)
        want.append(h)
    np.testing.assert_allclose(g.run(fetch, {"a": av, "s0": s0}), want, rtol=1e-12)


def test_a_fetched_intermediate_keeps_its_value():
    g, xs, states, _, (U, W, b) = chain(4, 3)
    pre = states[1].inputs[0]  # the sum inside tanh at step 1: fetched, so it must exist
    x = RNG.standard_normal((4, 1, 3))
    got = g.run([tg.stack(states), pre], feeds_for(xs, x))
    want = numpy_states(x, np.zeros((1, 3)), U, W, b)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    np.testing.assert_allclose(got[1], x[1] @ U + want[0] @ W + b, rtol=1e-12)


def test_non_finite_inputs_give_what_the_unfused_graph_gives():
    # The small-step kernel adds a_t through an identity block, where inf * 0 would
    # make NaN; it must not be used then.
    g, xs, states, _, (U, W, b) = chain(3, 2)
    x = RNG.standard_normal((3, 1, 3))
    x[1, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        got = g.run(tg.stack(states), feeds_for(xs, x))
        want = numpy_states(x, np.zeros((1, 2)), U, W, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_gradients_through_the_fused_graph_match_finite_differences():
    steps, hidden = 4, 3
    g, xs, states, _, _ = chain(steps, hidden)
    loss = tg.sum(tg.stack(states) * tg.stack(states))
    optimized, (opt_loss,) = passes.rewrite(g, [loss], passes.OPTIMIZE_PASSES)
    assert "recurrence" in [n.op for n in optimized.nodes.values()]
    params = [optimized.params[k] for k in ("U", "W", "b")]
    grads = tg.grad(opt_loss, params)  # through the recurrence op's own rule
    x = RNG.standard_normal((steps, 2, 3))
    feeds = feeds_for(xs, x)
    got = optimized.run(grads, feeds)
    for param, value in zip(params, got, strict=True):
        numeric = central_differences(lambda: optimized.run(opt_loss, feeds), param)
        np.testing.assert_allclose(value, numeric, rtol=1e-5, atol=1e-8)


def test_the_op_checks_its_inputs_when_built():
    g = tg.Graph()
    a = g.input("a", shape=(3, None, 4))
    with pytest.raises(tg.ShapeError, match="recurrence.*sizes disagree"):
        g.add_node("recurrence", [a, g.param("W", np.eye(5)), g.input("s0", shape=(1, 4))],
                   {"activation": "tanh"})
    with pytest.raises(tg.ShapeError, match="activation must be one of"):
        g.add_node("recurrence", [a, g.param("V", np.eye(4)), g.input("h", shape=(1, 4))],
                   {"activation": "softplus"})


@pytest.mark.parametrize("batch", [1, 3])
def test_an_unrolled_graph_and_its_gradients_run_as_two_loops(batch):
    # Reverse mode reads the per-step products and sums only for their shapes
    # (sum_to(g, like=...)); the plan still runs the forward as one recurrence op and
    # the backward chain dz_t = (g_t + dz_{t+1} @ W.T) * (1 - s_t**2) as one op, and the
    # gradients, with a (1, H) initial state broadcast against the batch, stay right.
    steps, hidden = 5, 3
    g, xs, states, _, (U, W, b) = chain(steps, hidden)
    loss = tg.sum(tg.stack(states) * tg.stack(states))
    params = [g.params[k] for k in ("U", "W", "b")]
    grads = tg.grad(loss, params)
    x = RNG.standard_normal((steps, batch, 3))
    feeds = feeds_for(xs, x)
    fn = g.compile(grads, inputs=list(feeds))
    ops = [n.op for n in fn.plan.graph.nodes.values()]
    assert ops.count("recurrence") == 1 and ops.count("reverse_recurrence") == 1
    assert "scan" not in ops
    assert "tanh" not in ops and ops.count("matmul") <= 4  # nothing per step outside
    # The backward reads the states themselves, not a copy joined from the saved ones
    # and the last (passes/concat_slices.py): only the saved carries are joined.
    joined = [n for n in fn.plan.graph.nodes.values() if n.op == "concat"]
    assert all(n.shape[0] == steps for n in joined), [(n.name, n.shape) for n in joined]
    got = fn(**feeds)
    for param, value in zip(params, got, strict=True):
        numeric = central_differences(lambda: g.run(loss, feeds, optimize=False), param)
        np.testing.assert_allclose(value, numeric, rtol=1e-5, atol=1e-8)


# (2, 4): two calls per step, g added inside the matmul; (3, 40): three calls;
# "inf": a non-finite g must not go through the identity block (inf * 0 = NaN).
@pytest.mark.parametrize(("batch", "hidden", "special"), [(2, 4, None), (3, 40, None),
                                                          (2, 4, np.inf)])
def test_the_reverse_kernel_equals_a_numpy_loop_and_refuses_mismatched_rows(
        batch, hidden, special):
    rng = np.random.default_rng(3)
    gv, dv = rng.standard_normal((6, batch, hidden)), rng.standard_normal((6, batch, hidden))
    wt = rng.standard_normal((hidden, hidden)) * 0.3
    if special is not None:
        gv[2, 0, 1] = special
    want, later = np.zeros_like(gv), None
    with np.errstate(invalid="ignore"):
        for t in reversed(range(6)):
            later = gv[t] * dv[t] if later is None else (gv[t] + later @ wt) * dv[t]
            want[t] = later
    g = tg.Graph()
    G, D = g.input("g", shape=(6, None, hidden)), g.input("d", shape=(6, None, hidden))
    L = g.input("like", shape=(6, None, hidden))
    dz = g.add_node("reverse_recurrence", [G, D, g.param("Wt", wt), L], {})
    with np.errstate(invalid="ignore"):
        got = g.run(dz, {"g": gv, "d": dv, "like": np.zeros((6, batch, hidden))})
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    with pytest.raises(tg.EvaluationError, match="reverse_recurrence.*differ"):
        g.run(dz, {"g": gv, "d": dv, "like": np.zeros((6, batch + 1, hidden))}, optimize=False)


@pytest.mark.parametrize("like_rows", [2, 1])  # 1: each row of x is summed over the batch
def test_a_stack_of_wrapped_rows_becomes_one_wrapped_array(like_rows):
    g = tg.Graph()
    X = g.input("X", shape=(4, None, 3))
    L = g.input("L", shape=(4, None, 3))
    parts = [g.add_node("sum_to", [X[t], L[t]], {}) for t in range(4)]
    fetch = tg.stack(parts)
    optimized = passes.rewrite(g, [fetch], [unstack_rows])[0]
    ops = [n.op for n in optimized.nodes.values()]
    assert "stack" not in ops and ops.count("sum_to") == 1 and "getitem" not in ops
    xv = RNG.standard_normal((4, 2, 3))
    feeds = {"X": xv, "L": np.zeros((4, like_rows, 3))}
    want = xv if like_rows == 2 else xv.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g.run(fetch, feeds), want, rtol=1e-14)
    # A tail of such a stack, as the parameter gradients read it, is a window of rows.
    tail = fetch[1:]
    optimized = passes.rewrite(g, [tail], [unstack_rows])[0]
    assert "stack" not in [n.op for n in optimized.nodes.values()]
    np.testing.assert_allclose(g.run(tail, feeds), want[1:], rtol=1e-14)


def test_a_backward_chain_whose_weight_depends_on_its_last_step_is_left_alone():
    # The last step, dz_3 = g[3] * d[3], does not read Wt, so Wt may be computed from
    # it; one fused node would then need its own output as an input.
    g = tg.Graph()
    G, D = g.input("g", shape=(4, None, 3)), g.input("d", shape=(4, None, 3))
    W0 = g.param("W0", RNG.standard_normal((3, 3)) * 0.5)
    dz = G[3] * D[3]
    wt = W0 * tg.mean(dz)
    chain = [dz]
    for t in (2, 1, 0):
        dz = (G[t] + dz @ wt) * D[t]
        chain.append(dz)
    fetch = tg.stack(chain[::-1])
    optimized = passes.optimize(g, [fetch])
    optimized.validate()  # acyclic
    assert "reverse_recurrence" not in [n.op for n in optimized.nodes.values()]
    feeds = {"g": RNG.standard_normal((4, 2, 3)), "d": RNG.standard_normal((4, 2, 3))}
    later = feeds["g"][3] * feeds["d"][3]
    w_eff, want = W0.value * later.mean(), [later]
    for t in (2, 1, 0):
        later = (feeds["g"][t] + later @ w_eff) * feeds["d"][t]
        want.append(later)
    np.testing.assert_allclose(g.run(fetch, feeds), want[::-1], rtol=1e-12)


def test_plans_multiply_small_matrices_with_numpys_dot_minus_its_dispatch():
    # The loops' np.dot skips numpy's Python-level __array_function__ dispatcher where
    # numpy exposes the C function beneath it; same function, same values, out= too.
    from tinygraph.core.forwards import dot
    from tinygraph.exec.plan import bind

    if hasattr(np.dot, "_implementation"):
        assert dot is np.dot._implementation and dot is not np.dot
    rng = np.random.default_rng(2)
    a, w = rng.normal(size=(3, 5)), rng.normal(size=(5, 4))
    out = np.empty((3, 4))
    assert dot(a, w, out) is out
    np.testing.assert_array_equal(out, np.dot(a, w))
    g = tg.Graph()
    x, W = g.input("x", shape=(None, 5)), g.param("W", w)
    assert bind(x @ W) is dot
    np.testing.assert_array_equal(g.run(x @ W, {"x": a}), np.dot(a, w))


def test_a_vanilla_training_plan_reads_the_states_without_joining_a_copy():
    # Reverse mode joins [h0, s_0 … s_{T-2}] and s_{T-1}, then reads rows 1: of that: the
    # states themselves. passes/concat_slices.py reads them in place (a (T, B, H) copy
    # less per call: 6.5 MB at T=100, B=32, H=256); gradients stay the plain plan's.
    import tinygraph_rnn as rnn

    T, B, V, H = 7, 3, 5, 4
    cell = rnn.VanillaRNNCell(input_size=V, hidden_size=H, output_size=V, seed=1)
    net = rnn.unroll(cell, steps=T)
    targets = net.graph.input("targets", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(net.logits[0], targets[0])
    for t in range(1, T):
        loss = loss + tg.cross_entropy(net.logits[t], targets[t])
    fetch = [loss, *tg.grad(loss, [net.params[k] for k in "UWbVc"])]
    feeds = {node.name: RNG.standard_normal((B, V)) for node in net.inputs}
    feeds |= {net.initial_state.name: np.zeros((B, H)), "targets": RNG.integers(0, V, (T, B))}
    fast = net.graph.compile(fetch, inputs=list(feeds))
    plain = net.graph.compile(fetch, inputs=list(feeds), optimize=False)
    joined = [n for n in fast.plan.graph.nodes.values() if n.op == "concat"]
    assert all(n.shape[0] == T for n in joined), [(n.name, n.shape) for n in joined]
    for a, b in zip(fast(**feeds), plain(**feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

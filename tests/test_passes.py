"""Rewrite passes: each keeps the values (checked against hand-written numpy and
the plain interpreter), leaves the input graph untouched, and validates."""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph import passes

RNG = np.random.default_rng(42)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def vanilla_rnn(steps=6, batch=None, vocab=5, hidden=4, onehot=False, seed=0):
    """The seed's RNN written with primitives, plus its numpy reference loop."""
    rng = np.random.default_rng(seed)
    P = {"U": rng.uniform(-.5, .5, (vocab, hidden)), "W": rng.uniform(-.5, .5, (hidden, hidden)),
         "b": rng.uniform(-.5, .5, hidden), "V": rng.uniform(-.5, .5, (hidden, vocab)),
         "c": rng.uniform(-.5, .5, vocab)}
    g = tg.Graph("rnn")
    U, W, b, V, c = (g.param(k, P[k]) for k in "UWbVc")
    s = g.input("s0", shape=(None, hidden), default=np.zeros((1, hidden)))
    outputs, states = [], []
    for t in range(steps):
        with g.scope(f"t={t}"):
            if onehot:
                x = tg.one_hot(g.input("ids", shape=(None,), dtype="int64"), vocab)
            else:
                x = g.input("x", shape=(None, vocab))
            s = tg.tanh(x @ U + s @ W + b, name="s")
            outputs.append(tg.softmax(s @ V + c, name="o"))
            states.append(s)
    B = batch or 3
    if onehot:
        ids = rng.integers(0, vocab, (steps, B))
        feeds = {f"t={t}/ids": ids[t] for t in range(steps)}
        xs = np.eye(vocab)[ids]
    else:
        xs = rng.standard_normal((steps, B, vocab))
        feeds = {f"t={t}/x": xs[t] for t in range(steps)}
    ref_s, ref_o = [], []
    h = np.zeros((1, hidden))
    for t in range(steps):
        h = np.tanh(xs[t] @ P["U"] + h @ P["W"] + P["b"])
        ref_s.append(h)
        ref_o.append(_softmax(h @ P["V"] + P["c"]))
    return g, outputs, states, feeds, ref_o, ref_s


def _ops(graph):
    return [n.op for n in graph.nodes.values()]


@pytest.mark.parametrize("onehot", [False, True])
def test_optimized_rnn_equals_numpy_and_batches_projections(onehot):
    g, outs, states, feeds, ref_o, ref_s = vanilla_rnn(onehot=onehot)
    before = list(g.nodes)
    og, roots = passes.rewrite(g, [outs, states], passes.OPTIMIZE_PASSES)
    og.validate()
    assert list(g.nodes) == before  # pure: the input graph is untouched
    got = og.run(roots, feeds)  # the fetches, flattened: outputs then states
    got_o, got_s = got[:len(outs)], got[len(outs):]
    np.testing.assert_allclose(got_o, ref_o, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-12, atol=1e-14)
    # x_t @ U + b and s_t @ V + c became one product each (an affine: the bias added by
    # the product), or a lookup; the recurrence s @ W, per step until then, became one
    # recurrence node.
    assert _ops(og).count("matmul") == 0
    assert _ops(og).count("affine") == (1 if onehot else 2)
    assert _ops(og).count("recurrence") == 1
    assert _ops(og).count("softmax") == 1
    if onehot:
        assert "one_hot" not in _ops(og) and _ops(og).count("take") == 1


def test_steps_are_proved_on_the_graph_not_read_from_names():
    # Same names pattern as an unroll, but step 1's input depends on step 0's product.
    g = tg.Graph()
    U = g.param("U", RNG.standard_normal((3, 3)))
    with g.scope("t=0"):
        a = g.input("x", shape=(2, 3)) @ U
    with g.scope("t=1"):
        b = tg.tanh(a) @ U
    og = passes.optimize(g, [b])
    og.validate()
    assert _ops(og).count("matmul") == 2 and "scan" not in _ops(og)
    x = RNG.standard_normal((2, 3))
    np.testing.assert_allclose(og.run(b.name, {"t=0/x": x}),
                               np.tanh(x @ U.value) @ U.value, rtol=1e-14)


def test_cse_merges_equal_subexpressions_and_keeps_fetch_names():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    y = tg.add(tg.tanh(x * 2.0), tg.tanh(x * 2.0), name="y")
    og = passes.cse(g, [y])
    og.validate()
    assert _ops(og).count("tanh") == 1 and _ops(og).count("const") == 1
    v = np.array([0.1, -0.4])
    np.testing.assert_allclose(og.run("y", {"x": v}), 2 * np.tanh(2 * v), rtol=1e-15)


def test_fold_constants_evaluates_const_only_ops():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    k = tg.exp(g.const(np.array([0.0, 1.0]))) * 3.0
    y = tg.add(x, k, name="y")
    og = passes.fold_constants(g, [y])
    og.validate()
    assert "exp" not in _ops(og) and "mul" not in _ops(og)
    np.testing.assert_allclose(og.run("y", {"x": np.ones(2)}), 1 + 3 * np.exp([0.0, 1.0]))


def test_onehot_matmul_becomes_take():
    g = tg.Graph()
    ids = g.input("ids", shape=(None,), dtype="int64")
    E = g.param("E", RNG.standard_normal((6, 3)))
    y = tg.add(tg.one_hot(ids, 6) @ E, 0.0, name="y")
    og = passes.onehot_to_take(g, [y])
    og.validate()
    assert "one_hot" not in _ops(og) and "take" in _ops(og)
    v = np.array([5, 0, 2])
    np.testing.assert_array_equal(og.run("y", {"ids": v}), E.value[v])


def test_cull_keeps_only_what_fetches_need():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    tg.exp(x)  # unused
    y = tg.tanh(x, name="y")
    og = passes.cull(g, [y])
    assert list(og.nodes) == ["x", "y"]


def test_params_of_optimized_plans_follow_updates_and_assignments():
    g, outs, states, feeds, _, _ = vanilla_rnn()
    fn = g.compile(states[-1], inputs=list(feeds))
    first = fn(**feeds)
    g.params["W"].value *= 0.0  # in place
    in_place = fn(**feeds)
    g.params["W"].value = np.zeros((4, 4))  # assignment
    assigned = fn(**feeds)
    np.testing.assert_allclose(in_place, assigned, rtol=1e-15)
    assert not np.allclose(first, in_place)
    np.testing.assert_allclose(in_place, g.run(states[-1], feeds, optimize=False), rtol=1e-12)


def test_batched_plan_is_right_when_runtime_sizes_differ():
    # The (1, H) default initial state next to a batch of 3: the forward and backward
    # kernels (and the saved states rebuilt from the forward's) broadcast it as the graph
    # does (where a batched step could not, the plan would run the graph as built:
    # test_scheduler checks that fallback).
    g, outs, states, feeds, ref_o, ref_s = vanilla_rnn(batch=3)
    targets = g.input("targets", shape=(6, None), dtype="int64")
    logits = [o.inputs[0] for o in outs]
    loss = tg.cross_entropy(tg.stack(logits), targets)
    grads = tg.grad(loss, list(g.params.values()))
    feeds = dict(feeds, targets=RNG.integers(0, 5, (6, 3)))
    fast = g.run([loss, *grads], feeds)
    slow = g.run([loss, *grads], feeds, optimize=False)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    plan = next(iter(g._plans.values()))
    assert plan.fallback is not None and plan.fallback_reason is None
    assert {"recurrence", "reverse_recurrence"} <= {n.op for n in plan.graph.nodes.values()}
    again = g.run([loss, *grads], feeds)
    for a, b in zip(again, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_batched_backward_matches_interpreter_and_finite_differences():
    g, outs, states, feeds, _, _ = vanilla_rnn(batch=2)
    feeds["s0"] = np.zeros((2, 4))  # equal batch sizes: the batched path runs
    targets = g.input("targets", shape=(6, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack([o.inputs[0] for o in outs]), targets)
    W = g.params["W"]
    (gW,) = tg.grad(loss, [W])
    feeds["targets"] = RNG.integers(0, 5, (6, 2))
    got = g.run(gW, feeds)
    plan = next(iter(g._plans.values()))
    assert plan.fallback_reason is None and not isinstance(plan.fallback, type(plan))
    np.testing.assert_allclose(got, g.run(gW, feeds, optimize=False), rtol=1e-12, atol=1e-15)
    eps, base = 1e-6, W.value.copy()
    numeric = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        for sign in (1, -1):
            W.value = base.copy()
            W.value[i] += sign * eps
            numeric[i] += sign * float(g.run(loss, feeds, optimize=False)) / (2 * eps)
    W.value = base
    np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-9)
    ops = [n.op for n in plan.graph.nodes.values()]
    # dW = Σ_t s_{t-1}^T dz_t became one matmul, as did every per-step product: the
    # plan of a longer unroll has exactly as many.
    g9, outs9, _, feeds9, _, _ = vanilla_rnn(steps=9, batch=2)
    targets9 = g9.input("targets", shape=(9, None), dtype="int64")
    (gW9,) = tg.grad(tg.cross_entropy(tg.stack([o.inputs[0] for o in outs9]), targets9),
                     [g9.params["W"]])
    ops9 = [n.op for n in g9.compile(gW9, inputs=[*feeds9, "targets"]).plan.graph.nodes.values()]
    assert ops.count("matmul") == ops9.count("matmul") and "recurrence" in ops


def test_passes_are_deterministic():
    texts = []
    for _ in range(2):
        g, outs, states, feeds, _, _ = vanilla_rnn()
        og = passes.optimize(g, [outs, states])
        texts.append([(n.name, n.op, [i.name for i in n.inputs]) for n in og.nodes.values()])
    assert texts[0] == texts[1]


@pytest.mark.usefixtures("small_buffers")
def test_kept_buffers_never_reach_the_caller():
    # Large intermediates are written into buffers kept between calls; a fetched
    # array (or one computed in place from a buffer) must still be the caller's own.
    g = tg.Graph()
    x = g.input("x", shape=(None, 64))
    W = g.param("W", RNG.standard_normal((64, 64)) * 0.1)
    y = tg.tanh(x @ W + x)  # x @ W: large, kept buffer; + and tanh could run in place in it
    z = tg.reshape(tg.exp(x @ W.T), (-1,))  # exp in place in a buffer, then a fetched view
    fn = g.compile([y, z], inputs=["x"])
    a, b = RNG.standard_normal((2, 256, 64))
    fn(b)  # the first call runs a loop and sizes the steps; code with buffers comes after
    first_y, first_z = fn(a)
    keep_y, keep_z = first_y.copy(), first_z.copy()
    second_y, second_z = fn(b)
    np.testing.assert_array_equal(first_y, keep_y)
    np.testing.assert_array_equal(first_z, keep_z)
    np.testing.assert_allclose(second_y, np.tanh(b @ W.value + b), rtol=1e-14)
    np.testing.assert_allclose(second_z, np.exp(b @ W.value.T).ravel(), rtol=1e-14)
    np.testing.assert_allclose(first_y, np.tanh(a @ W.value + a), rtol=1e-14)
    assert "into_buffer" in fn.plan.python_source  # the buffered path did run


def test_performance_page_examples_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
    result = doctest.testfile(str(page), module_relative=False, globs={})
    assert result.attempted > 10 and result.failed == 0


def test_bias_moves_into_the_gathered_table():
    g = tg.Graph()
    ids = g.input("ids", shape=(None,), dtype="int64")
    E = g.param("E", RNG.standard_normal((6, 3)))
    b = g.param("b", RNG.standard_normal(3))
    y = tg.add(tg.take(E, ids), b, name="y")
    og = passes.bias_into_table(g, [y])
    og.validate()
    take = next(n for n in og.nodes.values() if n.op == "take")
    assert take.name == "y" and take.inputs[0].op == "add" and take.inputs[0].shape == (6, 3)
    v = np.array([5, 0, 2, 2])
    np.testing.assert_array_equal(og.run("y", {"ids": v}), E.value[v] + b.value)


@pytest.mark.parametrize("rows", [5, 40])  # one-hot product / a weighted bincount
@pytest.mark.parametrize("special", [None, np.inf, np.nan])
def test_take_grad_scatter_matches_add_at_even_with_non_finite_gradients(special, rows):
    from tinygraph.core.ops import OPS

    ids = RNG.integers(0, rows, size=(40, 3))
    g = RNG.standard_normal((40, 3, 2))
    if special is not None:
        g[1, 2, 0] = special
    want = np.zeros((rows, 2))
    np.add.at(want, ids, g)  # the definition: every pick adds its row
    got = OPS["take_grad"].forward(g, ids, np.zeros((rows, 2)))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_take_grad_into_a_table_of_matrices_keeps_the_dtype(dtype):
    from tinygraph.core.ops import OPS

    ids = RNG.integers(0, 50, size=(7, 9))
    g = RNG.standard_normal((7, 9, 2, 3)).astype(dtype)
    want = np.zeros((50, 2, 3))
    np.add.at(want, ids, g.astype(np.float64))
    got = OPS["take_grad"].forward(g, ids, np.zeros((50, 2, 3), dtype))
    assert got.dtype == np.dtype(dtype) and got.shape == (50, 2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-14 if dtype == "float64" else 1e-6,
                               atol=1e-15 if dtype == "float64" else 1e-6)
    with pytest.raises(IndexError, match="out of range"):
        OPS["take_grad"].forward(g, ids + 50, np.zeros((50, 2, 3), dtype))


def test_stacked_parts_are_written_into_the_stack_and_stay_correct():
    g, outs, states, feeds, ref_o, ref_s = vanilla_rnn(batch=3)
    feeds["s0"] = np.zeros((3, 4))
    # Without the passes (which would fuse the recurrence), the states' tanh steps
    # write into the rows of their stack.
    only_outputs = g.compile(tg.stack(outs), inputs=list(feeds), optimize=False)
    both = g.compile([tg.stack(outs), tg.stack(states)], inputs=list(feeds), optimize=False)
    other = {k: v + 0.5 for k, v in feeds.items()}
    for fn in (only_outputs, both):
        fn(**feeds)  # the first call sizes the steps; generated code runs after it
        first = fn(**feeds)
        kept = [np.copy(a) for a in (first if isinstance(first, list) else [first])]
        fn(**other)  # a second call must not disturb what the first returned
        got = first if isinstance(first, list) else [first]
        for a, b in zip(got, kept, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(got[0], np.stack(ref_o), rtol=1e-12)
    assert "stack_buffer(" in both.plan.python_source
    np.testing.assert_allclose(both(**feeds)[1], np.stack(ref_s), rtol=1e-12)


def test_a_stack_whose_parts_broadcast_is_copied_instead():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    y = g.input("y", shape=(None, 3))
    s = tg.stack([tg.add(x, y), tg.add(y, y)])
    fn = g.compile(tg.tanh(s), inputs=["x", "y"])
    xv, yv = RNG.standard_normal((1, 3)), RNG.standard_normal((2, 3))
    for _ in range(2):
        np.testing.assert_allclose(fn(xv, yv), np.tanh(np.stack([xv + yv, yv + yv])),
                                   rtol=1e-15)
    assert "stack_buffer(" in fn.plan.python_source


def test_rows_of_a_stack_are_never_overwritten_in_place():
    g = tg.Graph()
    xs = [g.input(f"x{t}", shape=(None, 3)) for t in range(3)]
    parts = [tg.tanh(x) for x in xs]
    y = parts[0] + parts[0] * 3.0  # parts[0] dies here: an in-place write would hit the stack
    fn = g.compile([tg.stack(parts), y], inputs=[x.name for x in xs])
    values = [RNG.standard_normal((2, 3)) for _ in xs]
    for _ in range(2):
        stacked, got_y = fn(*values)
        np.testing.assert_allclose(stacked, np.tanh(np.stack(values)), rtol=1e-15)
        np.testing.assert_allclose(got_y, 4 * np.tanh(values[0]), rtol=1e-15)
    assert "stack_buffer(" in fn.plan.python_source


def test_an_operand_narrower_than_the_result_is_not_written_in_place():
    # keep = 1 - m is (B, 1) and dies at keep * h, a (B, H) result: writing that into
    # keep's array would fail on every call and send the plan to the graph as built.
    g = tg.Graph()
    m = g.input("m", shape=(None, 1))
    h = tg.tanh(g.input("x", shape=(None, 4)))
    y = (1.0 - m) * h
    fn = g.compile(y, inputs=["m", "x"])
    mv, xv = RNG.random((3, 1)), RNG.standard_normal((3, 4))
    for _ in range(2):  # the second call runs the generated code
        np.testing.assert_allclose(fn(mv, xv), (1 - mv) * np.tanh(xv), rtol=1e-15)
    assert fn.plan.fallback_reason is None


def test_one_step_is_not_vectorized_onto_a_stack_of_one():
    # A one-step net fed one (1, B, D) sequence reads its row xs[0]: one row is no
    # loop, and lifting every node onto a stack of one would add a copy per node.
    import tinygraph_rnn as rnn

    net = rnn.unroll(rnn.VanillaRNNCell(3, 4, 2, seed=0), steps=1, sequence=True)
    out = net.outputs[0]
    loss = tg.sum(out * out)
    grads = tg.grad(loss, [net.params["U"], net.params["W"]])
    og, roots = passes.rewrite(net.graph, [loss, *grads], passes.OPTIMIZE_PASSES)
    assert "expand_dims" not in _ops(og) and len(og) <= len(net.graph)
    feeds = {net.sequence.name: RNG.standard_normal((1, 2, 3))}
    for got, want in zip(og.run(roots, feeds), net.graph.run([loss, *grads], feeds,
                                                             optimize=False), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_per_step_consts_of_equal_value_vectorize_as_one():
    # Each step builds its own const 1.0 in 1 - m[t]: the T subs are still one op.
    g = tg.Graph()
    M = g.input("M", shape=(5, None, 1))
    keeps = [1.0 - M[t] for t in range(5)]
    og, (root,) = passes.rewrite(g, [tg.stack(keeps)], passes.OPTIMIZE_PASSES)
    assert _ops(og).count("sub") == 1 and "stack" not in _ops(og)
    mv = RNG.random((5, 2, 1))
    np.testing.assert_allclose(og.run(root, {"M": mv}), 1 - mv, rtol=1e-15)


@pytest.mark.parametrize("start, stop", [(1, None), (0, 3), (2, 5), (None, -1), (-3, None),
                                         (3, 4), (0, None)])
def test_slices_of_joined_rows_read_the_parts_with_the_same_values(start, stop):
    from tinygraph.passes.concat_slices import concat_slices_pass
    from tinygraph.passes.draft import Draft

    g = tg.Graph()
    S, a = g.input("S", shape=(5, 2)), g.input("a", shape=(2,))
    joined = tg.concat([tg.expand_dims(a, 0), S[1:4], tg.expand_dims(S[-1], 0), S[:2]])
    picked = joined[start:stop] * 1.0
    draft = Draft(g, [picked])
    concat_slices_pass(draft)
    rewritten, (node,) = draft.build()
    feeds = {"S": np.arange(10.0).reshape(5, 2), "a": np.array([-1.0, -2.0])}
    want = np.concatenate([feeds["a"][None], feeds["S"][1:4], feeds["S"][-1:],
                           feeds["S"][:2]])[start:stop]
    present = {k: v for k, v in feeds.items() if k in rewritten.nodes}  # a may be gone
    np.testing.assert_array_equal(rewritten.run(node, present), want)


def test_a_slice_of_a_mixed_dtype_join_keeps_the_joins_dtype():
    from tinygraph.passes.concat_slices import concat_slices_pass
    from tinygraph.passes.draft import Draft

    g = tg.Graph()
    ids, x = g.input("ids", shape=(2, 3), dtype="int64"), g.input("x", shape=(2, 3))
    picked = tg.concat([ids, x])[0:2]
    draft = Draft(g, [picked])
    concat_slices_pass(draft)
    rewritten, (node,) = draft.build()
    assert node.dtype == np.float64
    got = rewritten.run(node, {"ids": np.ones((2, 3), np.int64), "x": np.zeros((2, 3))})
    assert got.dtype == np.float64 and got.tolist() == [[1.0] * 3] * 2

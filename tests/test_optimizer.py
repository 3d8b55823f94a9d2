"""The general optimizer on whole unrolled nets: one graph whatever T, values unchanged.

After optimizing, a 50-step and a 500-step unroll of the same cell must have the
same number of nodes (the steps rerolled into one scan; per-step losses and
heads vectorized), apart from the T per-step input leaves the graph itself
declares. Values are checked against the interpreter by tests/conftest.py on
every ``g.run``; here also against hand-written numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy_rnn import vanilla_bptt
from test_random_cells import RandomCell, random_recipe
from test_scan import MinimalGatedUnit

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph import compiler

CELLS = {
    "vanilla": lambda: rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=5, seed=0),
    "gru": lambda: rnn.GRUCell(input_size=3, hidden_size=4, seed=0),
    "lstm": lambda: rnn.LSTMCell(input_size=3, hidden_size=4, seed=0),
    "mgu": lambda: MinimalGatedUnit(input_size=3, hidden_size=4, seed=0),
    **{f"random{seed}": (lambda seed=seed: RandomCell(random_recipe(seed), input_size=3,
                                                      hidden_size=4, seed=seed))
       for seed in (0, 2, 4, 7)},
}


def _optimized_sizes(make, steps: int) -> tuple[int, int, bool]:
    cell = make()
    net = rnn.unroll(cell, steps)
    view, seq, stacked = net._view()  # what net.run evaluates
    forward = compiler.make_plan(view, stacked, [seq])
    g = net.graph
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = tg.cross_entropy(net.logits[0], targets[0])  # written per step, as users do
    for t in range(1, steps):
        loss = loss + tg.cross_entropy(net.logits[t], targets[t])
    grads = tg.grad(loss, list(net.params.values()))
    training = compiler.make_plan(g, [loss, *grads], [n.name for n in net.inputs] + ["targets"])
    inner = sum(1 for n in training.graph.nodes.values() if n.op != "input")
    looped = any(n.op in ("scan", "recurrence", "reverse_recurrence")
                 for n in training.graph.nodes.values())
    return len(forward.graph), inner, looped


@pytest.mark.parametrize("kind", list(CELLS))
def test_short_and_long_unrolls_optimize_to_the_same_graph(kind):
    short, long = _optimized_sizes(CELLS[kind], 50), _optimized_sizes(CELLS[kind], 500)
    assert short[:2] == long[:2], f"{kind}: {short} vs {long}"
    assert short[2] and long[2]


def test_a_per_step_loss_trains_like_the_stacked_loss():
    cell = CELLS["vanilla"]()
    steps, rng = 7, np.random.default_rng(3)
    xs, ys = rng.normal(size=(steps, 2, 3)), rng.integers(0, 5, size=(steps, 2))
    results = []
    for per_step in (True, False):
        net = rnn.unroll(cell, steps)
        g = net.graph
        targets = g.input("targets", shape=(steps, None), dtype="int64")
        if per_step:
            loss = tg.cross_entropy(net.logits[0], targets[0])
            for t in range(1, steps):
                loss = loss + tg.cross_entropy(net.logits[t], targets[t])
            loss = loss / float(steps)
        else:
            loss = tg.cross_entropy(tg.stack(net.logits), targets)
        grads = tg.grad(loss, [net.params[k] for k in ("U", "W", "b", "V", "c")])
        feeds = {node: xs[t] for t, node in enumerate(net.inputs)}
        feeds["targets"] = ys
        results.append(g.run([loss, *grads], feeds))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # and both equal a hand-written numpy forward + BPTT
    loss, grads = vanilla_bptt(dict(cell.params), xs, ys, scale=1 / (steps * 2))
    np.testing.assert_allclose(results[0][0], loss, rtol=1e-12)
    for got, k in zip(results[0][1:], ("U", "W", "b", "V", "c"), strict=True):
        np.testing.assert_allclose(got, grads[k], rtol=1e-10, atol=1e-13)


def _training_plan(kind: str, steps: int = 6):
    net = rnn.unroll(CELLS[kind](), steps)
    g = net.graph
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = tg.cross_entropy(net.logits[0], targets[0])
    for t in range(1, steps):
        loss = loss + tg.cross_entropy(net.logits[t], targets[t])
    grads = tg.grad(loss, list(net.params.values()))
    return compiler.make_plan(g, [loss, *grads], [n.name for n in net.inputs] + ["targets"])


def test_vanilla_training_runs_both_loops_on_the_fused_kernels():
    # The forward stores only what the backward reads; its saved carries are rebuilt from
    # the states, so no scan is left: one recurrence forward, one reverse_recurrence back.
    ops = [n.op for n in _training_plan("vanilla").graph.nodes.values()]
    assert ops.count("recurrence") == 1 and ops.count("reverse_recurrence") == 1
    assert "scan" not in ops


def test_gated_backward_loops_join_gate_adjoints_and_leave_weight_sums_outside():
    for kind in ("gru", "lstm"):
        graph = _training_plan(kind).graph
        backward = [n for n in graph.nodes.values() if n.op == "scan" and n.attrs["reverse"]]
        assert len(backward) == 1, kind
        body_ops = [n.op for n in backward[0].attrs["body"].nodes.values()]
        assert "concat" in body_ops and "getitem_grad" not in body_ops, kind
        # Σ_t x_tᵀ dz_t and Σ_t h_{t-1}ᵀ dz_t: matmuls after the loop, one per weight;
        # the only matmul left in the loop carries the gradient back through W_hh.
        assert body_ops.count("matmul") == 1, kind


def test_forward_loops_store_no_value_the_backward_reads_only_for_its_shape(monkeypatch):
    from tinygraph import passes

    def stored(plan):
        (forward,) = [n for n in plan.graph.nodes.values()
                      if n.op == "scan" and not n.attrs["reverse"]]
        return len({u.attrs["index"] for u in plan.graph.nodes.values()
                    if u.op == "unpack" and u.inputs[0] is forward})

    for kind in ("gru", "lstm"):
        with_pass = stored(_training_plan(kind))
        with monkeypatch.context() as m:
            m.setattr(passes, "OPTIMIZE_PASSES",
                      [p for p in passes.OPTIMIZE_PASSES if p is not passes.stored_likes_pass])
            without = stored(_training_plan(kind))
        # the GRU's gh slices and the LSTM's gate pre-activations were stored for sum_to
        assert with_pass <= without - 4, (kind, with_pass, without)


def test_unrolled_nets_beyond_the_plain_size_limit_are_still_rerolled():
    # Graphs this large skip the passes unless their nodes carry step marks: a 2-layer
    # GRU unrolled 320 steps (> 50,000 nodes) still becomes one loop per layer.
    cell = rnn.Stacked([rnn.GRUCell(input_size=3, hidden_size=4, seed=0),
                        rnn.GRUCell(input_size=4, hidden_size=4, seed=1)])
    net = rnn.unroll(cell, 320)
    loss = tg.sum(net.outputs[0] * net.outputs[0])
    for t in range(1, 320):  # a per-step loss and its gradients: > 50,000 nodes
        loss = loss + tg.sum(net.outputs[t] * net.outputs[t])
    grads = tg.grad(loss, list(net.params.values()))
    assert len(net.graph) > compiler.OPTIMIZE_MAX_NODES
    plan = compiler.make_plan(net.graph, [loss, *grads], [n.name for n in net.inputs])
    ops = [n.op for n in plan.graph.nodes.values()]
    assert ops.count("scan") >= 2 and len(ops) - ops.count("input") < 300
    chain = tg.Graph()
    h = chain.input("x", shape=())
    for _ in range(26_000):  # no step marks: left as built
        h = tg.tanh(h) + 0.25
    assert len(compiler.make_plan(chain, h, ["x"]).graph) == len(chain)


@pytest.mark.parametrize("kind", ["vanilla", "gru"])
def test_a_loss_on_the_last_step_only_rerolls(kind):
    # The last step has nodes the others lack (its head and loss): they stay outside the
    # loop, reading the last row of the stacked states; values as the interpreter's.
    sizes = []
    for steps in (5, 40):
        net = rnn.unroll(CELLS[kind](), steps)
        g = net.graph
        loss = tg.sum(net.logits[-1] * net.logits[-1])
        grads = tg.grad(loss, list(net.params.values()))
        plan = compiler.make_plan(g, [loss, *grads], [n.name for n in net.inputs])
        ops = [n.op for n in plan.graph.nodes.values()]
        assert {"scan", "recurrence"} & set(ops), ops
        sizes.append(len(ops) - ops.count("input"))
        feeds = {n: np.random.default_rng(steps).normal(size=(2, 3)) for n in net.inputs}
        fast = plan({n.name: v for n, v in feeds.items()})
        slow = g.run([loss, *grads], feeds, optimize=False)
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert sizes[0] == sizes[1]


class JoinedCell(rnn.Cell):
    """``h' = tanh([x | h] @ W + b)``: one weight over the joined input and state."""

    def declare(self):
        return {"W": rnn.ParamSpec((self.input_size + self.hidden_size, self.hidden_size)),
                "b": rnn.ParamSpec((self.hidden_size,), init="zeros")}

    def step(self, x, h, p):
        new = tg.tanh(tg.concat([x, h], axis=-1) @ p["W"] + p["b"], name="h")
        return new, new


def test_a_cell_over_joined_input_and_state_runs_on_the_fused_kernels():
    steps, rng = 7, np.random.default_rng(5)
    cell = JoinedCell(input_size=3, hidden_size=4, seed=0)
    net = rnn.unroll(cell, steps)
    g = net.graph
    loss = tg.sum(net.outputs[0] * net.outputs[0])
    for t in range(1, steps):
        loss = loss + tg.sum(net.outputs[t] * net.outputs[t])
    grads = tg.grad(loss, [net.params["W"], net.params["b"]])
    names = [n.name for n in net.inputs] + [net.initial_state.name]
    plan = compiler.make_plan(g, [loss, *grads], names)
    ops = [n.op for n in plan.graph.nodes.values()]
    assert ops.count("recurrence") == 1 and ops.count("reverse_recurrence") == 1
    xs, h0 = rng.normal(size=(steps, 2, 3)), rng.normal(size=(2, 4))
    got = plan({**{n.name: xs[t] for t, n in enumerate(net.inputs)}, names[-1]: h0})
    W, b = cell.params["W"], cell.params["b"]
    hs = [h0]  # numpy forward and BPTT of the same loss
    for t in range(steps):
        hs.append(np.tanh(np.concatenate([xs[t], hs[-1]], axis=-1) @ W + b))
    gW, gb, carry = np.zeros_like(W), np.zeros_like(b), np.zeros((2, 4))
    for t in reversed(range(steps)):
        dz = (2 * hs[t + 1] + carry) * (1 - hs[t + 1] ** 2)
        gW += np.concatenate([xs[t], hs[t]], axis=-1).T @ dz
        gb += dz.sum(0)
        carry = dz @ W[3:].T
    np.testing.assert_allclose(got[0], sum((h * h).sum() for h in hs[1:]), rtol=1e-12)
    np.testing.assert_allclose(got[1], gW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], gb, rtol=1e-10, atol=1e-12)


def test_fetching_only_the_last_state_stores_nothing_per_step():
    net = rnn.unroll(CELLS["gru"](), 30)
    plan = compiler.make_plan(net.graph, net.states[-1], [n.name for n in net.inputs])
    (loop,) = [n for n in plan.graph.nodes.values() if n.op in ("scan", "recurrence")]
    assert loop.op == "scan" and loop.attrs["num_ys"] == 0  # the final carry only
    feeds = {n.name: np.random.default_rng(2).normal(size=(2, 3)) for n in net.inputs}
    np.testing.assert_allclose(plan(feeds), net.graph.run(net.states[-1], feeds,
                                                          optimize=False), rtol=1e-12)


def test_the_gradient_of_a_lookup_over_ids_is_a_scatter_not_a_one_hot_product():
    steps, vocab = 6, 40
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=vocab, hidden_size=4, output_size=5,
                                        seed=0), steps, ids=True)
    g = net.graph
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(net.logits), targets)
    grads = tg.grad(loss, list(net.params.values()))
    names = [n.name for n in net.inputs] + ["targets"]
    plan = compiler.make_plan(g, [loss, *grads], names)
    ops = [n.op for n in plan.graph.nodes.values()]
    assert "take_grad" in ops and "one_hot" not in ops
    rng = np.random.default_rng(4)
    feeds = {**{n.name: rng.integers(0, vocab, 3) for n in net.inputs},
             "targets": rng.integers(0, 5, (steps, 3))}
    for got, want in zip(plan(feeds), g.run([loss, *grads], feeds, optimize=False),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_a_value_a_scan_hands_out_twice_per_step_is_stored_once():
    # rnn.scan hands out a GRU's output and its state per step: one node. In training
    # the forward loop then stores every value the backward reads; that one only once.
    net = rnn.scan(rnn.GRUCell(input_size=3, hidden_size=4, seed=0))
    loss = tg.sum(net.outputs * net.outputs)
    grads = tg.grad(loss, list(net.params.values()))
    plan = compiler.make_plan(net.graph, [loss, *grads], ["xs"])
    forward = next(n for n in plan.graph.nodes.values()
                   if n.op == "scan" and not n.attrs["reverse"])
    k, ny = forward.attrs["num_carry"], forward.attrs["num_ys"]
    ys = forward.attrs["outputs"][k:k + ny]
    assert len(set(ys)) == len(ys), ys
    X = np.random.default_rng(0).normal(size=(5, 2, 3))
    h, want = np.zeros((1, 4)), 0.0
    p = {k: v.value for k, v in net.params.items()}
    for x in X:  # torch's GRU equations, in numpy
        gi, gh = x @ p["W_ih"] + p["b_ih"], h @ p["W_hh"] + p["b_hh"]
        r = 1 / (1 + np.exp(-(gi[:, :4] + gh[:, :4])))
        z = 1 / (1 + np.exp(-(gi[:, 4:8] + gh[:, 4:8])))
        n = np.tanh(gi[:, 8:] + r * gh[:, 8:])
        h = (1 - z) * n + z * h
        want += (h * h).sum()
    np.testing.assert_allclose(net.graph.run(loss, {"xs": X}), want, rtol=1e-12)


def test_the_gradient_for_one_steps_input_of_a_sequence_net_is_a_row_of_the_whole():
    # unroll(sequence=True) reads step t's input as xs[t]; after rerolling the loop reads
    # xs itself, and the gradient for xs[t] (a saliency map at one step) is row t of
    # the gradient for xs. The plan stays one loop (equal size at T=4 and 12).
    sizes = {}
    for T in (4, 12):
        net = rnn.unroll(rnn.GRUCell(input_size=3, hidden_size=4, seed=0), T, sequence=True)
        g = net.graph
        loss = sum(tg.sum(o * o) for o in net.outputs)
        fetch = [loss, *tg.grad(loss, [net.inputs[1], net.params["W_hh"]])]
        xs = np.random.default_rng(T).normal(size=(T, 2, 3))
        fast = g.compile(fetch, inputs=["xs"])
        got = fast(xs=xs)
        eps, numeric = 1e-6, np.zeros((2, 3))
        for i in range(2):
            for j in range(3):
                bumped = []
                for d in (eps, -eps):
                    x2 = xs.copy()
                    x2[1, i, j] += d
                    bumped.append(g.run(loss, {"xs": x2}, optimize=False))
                numeric[i, j] = (bumped[0] - bumped[1]) / (2 * eps)
        np.testing.assert_allclose(got[1], numeric, rtol=1e-6, atol=1e-9)
        sizes[T] = len(fast.plan.steps)
    assert sizes[4] == sizes[12], sizes

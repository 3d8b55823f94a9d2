"""tg.scan and rnn.scan: values against numpy loops, gradients against finite differences
and against the unrolled graph, one graph for any T, flat memory, files, errors."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

RNG = np.random.default_rng(7)
D, H = 3, 4


def vanilla_scan(dtype="float64"):
    g = tg.Graph("rnn")
    xs = g.input("xs", shape=(None, None, D), dtype=dtype)
    s0 = g.input("s0", shape=(None, H), dtype=dtype)
    U = g.param("U", RNG.normal(size=(D, H)) * 0.5, dtype=dtype)
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5, dtype=dtype)
    b = g.param("b", RNG.normal(size=H) * 0.1, dtype=dtype)

    def step(s, x):
        s = tg.tanh(x @ U + s @ W + b)
        return s, s

    last, states = tg.scan(step, s0, xs)
    return g, (U, W, b), last, states


def numpy_vanilla(U, W, b, s0, xs):
    s, states = s0, []
    for x in xs:
        s = np.tanh(x @ U + s @ W + b)
        states.append(s)
    return s, np.stack(states)


def test_one_graph_runs_any_length_and_equals_a_numpy_loop():
    g, (U, W, b), last, states = vanilla_scan()
    size = len(g)
    for steps in (1, 7, 300):
        X, S = RNG.normal(size=(steps, 2, D)), RNG.normal(size=(2, H))
        got_last, got_states = g.run([last, states], {"xs": X, "s0": S})
        ref_last, ref_states = numpy_vanilla(U.value, W.value, b.value, S, X)
        np.testing.assert_allclose(got_states, ref_states, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got_last, ref_last, rtol=0, atol=1e-12)
    assert len(g) == size  # running never adds nodes; the body was traced once
    body = states.inputs[0].attrs["body"]
    assert [n.op for n in body.nodes.values()].count("tanh") == 1


def test_zero_steps_give_the_initial_carry_and_empty_outputs():
    g, _, last, states = vanilla_scan()
    S = RNG.normal(size=(2, H))
    got_last, got_states = g.run([last, states], {"xs": np.zeros((0, 2, D)), "s0": S})
    np.testing.assert_array_equal(got_last, S)
    assert got_states.shape[0] == 0


def test_tuple_carry_tuple_outputs_and_length_without_xs():
    g = tg.Graph()
    a0, b0 = g.input("a0", shape=(2,)), g.input("b0", shape=(2,))
    k = g.param("k", np.array([0.5, 2.0]))

    def step(carry, x):
        a, b = carry
        assert x is None
        return (b, a + b * k), (a, a * b)

    (a, b), (as_, prods) = tg.scan(step, (a0, b0), length=5)
    A, B = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    got = g.run([a, b, as_, prods], {"a0": A, "b0": B})
    ref_a, ref_p = [], []
    for _ in range(5):
        ref_a.append(A)
        ref_p.append(A * B)
        A, B = B, A + B * k.value
    np.testing.assert_allclose(got[0], A, rtol=1e-14)
    np.testing.assert_allclose(got[1], B, rtol=1e-14)
    np.testing.assert_allclose(got[2], np.stack(ref_a), rtol=1e-14)
    np.testing.assert_allclose(got[3], np.stack(ref_p), rtol=1e-14)


def test_a_step_without_outputs_returns_none():
    g = tg.Graph()
    xs = g.input("xs", shape=(None, 2))
    total, ys = tg.scan(lambda c, x: (c + x, None), g.const(np.zeros(2)), xs)
    assert ys is None
    np.testing.assert_allclose(g.run(total, {"xs": np.arange(6.0).reshape(3, 2)}), [6.0, 9.0])


def central_differences(f, value, eps=1e-6):
    out = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        up, down = value.copy(), value.copy()
        up[idx] += eps
        down[idx] -= eps
        out[idx] = (f(up) - f(down)) / (2 * eps)
    return out


def test_gradients_through_scan_match_finite_differences():
    g, (U, W, b), last, states = vanilla_scan()
    xs, s0 = g.node("xs"), g.node("s0")
    loss = tg.sum(states * states) + tg.sum(last)
    X, S = RNG.normal(size=(5, 2, D)), RNG.normal(size=(2, H))
    got = g.run(tg.grad(loss, [U, W, b, s0, xs]), {"xs": X, "s0": S})
    args = [U.value, W.value, b.value, S, X]

    def loss_of(i):
        def f(value):
            moved = list(args)
            moved[i] = value
            s_last, s_all = numpy_vanilla(*moved)
            return np.sum(s_all * s_all) + np.sum(s_last)
        return f

    for i, arg in enumerate(args):
        np.testing.assert_allclose(got[i], central_differences(loss_of(i), arg),
                                   rtol=1e-6, atol=1e-7)


class MinimalGatedUnit(rnn.Cell):
    """The custom cell of docs/rnn.md."""

    def declare(self):
        D, H = self.input_size, self.hidden_size  # noqa: N806
        specs = {}
        for gate in ("f", "h"):
            specs[f"W_{gate}"] = rnn.ParamSpec((D, H))
            specs[f"U_{gate}"] = rnn.ParamSpec((H, H))
            specs[f"b_{gate}"] = rnn.ParamSpec((H,), init="zeros")
        return specs

    def step(self, x, h, p):
        f = tg.sigmoid(x @ p["W_f"] + h @ p["U_f"] + p["b_f"], name="f")
        candidate = tg.tanh(x @ p["W_h"] + (f * h) @ p["U_h"] + p["b_h"], name="candidate")
        h_new = tg.add((1.0 - f) * h, f * candidate, name="h")
        return h_new, h_new


CELLS = {
    "vanilla": lambda: rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=5, seed=1),
    "gru": lambda: rnn.GRUCell(input_size=D, hidden_size=H, seed=2),
    "lstm": lambda: rnn.LSTMCell(input_size=D, hidden_size=H, seed=3),
    "mgu": lambda: MinimalGatedUnit(input_size=D, hidden_size=H, seed=4),
}


def _max_diff(a, b):
    if isinstance(a, tuple):
        return max(_max_diff(x, y) for x, y in zip(a, b, strict=True))
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("batched", [True, False])
def test_rnn_scan_equals_the_unrolled_net(kind, batched):
    cell = CELLS[kind]()
    rolled = rnn.scan(cell)
    for steps in (1, 6):
        X = RNG.normal(size=(steps, 3, D) if batched else (steps, D))
        a, b = rolled.run(X), rnn.unroll(cell, steps).run(X)
        assert _max_diff(a["outputs"], b["outputs"]) <= 1e-12
        assert _max_diff(a["states"], b["states"]) <= 1e-12


@pytest.mark.parametrize("kind", list(CELLS))
def test_rnn_scan_gradients_equal_the_unrolled_graphs(kind):
    cell, steps = CELLS[kind](), 5
    X, Y = RNG.normal(size=(steps, 2, D)), RNG.normal(size=(steps, 2, 5 if kind == "vanilla"
                                                            else H))
    rolled, unrolled = rnn.scan(cell), rnn.unroll(cell, steps)
    names = sorted(rolled.params)
    loss_r = tg.sum((rolled.outputs - Y) ** 2.0)
    grads_r = rolled.graph.run(tg.grad(loss_r, [rolled.params[n] for n in names]),
                               {rolled.inputs: X})
    loss_u = tg.sum((tg.stack(unrolled.outputs) - Y) ** 2.0)
    feeds = {node: X[t] for t, node in enumerate(unrolled.inputs)}
    grads_u = unrolled.graph.run(tg.grad(loss_u, [unrolled.params[n] for n in names]), feeds)
    for name, a, b in zip(names, grads_r, grads_u, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


def test_lstm_final_state_and_initial_state_gradient():
    cell = CELLS["lstm"]()
    net = rnn.scan(cell)
    h, c = net.final_state
    h0, c0 = net.initial_state
    loss = tg.sum(h * c)
    X = RNG.normal(size=(4, 2, D))
    H0, C0 = RNG.normal(size=(2, H)), RNG.normal(size=(2, H))
    got = net.graph.run(tg.grad(loss, [h0, c0]), {net.inputs: X, h0: H0, c0: C0})

    def f_of(which):
        def f(value):
            state = (value, C0) if which == 0 else (H0, value)
            out = net.run(X, initial_state=state)
            return float(np.sum(out["states"][0][-1] * out["states"][1][-1]))
        return f

    for which, value in enumerate((H0, C0)):
        np.testing.assert_allclose(got[which], central_differences(f_of(which), value),
                                   rtol=1e-6, atol=1e-7)


def test_nested_scans_differentiate():
    g = tg.Graph()
    xs = g.input("xs", shape=(None, 3, 2))
    w = g.param("w", np.array([0.3, -0.7]))

    def outer(c, row):
        inner_total, _ = tg.scan(lambda a, x: (tg.tanh(a * w + x), None), c, row)
        return inner_total, inner_total

    final, _ = tg.scan(outer, g.const(np.zeros(2)), xs)
    loss = tg.sum(final)
    X = RNG.normal(size=(4, 3, 2))
    got = g.run(tg.grad(loss, w), {"xs": X})

    def f(wv):
        c = np.zeros(2)
        for row in X:
            for x in row:
                c = np.tanh(c * wv + x)
        return float(np.sum(c))

    np.testing.assert_allclose(got, central_differences(f, w.value), rtol=1e-6, atol=1e-8)


def test_a_graph_with_scans_saves_loads_and_validates():
    net = rnn.scan(CELLS["gru"]())
    loss = tg.sum(net.outputs)
    grads = tg.grad(loss, list(net.params.values()))
    net.graph.validate()
    buf = io.BytesIO()
    net.graph.save(buf)
    loaded = tg.load(io.BytesIO(buf.getvalue()))
    loaded.validate()
    X = RNG.normal(size=(5, 2, D))
    a = net.graph.run([loss, *grads], {"xs": X})
    b = loaded.run([loss.name, *[n.name for n in grads]], {"xs": X})
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _tampered(edit):
    g, _, last, _ = vanilla_scan()
    buf = io.BytesIO()
    g.save(buf)
    members = {}
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    doc = json.loads(members["graph.json"])
    scan = next(n for n in doc["nodes"] if n["op"] == "scan")
    edit(scan["attrs"])
    members["graph.json"] = json.dumps(doc).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return io.BytesIO(out.getvalue())


def _body(attrs):
    return attrs["body"]["graph"]


@pytest.mark.parametrize("edit", [
    lambda a: _body(a)["nodes"][0].update(shape=[None, 99]),          # a body input's shape
    lambda a: a.update(num_carry=5),                                   # counts that do not fit
    lambda a: a.update(outputs={"tuple": ["nowhere"]}),                # outputs that do not exist
    lambda a: a.update(extra=1),                                       # an unknown attr
    lambda a: _body(a)["nodes"].append(_body(a)["nodes"][-1]),         # a repeated node
    lambda a: a.update(body={"graph": {"name": "b", "nodes": "x"}}),   # not a node list
])
def test_a_malformed_body_is_refused_on_load(edit):
    start = time.perf_counter()
    with pytest.raises(tg.FormatError):
        tg.load(_tampered(edit))
    assert time.perf_counter() - start < 0.5  # refused before any work, even on a busy machine


def test_bad_steps_raise_graph_errors_naming_the_scan():
    g = tg.Graph()
    xs = g.input("xs", shape=(None, 2))
    s0 = g.input("s0", shape=(2,))
    with pytest.raises(tg.GraphError, match="scan 'loop'.*function"):
        tg.scan(3, s0, xs, name="loop")
    with pytest.raises(tg.GraphError, match="scan 'loop'.*return"):
        tg.scan(lambda c, x: c + x, s0, xs, name="loop")
    with pytest.raises(tg.GraphError, match="scan 'loop'.*numpy"):
        tg.scan(lambda c, x: (np.tanh(c), c), s0, xs, name="loop")
    with pytest.raises(tg.ShapeError, match="scan 'loop': carry part 0"):
        tg.scan(lambda c, x: (tg.concat([c, x]), c), s0, xs, name="loop")
    single = g.const(np.zeros(2, dtype=np.float32))
    with pytest.raises(tg.DtypeError, match="scan 'loop': carry part 0"):
        tg.scan(lambda c, x: (single, c), s0, xs, name="loop")
    with pytest.raises(tg.GraphError, match="length=T"):
        tg.scan(lambda c, x: (c, c), s0)
    with pytest.raises(tg.ShapeError, match="different lengths"):
        tg.scan(lambda c, x: (c, c), s0, (g.input("a", shape=(3, 2)), g.input("b", shape=(4, 2))))
    assert len(g) == 5  # every failed call left the graph as it was (xs, s0, const, a, b)


def test_sequences_of_different_lengths_fed_together_raise_a_feed_error():
    g = tg.Graph()
    a, b = g.input("a", shape=(None, 2)), g.input("b", shape=(None, 2))
    total, _ = tg.scan(lambda c, x: (c + x[0] * x[1], None), g.const(np.zeros(2)), (a, b))
    with pytest.raises(tg.FeedError, match="different lengths"):
        g.run(total, {"a": np.ones((3, 2)), "b": np.ones((4, 2))})


def test_a_million_steps_in_flat_memory():
    g = tg.Graph()
    xs = g.input("xs", shape=(None, 1, 8))
    s0 = g.input("s0", shape=(1, 8))
    W = g.param("W", RNG.normal(size=(8, 8)) * 0.3)
    last, _ = tg.scan(lambda s, x: (tg.tanh(s @ W + x), None), s0, xs)
    fn = g.compile(last, inputs=["xs", "s0"])
    steps = 10**6
    X = RNG.normal(size=(steps, 1, 8)) * 0.1
    S = np.zeros((1, 8))
    fn(X[:10], S)  # compile the body and its loop outside the measurement
    tracemalloc.start()
    got = fn(X, S)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    ref = S
    for x in X:  # the numpy loop it must equal
        ref = np.tanh(ref @ W.value + x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_a_long_forward_and_backward_equals_numpy_bptt():
    g, (U, W, b), last, states = vanilla_scan()
    _s0, _xs = g.node("s0"), g.node("xs")
    steps = 10**5
    X, S = RNG.normal(size=(steps, 1, D)) * 0.3, RNG.normal(size=(1, H)) * 0.1
    loss = tg.sum(states) + tg.sum(last)
    fn = g.compile(tg.grad(loss, [U, W, b]), inputs=["xs", "s0"])
    got = fn(X, S)
    _, all_states = numpy_vanilla(U.value, W.value, b.value, S, X)
    gU, gW, gb = np.zeros_like(U.value), np.zeros_like(W.value), np.zeros_like(b.value)
    carry = np.zeros_like(S)
    for t in range(steps - 1, -1, -1):  # hand-written BPTT
        ds = carry + 1.0 + (1.0 if t == steps - 1 else 0.0)
        dz = ds * (1 - all_states[t] ** 2)
        prev = all_states[t - 1] if t else S
        gU += X[t].T @ dz
        gW += prev.T @ dz
        gb += dz.sum(0)
        carry = dz @ W.value.T
    for a, r in zip(got, (gU, gW, gb), strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("optimize", [True, False])
def test_carries_that_feed_each_other_survive_the_optimizer(optimize):
    # (a, b) -> (b, a + b): b is both a sum of carries and the next a; (p, q) -> (q, p)
    # swaps; r never changes. The passes must not mistake any of them for an accumulator
    # or a constant.
    g = tg.Graph()
    xs = g.input("xs", shape=(None,))
    init = (g.const(0.0), g.const(1.0), g.const(2.0), g.const(3.0), g.const(5.0))

    def step(c, x):
        a, b, p, q, r = c
        return (b, a + b, q, p, r), a * x + r

    final, ys = tg.scan(step, init, xs)
    got = g.run([*final, ys], {"xs": np.arange(1.0, 8.0)}, optimize=optimize)
    a, b, p, q, r, want = 0.0, 1.0, 2.0, 3.0, 5.0, []
    for x in np.arange(1.0, 8.0):
        want.append(a * x + r)
        a, b, p, q = b, a + b, q, p
    np.testing.assert_allclose(got[:5], [a, b, p, q, r], rtol=0, atol=0)
    np.testing.assert_allclose(got[5], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [0, 1, 2])
@pytest.mark.parametrize("init_rows", [1, 2])
def test_gradients_of_short_scans_with_a_broadcast_init_match_finite_differences(
        steps, init_rows):
    # T = 0 and 1 with a (1, H) init against a batch of 2 used to fail in the vjp (the
    # new carries joined from saved ones of another shape).
    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, 3))
    s0 = g.input("s0", shape=(None, 3))
    W = g.param("W", np.eye(3) * 0.5 + 0.1)
    final, ys = tg.scan(lambda s, x: (tg.tanh(s @ W + x), tg.tanh(s @ W + x) * 2.0), s0, xs)
    loss = tg.sum(ys * ys) + tg.sum(final * final)
    grads = tg.grad(loss, [W, s0])
    feeds = {"xs": np.random.default_rng(1).normal(size=(steps, 2, 3)),
             "s0": np.linspace(-1, 1, 3 * init_rows).reshape(init_rows, 3)}
    got = g.run(grads, feeds)
    for value, node in zip(got, (W, None), strict=True):
        if node is None:  # d loss / d s0 by differences of the fed value
            base, numeric = feeds["s0"].copy(), np.zeros_like(feeds["s0"])
            for i in np.ndindex(base.shape):
                for sign in (1, -1):
                    feeds["s0"] = base.copy()
                    feeds["s0"][i] += sign * 1e-6
                    numeric[i] += sign * float(g.run(loss, feeds, optimize=False)) / 2e-6
            feeds["s0"] = base
        else:
            base, numeric = W.value.copy(), np.zeros_like(W.value)
            for i in np.ndindex(base.shape):
                for sign in (1, -1):
                    W.value = base.copy()
                    W.value[i] += sign * 1e-6
                    numeric[i] += sign * float(g.run(loss, feeds, optimize=False)) / 2e-6
            W.value = base
        np.testing.assert_allclose(value, numeric, rtol=1e-5, atol=1e-8)


def test_a_broadcast_init_keeps_the_generated_loop_on_every_call(monkeypatch):
    # A (1, H) initial carry against a batch of B: step 0 broadcasts. The generated body
    # writes sums into dead operands, so step 0 must not run through it; before, the
    # whole scan fell back to the plain step loop on every call after the first.
    from tinygraph.exec.scan import ScanKernel

    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, H))
    s0 = g.input("s0", shape=(None, H))
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)

    def step(s, x):  # a gate: not a plain recurrence, so the scan stays a scan
        f = tg.sigmoid(s @ W + x)
        s = f * s + (1.0 - f) * tg.tanh(x)
        return s, s

    last, states = tg.scan(step, s0, xs)
    fn = g.compile([last, tg.sum(states * states)], inputs=["xs", "s0"])
    feeds = (RNG.normal(size=(6, 4, H)), np.zeros((1, H)))
    fn(*feeds)
    slow = []
    plain_run = ScanKernel._run
    monkeypatch.setattr(ScanKernel, "_run", lambda self, args, steps, fast: (
        slow.append(self.node.name) if not fast else None,
        plain_run(self, args, steps, fast))[1])
    got_last, got_sum = fn(*feeds)
    s, total = feeds[1], 0.0
    for x in feeds[0]:
        f = 1 / (1 + np.exp(-(s @ W.value + x)))
        s = f * s + (1 - f) * np.tanh(x)
        total += np.sum(s * s)
    np.testing.assert_allclose(got_last, s, rtol=1e-12)
    np.testing.assert_allclose(got_sum, total, rtol=1e-12)
    assert slow == [], slow


def test_a_broadcast_init_still_gets_the_loop_weight_of_a_batch(monkeypatch):
    # The recurrent weight is laid out for the loop's products by the rows a step holds;
    # a (1, H) init against a batch has several rows from step 1 on (it was read as one
    # row, a matrix-vector product, and the weight left as it was).
    import tinygraph.exec.scan as scan_module

    made = []
    plain = scan_module.loop_weight

    def spy(w, rows, steps):
        made.append((w.shape, rows))
        return plain(w, rows, steps)

    monkeypatch.setattr(scan_module, "loop_weight", spy)
    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, H))
    s0 = g.input("s0", shape=(None, H))
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)

    def step(s, x):
        f = tg.sigmoid(s @ W + x)
        return f * s + (1.0 - f) * tg.tanh(x), None

    last, _ = tg.scan(step, s0, xs)
    x_value = RNG.normal(size=(40, 3, H))
    got = g.run(last, {"xs": x_value, "s0": np.zeros((1, H))})
    s = np.zeros((1, H))
    for x in x_value:
        f = 1 / (1 + np.exp(-(s @ W.value + x)))
        s = f * s + (1 - f) * np.tanh(x)
    np.testing.assert_allclose(got, s, rtol=1e-12)
    assert made == [((H, H), 3)], made


def test_the_generated_loop_runs_the_body_inline_and_sigmoid_tails_stay_silent():
    # The loop holds the body's code (no call per step); sigmoid's overflow (x < -709,
    # result 0) is ignored once for the loop, so far tails give 0 without a warning.
    import warnings

    from tinygraph.exec.scan import ScanKernel

    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, H))
    s0 = g.input("s0", shape=(None, H))
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)
    last, states = tg.scan(lambda s, x: (tg.sigmoid(s @ W + x) * s + x * 0.5, None), s0, xs)
    fn = g.compile(last, inputs=["xs", "s0"])
    x_value = RNG.normal(size=(12, 70, H))  # 70 x H values a step: the errstate-free path
    x_value[3:6] = -1000.0  # exp(1000) overflows inside sigmoid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fn(x_value, np.ones((70, H)))
    s = np.ones((70, H))
    for x in x_value:
        with np.errstate(over="ignore"):
            s = 1 / (1 + np.exp(-(s @ W.value + x))) * s + x * 0.5
    np.testing.assert_allclose(got, s, rtol=1e-12)
    (kernel,) = [st.forward for st in fn.plan.steps if isinstance(st.forward, ScanKernel)]
    assert kernel.loop_source is not None and "body(" not in kernel.loop_source


def test_a_loop_whose_carries_keep_their_shapes_runs_every_step_generated(monkeypatch):
    # A first call runs steps 0 and 1 apart (step 0 the plain way: a (1, H) init may meet
    # a batch there) and allocates the outputs from them; when step 0 left the carries'
    # shapes as they were, later calls with inputs of those shapes and dtypes run every
    # step in the generated loop. A (1, H) init against a batch never does.
    from tinygraph.exec.scan import ScanKernel

    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, H))
    s0 = g.input("s0", shape=(None, H))
    W = g.param("W", RNG.normal(size=(H, H)) * 0.5)
    last, ys = tg.scan(lambda s, x: (s + 0.5 * tg.tanh(s @ W + x), s * 2.0), s0, xs)
    fn = g.compile([last, ys], inputs=["xs", "s0"])
    (kernel,) = [st.forward for st in fn.plan.steps if isinstance(st.forward, ScanKernel)]
    flags = []  # per step run apart: did it run the generated body?
    real = kernel._step
    monkeypatch.setattr(kernel, "_step", lambda full, params, fast:
                        flags.append(fast) or real(full, params, fast))
    x_value = RNG.normal(size=(7, 3, H))
    for init, apart in ((np.ones((3, H)) * 0.1, [[False, True], [], []]),
                        (np.zeros((1, H)), [[False, True]] * 3)):
        for steps_apart in apart:
            flags.clear()
            got_last, got_ys = fn(x_value, init)
            s, want_ys = init, []
            for x in x_value:
                want_ys.append(np.broadcast_to(s * 2.0, (3, H)))
                s = s + 0.5 * np.tanh(s @ W.value + x)
            np.testing.assert_allclose(got_last, s, rtol=1e-12)
            np.testing.assert_allclose(got_ys, np.stack(want_ys), rtol=1e-12)
            assert flags == steps_apart, flags
    flags.clear()
    fn(x_value[:2], np.ones((3, H)))  # T = 2, same shapes: the loop alone, two steps
    assert flags == []

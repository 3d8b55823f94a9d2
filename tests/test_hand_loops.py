"""Random cells written as plain Python loops, the ways users write them.

No ``rnn.unroll`` and no step marks: the step inputs are rows ``X[t]``, columns
``X[:, t]`` of batch-first data, inputs made before the loop, or inputs made
inside it; the loss is a per-step cross-entropy summed with Python's ``sum``,
a next-token loss (``logits[t]`` against ``Y[t + 1]``), or a loss on the last
state only. Each must optimize to a graph that does not grow with T (one loop,
per-step work vectorized), with the loss equal to a numpy loop's and the
gradients equal to the plain (unoptimized) plan's.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_random_cells import BINARY, UNARY, numpy_forward, random_recipe

import tinygraph as tg
import tinygraph_rnn as rnn

D, H, B, V = 3, 4, 2, 5
STYLES = ("rows", "batch_first", "inputs_first", "inputs_inside")
# Ways users write a loss over the steps: a Python sum of per-step cross-entropies, the
# next token's, the last state only, the mean of the stacked per-step losses, a negative
# log-likelihood from log_softmax and fed one-hot targets, a squared error per step.
LOSSES = ("per_step", "next_token", "last_state", "mean_of_stack", "one_hot_nll", "squared")


def _build(recipe, T, style, loss_form, seed):
    rng = np.random.default_rng(seed)
    g = tg.Graph()
    shapes = (("U", (D, H)), ("W", (H, H)), ("W2", (H, H)), ("b", (H,)), ("V", (H, V)))
    p = {k: g.param(k, rng.normal(size=s) * 0.5) for k, s in shapes}
    xs = None
    if style == "rows":
        X = g.input("X", shape=(T, None, D))
        xs = [X[t] for t in range(T)]
    elif style == "batch_first":
        X = g.input("X", shape=(None, T, D))
        xs = [X[:, t] for t in range(T)]
    elif style == "inputs_first":
        xs = [g.input(f"x{t}", shape=(None, D)) for t in range(T)]
    h, states = g.input("h0", shape=(None, H)), []
    for t in range(T):
        x = xs[t] if xs is not None else g.input(f"x{t}", shape=(None, D))
        values = {"xU": x @ p["U"], "hW": h @ p["W"], "hW2": h @ p["W2"], "b": p["b"]}
        for k, (op, *args) in enumerate(recipe[:-1]):
            table = UNARY if op in UNARY else BINARY
            values[f"v{k}"] = table[op][0](*(values[a] for a in args))
        h = tg.tanh(values[recipe[-1][1]] + values["xU"] + values["hW"] + values["b"])
        states.append(h)
    Y = g.input("Y", shape=(T, None), dtype="int64")
    Z = g.input("Z", shape=(T, None, V))  # one-hot targets or regression targets
    if loss_form == "per_step":
        loss = sum(tg.cross_entropy(s @ p["V"], Y[t]) for t, s in enumerate(states)) / T
    elif loss_form == "next_token":
        loss = sum(tg.cross_entropy(states[t] @ p["V"], Y[t + 1]) for t in range(T - 1))
    elif loss_form == "mean_of_stack":
        loss = tg.mean(tg.stack([tg.cross_entropy(s @ p["V"], Y[t])
                                 for t, s in enumerate(states)]))
    elif loss_form == "one_hot_nll":
        loss = 0.0 - sum(tg.sum(tg.log_softmax(s @ p["V"], axis=-1) * Z[t])
                         for t, s in enumerate(states))
    elif loss_form == "squared":
        loss = sum(tg.sum((s @ p["V"] - Z[t]) ** 2) for t, s in enumerate(states))
    else:
        loss = tg.sum(states[-1] * states[-1])
    xv = rng.normal(size=(T, B, D))
    y = rng.integers(0, V, (T, B))
    feeds = {"h0": rng.normal(size=(B, H)) * 0.5, "Y": y}
    if loss_form in ("one_hot_nll", "squared"):
        del feeds["Y"]
        feeds["Z"] = np.eye(V)[y] if loss_form == "one_hot_nll" else rng.normal(size=(T, B, V))
    if style == "rows":
        feeds["X"] = xv
    elif style == "batch_first":
        feeds["X"] = xv.transpose(1, 0, 2).copy()
    else:
        feeds |= {f"x{t}": xv[t] for t in range(T)}
    return g, p, loss, feeds, xv


def _numpy_loss(recipe, P, xv, h0, feeds, loss_form):
    states, _ = numpy_forward(recipe, {**P, "c": 0.0}, xv, h0)  # the recipe's numpy loop
    T = len(states)
    if loss_form in ("per_step", "mean_of_stack"):
        return sum(_mean_nll(s @ P["V"], feeds["Y"][t]) for t, s in enumerate(states)) / T
    if loss_form == "next_token":
        return sum(_mean_nll(states[t] @ P["V"], feeds["Y"][t + 1]) for t in range(T - 1))
    if loss_form == "one_hot_nll":
        return -sum((_log_softmax(s @ P["V"]) * feeds["Z"][t]).sum()
                    for t, s in enumerate(states))
    if loss_form == "squared":
        return sum(((s @ P["V"] - feeds["Z"][t]) ** 2).sum() for t, s in enumerate(states))
    return float((states[-1] ** 2).sum())


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _mean_nll(z, targets):
    """numpy's mean negative log-likelihood of ``targets`` under the rows of ``z``."""
    return -_log_softmax(z)[np.arange(len(targets)), targets].mean()


def _assert_same_gradients(got, plain):
    """The optimized plan's gradients (after the loss) equal the plain plan's."""
    for a, b in zip(got[1:], plain[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", range(6))
def test_a_hand_written_loop_optimizes_to_one_loop_with_the_same_values(seed, style):
    recipe = random_recipe(seed)
    for loss_form in LOSSES:
        counts = []
        for T in (5, 11):
            g, p, loss, feeds, xv = _build(recipe, T, style, loss_form, seed)
            params = list(p.values())
            fetch = [loss, *tg.grad(loss, params)]
            fast = g.compile(fetch, inputs=list(feeds))
            plain = g.compile(fetch, inputs=list(feeds), optimize=False)
            got, want = fast(**feeds), plain(**feeds)
            P = {k: v.value for k, v in p.items()}
            np.testing.assert_allclose(
                got[0], _numpy_loss(recipe, P, xv, feeds["h0"], feeds, loss_form),
                rtol=1e-11)
            for a, b in zip(got[1:], want[1:], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
            ops = [s.node.op for s in fast.plan.steps]
            assert "scan" in ops or "recurrence" in ops, (loss_form, ops)
            counts.append(len(ops))
        assert counts[0] == counts[1], (loss_form, counts)  # nothing left per step


@pytest.mark.parametrize("picks_first", [True, False])
def test_a_hand_written_bidirectional_pair_of_loops_rerolls_both(picks_first):
    # One loop over X[0..T-1], one over X[T-1..0], no marks; the rows are picked before
    # both loops (and shared) or inside each. Both loops must reroll, the backward one
    # read in time order, so the per-step loss over the joined states vectorizes.
    B, D, H = 2, 3, 4
    sizes = {}
    for T in (5, 13):
        rng = np.random.default_rng(T)
        g = tg.Graph()
        P = {k: g.param(k, rng.normal(size=s) * 0.5) for k, s in
             (("Uf", (D, H)), ("Wf", (H, H)), ("Ub", (D, H)), ("Wb", (H, H)))}
        X = g.input("X", shape=(T, None, D))
        xs = [X[t] for t in range(T)] if picks_first else None

        def row(t, xs=xs, X=X):
            return xs[t] if xs is not None else X[t]
        h, forward = g.input("hf", shape=(None, H)), []
        for t in range(T):
            h = tg.tanh(row(t) @ P["Uf"] + h @ P["Wf"])
            forward.append(h)
        h, backward = g.input("hb", shape=(None, H)), [None] * T
        for t in reversed(range(T)):
            h = tg.tanh(row(t) @ P["Ub"] + h @ P["Wb"])
            backward[t] = h
        loss = sum(tg.sum(tg.concat([f, b], axis=-1) ** 2) for f, b in zip(forward, backward,
                                                                            strict=True))
        fetch = [loss, *tg.grad(loss, list(P.values()))]
        feeds = {"X": rng.normal(size=(T, B, D)), "hf": rng.normal(size=(B, H)),
                 "hb": rng.normal(size=(B, H))}
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        V = {k: p.value for k, p in P.items()}
        hf, hb, want_f, want_b = feeds["hf"], feeds["hb"], [], [None] * T
        for t in range(T):
            hf = np.tanh(feeds["X"][t] @ V["Uf"] + hf @ V["Wf"])
            want_f.append(hf)
        for t in reversed(range(T)):
            hb = np.tanh(feeds["X"][t] @ V["Ub"] + hb @ V["Wb"])
            want_b[t] = hb
        want = sum((f ** 2).sum() + (b ** 2).sum() for f, b in zip(want_f, want_b, strict=True))
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
        _assert_same_gradients(got, plain)
        ops = [s.node.op for s in fast.plan.steps]
        loops = sum(ops.count(op) for op in ("scan", "recurrence", "reverse_recurrence"))
        assert loops == 4, ops  # two loops forward, their two backward loops
        sizes[T] = len(ops)
    assert sizes[5] == sizes[13], sizes


def test_the_variants_benchmark_finds_one_loop_for_every_way_of_writing():
    # benchmarks/variants.py (make bench) builds each way at T=20 and T=200 and checks
    # the optimized values against the plain plan; here: a few of its rows, whose plan
    # must not grow with T.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "variants.py"
    spec = importlib.util.spec_from_file_location("variants_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for cell, style, form in [("vanilla", "backwards in time", "Python `sum`"),
                              ("vanilla", "first step apart", "next token"),
                              ("gated", "`tg.scan`", "summed in the carry")]:
        small, large, ratio = module.row(cell, style, form)
        assert small == large and ratio > 0, (cell, style, form, small, large)


def test_the_seeds_equations_unbatched_with_column_products_reroll():
    # s_t = tanh(U x_t + W s_{t-1} + b), o_t = softmax(V s_t) on 1-D vectors, as the
    # project's origin writes them (weights on the left); the loss per step reads its
    # target as Y[t:t+1]. One loop, a plan that does not grow with T, numpy's values.
    D, H, C = 3, 5, 4
    sizes = {}
    for T in (4, 12):
        rng = np.random.default_rng(T)
        g = tg.Graph()
        U, W, V = (g.param(n, rng.normal(size=s) * 0.5)
                   for n, s in (("U", (H, D)), ("W", (H, H)), ("V", (C, H))))
        b = g.param("b", rng.normal(size=H) * 0.1)
        X, Y = g.input("X", shape=(T, D)), g.input("Y", shape=(T,), dtype="int64")
        s, loss = g.input("s0", shape=(H,)), None
        for t in range(T):
            s = tg.tanh(U @ X[t] + W @ s + b)
            term = tg.cross_entropy(tg.expand_dims(V @ s, 0), Y[t:t + 1])
            loss = term if loss is None else loss + term
        feeds = {"X": rng.normal(size=(T, D)), "Y": rng.integers(0, C, T), "s0": np.zeros(H)}
        fetch = [loss, *tg.grad(loss, [U, W, V, b])]
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        sv, want = feeds["s0"], 0.0
        for t in range(T):
            sv = np.tanh(U.value @ feeds["X"][t] + W.value @ sv + b.value)
            z = V.value @ sv
            want += np.log(np.exp(z - z.max()).sum()) + z.max() - z[feeds["Y"][t]]
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
        for a, p in zip(got[1:], plain[1:], strict=True):
            np.testing.assert_allclose(a, p, rtol=1e-10, atol=1e-12)
        ops = [st.node.op for st in fast.plan.steps]
        assert "scan" in ops or "recurrence" in ops, ops
        sizes[T] = len(ops)
    assert sizes[4] == sizes[12], sizes


def test_a_hand_written_loop_beyond_the_plain_size_limit_is_still_optimized():
    # Above compiler.OPTIMIZE_MAX_NODES nodes, a graph without step marks is optimized
    # when rerolling finds a loop in it (else it runs as built).
    from tinygraph import compiler

    T = 600
    g = tg.Graph()
    rng = np.random.default_rng(0)
    U, W = g.param("U", rng.normal(size=(3, 4))), g.param("W", rng.normal(size=(4, 4)) * 0.3)
    xs = [g.input(f"x{t}", shape=(None, 3)) for t in range(T)]
    h, total = g.input("h0", shape=(None, 4)), None
    for x in xs:
        h = tg.tanh(x @ U + h @ W)
        total = tg.sum(h * h) if total is None else total + tg.sum(h * h)
    assert len(g) > 4000
    old = compiler.OPTIMIZE_MAX_NODES
    compiler.OPTIMIZE_MAX_NODES = 4000  # the same rule, at a size a test can build fast
    try:
        fetch = [total, *tg.grad(total, [U, W])]
        feeds = {f"x{t}": rng.normal(size=(2, 3)) for t in range(T)} | {"h0": np.zeros((2, 4))}
        fast = g.compile(fetch, inputs=list(feeds))
        other = tg.Graph()  # a large graph with no loop in it runs as built
        v = other.input("v", shape=(2,))
        for k in range(2100):
            v = tg.tanh(v * (1.0 + k * 1e-4))
        plain_large = other.compile(v)
    finally:
        compiler.OPTIMIZE_MAX_NODES = old
    assert len(fast.plan.steps) < 100
    assert len(plain_large.plan.steps) == 2 * 2100
    want = g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
    for a, b in zip(fast(**feeds), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [2, 3])
def test_two_short_loops_of_different_widths_are_not_taken_for_one(T):
    # At T=2 a layer's loop and the next layer's loop repeat the same ops; their weights
    # differ in shape, so they are no sequence of one loop. It once crashed the compile.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "variants.py"
    spec = importlib.util.spec_from_file_location("variants_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    g, loss, params, feeds = module._hand_loop(T, module._vanilla, "two layers, two loops",
                                               "next token")
    fetch = [loss, *tg.grad(loss, params)]
    fast = g.compile(fetch, inputs=list(feeds))(**feeds)
    plain = g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_generator_feeding_its_output_back_rerolls():
    # No input per step: x_{t+1} = softmax(h_t @ V) feeds the next step. The loop is
    # found by its reads of one weight; training it gives one plan for any T.
    V, H = 5, 4
    sizes = {}
    for T in (4, 12):
        rng = np.random.default_rng(T)
        g = tg.Graph()
        E, W, Vp = (g.param(n, rng.normal(size=s) * 0.5)
                    for n, s in (("E", (V, H)), ("W", (H, H)), ("V", (H, V))))
        h, x, outs = g.input("h0", shape=(None, H)), g.input("x0", shape=(None, V)), []
        for _ in range(T):
            h = tg.tanh(x @ E + h @ W)
            x = tg.softmax(h @ Vp)
            outs.append(x)
        loss = sum(tg.sum(o * o) for o in outs)
        feeds = {"h0": rng.normal(size=(2, H)), "x0": np.eye(V)[[0, 3]]}
        fetch = [loss, *tg.grad(loss, [E, W, Vp])]
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        hv, xv, want = feeds["h0"], feeds["x0"], 0.0
        for _ in range(T):
            hv = np.tanh(xv @ E.value + hv @ W.value)
            z = hv @ Vp.value
            xv = np.exp(z - z.max(axis=1, keepdims=True))
            xv /= xv.sum(axis=1, keepdims=True)
            want += (xv * xv).sum()
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
        _assert_same_gradients(got, plain)
        sizes[T] = len(fast.plan.steps)
    assert sizes[4] == sizes[12], sizes


def test_a_product_written_twice_in_a_cell_runs_once_per_step():
    # A peephole-style cell writes h @ W in two gates: the loop's body computes it once
    # (CSE inside scan bodies), and the states still equal a numpy loop's.
    T, B, D, H = 30, 3, 4, 5
    rng = np.random.default_rng(7)
    P = {"U": rng.normal(size=(D, H)) * 0.4, "W": rng.normal(size=(H, H)) * 0.4,
         "Wf": rng.normal(size=(H, H)) * 0.4, "p": rng.normal(size=H) * 0.3}
    g = tg.Graph()
    U, W, Wf, p = (g.param(k, v) for k, v in P.items())
    X = g.input("X", shape=(T, None, D))
    h = c = g.input("h0", shape=(None, H))
    outs = []
    for t in range(T):
        f = tg.sigmoid(h @ Wf + p * c)
        c = f * c + (1 - f) * tg.tanh(X[t] @ U + h @ W)
        h = tg.tanh(c) * tg.sigmoid(h @ W)
        outs.append(h)
    feeds = {"X": rng.normal(size=(T, B, D)), "h0": rng.normal(size=(B, H)) * 0.5}
    fast = g.compile(tg.stack(outs), inputs=list(feeds))
    hv = cv = feeds["h0"]
    want = []
    for x in feeds["X"]:
        f = 1 / (1 + np.exp(-(hv @ P["Wf"] + P["p"] * cv)))
        cv = f * cv + (1 - f) * np.tanh(x @ P["U"] + hv @ P["W"])
        hv = np.tanh(cv) * (1 / (1 + np.exp(-(hv @ P["W"]))))
        want.append(hv)
    np.testing.assert_allclose(fast(**feeds), np.stack(want), rtol=1e-12, atol=1e-14)
    (scan,) = [s.node for s in fast.plan.steps if s.node.op == "scan"]
    body = scan.attrs["body"]
    products = [n for n in body.nodes.values() if n.op == "matmul"]
    assert len(products) == 2, [(n.name, [s.name for s in n.inputs]) for n in products]


def test_an_attention_decoder_over_states_made_before_the_loop_rerolls():
    # Every step attends over encoder states computed once before the loop; the encoder's
    # tanh is the op each step ends with, so the repeating pattern also fits one node
    # earlier (the encoder's tanh in step 0): that start is tried and refused, this one
    # proves.
    B, D, H, V = 3, 4, 5, 6
    sizes = {}
    for T in (8, 20):
        rng = np.random.default_rng(T)
        P = {"U": rng.normal(size=(D, H)) * 0.4, "W": rng.normal(size=(H, H)) * 0.4,
             "A": rng.normal(size=(H, H)) * 0.4, "V": rng.normal(size=(H, V)) * 0.4}
        g = tg.Graph()
        U, W, A, Vp = (g.param(k, v) for k, v in P.items())
        X = g.input("X", shape=(T, None, D))
        Y = g.input("Y", shape=(T, None), dtype="int64")
        h = g.input("h0", shape=(None, H))
        enc = tg.tanh(X @ U)
        states = []
        for t in range(T):
            weights = tg.softmax(tg.sum(enc * h, axis=-1), axis=0)
            context = tg.sum(enc * tg.expand_dims(weights, -1), axis=0)
            h = tg.tanh(context @ A + h @ W + X[t] @ U)
            states.append(h)
        loss = sum(tg.cross_entropy(s @ Vp, Y[t]) for t, s in enumerate(states)) / T
        feeds = {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
                 "h0": rng.normal(size=(B, H)) * 0.5}
        fetch = [loss, *tg.grad(loss, [U, W, A, Vp])]
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        E, hv, want = np.tanh(feeds["X"] @ P["U"]), feeds["h0"], 0.0
        for t in range(T):
            scores = (E * hv).sum(axis=-1)
            a = np.exp(scores - scores.max(axis=0))
            a /= a.sum(axis=0)
            hv = np.tanh((E * a[..., None]).sum(axis=0) @ P["A"] + hv @ P["W"]
                         + feeds["X"][t] @ P["U"])
            z = hv @ P["V"]
            want += _mean_nll(z, feeds["Y"][t])
        np.testing.assert_allclose(got[0], want / T, rtol=1e-12)
        _assert_same_gradients(got, plain)
        sizes[T] = len(fast.plan.steps)
    assert sizes[8] == sizes[20], sizes


@pytest.mark.parametrize("delay", [2, 3])
def test_a_cell_reading_its_state_from_several_steps_back_rerolls(delay):
    # h_t = tanh(x_t U + h_{t-1} W + h_{t-delay} W2): the older states ride along as a
    # chain of carries, their initial values the reads before step `delay`.
    B, D, H, V = 2, 3, 4, 5
    sizes = {}
    for T in (9, 21):
        rng = np.random.default_rng(T + delay)
        P = {"U": rng.normal(size=(D, H)) * 0.4, "W": rng.normal(size=(H, H)) * 0.4,
             "W2": rng.normal(size=(H, H)) * 0.4, "V": rng.normal(size=(H, V)) * 0.4}
        g = tg.Graph()
        U, W, W2, Vp = (g.param(k, v) for k, v in P.items())
        X = g.input("X", shape=(T, None, D))
        Y = g.input("Y", shape=(T, None), dtype="int64")
        h0 = g.input("h0", shape=(None, H))
        past = [h0] * delay  # past[-1] is h_{t-1}, past[0] is h_{t-delay}
        states = []
        for t in range(T):
            h = tg.tanh(X[t] @ U + past[-1] @ W + past[0] @ W2)
            past = [*past[1:], h]
            states.append(h)
        loss = sum(tg.cross_entropy(s @ Vp, Y[t]) for t, s in enumerate(states)) / T
        feeds = {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
                 "h0": rng.normal(size=(B, H)) * 0.5}
        fetch = [loss, *tg.grad(loss, [U, W, W2, Vp, h0])]
        fast = g.compile(fetch, inputs=list(feeds))
        got, plain = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        hist, want = [feeds["h0"]] * delay, 0.0
        for t in range(T):
            hv = np.tanh(feeds["X"][t] @ P["U"] + hist[-1] @ P["W"] + hist[0] @ P["W2"])
            hist = [*hist[1:], hv]
            z = hv @ P["V"]
            want += _mean_nll(z, feeds["Y"][t])
        np.testing.assert_allclose(got[0], want / T, rtol=1e-12)
        _assert_same_gradients(got, plain)
        sizes[T] = len(fast.plan.steps)
        assert any(s.node.op == "scan" for s in fast.plan.steps)
    assert sizes[9] == sizes[21], sizes


def test_gate_slices_of_a_biased_product_leave_the_bias_out_of_the_loop():
    # gates = h @ W + b, sliced per gate: each slice becomes (h @ W)[:, k] + b[k], and
    # b[k] joins the hoisted input part, so no step adds the whole (B, 4H) block.
    T, B, D, H = 12, 3, 4, 5
    rng = np.random.default_rng(11)
    P = {"U": rng.normal(size=(D, 4 * H)) * 0.4, "W": rng.normal(size=(H, 4 * H)) * 0.4,
         "b": rng.normal(size=4 * H)}
    g = tg.Graph()
    U, W, b = (g.param(k, v) for k, v in P.items())
    X = g.input("X", shape=(T, None, D))
    h = c = g.input("h0", shape=(None, H))
    states = []
    for t in range(T):
        xs, gates = X[t] @ U, h @ W + b
        i, f = tg.sigmoid(xs[:, :H] + gates[:, :H]), tg.sigmoid(xs[:, H:2 * H] + gates[:, H:2 * H])
        o = tg.sigmoid(xs[:, 3 * H:] + gates[:, 3 * H:])
        c = f * c + i * tg.tanh(xs[:, 2 * H:3 * H] + gates[:, 2 * H:3 * H])
        h = o * tg.tanh(c)
        states.append(h)
    feeds = {"X": rng.normal(size=(T, B, D)), "h0": rng.normal(size=(B, H)) * 0.5}
    fast = g.compile(tg.stack(states), inputs=list(feeds))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    hv = cv = feeds["h0"]
    want = []
    for x in feeds["X"]:
        z = x @ P["U"] + hv @ P["W"] + P["b"]
        cv = sig(z[:, H:2 * H]) * cv + sig(z[:, :H]) * np.tanh(z[:, 2 * H:3 * H])
        hv = sig(z[:, 3 * H:]) * np.tanh(cv)
        want.append(hv)
    np.testing.assert_allclose(fast(**feeds), np.stack(want), rtol=1e-12, atol=1e-14)
    (scan,) = [s.node for s in fast.plan.steps if s.node.op == "scan"]
    wide = [n for n in scan.attrs["body"].nodes.values() if n.op == "add" and n.shape[-1] == 4 * H]
    assert not wide, [(n.name, [s.name for s in n.inputs]) for n in wide]
    # Outside the loop the four bias blocks are one sum again (passes/joins.py), added to
    # the (T, B, 4H) projection by its product (passes/affine.py): nothing per block.
    outer = [s.node for s in fast.plan.steps if s.node.op in ("add", "affine")]
    assert [(n.op, len(n.shape)) for n in outer if len(n.shape) == 3] == [("affine", 3)], [
        (n.name, n.shape) for n in outer]


def test_an_lstm_backward_stores_its_gate_adjoints_once():
    # The backward loop joins the four gate adjoints every step (for dz @ W_hhᵀ) and the
    # gradient of W_ih joins them again after it: that join reads the stored one, and the
    # four separate stacks leave the loop. Gradients equal the plain plan's.
    import tinygraph_rnn as rnn

    T, B, D, H, V = 9, 3, 4, 5, 6
    rng = np.random.default_rng(3)
    net = rnn.unroll(rnn.LSTMCell(input_size=D, hidden_size=H, seed=0), T)
    g = net.graph
    V_out = g.param("V_out", rng.normal(size=(H, V)) * 0.4)
    targets = g.input("targets", shape=(T, None), dtype="int64")
    loss = sum(tg.cross_entropy(net.outputs[t] @ V_out, targets[t]) for t in range(T)) / T
    fetch = [loss, *tg.grad(loss, [*net.params.values(), V_out])]
    feeds = {n.name: rng.normal(size=(B, D)) for n in net.inputs} | {
        "targets": rng.integers(0, V, (T, B))}
    fast = g.compile(fetch, inputs=list(feeds))
    for a, b in zip(fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    joins = [s.node for s in fast.plan.steps if s.node.op == "concat" and s.node.shape[-1] == 4 * H]
    assert not joins, [n.name for n in joins]
    backward = [s.node for s in fast.plan.steps if s.node.op == "scan"][-1]
    assert backward.attrs["num_ys"] <= 3, backward.attrs["outputs"]


def _gated_states(g, T, seed):
    """A small gated loop over rows X[t]; its params, states and feeds."""
    rng = np.random.default_rng(seed)
    p = {k: g.param(k, rng.normal(size=s) * 0.5)
         for k, s in (("U", (D, H)), ("W", (H, H)), ("V", (H, V)))}
    X = g.input("X", shape=(T, None, D))
    h, states = g.input("h0", shape=(None, H)), []
    for t in range(T):
        z = tg.sigmoid(X[t] @ p["U"] + h @ p["W"])
        h = (1.0 - z) * h + z * tg.tanh(X[t] @ p["U"])
        states.append(h)
    feeds = {"X": rng.normal(size=(T, B, D)), "h0": rng.normal(size=(B, H)) * 0.5}
    return p, states, feeds


def _numpy_states(p, feeds):
    U, W = p["U"].value, p["W"].value
    h, out = feeds["h0"], []
    for x in feeds["X"]:
        z = 1 / (1 + np.exp(-(x @ U + h @ W)))
        h = (1 - z) * h + z * np.tanh(x @ U)
        out.append(h)
    return out


def test_a_per_step_value_written_twice_still_vectorizes():
    # An entropy term written as users write it, `h_t @ V` twice per step (in softmax and
    # in log_softmax), and a smoothness term reading two steps, `h_t - h_{t-1}`, twice:
    # each step computed those values twice, which hid the per-step work from the
    # vectorizer (the plan grew with T: 616 nodes at T=20, 5,656 at T=200).
    sizes = {}
    for T in (6, 24):
        g = tg.Graph()
        p, states, feeds = _gated_states(g, T, seed=3)
        entropy = sum(tg.sum(tg.softmax(s @ p["V"]) * tg.log_softmax(s @ p["V"]))
                      for s in states)
        smooth = sum(tg.sum((states[t] - states[t - 1]) * (states[t] - states[t - 1]))
                     for t in range(1, T))
        loss = entropy + smooth
        grads = tg.grad(loss, list(p.values()))
        fast = g.compile([loss, *grads], inputs=list(feeds))
        plain = g.compile([loss, *grads], inputs=list(feeds), optimize=False)
        got, want = fast(**feeds), plain(**feeds)
        hs = _numpy_states(p, feeds)
        reference = sum(float(np.sum(np.exp(_log_softmax(h @ p["V"].value))
                                     * _log_softmax(h @ p["V"].value))) for h in hs)
        reference += sum(float(np.sum((hs[t] - hs[t - 1]) ** 2)) for t in range(1, T))
        np.testing.assert_allclose(got[0], reference, rtol=1e-12)
        for a, b in zip(got[1:], want[1:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        sizes[T] = len(fast.plan.steps)
    assert sizes[6] == sizes[24], sizes



def test_a_layer_normalized_cell_rerolls_and_trains_like_numpy():
    # A custom cell that normalizes its pre-activation over the hidden axis (mean and
    # variance inside the step), trained on a Python sum of per-step losses.
    rng = np.random.default_rng(7)
    P = {"U": rng.normal(size=(D, H)), "W": rng.normal(size=(H, H)) * 0.5,
         "g": 1.0 + 0.1 * rng.normal(size=H), "V": rng.normal(size=(H, V))}
    sizes = {}
    for T in (5, 13):
        g = tg.Graph()
        p = {k: g.param(k, v.copy()) for k, v in P.items()}
        X, Y = g.input("X", shape=(T, None, D)), g.input("Y", shape=(T, None), dtype="int64")
        h, states = g.input("h0", shape=(None, H)), []
        for t in range(T):
            a = X[t] @ p["U"] + h @ p["W"]
            centred = a - tg.mean(a, axis=-1, keepdims=True)
            scale = tg.sqrt(tg.mean(centred * centred, axis=-1, keepdims=True) + 1e-5)
            h = tg.tanh(centred / scale * p["g"])
            states.append(h)
        loss = sum(tg.cross_entropy(s @ p["V"], Y[t]) for t, s in enumerate(states)) / T
        feeds = {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
                 "h0": np.zeros((B, H))}
        fetch = [loss, *tg.grad(loss, list(p.values()))]
        fast = g.compile(fetch, inputs=list(feeds))
        got, want = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        hv, reference = feeds["h0"], 0.0
        for t in range(T):
            a = feeds["X"][t] @ P["U"] + hv @ P["W"]
            c = a - a.mean(axis=-1, keepdims=True)
            hv = np.tanh(c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + 1e-5) * P["g"])
            reference += _mean_nll(hv @ P["V"], feeds["Y"][t]) / T
        np.testing.assert_allclose(got[0], reference, rtol=1e-12)
        _assert_same_gradients(got, want)
        assert "scan" in [s.node.op for s in fast.plan.steps]
        sizes[T] = len(fast.plan.steps)
    assert sizes[5] == sizes[13], sizes


@pytest.mark.parametrize("every", [2, 3])
def test_a_loss_on_every_kth_step_vectorizes_over_strided_rows(every):
    # A label every k steps (sparse supervision): the per-step work reads ys[0::k], a
    # view, and the plan no longer grows with T (it had one more node per loss term; a
    # loss on every other step trained 1.7x slower than one on every step at T=50).
    rng = np.random.default_rng(11)
    P = {"U": rng.normal(size=(D, H)), "W": rng.normal(size=(H, H)) * 0.5,
         "b": rng.normal(size=H), "V": rng.normal(size=(H, V))}
    sizes = {}
    for T in (13, 43):  # the last step labelled in both (one node more when it is not)
        g = tg.Graph()
        p = {k: g.param(k, v.copy()) for k, v in P.items()}
        X, Y = g.input("X", shape=(T, None, D)), g.input("Y", shape=(T, None), dtype="int64")
        h, states = g.input("h0", shape=(None, H)), []
        for t in range(T):
            h = tg.tanh(X[t] @ p["U"] + h @ p["W"] + p["b"])
            states.append(h)
        loss = sum(tg.cross_entropy(states[t] @ p["V"], Y[t]) for t in range(0, T, every))
        labelled = tg.stack(states[::every])  # also fetched: a stack of every k-th state
        feeds = {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
                 "h0": rng.normal(size=(B, H))}
        fetch = [loss, *tg.grad(loss, list(p.values())), labelled]
        fast = g.compile(fetch, inputs=list(feeds))
        got, want = fast(**feeds), g.compile(fetch, inputs=list(feeds), optimize=False)(**feeds)
        hv, hs = feeds["h0"], []
        for x in feeds["X"]:
            hv = np.tanh(x @ P["U"] + hv @ P["W"] + P["b"])
            hs.append(hv)
        reference = sum(_mean_nll(hs[t] @ P["V"], feeds["Y"][t]) for t in range(0, T, every))
        np.testing.assert_allclose(got[0], reference, rtol=1e-12)
        np.testing.assert_allclose(got[-1], np.stack(hs[::every]), rtol=1e-12)
        _assert_same_gradients(got[:-1], want[:-1])
        sizes[T] = len(fast.plan.steps)
    assert sizes[13] == sizes[43], sizes


def test_a_stack_of_one_run_of_rows_between_two_values_is_a_concat():
    # stack(a, X[0], …, X[n-1], b) reads the run as one slice: its size is constant in n.
    from tinygraph import passes

    sizes = []
    for n in (3, 9):
        g = tg.Graph()
        X, a, b = (g.input(k, shape=s) for k, s in (("X", (n, 2)), ("a", (2,)), ("b", (2,))))
        stacked = tg.stack([a, *[X[t] for t in range(n)], b]) * 2.0
        rewritten = passes.unstack_rows(g, [stacked])
        ops = [node.op for node in rewritten.nodes.values()]
        assert "stack" not in ops and ops.count("concat") == 1, ops
        sizes.append(len(ops))
        feeds = {"X": RNG_STACK.normal(size=(n, 2)), "a": np.ones(2), "b": -np.ones(2)}
        want = np.concatenate([feeds["a"][None], feeds["X"], feeds["b"][None]]) * 2.0
        np.testing.assert_array_equal(rewritten.run(rewritten.node(stacked.name), feeds), want)
    assert sizes[0] == sizes[1], sizes


RNG_STACK = np.random.default_rng(5)


def test_a_stack_of_rows_wrapping_around_the_end_is_left_a_stack():
    # X[0], X[-1], X[-2] are rows 0, n-1, n-2: not the slice X[0::-1] (one row).
    from tinygraph import passes

    g = tg.Graph()
    X = g.input("X", shape=(4, 2))
    picked = tg.stack([X[0], X[-1], X[-2]]) * 1.0
    rewritten = passes.unstack_rows(g, [picked])
    x = RNG_STACK.normal(size=(4, 2))
    np.testing.assert_array_equal(rewritten.run(rewritten.node(picked.name), {"X": x}),
                                  np.stack([x[0], x[-1], x[-2]]))


def test_the_custom_cells_benchmark_computes_what_its_numpy_loops_compute():
    # benchmarks/custom_cells.py (make bench) times four cells users write against numpy
    # loops of the same equations; here, at small sizes, the two agree.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "custom_cells.py"
    spec = importlib.util.spec_from_file_location("custom_cells_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X = np.random.default_rng(0).normal(size=(5, 3, 2))
    for name, cls in module.CELLS.items():
        net = rnn.unroll(cls(input_size=2, hidden_size=4, seed=1), 5)
        p = {k: v.value for k, v in net.params.items()}
        got = net.run(X)["states"]
        got = got[0] if isinstance(got, tuple) else got
        want = np.stack(module.numpy_forward(name, hidden=4)(X, p))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=name)

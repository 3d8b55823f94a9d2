"""Per-step values joined the ways PyTorch users join them read the stacked array.

``torch.cat(outputs)`` of per-step logits (and of their targets), a batch-first
``torch.stack(outputs, dim=1)``, a bidirectional pair whose per-step features are
concatenated and multiplied by a weight built inside the loop: each must optimize
to a plan that does not grow with T, with the loss equal to a numpy loop's and
the gradients equal to central differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph import passes

B, D, H, V = 3, 4, 5, 6
RNG = np.random.default_rng(21)
P0 = {"U": RNG.normal(size=(D, H)) * 0.5, "W": RNG.normal(size=(H, H)) * 0.5,
      "Ub": RNG.normal(size=(D, H)) * 0.5, "Wb": RNG.normal(size=(H, H)) * 0.5,
      "V": RNG.normal(size=(H, V)) * 0.5}
FORMS = ("cat logits", "cat states", "stack batch-first", "bidirectional, weight per step")


def _build(T, form, P):
    g = tg.Graph()
    p = {k: g.param(k, v.copy()) for k, v in P.items()}
    X, Y = g.input("X", shape=(T, None, D)), g.input("Y", shape=(T, None), dtype="int64")
    h, states = g.input("h0", shape=(None, H)), []
    for t in range(T):
        h = tg.tanh(X[t] @ p["U"] + h @ p["W"])
        states.append(h)
    if form == "cat logits":  # torch.cat(logits) against torch.cat(targets)
        loss = tg.cross_entropy(tg.concat([s @ p["V"] for s in states]),
                                tg.concat([Y[t] for t in range(T)]))
    elif form == "cat states":
        loss = tg.cross_entropy(tg.concat(states) @ p["V"], tg.reshape(Y, (-1,)))
    elif form == "stack batch-first":  # (B, T, V) logits against (B, T) targets
        loss = tg.cross_entropy(tg.stack([s @ p["V"] for s in states], axis=1),
                                tg.transpose(Y))
    else:
        h, backward = g.input("hb", shape=(None, H)), [None] * T
        for t in reversed(range(T)):
            h = tg.tanh(X[t] @ p["Ub"] + h @ p["Wb"])
            backward[t] = h
        loss = sum(tg.cross_entropy(tg.concat([f, b], axis=-1)
                                    @ tg.concat([p["V"], p["V"]]), Y[t])  # built every step
                   for t, (f, b) in enumerate(zip(states, backward, strict=True))) / T
    return g, p, loss


def _numpy_loss(T, form, P, feeds):
    def forward(U, W, h, steps):
        out = {}
        for t in steps:
            h = np.tanh(feeds["X"][t] @ P[U] + h @ P[W])
            out[t] = h
        return [out[t] for t in range(T)]

    def nll(z, y):
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    hs = forward("U", "W", feeds["h0"], range(T))
    if form != "bidirectional, weight per step":  # all steps' rows in one mean
        return nll(np.concatenate(hs) @ P["V"], feeds["Y"].reshape(-1))
    bs = forward("Ub", "Wb", feeds["hb"], reversed(range(T)))
    return sum(nll(np.concatenate([f, b], axis=-1) @ np.concatenate([P["V"], P["V"]]),
                   feeds["Y"][t]) for t, (f, b) in enumerate(zip(hs, bs, strict=True))) / T


def _feeds(T, rng):
    return {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
            "h0": rng.normal(size=(B, H)) * 0.5, "hb": rng.normal(size=(B, H)) * 0.5}


@pytest.mark.parametrize("form", FORMS)
def test_a_loss_on_joined_per_step_values_trains_like_numpy_with_a_constant_plan(form):
    sizes = {}
    for T in (4, 11):
        g, p, loss = _build(T, form, P0)
        feeds = {k: v for k, v in _feeds(T, np.random.default_rng(T)).items() if k in g.nodes}
        fast = g.compile([loss, *tg.grad(loss, list(p.values()))], inputs=list(feeds))
        got = fast(**feeds)
        np.testing.assert_allclose(got[0], _numpy_loss(T, form, P0, feeds), rtol=1e-12)
        for (name, value), grad in zip(P0.items(), got[1:], strict=True):
            numeric = np.zeros_like(value)
            for i in np.ndindex(value.shape):
                for sign in (1.0, -1.0):
                    moved = {**P0, name: value.copy()}
                    moved[name][i] += sign * 1e-6
                    numeric[i] += sign * _numpy_loss(T, form, moved, feeds) / 2e-6
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
        sizes[T] = len(fast.plan.steps)
    assert sizes[4] == sizes[11], sizes


def _rows_graph(join):
    g = tg.Graph()
    X = g.input("X", shape=(3, None, 2))
    return g, join([X[0], X[1], X[2]]) * 2.0


@pytest.mark.parametrize("join, want", [
    (lambda rows: tg.stack(rows, axis=1), lambda x: np.stack(list(x), axis=1)),
    (lambda rows: tg.stack(rows, axis=-1), lambda x: np.stack(list(x), axis=-1)),
    (lambda rows: tg.concat(rows), lambda x: np.concatenate(list(x))),
    (lambda rows: tg.concat(rows[::-1]), lambda x: np.concatenate(list(x)[::-1])),
])
def test_rows_joined_along_any_axis_read_the_array(join, want):
    g, joined = _rows_graph(join)
    rewritten = passes.unstack_rows(g, [joined])
    ops = [n.op for n in rewritten.nodes.values()]
    assert "stack" not in ops and "concat" not in ops, ops
    x = RNG.normal(size=(3, 4, 2))
    np.testing.assert_array_equal(rewritten.run(rewritten.node(joined.name), {"X": x}),
                                  want(x) * 2.0)


def test_rows_concatenated_along_an_unknown_axis_are_left_joined():
    # concat along axis 1 of (None, 2) rows would need a reshape with two unknown sizes.
    g, joined = _rows_graph(lambda rows: tg.concat(rows, axis=1))
    rewritten = passes.unstack_rows(g, [joined])
    assert "concat" in [n.op for n in rewritten.nodes.values()]
    x = RNG.normal(size=(3, 4, 2))
    np.testing.assert_array_equal(rewritten.run(rewritten.node(joined.name), {"X": x}),
                                  np.concatenate(list(x), axis=1) * 2.0)

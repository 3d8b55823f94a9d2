"""Backpropagation through time = tg.grad on an unrolled cell, against independent references.

- The seed's vanilla RNN with a mean cross-entropy loss against backpropagation
  through time written out by hand in numpy below (to 1e-10).
- RNN, GRU and LSTM against PyTorch's autograd, through the golden files of
  ``tests/data/make_torch_golden.py`` (loss ``sum(outputs * R)``, to 1e-8).
- A custom cell against central differences: no hand-written BPTT anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

DATA = Path(__file__).parent / "data"


def seed_rnn_bptt(P, xs, s0, targets):  # noqa: N803
    """Loss and gradients of the seed's vanilla RNN by hand-written BPTT.

    s_t = tanh(x_t U + s_{t-1} W + b), o_t = softmax(s_t V + c),
    loss = mean over steps and batch of -log o_t[target]. xs (T, B, D), s0 (B, H),
    targets (T, B). Returns (loss, {U, W, b, V, c, xs, s0}).
    """
    U, W, b, V, c = P["U"], P["W"], P["b"], P["V"], P["c"]  # noqa: N806
    T, B = targets.shape  # noqa: N806
    states, probs = [s0], []
    for t in range(T):
        states.append(np.tanh(xs[t] @ U + states[-1] @ W + b))
        z = states[-1] @ V + c
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(z / z.sum(axis=1, keepdims=True))
    rows = np.arange(B)
    loss = -sum(np.log(probs[t][rows, targets[t]]).sum() for t in range(T)) / (T * B)
    d = {k: np.zeros_like(v) for k, v in P.items()}
    d["xs"] = np.zeros_like(xs)
    carry = np.zeros_like(s0)
    for t in reversed(range(T)):
        dz = probs[t].copy()
        dz[rows, targets[t]] -= 1.0
        dz /= T * B
        d["V"] += states[t + 1].T @ dz
        d["c"] += dz.sum(axis=0)
        da = (dz @ V.T + carry) * (1.0 - states[t + 1] ** 2)
        d["U"] += xs[t].T @ da
        d["W"] += states[t].T @ da
        d["b"] += da.sum(axis=0)
        d["xs"][t] = da @ U.T
        carry = da @ W.T
    d["s0"] = carry
    return loss, d


@pytest.mark.parametrize("steps, batch", [(1, 1), (7, 3), (40, 2)])
def test_vanilla_rnn_bptt_equals_hand_written_numpy(steps, batch):
    rng = np.random.default_rng(steps * 10 + batch)
    D, H, O = 5, 6, 4  # noqa: N806, E741
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=3)
    cell.params = {**cell.params, "b": rng.normal(size=H) * 0.1, "c": rng.normal(size=O) * 0.1}
    net = rnn.unroll(cell, steps=steps)
    g = net.graph
    targets = rng.integers(0, O, size=(steps, batch))
    # Per-step cross-entropies averaged over steps: fan-out of every param over T steps.
    step_losses = [tg.cross_entropy(z, targets[t]) for t, z in enumerate(net.logits)]
    loss = step_losses[0]
    for term in step_losses[1:]:
        loss = loss + term
    loss = loss / float(steps)
    names = ["U", "W", "b", "V", "c"]
    s0 = net.initial_state
    grads = tg.grad(loss, [net.params[k] for k in names] + net.inputs + [s0])
    xs = rng.normal(size=(steps, batch, D))
    s0_value = rng.normal(size=(batch, H)) * 0.5
    feeds = {x: xs[t] for t, x in enumerate(net.inputs)} | {s0: s0_value}
    got_loss, *got = g.run([loss, *grads], feeds)
    want_loss, want = seed_rnn_bptt(cell.params, xs, s0_value, targets)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12)
    for k, value in zip(names, got[:5], strict=True):
        np.testing.assert_allclose(value, want[k], rtol=1e-10, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(np.stack(got[5:-1]), want["xs"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got[-1], want["s0"], rtol=1e-10, atol=1e-14)


def test_default_initial_state_broadcasts_and_gets_summed_gradient():
    # s0 defaults to zeros of shape (1, H) broadcast over the batch: its gradient must be
    # the batch-sum of the per-row gradients, which the (B, H)-fed case provides.
    rng = np.random.default_rng(5)
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=1)
    net = rnn.unroll(cell, steps=4)
    targets = rng.integers(0, 3, size=(4, 2))
    loss = tg.cross_entropy(tg.stack(net.logits), targets)
    gs0 = tg.grad(loss, net.initial_state)
    xs = rng.normal(size=(4, 2, 3))
    feeds = {x: xs[t] for t, x in enumerate(net.inputs)}
    _, want = seed_rnn_bptt(cell.params, xs, np.zeros((2, 4)), targets)
    got = net.graph.run(gs0, feeds)
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got[0], want["s0"].sum(axis=0), rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------ PyTorch goldens


def load_golden(kind, prefix):
    with np.load(DATA / f"torch_golden_{kind}.npz", allow_pickle=False) as f:
        return {k[len(prefix) + 1:]: f[k] for k in f.files if k.startswith(prefix + "_")}


CELLS = {"rnn": rnn.VanillaRNNCell, "gru": rnn.GRUCell, "lstm": rnn.LSTMCell}
# Our param name -> (golden gradient key, transposed?): from_torch stores W_ih = weight_ih.T.
LAYOUT = {
    "rnn": {"U": ("grad_weight_ih", True), "W": ("grad_weight_hh", True),
            "b": ("grad_bias_ih", False)},  # b = b_ih + b_hh: both have dL/db as gradient
    "gru": {"W_ih": ("grad_weight_ih", True), "W_hh": ("grad_weight_hh", True),
            "b_ih": ("grad_bias_ih", False), "b_hh": ("grad_bias_hh", False)},
}
LAYOUT["lstm"] = LAYOUT["gru"]


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("prefix", ["batched", "unbatched"])
def test_gradients_equal_pytorch_golden(kind, prefix):
    gold = load_golden(kind, prefix)
    cell = CELLS[kind].from_torch(gold["weight_ih"], gold["weight_hh"], gold["bias_ih"],
                                  gold["bias_hh"])
    steps = gold["xs"].shape[0]
    net = rnn.unroll(cell, steps=steps)
    g = net.graph
    batched = prefix == "batched"
    R = gold["R"] if batched else gold["R"][:, None]  # noqa: N806
    loss = tg.sum(tg.stack(net.outputs) * R)
    starts = [net.initial_state] if kind != "lstm" else list(net.initial_state)
    names = list(LAYOUT[kind])
    grads = tg.grad(loss, [net.params[k] for k in names] + net.inputs + starts)
    feeds = {x: gold["xs"][t] if batched else gold["xs"][t][None]
             for t, x in enumerate(net.inputs)}
    for node, key in zip(starts, ["h0", "c0"], strict=False):
        feeds[node] = gold[key] if batched else gold[key][None]
    got = g.run(grads, feeds)
    for name, value in zip(names, got, strict=False):
        key, transposed = LAYOUT[kind][name]
        want = gold[key].T if transposed else gold[key]
        np.testing.assert_allclose(value, want, rtol=1e-8, atol=1e-12, err_msg=name)
    if kind == "rnn":  # torch's two biases have the same gradient, which is b's
        np.testing.assert_allclose(gold["grad_bias_hh"], gold["grad_bias_ih"], rtol=1e-12)
    rest = got[len(names):]
    grad_xs = np.stack(rest[:steps])
    np.testing.assert_allclose(grad_xs if batched else grad_xs[:, 0], gold["grad_xs"],
                               rtol=1e-8, atol=1e-12)
    for value, key in zip(rest[steps:], ["grad_h0", "grad_c0"], strict=False):
        np.testing.assert_allclose(value if batched else value[0], gold[key], rtol=1e-8,
                                   atol=1e-12, err_msg=key)


# --------------------------------------------------------------- custom cell


class GatedReluCell(rnn.Cell):
    """h' = g * relu(x A + h B) + (1 - g) * h, g = sigmoid(x G): no one wrote its BPTT."""

    def declare(self):
        D, H = self.input_size, self.hidden_size  # noqa: N806
        return {"A": rnn.ParamSpec((D, H)), "B": rnn.ParamSpec((H, H)),
                "G": rnn.ParamSpec((D, H))}

    def step(self, x, h, p):
        gate = tg.sigmoid(x @ p["G"])
        h_new = gate * tg.relu(x @ p["A"] + h @ p["B"]) + (1.0 - gate) * h
        return h_new, h_new


def test_custom_cell_gradients_equal_central_differences():
    rng = np.random.default_rng(11)
    net = rnn.unroll(GatedReluCell(input_size=3, hidden_size=4, seed=2), steps=6)
    g = net.graph
    loss = tg.sum(tg.stack(net.outputs) * rng.normal(size=(6, 2, 4)))
    params = list(net.params.values())
    grads = tg.grad(loss, params)
    feeds = {x: rng.normal(size=(2, 3)) for x in net.inputs}
    got = g.run(grads, feeds)
    for param, value in zip(params, got, strict=True):
        want = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            original = param.value[idx]
            sides = []
            for step in (1e-6, -1e-6):
                param.value[idx] = original + step
                sides.append(float(g.run(loss, feeds)))
            param.value[idx] = original
            want[idx] = (sides[0] - sides[1]) / 2e-6
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-7, err_msg=param.name)

"""The benchmarked workloads, written every way the benchmark compares.

The task everywhere: the seed's vanilla RNN over a sequence of one-hot
inputs, ``s_t = tanh(x_t @ U + s_{t-1} @ W + b)``, ``o_t = softmax(s_t @ V + c)``;
forward returns the outputs and states of every step; forward+backward also
returns the mean cross-entropy over all steps and its gradients for
U, W, b, V, c.

Each ``make_*`` function takes a :class:`Problem` and returns a zero-argument
callable that does the whole job once (so the harness can interleave them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.core.arrays import aligned_copy


@dataclass
class Problem:
    name: str
    steps: int
    batch: int
    vocab: int
    hidden: int

    def data(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, self.vocab, size=(self.steps, self.batch))
        targets = rng.integers(0, self.vocab, size=(self.steps, self.batch))
        xs = np.eye(self.vocab)[ids]  # (T, B, V) one-hot
        scale_in, scale_h = 1 / np.sqrt(self.vocab), 1 / np.sqrt(self.hidden)
        params = {
            "U": rng.uniform(-scale_in, scale_in, (self.vocab, self.hidden)),
            "W": rng.uniform(-scale_h, scale_h, (self.hidden, self.hidden)),
            "b": rng.uniform(-scale_h, scale_h, self.hidden),
            "V": rng.uniform(-scale_h, scale_h, (self.hidden, self.vocab)),
            "c": rng.uniform(-scale_h, scale_h, self.vocab),
        }
        return xs, targets, params


PROBLEMS = [
    Problem("W1", steps=50, batch=1, vocab=64, hidden=128),
    Problem("W2", steps=100, batch=32, vocab=64, hidden=256),
    Problem("W3", steps=1000, batch=1, vocab=8, hidden=8),
]


def aligned(P: dict) -> dict:
    """The params copied to 64-byte boundaries (numpy aligns to 16 bytes only)."""
    return {k: aligned_copy(v) for k, v in P.items()}


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------ numpy


def numpy_loop(p: Problem, xs, targets, P):
    """The plain hand-written loop: the reference every ratio divides by."""
    U, W, b, V, c = (P[k] for k in "UWbVc")

    def forward():
        s = np.zeros((p.batch, p.hidden))
        outs, states = [], []
        for t in range(p.steps):
            s = np.tanh(xs[t] @ U + s @ W + b)
            outs.append(_softmax(s @ V + c))
            states.append(s)
        return outs, states

    return forward


def numpy_hoisted(p: Problem, xs, targets, P):
    """Projections hoisted out of the loop by hand: one matmul for x @ U, one for S @ V."""
    U, W, b, V, c = (P[k] for k in "UWbVc")

    def forward():
        xu = (xs.reshape(-1, p.vocab) @ U + b).reshape(p.steps, p.batch, p.hidden)
        states = np.empty((p.steps, p.batch, p.hidden))
        s = np.zeros((p.batch, p.hidden))
        for t in range(p.steps):
            s = np.tanh(xu[t] + s @ W)
            states[t] = s
        outs = _softmax(states @ V + c)
        return outs, states

    return forward


def numpy_bptt(p: Problem, xs, targets, P):
    """Hand-written forward + backpropagation through time of the mean cross-entropy."""
    U, W, b, V, c = (P[k] for k in "UWbVc")
    T, B = p.steps, p.batch
    n = T * B

    def forward_backward():
        s = np.zeros((B, p.hidden))
        states, probs = [s], []
        loss = 0.0
        for t in range(T):
            s = np.tanh(xs[t] @ U + s @ W + b)
            o = _softmax(s @ V + c)
            states.append(s)
            probs.append(o)
            loss -= np.log(o[np.arange(B), targets[t]]).sum()
        grads = {k: np.zeros_like(v) for k, v in P.items()}
        ds_next = np.zeros((B, p.hidden))
        for t in reversed(range(T)):
            do = probs[t].copy()
            do[np.arange(B), targets[t]] -= 1.0
            do /= n
            grads["V"] += states[t + 1].T @ do
            grads["c"] += do.sum(axis=0)
            ds = do @ V.T + ds_next
            dz = ds * (1.0 - states[t + 1] ** 2)
            grads["U"] += xs[t].T @ dz
            grads["W"] += states[t].T @ dz
            grads["b"] += dz.sum(axis=0)
            ds_next = dz @ W.T
        return loss / n, grads

    return forward_backward


# ------------------------------------------------------- seed-style gates


class MultiplyGate:
    def forward(self, W, x):
        return np.dot(x, W)


class AddGate:
    def forward(self, x1, x2):
        return x1 + x2


class Tanh:
    def forward(self, x):
        return np.tanh(x)


class Softmax:
    def predict(self, x):
        exp_scores = np.exp(x - x.max(axis=-1, keepdims=True))
        return exp_scores / np.sum(exp_scores, axis=-1, keepdims=True)


class RNNLayer:
    """The seed text's layer: one object per time step composing gate objects."""

    def forward(self, x, prev_s, U, W, V, b, c, mul, add, act, out):
        self.mulu = mul.forward(U, x)
        self.mulw = mul.forward(W, prev_s)
        self.add = add.forward(add.forward(self.mulw, self.mulu), b)
        self.s = act.forward(self.add)
        self.mulv = add.forward(mul.forward(V, self.s), c)
        self.o = out.predict(self.mulv)


def seed_gates(p: Problem, xs, targets, P):
    U, W, b, V, c = (P[k] for k in "UWbVc")
    mul, add, act, out = MultiplyGate(), AddGate(), Tanh(), Softmax()

    def forward():
        layers = []
        prev_s = np.zeros((p.batch, p.hidden))
        for t in range(p.steps):
            layer = RNNLayer()
            layer.forward(xs[t], prev_s, U, W, V, b, c, mul, add, act, out)
            prev_s = layer.s
            layers.append(layer)
        return [la.o for la in layers], [la.s for la in layers]

    return forward


# -------------------------------------------------------------- tinygraph


def tinygraph_net(p: Problem, P, mode: str = "optimized"):
    """mode "… sequence": one (T, B, V) input (``unroll(..., sequence=True)``);
    "… ids": one (T, B) input of integer ids (``ids=True, sequence=True``);
    otherwise T step inputs of one-hot rows."""
    cell = rnn.VanillaRNNCell(input_size=p.vocab, hidden_size=p.hidden, output_size=p.vocab)
    cell.params = P
    ids = mode.endswith("ids")
    return rnn.unroll(cell, steps=p.steps, ids=ids, sequence=ids or mode.endswith("sequence"))


def tinygraph_forward(p: Problem, xs, targets, P, mode: str):
    """mode: "interpreted" (optimize=False), "compiled" (plan, no passes), "optimized",
    "optimized, sequence", "optimized, ids" (see :func:`tinygraph_net`)."""
    net = tinygraph_net(p, P, mode)
    # Fetch the whole sequences as (T, B, ·) arrays, as the numpy variants return them.
    fetches = {"outputs": tg.stack(net.outputs), "states": tg.stack(net.states)}
    feeds = tinygraph_feeds(p, net, xs)
    if mode == "interpreted":
        return lambda: net.graph.run(fetches, feeds, optimize=False)
    fn = net.graph.compile(fetches, inputs=list(feeds), optimize=mode.startswith("optimized"))
    return lambda: fn(**feeds)


def tinygraph_loss(p: Problem, net):
    """Mean cross-entropy over all steps and batch rows: one op on the stacked logits."""
    targets = net.graph.input("targets", shape=(p.steps, None), dtype="int64")
    return tg.cross_entropy(tg.stack(net.logits), targets)


def tinygraph_feeds(p: Problem, net, xs) -> dict:
    if net.ids:
        xs = xs.argmax(axis=-1)  # the one-hot rows as ids
    if net.sequence is not None:
        feeds = {net.sequence.name: xs}
    else:
        feeds = {node.name: xs[k] for k, node in enumerate(net.inputs)}
    feeds[net.initial_state.name] = np.zeros((p.batch, p.hidden))
    return feeds


def tinygraph_backward(p: Problem, xs, targets, P, mode: str):
    net = tinygraph_net(p, P, mode)
    loss = tinygraph_loss(p, net)
    params = [net.params[k] for k in "UWbVc"]
    grads = tg.grad(loss, params)
    feeds = tinygraph_feeds(p, net, xs)
    feeds["targets"] = targets
    fetches = [loss, *grads]
    if mode == "interpreted":
        return lambda: net.graph.run(fetches, feeds, optimize=False)
    fn = net.graph.compile(fetches, inputs=list(feeds), optimize=mode.startswith("optimized"))
    return lambda: fn(**feeds)


# ---------------------------------------------------------------- PyTorch


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_setup(p: Problem, xs, P):
    import torch

    torch.set_num_threads(1)
    layer = torch.nn.RNN(p.vocab, p.hidden, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(P["U"].T))
        layer.weight_hh_l0.copy_(torch.from_numpy(P["W"].T))
        layer.bias_ih_l0.copy_(torch.from_numpy(P["b"]))
        layer.bias_hh_l0.zero_()
    V = torch.from_numpy(P["V"].copy()).requires_grad_()
    c = torch.from_numpy(P["c"].copy()).requires_grad_()
    return torch, layer, V, c, torch.from_numpy(xs)


def torch_fused(p: Problem, xs, targets, P, backward: bool = False):
    torch, layer, V, c, x = _torch_setup(p, xs, P)
    tgt = torch.from_numpy(targets)

    def forward():
        with torch.set_grad_enabled(backward):
            states, _ = layer(x)
            logits = states @ V + c
            if not backward:
                return torch.softmax(logits, -1), states
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, p.vocab), tgt.reshape(-1))
            return torch.autograd.grad(loss, [*layer.parameters(), V, c])

    return forward


def torch_eager(p: Problem, xs, targets, P, backward: bool = False):
    torch, _, V, c, x = _torch_setup(p, xs, P)
    U = torch.from_numpy(P["U"].copy()).requires_grad_()
    W = torch.from_numpy(P["W"].copy()).requires_grad_()
    b = torch.from_numpy(P["b"].copy()).requires_grad_()
    tgt = torch.from_numpy(targets)

    def forward():
        with torch.set_grad_enabled(backward):
            s = torch.zeros(p.batch, p.hidden, dtype=torch.float64)
            outs, states = [], []
            for t in range(p.steps):
                s = torch.tanh(x[t] @ U + s @ W + b)
                logits = s @ V + c
                outs.append(logits if backward else torch.softmax(logits, -1))
                states.append(s)
            if not backward:
                return outs, states
            logits = torch.stack(outs).reshape(-1, p.vocab)
            loss = torch.nn.functional.cross_entropy(logits, tgt.reshape(-1))
            return torch.autograd.grad(loss, [U, W, b, V, c])

    return forward

"""Cells users write themselves, none of which the optimizer was tuned on.

Four common ways to write a recurrent cell from primitives — one weight over
``concat([x, h])``, a layer-normalized tanh RNN, an LSTM with a weight per
gate, a leaky ReLU cell with a residual — each unrolled with ``rnn.unroll``
and run the way users run them:

- forward, ``net.run(X)``, against a plain numpy loop of the same equations;
- forward+backward of a linear head and a per-step mean cross-entropy, against
  the same equations as a PyTorch eager loop (autograd through T steps).

T=100, B=32, D=64, H=128, V=64, float64, one BLAS thread, interleaved medians
(``general.median_times``). Each pair is checked to agree (values, gradients)
before it is timed.

    python benchmarks/custom_cells.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import tinygraph as tg
import tinygraph_rnn as rnn

sys.path.insert(0, str(Path(__file__).parent))
from general import median_times, per_step_training  # noqa: E402

T, B, D, H, V = 100, 32, 64, 128, 64


class ConcatRNN(rnn.Cell):
    """``tanh([x | h] @ W + b)``: one weight over the joined input and state."""

    def declare(self):
        return {"W": rnn.ParamSpec((self.input_size + self.hidden_size, self.hidden_size)),
                "b": rnn.ParamSpec((self.hidden_size,), init="zeros")}

    def step(self, x, h, p):
        h = tg.tanh(tg.concat([x, h], axis=1) @ p["W"] + p["b"])
        return h, h


class LayerNormRNN(rnn.Cell):
    """A tanh RNN whose pre-activation is layer-normalized (gain and bias)."""

    def declare(self):
        d, h = self.input_size, self.hidden_size
        return {"U": rnn.ParamSpec((d, h)), "W": rnn.ParamSpec((h, h)),
                "g": rnn.ParamSpec((h,), init="ones"), "b": rnn.ParamSpec((h,), init="zeros")}

    def step(self, x, h, p):
        z = x @ p["U"] + h @ p["W"]
        centred = z - tg.mean(z, axis=1, keepdims=True)
        var = tg.mean(centred * centred, axis=1, keepdims=True)
        h = tg.tanh(centred / tg.sqrt(var + 1e-5) * p["g"] + p["b"])
        return h, h


class PerGateLSTM(rnn.Cell):
    """An LSTM written gate by gate, a weight pair per gate (not the fused LSTMCell)."""

    state_names = ("h", "c")

    def declare(self):
        d, h = self.input_size, self.hidden_size
        specs = {}
        for gate in "ifoc":
            specs[f"W{gate}"] = rnn.ParamSpec((d, h))
            specs[f"U{gate}"] = rnn.ParamSpec((h, h))
            specs[f"b{gate}"] = rnn.ParamSpec((h,), init="zeros")
        return specs

    def step(self, x, state, p):
        h, c = state

        def gate(k):
            return x @ p[f"W{k}"] + h @ p[f"U{k}"] + p[f"b{k}"]

        i, f, o = tg.sigmoid(gate("i")), tg.sigmoid(gate("f")), tg.sigmoid(gate("o"))
        c = f * c + i * tg.tanh(gate("c"))
        h = o * tg.tanh(c)
        return (h, c), h


class ResidualReLU(rnn.Cell):
    """``0.5 h + relu(x U + h W + b)``: no transcendental function at all."""

    def declare(self):
        d, h = self.input_size, self.hidden_size
        return {"U": rnn.ParamSpec((d, h)), "W": rnn.ParamSpec((h, h)),
                "b": rnn.ParamSpec((h,), init="zeros")}

    def step(self, x, h, p):
        h = 0.5 * h + tg.relu(x @ p["U"] + h @ p["W"] + p["b"])
        return h, h


def _sigmoid(z, xp):
    return 1.0 / (1.0 + xp.exp(-z))


def equations(name: str, xp, cat, mean, relu):
    """One step of each cell, written once for numpy and torch (``xp`` the module)."""
    if name == "concat":
        return lambda x, h, p: xp.tanh(cat([x, h]) @ p["W"] + p["b"])
    if name == "layer norm":
        def ln(x, h, p):
            z = x @ p["U"] + h @ p["W"]
            centred = z - mean(z)
            return xp.tanh(centred / xp.sqrt(mean(centred * centred) + 1e-5) * p["g"] + p["b"])
        return ln
    if name == "per-gate LSTM":
        def lstm(x, state, p):
            h, c = state

            def gate(k):
                return x @ p[f"W{k}"] + h @ p[f"U{k}"] + p[f"b{k}"]

            i, f, o = (_sigmoid(gate(k), xp) for k in "ifo")
            c = f * c + i * xp.tanh(gate("c"))
            return o * xp.tanh(c), c
        return lstm
    return lambda x, h, p: 0.5 * h + relu(x @ p["U"] + h @ p["W"] + p["b"])


CELLS = {"concat": ConcatRNN, "layer norm": LayerNormRNN, "per-gate LSTM": PerGateLSTM,
         "residual ReLU": ResidualReLU}


def numpy_forward(name: str, hidden: int = H):
    step = equations(name, np, lambda v: np.concatenate(v, axis=1),
                     lambda z: z.mean(axis=1, keepdims=True), lambda z: np.maximum(z, 0.0))
    two = name == "per-gate LSTM"

    def run(X, p):
        zeros = np.zeros((X.shape[1], hidden))
        state = (zeros, zeros) if two else zeros
        out = []
        for x in X:
            state = step(x, state, p)
            out.append(state[0] if two else state)
        return out

    return run


def forward_row(name: str, X) -> tuple[str, float]:
    net = rnn.unroll(CELLS[name](input_size=D, hidden_size=H, seed=0), T)
    p = {k: v.value for k, v in net.params.items()}
    ref = numpy_forward(name)
    got = net.run(X)["states"]
    got = got[0] if isinstance(got, tuple) else got
    diff = float(np.abs(got - np.stack(ref(X, p))).max())
    if diff > 1e-12:
        raise AssertionError(f"{name}: net.run and the numpy loop differ by {diff:.2e}")
    times = median_times({"numpy": lambda: ref(X, p), "net.run": lambda: net.run(X)})
    return f"{name} forward, `net.run`", times["net.run"] / times["numpy"]


def training_row(name: str, X, Y, torch) -> tuple[str, float]:
    net = rnn.unroll(CELLS[name](input_size=D, hidden_size=H, seed=0), T)
    fn, feeds, params = per_step_training(net, X, Y, V, np.random.default_rng(1))
    tp = {n.name: torch.tensor(n.value, requires_grad=True) for n in params}
    xt, yt = torch.tensor(X), torch.tensor(Y)
    step = equations(name, torch, lambda v: torch.cat(v, 1),
                     lambda z: z.mean(1, keepdim=True), torch.relu)
    two = name == "per-gate LSTM"

    def torch_step():
        for q in tp.values():
            q.grad = None
        zeros = torch.zeros(B, H, dtype=torch.float64)
        state, total = ((zeros, zeros) if two else zeros), 0.0
        for t in range(T):
            state = step(xt[t], state, tp)
            h = state[0] if two else state
            total = total + torch.nn.functional.cross_entropy(h @ tp["V_out"] + tp["c_out"],
                                                              yt[t])
        (total / T).backward()
        return float(total.detach()) / T

    ours, theirs = fn(**feeds), torch_step()
    grad_diff = max(float(np.abs(a - tp[n.name].grad.numpy()).max())
                    for a, n in zip(ours[1:], params, strict=True))
    if abs(float(ours[0]) - theirs) > 1e-12 or grad_diff > 1e-12:
        raise AssertionError(f"{name}: tinygraph and torch differ (loss {ours[0]!r} vs "
                             f"{theirs!r}, gradients by {grad_diff:.2e})")
    times = median_times({"torch": torch_step, "tinygraph": lambda: fn(**feeds)})
    return f"{name} forward+backward, loss per step", times["tinygraph"] / times["torch"]


def main() -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(T, B, D)), rng.integers(0, V, (T, B))
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rows = []
    with threadpool_limits(1):
        for name in CELLS:
            rows.append((*forward_row(name, X), "numpy loop"))
            if torch is not None:
                rows.append((*training_row(name, X, Y, torch), "PyTorch eager loop"))
    print(f"Cells written by users (T={T}, B={B}, D={D}, H={H}, V={V}, float64, one thread)")
    print("| cell, run as | tinygraph / reference | reference |\n|---|---:|---|")
    for row, ratio, ref in rows:
        print(f"| {row} | {ratio:.2f} | {ref} |")


if __name__ == "__main__":
    main()

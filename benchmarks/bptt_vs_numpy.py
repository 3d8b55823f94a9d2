"""One forward+backward of the vanilla character LM: tinygraph vs hand-written numpy BPTT.

The network is the seed's vanilla RNN (``s_t = tanh(x_t U + s_{t-1} W + b)``,
``o_t = softmax(s_t V + c)``, loss = mean cross-entropy over the steps) with
T = 50 steps, batch 1, a one-hot vocabulary of 64 and 128 hidden units.
tinygraph differentiates the unrolled graph with ``tg.grad``; the reference
is backpropagation through time written out by hand in numpy below. Both run
in this process, interleaved, and the script first checks they agree.

    python benchmarks/bptt_vs_numpy.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tinygraph as tg
import tinygraph_rnn as rnn

T, VOCAB, HIDDEN = 50, 64, 128
NAMES = ("U", "W", "b", "V", "c")


def numpy_bptt(P: dict, xs: np.ndarray, targets: np.ndarray):  # noqa: N803
    """Loss and gradients (dict) of the seed's RNN by explicit BPTT.

    xs (T, B, D) one-hot rows, targets (T, B) ids; the initial state is zeros.
    """
    U, W, b, V, c = (P[k] for k in NAMES)  # noqa: N806
    steps, batch = targets.shape
    s = np.zeros((batch, W.shape[0]))
    states, probs = [s], []
    for t in range(steps):
        s = np.tanh(xs[t] @ U + s @ W + b)
        z = s @ V + c
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        states.append(s)
        probs.append(e / e.sum(axis=-1, keepdims=True))
    rows = np.arange(batch)
    loss = -np.mean([np.log(p[rows, y]) for p, y in zip(probs, targets, strict=True)])
    grads = {k: np.zeros_like(v) for k, v in P.items()}
    ds_next = np.zeros((batch, W.shape[0]))
    for t in range(steps - 1, -1, -1):
        dz = probs[t].copy()
        dz[rows, targets[t]] -= 1.0
        dz /= steps * batch
        grads["V"] += states[t + 1].T @ dz
        grads["c"] += dz.sum(axis=0)
        da = (dz @ V.T + ds_next) * (1.0 - states[t + 1] ** 2)
        grads["U"] += xs[t].T @ da
        grads["W"] += states[t].T @ da
        grads["b"] += da.sum(axis=0)
        ds_next = da @ W.T
    return loss, grads


def build_tinygraph(seed: int = 0):
    """The unrolled LM, its loss and gradient nodes, and a compiled plan over both."""
    cell = rnn.VanillaRNNCell(input_size=VOCAB, hidden_size=HIDDEN, output_size=VOCAB, seed=seed)
    net = rnn.unroll(cell, steps=T)
    g = net.graph
    targets = g.input("targets", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(net.logits), targets)
    grads = tg.grad(loss, [net.params[k] for k in NAMES])
    fn = g.compile([loss, *grads], inputs=[*net.inputs, targets])
    return net, fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=T + 1)
    xs = np.eye(VOCAB)[ids[:-1]][:, None, :]  # (T, 1, V) one-hot
    targets = ids[1:, None]  # (T, 1)

    t0 = time.perf_counter()
    net, fn = build_tinygraph()
    build = time.perf_counter() - t0
    params = {k: net.params[k].value for k in NAMES}

    def run_tinygraph():
        return fn(*xs, targets)

    def run_numpy():
        return numpy_bptt(params, xs, targets)

    got, (want_loss, want) = run_tinygraph(), run_numpy()
    assert abs(float(got[0]) - want_loss) < 1e-12
    for k, value in zip(NAMES, got[1:], strict=True):
        np.testing.assert_allclose(value, want[k], rtol=1e-10, atol=1e-13)

    times: dict[str, list[float]] = {"tinygraph": [], "numpy": []}
    for _ in range(args.rounds):  # interleaved, so drifts in machine load hit both alike
        for name, fn_ in (("tinygraph", run_tinygraph), ("numpy", run_numpy)):
            start = time.perf_counter()
            fn_()
            times[name].append(time.perf_counter() - start)
    tg_ms = statistics.median(times["tinygraph"]) * 1e3
    np_ms = statistics.median(times["numpy"]) * 1e3
    print(f"vanilla LM forward+backward, T={T}, batch 1, vocab {VOCAB}, hidden {HIDDEN}, "
          f"median of {args.rounds}")
    print(f"  graph: {len(net.graph)} nodes (built and differentiated in {build:.2f} s)")
    print(f"  tinygraph compiled plan : {tg_ms:8.2f} ms")
    print(f"  hand-written numpy BPTT : {np_ms:8.2f} ms")
    print(f"  ratio tinygraph / numpy : {tg_ms / np_ms:8.2f}x  (gradients agree to 1e-10)")


if __name__ == "__main__":
    main()

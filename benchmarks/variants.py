"""The same training step written many ways: does the optimizer find the loop every time?

Each row builds a recurrent net and a loss the way some user might (plain
Python loops over rows, batch-first columns, inputs made before the loop, a
first step written apart, a backward loop, two layers, a bidirectional pair, a
``tg.scan`` with the loss in its carry; per-step losses summed with ``+``, ``-``,
Python's ``sum``, weighted per step, next-token, padded with ``ignore_index``,
written with ``gather``, or one loss on the per-step logits joined PyTorch's ways:
``concat`` along the batch, ``stack`` batch-first…), then compiles
``[loss, *tg.grad(loss, params)]`` twice: optimized (the default) and as built
(``optimize=False``, the plain plan: one numpy call per node, which is what a
numpy loop of the same maths costs).

Columns: the plan's step count at T=20 and at T=200 (equal when the loop was
rerolled and the per-step work vectorized: nothing left that grows with T),
and optimized / plain time at T=200 (medians of interleaved rounds, one BLAS
thread; lower is better). Values are checked equal first (1e-9 relative).

    python benchmarks/variants.py            # prints a markdown table
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import tinygraph as tg

sys.path.insert(0, str(Path(__file__).parent))
from general import median_times  # noqa: E402

B, D, H, V = 16, 32, 64, 20


def _params(g: tg.Graph, rng: np.random.Generator) -> dict:
    shapes = {"U": (D, H), "W": (H, H), "Uz": (D, H), "Wz": (H, H), "V": (H, V),
              "U2": (H, H), "W2": (H, H), "J": (2 * H, H)}
    return {k: g.param(k, rng.normal(size=s) / np.sqrt(s[0])) for k, s in shapes.items()}


def _vanilla(x, h, p):
    return tg.tanh(x @ p["U"] + h @ p["W"])


def _gated(x, h, p):
    z = tg.sigmoid(x @ p["Uz"] + h @ p["Wz"])
    return (1 - z) * h + z * tg.tanh(x @ p["U"] + (z * h) @ p["W"])


def _loss(form: str, outs: list, Y, p) -> tg.Node:
    T = len(outs)
    logits = [o @ p["V"] for o in outs]
    if form == "per-step `+`":
        loss = tg.cross_entropy(logits[0], Y[0])
        for t in range(1, T):
            loss = loss + tg.cross_entropy(logits[t], Y[t])
        return loss / T
    if form == "Python `sum`":
        return sum(tg.cross_entropy(z, Y[t]) for t, z in enumerate(logits)) / T
    if form == "weighted per step":
        return sum((0.5 + t / T) * tg.cross_entropy(z, Y[t]) for t, z in enumerate(logits))
    if form == "next token":
        return sum(tg.cross_entropy(logits[t], Y[t + 1]) for t in range(T - 1))
    if form == "padded, smoothed":
        return sum(tg.cross_entropy(z, Y[t], ignore_index=-1, label_smoothing=0.1)
                   for t, z in enumerate(logits))
    if form == "`-` mean log softmax":
        loss = -tg.mean(tg.log(tg.softmax(logits[0])))
        for z in logits[1:]:
            loss = loss - tg.mean(tg.log(tg.softmax(z)))
        return loss
    if form == "gather NLL":
        return sum(-tg.mean(tg.gather(tg.log_softmax(z, axis=-1),
                                      tg.expand_dims(Y[t], axis=-1), axis=-1))
                   for t, z in enumerate(logits))
    if form == "`concat` of logits":  # PyTorch's torch.cat(outputs) against torch.cat(targets)
        return tg.cross_entropy(tg.concat(logits), tg.concat([Y[t] for t in range(T)]))
    if form == "batch-first `stack`":  # (B, T, V) logits against (B, T) targets
        return tg.cross_entropy(tg.stack(logits, axis=1), tg.transpose(Y))
    if form == "last step only":
        return tg.cross_entropy(logits[-1], Y[T - 1])
    raise ValueError(form)


def _hand_loop(T: int, cell: Callable, style: str, form: str):
    rng = np.random.default_rng(0)
    g = tg.Graph()
    p = _params(g, rng)
    Y = g.input("Y", shape=(T, None), dtype="int64")
    if style == "batch-first columns":
        X = g.input("X", shape=(None, T, D))
        xs = [X[:, t] for t in range(T)]
    elif style == "inputs made first":
        xs = [g.input(f"x{t}", shape=(None, D)) for t in range(T)]
    else:
        X = g.input("X", shape=(T, None, D))
        xs = [X[t] for t in range(T)]
    h = None if style == "first step apart" else g.input("h0", shape=(None, H))
    outs: list = [None] * T
    order = range(T - 1, -1, -1) if style == "backwards in time" else range(T)
    for t in order:
        h = tg.tanh(xs[t] @ p["U"]) if h is None else cell(xs[t], h, p)
        outs[t] = h
    if style == "bidirectional":  # a second loop from the end; per-step features joined
        h, back = g.input("h2", shape=(None, H)), [None] * T
        for t in reversed(range(T)):
            h = cell(xs[t], h, p)
            back[t] = h
        outs = [tg.concat([f, b], axis=-1) @ p["J"] for f, b in zip(outs, back, strict=True)]
    if style == "two layers, two loops":
        h2 = g.input("h2", shape=(None, H))
        for t in range(T):
            h2 = tg.tanh(outs[t] @ p["U2"] + h2 @ p["W2"])
            outs[t] = h2
    loss = _loss(form, outs, Y, p)
    xv, y = rng.normal(size=(T, B, D)), rng.integers(0, V, (T, B))
    if form == "padded, smoothed":
        y[T // 2:, 0] = -1
    feeds = {"Y": y, "h0": np.zeros((B, H)), "h2": np.zeros((B, H))}
    if style == "batch-first columns":
        feeds["X"] = xv.transpose(1, 0, 2).copy()
    elif style == "inputs made first":
        feeds |= {f"x{t}": xv[t] for t in range(T)}
    else:
        feeds["X"] = xv
    return g, loss, list(p.values()), {k: v for k, v in feeds.items() if k in g.nodes}


def _scan_loop(T: int, cell: Callable, style: str, form: str):
    rng = np.random.default_rng(0)
    g = tg.Graph()
    p = _params(g, rng)
    X, Y = g.input("X", shape=(None, None, D)), g.input("Y", shape=(None, None), dtype="int64")
    h0 = g.input("h0", shape=(None, H))
    if form == "summed in the carry":
        def step(c, xy):
            h = cell(xy[0], c[0], p)
            return (h, c[1] + tg.cross_entropy(h @ p["V"], xy[1])), None
        (_, total), _ = tg.scan(step, (h0, g.const(0.0)), (X, Y))
        loss = total / T
    else:
        def step(h, x):
            h = cell(x, h, p)
            return h, h
        _, hs = tg.scan(step, h0, X)
        loss = tg.cross_entropy(hs @ p["V"], Y)
    feeds = {"X": rng.normal(size=(T, B, D)), "Y": rng.integers(0, V, (T, B)),
             "h0": np.zeros((B, H))}
    return g, loss, list(p.values()), feeds


ROWS = [
    ("vanilla", "rows `X[t]`", "per-step `+`"),
    ("vanilla", "rows `X[t]`", "Python `sum`"),
    ("vanilla", "rows `X[t]`", "weighted per step"),
    ("vanilla", "rows `X[t]`", "next token"),
    ("vanilla", "rows `X[t]`", "padded, smoothed"),
    ("vanilla", "rows `X[t]`", "`-` mean log softmax"),
    ("vanilla", "rows `X[t]`", "gather NLL"),
    ("vanilla", "rows `X[t]`", "last step only"),
    ("vanilla", "rows `X[t]`", "`concat` of logits"),
    ("vanilla", "batch-first columns", "batch-first `stack`"),
    ("vanilla", "batch-first columns", "Python `sum`"),
    ("vanilla", "inputs made first", "Python `sum`"),
    ("vanilla", "first step apart", "next token"),
    ("vanilla", "backwards in time", "Python `sum`"),
    ("vanilla", "two layers, two loops", "Python `sum`"),
    ("vanilla", "bidirectional", "Python `sum`"),
    ("gated", "rows `X[t]`", "Python `sum`"),
    ("gated", "inputs made first", "padded, smoothed"),
    ("gated", "`tg.scan`", "summed in the carry"),
    ("gated", "`tg.scan`", "on the stacked states"),
]


def row(cell_name: str, style: str, form: str) -> tuple[int, int, float]:
    cell = _vanilla if cell_name == "vanilla" else _gated
    make = _scan_loop if style == "`tg.scan`" else _hand_loop
    sizes, fns = [], {}
    for T in (20, 200):
        g, loss, params, feeds = make(T, cell, style, form)
        fetch = [loss, *tg.grad(loss, params)]
        fast = g.compile(fetch, inputs=list(feeds))
        plain = g.compile(fetch, inputs=list(feeds), optimize=False)
        for a, b in zip(fast(**feeds), plain(**feeds), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        sizes.append(len(fast.plan.steps))
        fns = {"fast": lambda f=fast, d=feeds: f(**d), "plain": lambda f=plain, d=feeds: f(**d)}
    times = median_times(fns, rounds=5)
    return sizes[0], sizes[1], times["fast"] / times["plain"]


def table() -> str:
    lines = ["| cell | written as | loss | plan steps T=20 / T=200 | optimized / plain, T=200 |",
             "|---|---|---|---:|---:|"]
    with threadpool_limits(1):
        for cell_name, style, form in ROWS:
            start = time.perf_counter()
            small, large, ratio = row(cell_name, style, form)
            print(f"  {cell_name}, {style}, {form}: {time.perf_counter() - start:.1f} s",
                  file=sys.stderr)
            lines.append(f"| {cell_name} | {style} | {form} | "
                         f"{small} / {large} | {ratio:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

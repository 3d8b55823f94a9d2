"""What a script pays before its first training step: building, differentiating, compiling.

An unrolled LSTM (D=32, H=64) with a linear head and a per-step cross-entropy,
written as users write it (Python ``sum`` over the steps), at T=100 and
T=1000: seconds to unroll, to build the loss, for ``tg.grad``, for
``g.compile`` and for the first call (which generates the plan's code), and
the time of a later call (B=16, one BLAS thread) — so the build reads as a
number of training steps. One process, one run each (the build of a graph is
not repeated in a script).

    python benchmarks/build_time.py
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

import tinygraph as tg
import tinygraph_rnn as rnn

D, H, V, B = 32, 64, 10, 16


def build_row(T: int) -> str:
    rng = np.random.default_rng(0)
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    net = rnn.unroll(rnn.LSTMCell(input_size=D, hidden_size=H, seed=0), T)
    unroll = lap()
    g = net.graph
    head = g.param("V_out", rng.normal(size=(H, V)) / np.sqrt(H))
    targets = g.input("targets", shape=(T, None), dtype="int64")
    loss = sum(tg.cross_entropy(net.outputs[t] @ head, targets[t]) for t in range(T)) / T
    params = [*net.params.values(), head]
    build = lap()
    grads = tg.grad(loss, params)
    grad = lap()
    fn = g.compile([loss, *grads], inputs=[*net.inputs, targets])
    compile_s = lap()
    X, Y = rng.normal(size=(T, B, D)), rng.integers(0, V, (T, B))
    feeds = {n.name: X[t] for t, n in enumerate(net.inputs)} | {"targets": Y}
    fn(**feeds)
    first = lap()
    fn(**feeds)
    step = lap()
    total = unroll + build + grad + compile_s + first
    return (f"| {T} | {len(g.nodes):,} | {unroll:.2f} | {build:.2f} | {grad:.2f} | "
            f"{compile_s:.2f} | {first:.2f} | {step * 1e3:.0f} | {total / step:.0f} |")


def table() -> str:
    lines = ["| T | nodes | unroll s | loss s | `tg.grad` s | `compile` s | first call s | "
             "later call ms | build in calls |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with threadpool_limits(1):
        lines += [build_row(T) for T in (100, 1000)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

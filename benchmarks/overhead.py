"""Per-node overhead of a compiled plan on tiny arrays, against bare numpy calls.

The graph is a chain of 1,000 steps ``h = tanh(h @ W)`` — 2,000 op nodes —
on a 4-element state ``h`` and a 4x4 ``W``. With arrays this small numpy's
own call cost dominates, so the difference between the compiled plan and the
same numpy calls written as a plain loop is what tinygraph adds per node.
Each variant is timed as the best of ``--repeats`` runs (default 20).

    python benchmarks/overhead.py [--steps 1000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import tinygraph as tg


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: the first call builds and caches plans
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000, help="chain steps (2 nodes each)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    W_value = rng.uniform(-0.5, 0.5, (4, 4))
    h0 = rng.uniform(-1, 1, 4)

    g = tg.Graph("overhead")
    h = x = g.input("h0", shape=(4,))
    W = g.param("W", W_value)
    for _ in range(args.steps):
        h = tg.tanh(h @ W)
    nodes = 2 * args.steps
    fn = g.compile(h, inputs=["h0"])

    def bare_numpy() -> np.ndarray:
        state = h0
        for _ in range(args.steps):
            state = np.tanh(np.matmul(state, W_value))
        return state

    # The plan must compute what the loop computes before its speed means anything.
    np.testing.assert_allclose(fn(h0), bare_numpy(), rtol=1e-12)

    seconds = {
        "bare numpy loop": best_of(bare_numpy, args.repeats),
        "compiled plan (g.compile)": best_of(lambda: fn(h0), args.repeats),
        "g.run (cached plan)": best_of(lambda: g.run(h, {x: h0}), args.repeats),
        "g.run(optimize=False) (interpreter)":
            best_of(lambda: g.run(h, {x: h0}, optimize=False), args.repeats),
    }
    per_node = {k: v / nodes * 1e6 for k, v in seconds.items()}
    print(f"chain of {args.steps} x tanh(h @ W): {nodes} op nodes, 4-element state, "
          f"best of {args.repeats}")
    for name, us in per_node.items():
        print(f"  {name:<38} {us:7.3f} µs per node")
    overhead = per_node["compiled plan (g.compile)"] - per_node["bare numpy loop"]
    print(f"compiled plan overhead over bare numpy: {overhead:+.3f} µs per node "
          f"({per_node['compiled plan (g.compile)'] / per_node['bare numpy loop']:.2f}x)")
    return per_node


if __name__ == "__main__":
    main()

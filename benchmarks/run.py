"""``make bench``: tinygraph against hand-written numpy (and PyTorch when importable).

Prints a markdown table of median times and ratios to the plain numpy loop of
the seed's equations, measured in this one process with the variants
interleaved (each round runs every variant once, in turn), plus scaling rows.

    python benchmarks/run.py [--rounds N] [--budget S] [--only W1,W3] [--no-scaling]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402

import tinygraph as tg  # noqa: E402
import tinygraph_rnn as rnn  # noqa: E402


def measure(variants: dict[str, Callable[[], object]], rounds: int, budget: float) -> dict:
    """Median seconds per variant; rounds interleave the variants. Stops early past budget s."""
    for fn in variants.values():  # warm-up: first calls compile plans, fill caches
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    start = time.perf_counter()
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times[name]) >= 5:
            break
    return {k: statistics.median(v) for k, v in times.items()}


# Row name -> mode of workloads.tinygraph_forward / tinygraph_backward.
TINYGRAPH_MODES = {
    "tinygraph interpreted": "interpreted",
    "tinygraph compiled": "compiled",
    "tinygraph optimized": "optimized",
    "tinygraph optimized, one sequence input": "optimized, sequence",
    "tinygraph optimized, ids": "optimized, ids",
}


def forward_variants(p: wl.Problem, torch: bool) -> dict[str, Callable]:
    xs, targets, P = p.data()
    aligned = wl.aligned(P)  # every array 64-byte aligned, as tinygraph keeps its params
    variants = {
        "numpy loop": wl.numpy_loop(p, xs, targets, P),
        "numpy hoisted by hand": wl.numpy_hoisted(p, xs, targets, P),
        "numpy loop, aligned arrays": wl.numpy_loop(p, xs, targets, aligned),
        "numpy hoisted, aligned arrays": wl.numpy_hoisted(p, xs, targets, aligned),
        "seed-style gate objects": wl.seed_gates(p, xs, targets, P),
        **{name: wl.tinygraph_forward(p, xs, targets, P, mode)
           for name, mode in TINYGRAPH_MODES.items()},
    }
    if torch:
        variants["PyTorch nn.RNN (fused) + output"] = wl.torch_fused(p, xs, targets, P)
        variants["PyTorch eager loop"] = wl.torch_eager(p, xs, targets, P)
    return variants


def backward_variants(p: wl.Problem, torch: bool) -> dict[str, Callable]:
    xs, targets, P = p.data()
    variants = {
        "numpy loop": wl.numpy_loop(p, xs, targets, P),  # the forward: the ratio's denominator
        "numpy BPTT by hand": wl.numpy_bptt(p, xs, targets, P),
        **{name: wl.tinygraph_backward(p, xs, targets, P, mode)
           for name, mode in TINYGRAPH_MODES.items()},
    }
    if torch:
        variants["PyTorch nn.RNN (fused) + output"] = wl.torch_fused(p, xs, targets, P, True)
        variants["PyTorch eager loop"] = wl.torch_eager(p, xs, targets, P, True)
    return variants


def table(title: str, results: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(results.values())))
    problems = list(results)
    lines = [f"### {title}", "",
             "| variant | " + " | ".join(f"{w} ms | {w} ratio" for w in problems) + " |",
             "|---|" + "---:|---:|" * len(problems)]
    for name in names:
        cells = []
        for w in problems:
            t = results[w][name]
            cells.append(f"{t * 1e3:.3f} | {t / results[w]['numpy loop']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_rows() -> str:
    lines = ["### Scaling (vanilla cell, D=H=O=8, batch 1)", "",
             "| what | figure |", "|---|---:|"]
    for steps in (1_000, 10_000):
        xs = np.random.default_rng(0).standard_normal((steps, 1, 8))
        t0 = time.perf_counter()
        net = rnn.unroll(rnn.VanillaRNNCell(8, 8, 8, seed=0), steps=steps)
        t1 = time.perf_counter()
        feeds = {node.name: xs[k] for k, node in enumerate(net.inputs)}
        fn = net.graph.compile(net.states[-1], inputs=list(feeds))
        t2 = time.perf_counter()
        fn(**feeds)
        t3 = time.perf_counter()
        lines.append(f"| {steps:,}-step unroll: build + compile + first run (last state) | "
                     f"{t3 - t0:.2f} s (build {t1 - t0:.2f}, compile {t2 - t1:.2f}, "
                     f"run {t3 - t2:.3f}) |")
    lines.append(_training_compile_row(10_000))
    p = wl.Problem("W1-10k", steps=10_000, batch=1, vocab=64, hidden=128)
    xs, _, P = p.data()
    net = wl.tinygraph_net(p, P)
    feeds = {node.name: xs[k] for k, node in enumerate(net.inputs)}
    fn = net.graph.compile(net.states[-1], inputs=list(feeds))
    fn(**feeds)
    tracemalloc.start()
    fn(**feeds)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    budget = 1.5 * xs.nbytes + p.steps * p.hidden * 8
    lines.append(f"| 10,000-step W1 forward, last state only: peak traced memory | "
                 f"{peak / 2**20:.1f} MiB = {peak / budget:.2f} x (1.5 x fed inputs "
                 f"{xs.nbytes / 2**20:.1f} MiB + one (T, H) array "
                 f"{p.steps * p.hidden * 8 / 2**20:.1f} MiB) |")
    return "\n".join(lines)


def _training_compile_row(steps: int) -> str:
    """A per-step loss summed with Python's ``sum`` over a long unroll, and its gradients:
    build, compile (reroll, vectorize the T losses, differentiate the scan) and one run."""
    t0 = time.perf_counter()
    net = rnn.unroll(rnn.VanillaRNNCell(8, 8, 8, seed=0), steps=steps)
    g = net.graph
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = sum(tg.cross_entropy(net.logits[t], targets[t]) for t in range(steps)) / steps
    grads = tg.grad(loss, list(net.params.values()))
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    feeds = {node.name: rng.standard_normal((2, 8)) for node in net.inputs}
    feeds["targets"] = rng.integers(0, 8, (steps, 2))
    fn = g.compile([loss, *grads], inputs=list(feeds))
    t2 = time.perf_counter()
    fn(**feeds)
    t3 = time.perf_counter()
    return (f"| {steps:,}-step training graph (per-step loss, `sum`, `tg.grad`): build + "
            f"compile + first run | {t3 - t0:.2f} s (build {t1 - t0:.2f}, compile "
            f"{t2 - t1:.2f}, run {t3 - t2:.3f}; {len(fn.plan.steps)} plan steps) |")


def machine() -> str:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__} ({blas['name']} {blas.get('version', '')}, "
            f"OPENBLAS_NUM_THREADS={threads}), tinygraph {tg.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per table cell group")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()
    torch = wl.torch_available()
    problems = [p for p in wl.PROBLEMS if not args.only or p.name in args.only.split(",")]
    torch_version = __import__("torch").__version__ if torch else "not installed"
    print(f"Machine: {machine()}; PyTorch {torch_version}\n")
    fwd, bwd = {}, {}
    for p in problems:
        print(f"{p.name}: T={p.steps} B={p.batch} vocab={p.vocab} hidden={p.hidden} ...",
              file=sys.stderr, flush=True)
        fwd[p.name] = measure(forward_variants(p, torch), args.rounds, args.budget)
        bwd[p.name] = measure(backward_variants(p, torch), args.rounds, args.budget)
    print(table("Forward (outputs and states of every step)", fwd) + "\n")
    print(table("Forward + backward (mean cross-entropy, gradients of U W b V c); "
                "ratio to the numpy forward loop", bwd) + "\n")
    if not args.no_scaling:
        print(scaling_rows())


if __name__ == "__main__":
    main()

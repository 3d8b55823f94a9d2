"""``make bench`` (scan part): a cell rolled (``rnn.scan``) against unrolled (``rnn.unroll``).

Prints two markdown tables:

1. rolled vs unrolled, forward and forward + backward, for the three vanilla
   workloads of ``workloads.py`` and a GRU (T=100, B=32, D=64, H=256);
2. a 10^6-step vanilla scan (D = H = 8, batch 1) fetching only its last
   carry, against a hand-written numpy loop of the same maths: time per step,
   their ratio, and the scan's peak traced memory (``tracemalloc``).

Every process runs with one BLAS thread (``threadpoolctl`` when importable,
else ``OPENBLAS_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1``, set before numpy is
imported), so a single core's speed is measured and the two variants of a
row cannot take each other's thread. Each round runs every variant of a row
once, in turn (interleaved); a row reports the median time of each variant
and the median ratio of the rounds, with its range (min-max over rounds).

    python benchmarks/scan_bench.py [--rounds N] [--million-rounds N] [--quick]
"""

from __future__ import annotations

import os

# Before numpy is imported: its BLAS reads these once, at load time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402

import tinygraph as tg  # noqa: E402
import tinygraph_rnn as rnn  # noqa: E402


def one_blas_thread() -> contextlib.AbstractContextManager:
    """threadpoolctl's limit when it is installed; the environment (set above) otherwise."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext("environment: OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1")
    return threadpool_limits(1)


def interleaved(variants: dict[str, Callable[[], object]], rounds: int,
                budget: float, warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds of every round per variant; each round runs every variant once, in turn."""
    for fn in variants.values() if warm_up else ():  # first calls compile plans and loops
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    start = time.perf_counter()
    for i in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if i >= 4 and time.perf_counter() - start > budget:
            break
    return times


def ratio_cell(num: list[float], den: list[float]) -> str:
    """Median of the per-round ratios and their range."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


# ----------------------------------------------------------- the vanilla workloads


def vanilla_rolled(p: wl.Problem, xs, targets, P, backward: bool) -> Callable:
    """``rnn.scan`` of the workload's vanilla cell, fed one (T, B, V) array."""
    cell = rnn.VanillaRNNCell(input_size=p.vocab, hidden_size=p.hidden, output_size=p.vocab)
    cell.params = P
    net = rnn.scan(cell)
    feeds = {"xs": xs, "s0": np.zeros((p.batch, p.hidden))}
    if backward:  # the loss of workloads.tinygraph_loss: mean cross-entropy over all steps
        target = net.graph.input("targets", shape=(p.steps, None), dtype="int64")
        loss = tg.cross_entropy(net.logits, target)
        fetches = [loss, *tg.grad(loss, [net.params[k] for k in "UWbVc"])]
        feeds["targets"] = targets
    else:
        fetches = {"outputs": net.outputs, "states": net.states}
    fn = net.graph.compile(fetches, inputs=list(feeds))
    return lambda: fn(**feeds)


def vanilla_rows(p: wl.Problem, rounds: int, budget: float) -> list[str]:
    xs, targets, P = p.data()
    rows = []
    for backward in (False, True):
        variants = {
            "numpy loop": wl.numpy_loop(p, xs, targets, P),
            "unrolled": (wl.tinygraph_backward if backward else wl.tinygraph_forward)(
                p, xs, targets, P, "optimized, sequence"),
            "rolled": vanilla_rolled(p, xs, targets, P, backward),
        }
        rows.append(row(f"{p.name} vanilla T={p.steps} B={p.batch} V={p.vocab} H={p.hidden}",
                        "forward + backward" if backward else "forward",
                        interleaved(variants, rounds, budget)))
    return rows


# ------------------------------------------------------------------------ GRU


def gru_variants(steps: int, batch: int, inputs: int, hidden: int, backward: bool) -> dict:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((steps, batch, inputs))
    target = rng.standard_normal((steps, batch, hidden))
    cell = rnn.GRUCell(input_size=inputs, hidden_size=hidden, seed=0)
    unrolled = rnn.unroll(cell, steps=steps, sequence=True)
    rolled = rnn.scan(cell)
    out = {}
    for name, net, outputs, states, seq in (
            ("unrolled", unrolled, tg.stack(unrolled.outputs), tg.stack(unrolled.states),
             unrolled.sequence),
            ("rolled", rolled, rolled.outputs, rolled.states, rolled.inputs)):
        feeds = {seq.name: xs, net.initial_state.name: np.zeros((batch, hidden))}
        if backward:  # a mean squared error over every output
            loss = tg.mean((outputs - net.graph.const(target)) ** 2.0)
            fetches = [loss, *tg.grad(loss, [net.params[k] for k in sorted(net.params)])]
        else:
            fetches = {"outputs": outputs, "states": states}
        fn = net.graph.compile(fetches, inputs=list(feeds))
        out[name] = lambda fn=fn, feeds=feeds: fn(**feeds)
    return out


# ---------------------------------------------------------------- the table


def row(workload: str, what: str, times: dict[str, list[float]]) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    numpy_ms = f"{med['numpy loop'] * 1e3:.3f}" if "numpy loop" in med else "–"
    return (f"| {workload} | {what} | {numpy_ms} | {med['unrolled'] * 1e3:.3f} | "
            f"{med['rolled'] * 1e3:.3f} | {ratio_cell(times['rolled'], times['unrolled'])} | "
            f"{len(times['rolled'])} |")


def rolled_vs_unrolled(rounds: int, budget: float, problems: list[wl.Problem],
                       gru: tuple[int, int, int, int]) -> str:
    lines = ["### Rolled (`rnn.scan`) vs unrolled (`rnn.unroll(..., sequence=True)`)", "",
             "| workload | pass | numpy loop ms | unrolled ms | rolled ms | "
             "rolled / unrolled: median (range) | rounds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for p in problems:
        print(f"{p.name} ...", file=sys.stderr, flush=True)
        lines += vanilla_rows(p, rounds, budget)
    T, B, D, H = gru  # noqa: N806
    print("GRU ...", file=sys.stderr, flush=True)
    for backward in (False, True):
        lines.append(row(f"GRU T={T} B={B} D={D} H={H}",
                         "forward + backward" if backward else "forward",
                         interleaved(gru_variants(T, B, D, H, backward), rounds, budget)))
    return "\n".join(lines)


# ---------------------------------------------------------- a million steps


def long_cases(steps: int) -> list[tuple[Callable, dict[str, Callable], np.ndarray, np.ndarray]]:
    """(numpy loop, {row name: compiled scan}, xs, s0) per loop; every scan fetches only the
    last carry. The scans of one loop are measured interleaved with that one numpy loop."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((steps, 1, 8)) * 0.3
    S = np.zeros((1, 8))
    cell = rnn.VanillaRNNCell(input_size=8, hidden_size=8, output_size=None, seed=0)
    net = rnn.scan(cell)
    U, W, b = (cell.params[k] for k in "UWb")

    def vanilla_loop() -> np.ndarray:
        s = S
        for t in range(steps):
            s = np.tanh(X[t] @ U + s @ W + b)
        return s

    g = tg.Graph("bare")
    xs, s0 = g.input("xs", shape=(None, 1, 8)), g.input("s0", shape=(1, 8))
    Wn = g.param("W", W)  # noqa: N806
    last, _ = tg.scan(lambda s, x: (tg.tanh(s @ Wn + x), None), s0, xs)

    def bare_loop() -> np.ndarray:
        s = S
        for t in range(steps):
            s = np.tanh(s @ W + X[t])
        return s

    vanilla = net.graph.compile(net.final_state, inputs=["xs", "s0"])
    plain = net.graph.compile(net.final_state, inputs=["xs", "s0"], optimize=False)
    return [
        (vanilla_loop, {
            "`rnn.scan(VanillaRNNCell(8, 8))`: `s = tanh(x_t @ U + s @ W + b)`": vanilla,
            "the same, compiled with `optimize=False`": plain}, X, S),
        (bare_loop, {"`tg.scan(lambda s, x: (tg.tanh(s @ W + x), None), s0, xs)`":
                     g.compile(last, inputs=["xs", "s0"])}, X, S),
    ]


def million(steps: int, rounds: int) -> str:
    """Each long scan against its numpy loop: time per step, ratio, peak traced memory."""
    print(f"{steps:,} steps ...", file=sys.stderr, flush=True)
    lines = [f"### {steps:,} steps, D = H = 8, batch 1, only the last carry fetched", "",
             "| scan | scan µs/step | numpy loop µs/step | scan / numpy: median (range) | "
             "scan's peak traced memory |", "|---|---:|---:|---:|---:|"]
    for loop, scans, X, S in long_cases(steps):
        want = loop()
        for fn in scans.values():  # also compiles the body's plan and loop before measuring
            np.testing.assert_allclose(fn(X, S), want, rtol=0, atol=1e-12)
        variants = {"numpy loop": loop} | {name: (lambda fn=fn, X=X, S=S: fn(X, S))
                                           for name, fn in scans.items()}
        times = interleaved(variants, rounds, 0.0, warm_up=False)  # the checks warmed them
        for name, fn in scans.items():
            tracemalloc.start()
            fn(X, S)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            us = {k: statistics.median(times[k]) / steps * 1e6 for k in ("numpy loop", name)}
            lines.append(f"| {name} | {us[name]:.2f} | {us['numpy loop']:.2f} | "
                         f"{ratio_cell(times[name], times['numpy loop'])} | "
                         f"{peak / 2**20:.2f} MiB ({peak / 1e6:.2f} MB) |")
    lines.append(f"\n(the fed xs, {X.nbytes / 2**20:.1f} MiB, is allocated before tracing "
                 f"starts; {rounds} rounds, each loop's scans interleaved with its numpy loop)")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}, tinygraph {tg.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per rolled/unrolled row")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per row, at most")
    parser.add_argument("--million-rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10**6, help="steps of the long scan")
    parser.add_argument("--quick", action="store_true", help="W1 and 10^5 steps only")
    args = parser.parse_args()
    problems = wl.PROBLEMS[:1] if args.quick else wl.PROBLEMS
    gru = (10, 4, 8, 16) if args.quick else (100, 32, 64, 256)
    steps = 10**5 if args.quick else args.steps
    start = time.perf_counter()
    with one_blas_thread() as limit:
        how = limit if isinstance(limit, str) else "threadpoolctl.threadpool_limits(1)"
        print(f"Machine: {machine()}; one BLAS thread ({how})\n")
        print(rolled_vs_unrolled(args.rounds, args.budget, problems, gru) + "\n")
        print(million(steps, args.million_rounds) + "\n")
    print(f"(scan benchmarks: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

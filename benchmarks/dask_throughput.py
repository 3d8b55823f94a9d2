"""Batch inference throughput: plain ``g.run`` against ``tinygraph.dask.run`` on 1 and 2 workers.

The workload scores sequences: the seed's vanilla RNN (vocabulary V, hidden
H) reads each sequence of T ids and returns its negative log-likelihood of
the next ids, one number per sequence. Every run uses one BLAS thread (set
below, before numpy loads), so the rows compare processes, not BLAS threads.
Each variant is timed over the same batch, the variants interleaved round
by round, medians of ``--rounds`` after a warm-up call (which ships and
compiles the graph on the workers).

    python benchmarks/dask_throughput.py [--sequences N] [--rounds R] [--chunks ROWS]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # workers inherit it too

import argparse  # noqa: E402
import contextlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import tinygraph as tg  # noqa: E402
import tinygraph_rnn as rnn  # noqa: E402

T, V, H = 50, 64, 128


def scoring_graph() -> tuple[tg.Graph, tg.Node, tg.Node, tg.Node]:
    """The net over a (T, B) batch of ids and its per-sequence NLL, shape (B,)."""
    cell = rnn.VanillaRNNCell(input_size=V, hidden_size=H, output_size=V, seed=0)
    net = rnn.unroll(cell, steps=T, ids=True, sequence=True, name="scorer")
    g = net.graph
    targets = g.input("targets", shape=(T, None), dtype="int64")
    logp = tg.log_softmax(tg.stack(net.logits), axis=-1)           # (T, B, V)
    nll = -tg.sum(logp * tg.one_hot(targets, V), axis=(0, 2))     # (B,)
    return g, net.sequence, targets, nll


def measure(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per variant; each round runs every variant once, in turn."""
    for fn in variants.values():
        fn()  # warm-up: plans compiled, the graph shipped to the workers
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunks", type=int, default=256, help="rows per task in the chunked rows")
    args = parser.parse_args()

    from dask.distributed import Client, LocalCluster

    import tinygraph.dask as tgd

    g, ids, targets, nll = scoring_graph()
    rng = np.random.default_rng(0)
    n, rows = args.sequences, args.chunks
    feeds = {ids: rng.integers(0, V, size=(T, n)), targets: rng.integers(0, V, size=(T, n))}
    reference = g.run(nll, feeds)
    variants: dict[str, Callable[[], object]] = {
        "plain g.run": lambda: g.run(nll, feeds),
        f"g.run over {rows}-row slices, one process": lambda: [
            g.run(nll, {k: v[:, i:i + rows] for k, v in feeds.items()}) for i in range(0, n, rows)],
    }
    with contextlib.ExitStack() as stack:
        for workers in (1, 2):
            cluster = stack.enter_context(LocalCluster(
                processes=True, n_workers=workers, threads_per_worker=1, dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
            label = f"{workers} worker{'s' * (workers > 1)}"
            for chunks, how in ((None, "one chunk per worker"), (rows, f"{rows}-row chunks")):
                out = tgd.run(g, nll, feeds, client=client, chunks=chunks)
                assert np.allclose(out, reference, rtol=0, atol=1e-9)
                variants[f"tgd.run, {label}, {how}"] = (
                    lambda c=client, k=chunks: tgd.run(g, nll, feeds, client=c, chunks=k))
        seconds = measure(variants, args.rounds)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}, one BLAS thread")
    print(f"scoring {n} sequences of T={T} ids (V={V}, H={H}); medians of {args.rounds} "
          "interleaved rounds\n")
    print("| variant | seconds | sequences/s | vs plain g.run |")
    print("|---|---:|---:|---:|")
    base = seconds["plain g.run"]
    for name, t in seconds.items():
        print(f"| {name} | {t:.3f} | {n / t:,.0f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()

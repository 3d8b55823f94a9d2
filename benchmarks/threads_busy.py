"""BLAS threads on a quiet and on a busy machine: ``python benchmarks/threads_busy.py``.

Times ``python -m tinygraph_rnn train --steps 100`` (a fresh process each
time, so start-up is included) with the automatic thread choice of
``tinygraph/exec/threads.py`` and with ``TINYGRAPH_BLAS_THREADS=2`` (what
every call used before: OpenBLAS's default on 2 cores), first with nothing
else running, then beside ``--burners`` CPU-bound processes (default 2).
Each cell is the median of ``--rounds`` runs, the variants interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "tinygraph_rnn", "train", "--steps", "100"]
VARIANTS = {"automatic": "auto", "2 threads (before)": "2"}


def timed(threads: str) -> float:
    env = dict(os.environ, TINYGRAPH_BLAS_THREADS=threads)
    start = time.perf_counter()
    subprocess.run(COMMAND, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, threads in VARIANTS.items():
            times[name].append(timed(threads))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2)
    args = parser.parse_args()
    quiet = measure(args.rounds)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.burners)]
    try:
        busy = measure(args.rounds)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    print(f"| variant | quiet s | beside {args.burners} CPU-bound processes s | busy / quiet |")
    print("|---|---:|---:|---:|")
    for name in VARIANTS:
        print(f"| {name} | {quiet[name]:.2f} | {busy[name]:.2f} | "
              f"{busy[name] / quiet[name]:.1f} |")
    print(f"\nbusy automatic / quiet automatic: {busy['automatic'] / quiet['automatic']:.1f}x")


if __name__ == "__main__":
    main()

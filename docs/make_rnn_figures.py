"""Write the RNN pictures that README.md and docs/rnn.md show.

Run from anywhere: ``python docs/make_rnn_figures.py``. It builds the seed's
vanilla RNN (3 inputs, 4 hidden units, 3 outputs) unrolled over 4 steps and
writes ``docs/figures/rnn_rolled.svg``, ``docs/figures/rnn_unrolled.svg`` and
``docs/figures/rnn_cell.svg``. The same script gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tinygraph_rnn as rnn

FIGURES = Path(__file__).resolve().parent / "figures"
STEPS = 4


def main(out: Path = FIGURES) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=0)
    net = rnn.unroll(cell, steps=STEPS, name="vanilla_rnn")
    paths = [Path(net.render(out / f"rnn_{view}.svg", view=view))
             for view in ("rolled", "unrolled", "cell")]
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES)

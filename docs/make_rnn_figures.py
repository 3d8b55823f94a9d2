"""Write the RNN pictures that README.md and docs/rnn.md show.

Run from anywhere: ``python docs/make_rnn_figures.py``. It builds the seed's
vanilla RNN (3 inputs, 4 hidden units, 3 outputs) unrolled over 4 steps and
writes ``docs/figures/rnn_rolled.svg``, ``docs/figures/rnn_unrolled.svg`` and
``docs/figures/rnn_cell.svg``, plus ``docs/figures/rnn_bptt.svg`` (docs/bptt.md):
the same net with a weak recurrence, scored at its last step only, drawn with
its backward pass and each step shaded by the gradient reaching it. The same
script gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tinygraph as tg
import tinygraph_rnn as rnn

FIGURES = Path(__file__).resolve().parent / "figures"
STEPS = 4
BPTT_STEPS = 5


def main(out: Path = FIGURES) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=0)
    net = rnn.unroll(cell, steps=STEPS, name="vanilla_rnn")
    paths = [Path(net.render(out / f"rnn_{view}.svg", view=view))
             for view in ("rolled", "unrolled", "cell")]
    paths.append(bptt_figure(out))
    for path in paths:
        print(f"wrote {path}")
    return paths


def bptt_figure(out: Path = FIGURES) -> Path:
    """``view="bptt"`` of a weakly recurrent net scored at its last step: the gradient fades."""
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=0)
    cell.params["W"] = 0.5 * cell.params["W"]
    net = rnn.unroll(cell, steps=BPTT_STEPS, name="vanilla_rnn")
    target = net.graph.input("target", shape=(None,), dtype="int64")
    loss = tg.cross_entropy(net.logits[-1], target, name="loss")
    grads = rnn.bptt_gradients(net, loss)
    feeds = {x: np.eye(3)[[t % 3]] for t, x in enumerate(net.inputs)}
    feeds[target] = np.array([1])
    values = dict(zip(grads, net.graph.run(grads, feeds), strict=True))
    return Path(net.render(out / "rnn_bptt.svg", view="bptt", loss=loss, values=values,
                           truncate=3))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES)

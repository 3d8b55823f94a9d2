"""Write the rendering pictures that README.md and docs/render.md show.

Run from anywhere: ``python docs/make_render_figures.py [OUT_DIR]``. It always
uses the built-in WebAssembly Graphviz (``engine="wasm"``), so the files are
the same on every machine, with or without a system Graphviz:

* ``render_affine.svg``    the README's affine graph, fetched at ``y``;
* ``render_values.svg``    the same graph after a run: statistics and run order;
* ``render_collapsed.svg`` a 12-step vanilla RNN with each step collapsed to a box;
* ``render_window.svg``    a 200-step vanilla RNN: first 2 steps, "…", last 2;
* ``render_scan.svg``      a vanilla RNN rolled by ``rnn.scan``: one cluster, one back edge;
* ``render_hostile.svg``   names with quotes, backslashes, ``<…>``, ``{a|b}``, ``:``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tinygraph as tg
import tinygraph_rnn as rnn

FIGURES = Path(__file__).resolve().parent / "figures"


def affine() -> tuple[tg.Graph, tg.Node]:
    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.full((3, 4), 0.5))
    b = g.param("b", np.zeros(4))
    y = tg.softmax(tg.tanh(x @ W + b), axis=-1, name="y")
    return g, y


def main(out: Path = FIGURES) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    g, y = affine()
    paths.append(g.render(out / "render_affine.svg", fetches=y, engine="wasm"))

    nodes = g.schedule(y)
    feeds = {"x": np.array([[1.0, -2.0, 0.5], [0.0, 0.0, np.nan]])}
    values = dict(zip(nodes, g.run(nodes, feeds=feeds), strict=True))
    paths.append(g.render(out / "render_values.svg", fetches=y, values=values, order=True,
                          engine="wasm"))

    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=0)
    net = rnn.unroll(cell, steps=12, name="vanilla_rnn")
    paths.append(net.graph.render(out / "render_collapsed.svg", collapse=True,
                                  rankdir="LR", engine="wasm"))
    long_net = rnn.unroll(cell, steps=200, name="vanilla_rnn_200")
    paths.append(long_net.render(out / "render_window.svg", view="unrolled", window=2,
                                 engine="wasm"))

    scanned = rnn.scan(cell, name="vanilla_rnn_scan")
    paths.append(scanned.render(out / "render_scan.svg", engine="wasm"))

    h = tg.Graph('names "that break" other tools')
    with h.scope("<lambda>"):
        a = h.input('say "hi"', shape=(2,))
        b = h.input("C:\\temp\\", shape=(2,))
    with h.scope("{a|b}"):
        c = tg.add(a, b, name="a:b")
        tg.tanh(c, name="line one\nline two")
    paths.append(h.render(out / "render_hostile.svg", engine="wasm"))

    for path in paths:
        print(f"wrote {path}")
    return [Path(p) for p in paths]


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES)

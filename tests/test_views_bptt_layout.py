"""The bptt picture read back from its SVG: the gradient row under the states, in order.

Parsed with xml.etree through tests/test_spine.py's reader (independent of
tinygraph_rnn.svgcheck): ∂L/∂s_t (class ``grad state step-k``) on one row
within 1 pt, x increasing with t, directly under the state row (nothing
between them); the state row straight too; step clusters left to right,
also inside the truncation window; every step label readable on its fill
(WCAG contrast ≥ 4.5, computed here from the SVG's colours).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_spine import SVG, shapes, step

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn.views import render_view


def net_and_values(cell, T):  # noqa: N803
    net = rnn.unroll(cell, T)
    outs = net.logits if net.logits[0] is not None else net.outputs
    targets = net.graph.input("targets", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(outs), targets, name="loss")
    grads = rnn.bptt_gradients(net, loss)
    flat = [p for g in grads for p in (g if isinstance(g, tuple) else (g,))]
    rng = np.random.default_rng(3)
    feeds = {x: rng.normal(size=(2, 3)) for x in net.inputs}
    feeds[targets] = rng.integers(0, outs[0].shape[-1], size=(T, 2))
    return net, loss, dict(zip(flat, net.graph.run(flat, feeds), strict=True))


def luminance(color: str) -> float:
    c = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def contrast(a: str, b: str) -> float:
    lo, hi = sorted((luminance(a), luminance(b)))
    return (hi + 0.05) / (lo + 0.05)


def check_bptt(svg: str, kept: list[int], parts: int = 1) -> None:
    found = shapes(svg)
    nodes = [s for s in found if "node" in s[0]]
    grads = [s for s in nodes if {"grad", "state"} <= s[0]]
    states = [s for s in nodes if "state" in s[0] and "grad" not in s[0]]
    assert len(grads) == len(kept) * parts
    state_bottom = max(s[3][3] for s in states)
    for row in (grads, states):
        names = {c for s in row for c in s[0] if c.startswith("state-")} or {"state"}
        for part in names:
            mine = sorted((s for s in row if part in s[0]), key=lambda s: step(s[0]))
            assert [step(s[0]) for s in mine] == kept
            xs, ys = [s[1] for s in mine], [s[2] for s in mine]
            assert all(b > a for a, b in zip(xs, xs[1:], strict=False))
            assert max(ys) - min(ys) <= 1.0
    # Directly under the states: below every state, and no node lies between the rows.
    grad_top = min(s[3][1] for s in grads)
    assert grad_top > state_bottom
    between = [s for s in nodes if state_bottom < s[2] < grad_top]
    assert not between
    clusters = sorted((s for s in found if "cluster" in s[0] and step(s[0]) is not None),
                      key=lambda s: step(s[0]))
    assert [step(c[0]) for c in clusters] == kept
    assert all(a[3][2] <= b[3][0] for a, b in zip(clusters, clusters[1:], strict=False))
    # Every step label is readable on its fill.
    for g in ET.fromstring(svg).iter(SVG + "g"):
        if "cluster" not in (g.get("class") or "") or step(set(g.get("class").split())) is None:
            continue
        fill = g[1].get("fill")
        text = next(g.iter(SVG + "text"))
        color = text.get("fill", "#000000")
        if fill not in (None, "none"):
            assert contrast(fill, color) >= 4.5, (fill, color)


VANILLA = lambda: rnn.VanillaRNNCell(input_size=3, hidden_size=8, output_size=3, seed=0)  # noqa: E731


@pytest.mark.parametrize(("T", "kwargs", "kept"), [
    (5, {"truncate": 3}, [0, 1, 2, 3, 4]),
    (12, {"truncate": 4}, [0, 1, 2, 9, 10, 11]),
    (12, {"steps": range(12), "truncate": 4}, list(range(12))),
    (80, {"window": 2, "truncate": 10}, [0, 1, 78, 79]),
])
def test_gradient_row_straight_in_order_under_the_states(T, kwargs, kept):  # noqa: N803
    net, loss, values = net_and_values(VANILLA(), T)
    svg = render_view(net, view="bptt", loss=loss, values=values, engine="wasm", **kwargs)
    check_bptt(svg, kept)
    frame = [s for s in shapes(svg) if "cluster" in s[0] and step(s[0]) is None
             and s[3][0] > 0]
    assert frame  # the window's frame (and the legend) are drawn


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_gated_cells_get_the_same_picture(name):
    cell = {"gru": rnn.GRUCell, "lstm": rnn.LSTMCell}[name](input_size=3, hidden_size=4, seed=0)
    net, loss, values = net_and_values(cell, 4)
    svg = render_view(net, view="bptt", loss=loss, values=values, engine="wasm")
    check_bptt(svg, [0, 1, 2, 3], parts=2 if name == "lstm" else 1)

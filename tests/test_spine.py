"""The unrolled picture, read back from its SVG: steps in order on straight rows.

For the vanilla cell (with and without outputs), GRU, LSTM and the docs'
MinimalGatedUnit, at several lengths, default and windowed, the SVG is parsed
with xml.etree (independently of tinygraph_rnn.svgcheck) and checked: state x
strictly increasing with t, each state row within 1 pt, each step's cluster
left of the next, inputs below the states and outputs above, no param edge
into a step from outside it, one ellipsis between the kept steps, no side
over 32,767 px, the same bytes twice.
"""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_scan import MinimalGatedUnit  # the custom cell of docs/rnn.md

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.render import engine as engine_module
from tinygraph_rnn.views import render_view

SVG = "{http://www.w3.org/2000/svg}"



CELLS = {
    "vanilla+o": lambda: rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3),
    "vanilla": lambda: rnn.VanillaRNNCell(input_size=3, hidden_size=4),
    "gru": lambda: rnn.GRUCell(input_size=3, hidden_size=4),
    "lstm": lambda: rnn.LSTMCell(input_size=3, hidden_size=4),
    "mgu": lambda: MinimalGatedUnit(input_size=3, hidden_size=4),
}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def shapes(svg: str):
    """(classes, x, y, box) of every node and cluster group; y grows downward."""
    found = []
    for g in ET.fromstring(svg).iter(SVG + "g"):
        cls = set((g.get("class") or "").split())
        if not cls & {"node", "cluster"}:
            continue
        pts = []
        for item in (g[1:2] if "cluster" in cls else g):  # a cluster's outline: child 1
            nums = [float(v) for v in NUMBER.findall(
                " ".join(item.get(k, "") for k in ("points", "d", "x", "y")))]
            if item.tag == SVG + "ellipse":
                cx, cy, rx, ry = (float(item.get(k)) for k in ("cx", "cy", "rx", "ry"))
                nums = [cx - rx, cy - ry, cx + rx, cy + ry]
            pts += list(zip(nums[::2], nums[1::2], strict=False))
        if pts:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            box = (min(xs), min(ys), max(xs), max(ys))
            found.append((cls, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box))
    return found


def step(cls: set[str]) -> int | None:
    hits = [int(c[5:]) for c in cls if re.fullmatch(r"step-\d+", c)]
    return hits[0] if hits else None


def check_picture(svg: str, T: int, kept: list[int]) -> None:  # noqa: N803
    root = ET.fromstring(svg)
    for side in ("width", "height"):
        assert float(root.get(side).removesuffix("pt")) * 96 / 72 <= 32767
    found = shapes(svg)
    nodes = [s for s in found if "node" in s[0]]
    clusters = sorted((s for s in found if "cluster" in s[0] and step(s[0]) is not None),
                      key=lambda s: step(s[0]))
    assert [step(c[0]) for c in clusters] == kept
    for a, b in zip(clusters, clusters[1:], strict=False):
        assert a[3][2] <= b[3][0]                       # each cluster left of the next
    states = [s for s in nodes if "state" in s[0]]
    parts = {c for s in states for c in s[0] if c.startswith("state-")} or {"state"}
    for part in parts:
        row = sorted((s for s in states if part in s[0]), key=lambda s: step(s[0]))
        assert [step(s[0]) for s in row] == kept
        xs, ys = [s[1] for s in row], [s[2] for s in row]
        assert all(b > a for a, b in zip(xs, xs[1:], strict=False))
        assert max(ys) - min(ys) <= 1.0
    top, bottom = min(s[2] for s in states), max(s[2] for s in states)
    assert all(s[2] > bottom for s in nodes if "input" in s[0] and "state" not in s[0])
    assert all(s[2] < top for s in nodes if "output" in s[0] and "state" not in s[0])
    ellipses = [s for s in nodes if "ellipsis" in s[0]]
    if len(kept) < T:
        (mark,) = ellipses
        gap = next(i for i in range(len(kept) - 1) if kept[i + 1] > kept[i] + 1)
        left = max(s[1] for s in states if step(s[0]) == kept[gap])
        right = min(s[1] for s in states if step(s[0]) == kept[gap + 1])
        assert left < mark[1] < right
        assert f"… {T - len(kept)} steps …" in svg
    else:
        assert not ellipses
    # Param stubs sit inside the cluster of the step that reads them.
    for s in nodes:
        if "param" in s[0] and step(s[0]) is not None:
            (c,) = [c for c in clusters if step(c[0]) == step(s[0])]
            assert c[3][0] <= s[1] <= c[3][2]


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("T", [2, 3, 6, 20, 117, 1000])
def test_unrolled_picture_rows_order_and_size(name, T):  # noqa: N803
    net = rnn.unroll(CELLS[name](), T)
    default = list(range(T)) if T <= 8 else [0, 1, 2, T - 3, T - 2, T - 1]
    svg = render_view(net, engine="wasm")
    check_picture(svg, T, default)
    assert render_view(net, engine="wasm") == svg      # the same bytes on a second call
    windowed = list(range(T)) if T <= 4 else [0, 1, T - 2, T - 1]
    check_picture(render_view(net, engine="wasm", window=2), T, windowed)


def test_gate_slices_are_named_in_every_step():
    net = rnn.unroll(rnn.LSTMCell(input_size=3, hidden_size=4), 3)
    src = net.to_dot().source
    labels = re.findall(r'label="getitem\\ngate (\w)', src)
    assert labels == ["i", "i", "f", "f", "g", "g", "o", "o"] * 3


def test_params_as_labels_with_one_legend():
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=2), 4)
    src = net.to_dot(params="labels").source
    assert "stub" not in src and src.count("shared by every step:") == 1
    assert src.count("matmul  (W)") == 4


def test_twenty_step_layout_is_fast():
    net = rnn.unroll(rnn.LSTMCell(input_size=3, hidden_size=4), 20)
    render_view(net, engine="wasm")  # warm-up
    start = time.perf_counter()
    render_view(net, engine="wasm")
    assert time.perf_counter() - start < 0.5  # ~50 ms measured; generous on a busy machine


# ------------------------------------------------------------------- Jupyter


def test_notebook_displays_svg_without_system_dot(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # no `dot` anywhere
    monkeypatch.setattr(engine_module.shutil, "which", lambda name, *a, **k: None)
    g = tg.Graph("g")
    tg.tanh(g.input("x", shape=(2,)) @ g.param("W", np.ones((2, 2))))
    net = rnn.unroll(rnn.GRUCell(input_size=2, hidden_size=3), 12)
    for shown in (g, g.to_dot(), net, net.to_dot(view="unrolled"), net.to_dot(view="rolled")):
        bundle = shown._repr_mimebundle_()
        svg = bundle["image/svg+xml"]
        assert ET.fromstring(svg).tag == SVG + "svg"
    assert net.to_dot().pipe(format="svg").startswith(b"<?xml")

"""The compact unrolled picture (one box per step), rankdir, and gate order, read from SVG.

The compact form is checked with tests/test_spine.py's reader and checks
(steps in x order, one straight row, inputs below and outputs above, one
ellipsis between the kept steps). Gate order: in the detailed view of a GRU
and an LSTM, the gate nodes of every step are found by their label in the
SVG and sorted by their position (rank from y, then x): every step must give
the same sequence of gates.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from test_spine import SVG, check_picture, shapes, step

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn.views import render_view, view_to_dot


@pytest.mark.parametrize(("name", "T", "window", "kept"), [
    ("vanilla", 20, 10, list(range(20))),
    ("vanilla", 117, 3, [0, 1, 2, 114, 115, 116]),
    ("lstm", 20, 3, [0, 1, 2, 17, 18, 19]),
    ("gru", 5, None, [0, 1, 2, 3, 4]),
])
def test_compact_form_one_box_per_step_on_a_straight_row(name, T, window, kept):  # noqa: N803
    cell = {"vanilla": lambda: rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3),
            "lstm": lambda: rnn.LSTMCell(input_size=3, hidden_size=4),
            "gru": lambda: rnn.GRUCell(input_size=3, hidden_size=4)}[name]()
    net = rnn.unroll(cell, T)
    svg = render_view(net, compact=True, window=window, engine="wasm")
    check_picture(svg, T, kept)
    cells = [s for s in shapes(svg) if "cell" in s[0]]
    assert sorted(step(s[0]) for s in cells) == kept            # exactly one box per step
    ops = sum(1 for n in net.graph.nodes.values() if n.meta.get("t") == 0 and n.kind == "op")
    assert f"{ops} ops" in svg
    assert f"read by all {T} cells" in svg
    if name == "vanilla":   # the outputs: one per drawn step, above
        assert len([s for s in shapes(svg) if "output" in s[0]]) == len(kept)
    assert net.render(compact=True, window=window, engine="wasm") == svg


def test_compact_and_rankdir_misuse_is_refused():
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3), 4)
    with pytest.raises(tg.RenderError, match="compact must be True or False, got 'yes'"):
        view_to_dot(net, compact="yes")
    with pytest.raises(tg.RenderError, match="compact= applies to view='unrolled'"):
        view_to_dot(net, view="rolled", compact=True)
    for view in ("unrolled",):
        with pytest.raises(tg.RenderError, match="rankdir does not apply to view='unrolled'"):
            view_to_dot(net, view=view, rankdir="LR")
    assert "rankdir=\"LR\"" in view_to_dot(net, view="rolled", rankdir="LR").source


def gate_order(svg: str) -> dict[int, list[str]]:
    """Per step, the gate names sorted by rank (y, rounded) and then x."""
    found: dict[int, list[tuple[float, float, str]]] = {}
    for g in ET.fromstring(svg).iter(SVG + "g"):
        classes = set((g.get("class") or "").split())
        t = step(classes)
        if "node" not in classes or t is None:
            continue
        words = [" ".join((x.text or "").split()) for x in g.iter(SVG + "text")]
        gate = next((w[5:] for w in words if re.fullmatch(r"gate \w+", w)), None)
        if gate is None:
            continue
        ellipse = next(g.iter(SVG + "ellipse"))
        x, y = float(ellipse.get("cx")), float(ellipse.get("cy"))
        found.setdefault(t, []).append((round(y), x, gate))
    return {t: [name for _, _, name in sorted(items)] for t, items in found.items()}


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_gates_in_the_same_order_in_every_step(name):
    cell = {"gru": rnn.GRUCell, "lstm": rnn.LSTMCell}[name](input_size=3, hidden_size=4)
    net = rnn.unroll(cell, 4)
    orders = gate_order(render_view(net, engine="wasm"))
    assert sorted(orders) == [0, 1, 2, 3]
    assert len(orders[0]) >= 4
    assert all(order == orders[0] for order in orders.values()), orders

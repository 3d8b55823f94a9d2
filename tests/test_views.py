"""Pictures of unrolled nets: unrolled, windowed, rolled and single-cell views.

The views are checked on a hand-built unrolled-style graph (T steps of
tanh(x_t @ U + s @ W) in scopes t=k with unroll's meta) and on the real
``tinygraph_rnn.unroll`` cells. Expected counts come from the graph itself
(nodes per step, edges that cross from one step to the next), never from the
view code; every SVG is parsed as XML.
"""

from __future__ import annotations

import re
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn.views import render_view, view_to_dot

SVG = "{http://www.w3.org/2000/svg}"


def hand_built(steps: int) -> types.SimpleNamespace:
    g = tg.Graph("hand")
    U = g.param("U", np.full((2, 3), 0.1))
    W = g.param("W", np.eye(3))
    s = s0 = g.input("s0", shape=(None, 3), default=np.zeros((1, 3)))
    states, outputs = [], []
    for k in range(steps):
        start = len(g)
        with g.scope(f"t={k}"):
            x = g.input("x", shape=(None, 2))
            s = tg.tanh(x @ U + s @ W, name="s")
            outputs.append(tg.exp(s, name="o"))
        for node in list(g.nodes.values())[start:]:
            node.meta["t"] = k
            node.meta["template"] = node.name.split("/", 1)[1]
        states.append(s)
    return types.SimpleNamespace(graph=g, steps=steps, states=states, outputs=outputs,
                                 initial_state=s0)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def classes(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()]


def texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(SVG + "text")]


def step_nodes(net, k: int) -> list[tg.Node]:
    return [n for n in net.graph.nodes.values() if n.meta.get("t") == k]


def crossing_pairs(net) -> set[tuple[str, str]]:
    """(template of tail, template of head) of every edge from step k to step k+1."""
    pairs = set()
    for node in net.graph.nodes.values():
        for src in node.inputs:
            if "t" in src.meta and "t" in node.meta and node.meta["t"] == src.meta["t"] + 1:
                pairs.add((src.meta["template"], node.meta["template"]))
    return pairs


# ---------------------------------------------------------------- unrolled


def test_unrolled_view_draws_every_step_node_once_and_a_stub_per_param_read():
    net = hand_built(4)
    root = parse(render_view(net, engine="wasm"))
    real = [g for g in classes(root, "node") if not {"stub", "anchor"} & set(
        g.get("class").split())]
    assert len(real) == len(net.graph) - 2            # every node but the params U, W
    reads = sum(1 for n in net.graph.nodes.values() for s in n.inputs if s.op == "param")
    assert len(classes(root, "stub")) == len(classes(root, "param")) == reads
    assert [c.get("class") for c in classes(root, "cluster")] == [
        f"cluster step-{k}" for k in range(4)]
    assert len(classes(root, "output")) == 4 and len(classes(root, "state")) == 4


def test_windowed_view_keeps_first_and_last_steps_and_one_ellipsis():
    net = hand_built(50)
    root = parse(render_view(net, engine="wasm", window=3))
    clusters = [texts(c)[0] for c in classes(root, "cluster")]
    assert clusters == [f"t={k}" for k in (0, 1, 2, 47, 48, 49)]
    (ellipsis,) = classes(root, "ellipsis")
    assert texts(ellipsis) == ["… 44 steps …", "t=3 … t=46"]
    kept = sum(len(step_nodes(net, k)) for k in (0, 1, 2, 47, 48, 49)) + 1  # s0
    real = [g for g in classes(root, "node") if not {"ellipsis", "stub", "anchor"} & set(
        g.get("class").split())]
    assert len(real) == kept
    # the state crosses the gap: step 2's s feeds the ellipsis, which feeds step 47
    labels, edges = rolled_edges(view_to_dot(net, window=3).source)
    (gap,) = [i for i, label in labels.items() if label.startswith("…")]
    into = {labels[a] for a, b, _ in edges if b == gap}
    out_of = {labels[b] for a, b, _ in edges if a == gap}
    assert into == {"tanh\\ns\\n(?, 3)"}
    assert out_of == {"matmul\\n(?, 3)"}   # step 47's s @ W


def test_window_wider_than_half_the_steps_draws_everything():
    net = hand_built(5)
    assert view_to_dot(net, window=3).source == view_to_dot(net).source


# ------------------------------------------------------------------ rolled


def rolled_edges(source: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    labels = dict(re.findall(r'^\s*(n\d+) \[label="([^"]*)"', source, flags=re.M))
    edges = re.findall(r'^\s*(n\d+) -> (n\d+)(?: \[(.*)\])?$', source, flags=re.M)
    return labels, edges


def test_rolled_view_draws_the_cell_once_with_one_loop_per_recurrent_edge():
    net = hand_built(7)
    source = view_to_dot(net, "rolled").source
    labels, edges = rolled_edges(source)
    assert len(labels) == len(step_nodes(net, 0)) + 3           # the cell, U, W, s0
    loops = [(labels[a], labels[b], attrs) for a, b, attrs in edges if "×7" in attrs]
    assert len(loops) == len(crossing_pairs(net)) == 1
    (tail, head, attrs), = loops
    assert tail.startswith("tanh\\ns") and head.startswith("matmul")
    assert 'constraint="false"' in attrs
    assert len(edges) == len(set((a, b) for a, b, _ in edges))   # no duplicates
    assert not any("×" in attrs for _, _, attrs in edges if "×7" not in attrs)
    root = parse(render_view(net, view="rolled", engine="wasm"))
    assert len(classes(root, "node")) == len(labels)
    (cluster,) = classes(root, "cluster")
    assert texts(cluster)[0] == "cell × 7 steps"


@pytest.mark.parametrize("cell", [
    rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=2, seed=0),
    rnn.GRUCell(input_size=3, hidden_size=4, seed=0),
    rnn.LSTMCell(input_size=3, hidden_size=4, seed=0),
], ids=["rnn", "gru", "lstm"])
def test_views_of_real_unrolled_cells(cell):
    net = rnn.unroll(cell, steps=6)
    labels, edges = rolled_edges(view_to_dot(net, "rolled").source)
    loops = [(a, b) for a, b, attrs in edges if "×6" in attrs]
    assert len(loops) == len(crossing_pairs(net)) >= 1
    leaves = [n for n in net.graph.nodes.values() if "t" not in n.meta]
    assert len(labels) == len(step_nodes(net, 0)) + len(leaves)
    root = parse(render_view(net, view="rolled", engine="wasm"))
    assert len(classes(root, "node")) == len(labels)
    cell_root = parse(render_view(net, view="cell", engine="wasm"))
    assert len(classes(cell_root, "cluster")) >= 1
    svg = parse(render_view(net, view="unrolled", window=1, engine="wasm"))
    assert len(classes(svg, "ellipsis")) == 1


def test_net_render_methods_use_the_views(tmp_path):
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3), steps=3)
    out = net.render(tmp_path / "rolled.svg", view="rolled", engine="wasm")
    assert len(classes(parse((tmp_path / "rolled.svg").read_text()), "node")) > 0
    assert out == str(tmp_path / "rolled.svg")
    assert net.to_dot(view="cell").source == view_to_dot(net, "cell").source


# -------------------------------------------------------------------- cell


def test_cell_view_shows_one_step_and_where_its_inputs_come_from():
    net = hand_built(5)
    source = view_to_dot(net, "cell", step=2).source
    labels, edges = rolled_edges(source)
    inside = step_nodes(net, 2)
    outside = {src.name for n in inside for src in n.inputs if src.meta.get("t") != 2}
    assert outside == {"U", "W", "t=1/s"}
    assert len(labels) == len(inside) + len(outside)
    assert sum(len(n.inputs) for n in inside) == len(edges)
    assert "tanh\\nt=1/s\\n(?, 3)" in labels.values()  # the previous state, by full name
    assert source.count("subgraph cluster") == 1


# ------------------------------------------------------------------ errors


def test_bad_view_window_or_step_raise_render_error():
    net = hand_built(3)
    with pytest.raises(tg.RenderError, match="view must be one of 'unrolled', 'rolled', 'cell'"):
        view_to_dot(net, "folded")
    with pytest.raises(tg.RenderError, match="window must be a positive int"):
        view_to_dot(net, window=0)
    with pytest.raises(tg.RenderError, match="window= applies to the unrolled view"):
        view_to_dot(net, "rolled", window=2)
    with pytest.raises(tg.RenderError, match=r"step must be an int in \[0, 3\)"):
        view_to_dot(net, "cell", step=3)
    with pytest.raises(tg.RenderError, match="has no .steps"):
        view_to_dot(types.SimpleNamespace(graph=net.graph), "rolled")
    with pytest.raises(tg.RenderError, match="unknown render option"):
        view_to_dot(net, "rolled", colour="red")

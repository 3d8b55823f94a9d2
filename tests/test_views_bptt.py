"""The bptt picture and rnn.bptt_gradients, against an independent numpy BPTT.

The reference is backpropagation through time for the seed's vanilla RNN
written out by hand below; expected counts come from the graph (how many
gradient nodes it holds, how many steps are shown), never from the view
code. Every SVG is parsed as XML.
"""

from __future__ import annotations

import math
import re
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from markdown_pages import run_page

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn.views import render_view, view_to_dot
from tinygraph_rnn.views_bptt import HIGH, LOW

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bptt.md"


def vanilla(T, H=8, D=3, O=3, B=2, w_scale=1.0, seed=0):  # noqa: N803, E741
    """A vanilla RNN, a mean cross-entropy loss over every step, its feeds and grads."""
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=seed)
    cell.params["W"] = w_scale * cell.params["W"]
    net = rnn.unroll(cell, steps=T)
    targets = net.graph.input("targets", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(net.logits), targets, name="loss")
    rng = np.random.default_rng(seed + 1)
    xs = rng.normal(size=(T, B, D))
    ys = rng.integers(0, O, size=(T, B))
    feeds = {x: xs[t] for t, x in enumerate(net.inputs)}
    feeds[targets] = ys
    return types.SimpleNamespace(net=net, loss=loss, feeds=feeds, xs=xs, ys=ys)


def numpy_state_grads(params, xs, ys):
    """∂L/∂s_t of L = mean over steps and batch of -log softmax(s_t V + c)[y_t], by hand.

    s_t = tanh(x_t U + s_{t-1} W + b), s_{-1} = 0. The gradient reaching s_t is
    its own output's term plus what comes back from s_{t+1} through W.
    """
    U, W, b, V, c = (params[k] for k in "UWbVc")  # noqa: N806
    T, B = ys.shape  # noqa: N806
    states, probs, s = [], [], np.zeros((B, W.shape[0]))
    for t in range(T):
        s = np.tanh(xs[t] @ U + s @ W + b)
        z = s @ V + c
        e = np.exp(z - z.max(axis=1, keepdims=True))
        states.append(s)
        probs.append(e / e.sum(axis=1, keepdims=True))
    out, carry = [None] * T, np.zeros_like(s)
    for t in reversed(range(T)):
        dz = probs[t].copy()
        dz[np.arange(B), ys[t]] -= 1.0
        out[t] = dz @ V.T / (T * B) + carry
        carry = (out[t] * (1.0 - states[t] ** 2)) @ W.T
    return out


def run_grads(case):
    grads = rnn.bptt_gradients(case.net, case.loss)
    arrays = case.net.graph.run(grads, case.feeds)
    return grads, dict(zip(grads, arrays, strict=True))


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()]


def texts(group: ET.Element) -> list[str]:
    return [" ".join((t.text or "").split()) for t in group.iter(SVG + "text")]


def step_clusters(root: ET.Element) -> dict[int, ET.Element]:
    found = {}
    for g in groups(root, "cluster"):
        m = re.match(r"t=(\d+)\b", texts(g)[0])
        if m:
            found[int(m.group(1))] = g
    return found


def fill_of(cluster: ET.Element) -> str:
    shape = next(e for e in cluster if e.tag in (SVG + "path", SVG + "polygon"))
    return shape.get("fill")


def hexcolor(rgb) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def darkness(hex_color: str) -> float:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return 765 - (r + g + b)


# ------------------------------------------------------------ the gradients


def test_bptt_gradients_equal_a_numpy_bptt_and_are_built_once():
    case = vanilla(6)
    before = len(case.net.graph)
    grads, values = run_grads(case)
    added = len(case.net.graph) - before
    assert added > 0 and rnn.bptt_gradients(case.net, case.loss) == grads
    assert len(case.net.graph) == before + added  # the second call built nothing
    want = numpy_state_grads(case.net.cell.params, case.xs, case.ys)
    for t, node in enumerate(grads):
        assert node.meta["grad_of"] == f"t={t}/s" and node.meta["grad"] is True
        np.testing.assert_allclose(values[node], want[t], rtol=1e-10, atol=1e-14)


def test_bptt_gradients_reject_a_bad_loss():
    case = vanilla(3)
    other = vanilla(3)
    with pytest.raises(tg.GraphError, match=r"must be a float scalar .* got shape \(\?, 3\)"):
        rnn.bptt_gradients(case.net, case.net.outputs[0])
    with pytest.raises(tg.GraphError, match="belongs to graph"):
        rnn.bptt_gradients(case.net, other.loss)
    with pytest.raises(tg.GraphError, match="scalar node"):
        rnn.bptt_gradients(case.net, 3.0)


# -------------------------------------------------------------- the picture


def test_steps_are_shaded_in_the_order_of_numpy_norms_and_labelled_with_them():
    case = vanilla(6, w_scale=0.6)
    grads, values = run_grads(case)
    want = [np.linalg.norm(g) for g in numpy_state_grads(case.net.cell.params, case.xs,
                                                         case.ys)]
    root = parse(render_view(case.net, view="bptt", loss=case.loss, values=values,
                             engine="wasm"))
    clusters = step_clusters(root)
    assert sorted(clusters) == list(range(6))
    for t, cluster in clusters.items():
        m = re.fullmatch(r"t=\d+ ‖∂L/∂s‖=(\d\.\de-\d\d)", texts(cluster)[0])
        assert m, texts(cluster)[0]
        assert float(m.group(1)) == pytest.approx(want[t], rel=0.051)  # 2 significant digits
    dark = {t: darkness(fill_of(c)) for t, c in clusters.items()}
    by_norm = sorted(range(6), key=lambda t: want[t])
    assert sorted(range(6), key=lambda t: dark[t]) == by_norm
    assert len(set(dark.values())) == 6
    assert fill_of(clusters[by_norm[0]]) == hexcolor(LOW)
    assert fill_of(clusters[by_norm[-1]]) == hexcolor(HIGH)
    swatches = {texts(g)[0]: fill_of(g) for g in groups(root, "cluster")}
    assert swatches["smallest"] == hexcolor(LOW)
    assert swatches["largest"] == hexcolor(HIGH)
    boxes = [texts(g)[-1] for g in groups(root, "legend")]
    lo, hi = by_norm[0], by_norm[-1]
    for t in (lo, hi):
        (shown,) = [b for b in boxes if b.endswith(f" at t={t}")]
        assert float(shown.split()[0]) == pytest.approx(want[t], rel=0.051)


def test_every_node_is_drawn_and_backward_nodes_carry_the_gradient_style():
    case = vanilla(5)
    grads, values = run_grads(case)
    graph = case.net.graph
    n_grad = sum(1 for n in graph.nodes.values() if n.meta.get("grad") is True)
    n_params = len(graph.params)
    root = parse(render_view(case.net, view="bptt", loss=case.loss, values=values,
                             engine="wasm"))
    nodes = groups(root, "node")
    assert len(groups(root, "grad")) == n_grad
    # every node but the (hidden) params, and the legend box (row anchors are invisible)
    nodes = [g for g in nodes if "anchor" not in g.get("class").split()]
    assert len(nodes) == len(graph) - n_params + 2   # + the legend's two swatches
    assert len(groups(root, "output")) == 5 + 1      # the step outputs and the loss
    # one cluster per step, plus the legend and its two swatches
    assert len(groups(root, "cluster")) == 5 + 3


def test_backward_edges_are_dashed_and_cross_steps_only_through_W():
    case = vanilla(5)
    _, values = run_grads(case)
    graph = case.net.graph
    source = view_to_dot(case.net, view="bptt", values=values).source
    grad_pairs = {(src.name, n.name) for n in graph.nodes.values() if n.meta.get("grad")
                  for src in n.inputs if src.meta.get("grad")}
    red = re.findall(r'^\s*n\d+ -> n\d+ \[([^\]]*style="dashed" color="#b03030"[^\]]*)\]',
                     source, re.M)
    assert len(red) == len(grad_pairs)
    # In a vanilla RNN the gradient passes from step t+1 to step t only through s_t @ W:
    # one thick edge per step boundary, laid out right to left (dir=back).
    thick = [attrs for attrs in red if 'penwidth="2"' in attrs]
    assert len(thick) == 5 - 1 and all('dir="back"' in attrs for attrs in thick)


def test_truncation_window_nests_the_last_steps_and_cuts_one_edge():
    case = vanilla(5)
    _, values = run_grads(case)
    source = view_to_dot(case.net, view="bptt", loss=case.loss, values=values,
                         truncate=2).source
    label = "truncated BPTT window: 2 steps (t=3 … t=4)"
    # the window cluster opens at depth 1 and holds exactly the step clusters t=3 and t=4
    lines = source.splitlines()
    (start,) = [i for i, line in enumerate(lines) if f'graph [label="{label}"' in line]
    depth = len(lines[start]) - len(lines[start].lstrip("\t"))
    inside = []
    for line in lines[start + 1:]:
        if line.strip() == "}" and len(line) - len(line.lstrip("\t")) == depth - 1:
            break
        m = re.search(r'graph \[label="(t=\d+)', line)
        if m:
            inside.append(m.group(1))
    assert inside == ["t=3", "t=4"]
    cut = re.findall(r'^\s*n\d+ -> n\d+ \[.*label="cut".*\]$', source, re.M)
    assert len(cut) == 1
    root = parse(render_view(case.net, view="bptt", values=values, truncate=2, engine="wasm"))
    assert any(texts(g)[0] == label for g in groups(root, "cluster"))


def test_long_net_keeps_three_steps_at_each_end_with_the_norm_range_between():
    case = vanilla(30, H=4, w_scale=0.5)
    _, values = run_grads(case)
    want = [np.linalg.norm(g) for g in numpy_state_grads(case.net.cell.params, case.xs,
                                                         case.ys)]
    root = parse(render_view(case.net, view="bptt", values=values, engine="wasm"))
    assert sorted(step_clusters(root)) == [0, 1, 2, 27, 28, 29]
    (gap,) = groups(root, "ellipsis")
    first, where, second = texts(gap)
    assert (first, where) == ("… 24 steps …", "t=3 … t=26")
    m = re.fullmatch(r"‖∂L/∂s‖ (\S+) … (\S+)", second)
    assert float(m.group(1)) == pytest.approx(min(want[3:27]), rel=0.051)
    assert float(m.group(2)) == pytest.approx(max(want[3:27]), rel=0.051)
    two = parse(render_view(case.net, view="bptt", values=values, steps=[0, -1],
                            engine="wasm"))
    assert sorted(step_clusters(two)) == [0, 29]


def test_unshaded_without_values_deterministic_and_the_graph_unchanged():
    a, b = vanilla(4), vanilla(4)
    for case in (a, b):
        rnn.bptt_gradients(case.net, case.loss)
    size, version = len(a.net.graph), a.net.graph.version
    first = view_to_dot(a.net, view="bptt").source
    svg = render_view(a.net, view="bptt", loss="loss", engine="wasm")
    assert (len(a.net.graph), a.net.graph.version) == (size, version)
    assert first == view_to_dot(b.net, view="bptt").source == a.net.to_dot(view="bptt").source
    assert "no gradient values" in first
    assert not re.search(r"subgraph cluster_\d+ \{ graph", first)  # no cluster is shaded
    assert len(step_clusters(parse(svg))) == 4


def test_lstm_norm_joins_both_state_parts():
    cell = rnn.LSTMCell(input_size=2, hidden_size=3, seed=0)
    net = rnn.unroll(cell, steps=3)
    loss = tg.sum(net.outputs[-1] * net.outputs[-1])
    grads = rnn.bptt_gradients(net, loss)
    assert all(isinstance(g, tuple) and len(g) == 2 for g in grads)
    flat = [p for g in grads for p in g]
    feeds = {x: np.full((1, 2), 0.5) for x in net.inputs}
    values = dict(zip(flat, net.graph.run(flat, feeds), strict=True))
    root = parse(render_view(net, view="bptt", values=values, engine="wasm"))
    for t, cluster in step_clusters(root).items():
        dh, dc = values[grads[t][0]], values[grads[t][1]]
        want = math.sqrt(np.sum(dh ** 2) + np.sum(dc ** 2))
        shown = float(texts(cluster)[0].rpartition("=")[2])
        assert shown == pytest.approx(want, rel=0.051)
    assert len(groups(root, "grad")) == sum(1 for n in net.graph.nodes.values()
                                            if n.meta.get("grad"))


def test_zero_and_nan_gradients_get_their_own_fills():
    case = vanilla(3, H=3)
    loss0 = tg.sum(case.net.states[0], name="first")   # later states do not reach it
    grads = rnn.bptt_gradients(case.net, loss0)
    arrays = case.net.graph.run(grads, case.feeds)
    assert [float(np.abs(a).sum()) for a in arrays[1:]] == [0.0, 0.0]
    values = dict(zip(grads, arrays, strict=True))
    root = parse(render_view(case.net, view="bptt", loss=loss0, values=values, engine="wasm"))
    clusters = step_clusters(root)
    assert [texts(clusters[t])[0].rpartition("=")[2] for t in (1, 2)] == ["0", "0"]
    assert fill_of(clusters[0]) == hexcolor(HIGH)
    assert fill_of(clusters[1]) == fill_of(clusters[2]) == hexcolor(LOW)
    values[grads[2]] = np.full((2, 3), np.nan)
    root = parse(render_view(case.net, view="bptt", loss=loss0, values=values, engine="wasm"))
    nan_step = step_clusters(root)[2]
    assert texts(nan_step)[0].endswith("=nan") and fill_of(nan_step) not in (hexcolor(LOW),
                                                                             hexcolor(HIGH))


# ------------------------------------------------------------------ errors


def test_clear_errors_for_missing_bad_or_foreign_losses_and_bad_arguments():
    case = vanilla(4)
    with pytest.raises(tg.RenderError, match=r"bptt_gradients\(net, loss\) first"):
        view_to_dot(case.net, view="bptt")
    with pytest.raises(tg.RenderError, match=r"no ∂loss/∂s_t nodes.*bptt_gradients"):
        view_to_dot(case.net, view="bptt", loss=case.loss)
    with pytest.raises(tg.RenderError, match=r"must be a float scalar.*\(\?, 3\)"):
        view_to_dot(case.net, view="bptt", loss=case.net.outputs[0])
    with pytest.raises(tg.RenderError, match="belongs to graph"):
        view_to_dot(case.net, view="bptt", loss=vanilla(4).loss)
    grads, values = run_grads(case)
    second = tg.sum(case.net.states[0], name="second")
    rnn.bptt_gradients(case.net, second)
    with pytest.raises(tg.RenderError, match="several losses"):
        view_to_dot(case.net, view="bptt")
    partial = {grads[0]: values[grads[0]]}
    with pytest.raises(tg.RenderError, match="not for t=1, t=2, t=3"):
        view_to_dot(case.net, view="bptt", loss="loss", values=partial)
    bad = [({"truncate": 5}, r"truncate must be an int in \[1, 4\]"),
           ({"truncate": True}, "truncate must be"),
           ({"steps": [4]}, r"steps must hold ints in \[-4, 4\)"),
           ({"steps": []}, "steps is empty"),
           ({"steps": 2}, "sequence of step indices"),
           ({"steps": [0], "window": 1}, "not both"),
           ({"window": 0}, "window must be a positive int"),
           ({"colour": "red"}, "unknown render option"),
           ({"max_nodes": 10}, "max_nodes=10")]
    for kwargs, message in bad:
        with pytest.raises(tg.RenderError, match=message):
            view_to_dot(case.net, view="bptt", loss="loss", **kwargs)
    with pytest.raises(tg.RenderError, match="window= applies to the unrolled view"):
        view_to_dot(case.net, view="rolled", window=2)


def test_shared_boxes_become_stubs_that_keep_their_edges():
    # 12 steps: the loss's gradient is sliced by 12 readers, W by 24 (> max_fanout=8).
    case = vanilla(12, H=3)
    _, values = run_grads(case)
    source = view_to_dot(case.net, view="bptt", values=values, steps=range(12),
                         hide_params=False).source
    boxes = set(re.findall(r"^\s*(n\d+) \[", source, re.M))
    stubs = set(re.findall(r'^\s*(n\d+) \[.*class="stub', source, re.M))
    tails = re.findall(r"^\s*(n\d+) -> (n\d+)", source, re.M)
    assert len(stubs) > 24
    linked = {a for pair in tails for a in pair}
    assert stubs <= linked                        # every stub is drawn with its edge
    assert len(boxes - linked) == 2   # the legend's swatches; params appear as stubs only


def test_twenty_step_render_is_fast():
    case = vanilla(20)
    _, values = run_grads(case)
    start = time.perf_counter()
    svg = render_view(case.net, view="bptt", values=values, truncate=5, engine="wasm")
    assert time.perf_counter() - start < 10
    assert len(step_clusters(parse(svg))) == 6


# -------------------------------------------------------------- docs, figure


def test_docs_bptt_md_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace, ran = run_page(DOC)
    assert ran >= 2
    assert parse((tmp_path / "bptt.svg").read_text(encoding="utf-8"))
    # The doc's printed norms against the hand-written BPTT of its own net (last step scored).
    net, feeds = namespace["net"], namespace["feeds"]
    p = net.cell.params
    xs = np.stack([feeds[x] for x in net.inputs])
    s, states = np.zeros((xs.shape[1], p["W"].shape[0])), []
    for x in xs:
        s = np.tanh(x @ p["U"] + s @ p["W"] + p["b"])
        states.append(s)
    z = states[-1] @ p["V"] + p["c"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(dz)), feeds[namespace["target"]]] -= 1.0
    ds = dz @ p["V"].T / len(dz)
    want = []
    for t in reversed(range(len(xs))):
        want.append(np.linalg.norm(ds))
        ds = (ds * (1.0 - states[t] ** 2)) @ p["W"].T
    np.testing.assert_allclose(namespace["norms"], want[::-1], rtol=1e-10)


def test_figure_script_writes_the_committed_bptt_figure(tmp_path):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import make_rnn_figures
    finally:
        sys.path.pop(0)
    path = make_rnn_figures.bptt_figure(tmp_path)
    svg = path.read_text(encoding="utf-8")
    root = parse(svg)
    assert len(step_clusters(root)) == make_rnn_figures.BPTT_STEPS
    committed = ROOT / "docs" / "figures" / "rnn_bptt.svg"
    assert committed.read_text(encoding="utf-8") == svg, "regenerate docs/figures/rnn_bptt.svg"
    assert "figures/rnn_bptt.svg" in DOC.read_text(encoding="utf-8")

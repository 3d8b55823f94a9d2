"""A scan node drawn rolled: its body in one cluster, carries looping back.

The DOT text is parsed back into clusters, boxes and edges (a small reader
below: the writer puts one statement per line), and the SVG from the
WebAssembly Graphviz is parsed as XML; both are checked against what the
hand-written step functions here build (how many ops, which carries, how
long), never against the renderer's own idea of the graph.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.render import render_svg, scans

SVG = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------- DOT reader


@dataclass
class Dot:
    clusters: dict[str, dict] = field(default_factory=dict)  # id -> {attrs, parent}
    boxes: dict[str, dict] = field(default_factory=dict)  # id -> {attrs, cluster}
    edges: list[tuple[str, str, dict]] = field(default_factory=list)

    def inside(self, box: str, cluster: str) -> bool:
        """Is ``box`` drawn in ``cluster`` (directly or in a cluster nested in it)?"""
        where = self.boxes[box]["cluster"]
        while where is not None:
            if where == cluster:
                return True
            where = self.clusters[where]["parent"]
        return False

    def of_class(self, cls: str) -> list[str]:
        return [c for c, v in self.clusters.items() if cls in v["attrs"].get("class", "").split()]

    def labelled(self, text: str) -> list[str]:
        return [b for b, v in self.boxes.items() if v["attrs"]["label"] == text]


_ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _attrs(text: str) -> dict[str, str]:
    return {k: v.replace("\\n", "\n") for k, v in _ATTR.findall(text)}


def read_dot(source: str) -> Dot:
    dot = Dot()
    stack: list[str | None] = [None]
    for line in source.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"subgraph (cluster_\d+) \{", line):
            dot.clusters[m[1]] = {"attrs": {}, "parent": stack[-1]}
            stack.append(m[1])
        elif line == "}":
            stack.pop()
        elif line.startswith("graph [") and stack[-1] is not None:
            dot.clusters[stack[-1]]["attrs"] = _attrs(line)
        elif m := re.fullmatch(r"(n\d+) -> (n\d+)(?: \[(.*)\])?", line):
            dot.edges.append((m[1], m[2], _attrs(m[3] or "")))
        elif m := re.fullmatch(r"(n\d+) \[(.*)\]", line):
            dot.boxes[m[1]] = {"attrs": _attrs(m[2]), "cluster": stack[-1]}
    assert stack == [], "unbalanced braces"
    return dot


def back_edges(dot: Dot) -> list[tuple[str, str, dict]]:
    return [e for e in dot.edges if e[2].get("constraint") == "false"]


# ------------------------------------------------------------- graphs


def vanilla(steps: int | None = 5) -> tuple[tg.Graph, dict]:
    """s_t = tanh(x_t @ U + s_{t-1} @ W + b): 2 matmuls, 2 adds, 1 tanh in the body."""
    g = tg.Graph("rnn")
    xs = g.input("xs", shape=(steps, None, 3))
    s0 = g.input("s0", shape=(None, 4))
    rng = np.random.default_rng(0)
    U, W = g.param("U", rng.normal(size=(3, 4))), g.param("W", rng.normal(size=(4, 4)))
    b = g.param("b", np.zeros(4))

    def step(s, x):
        s = tg.tanh(x @ U + s @ W + b, name="s_new")
        return s, s

    last, states = tg.scan(step, s0, xs)
    return g, {"xs": xs, "s0": s0, "U": U, "W": W, "b": b, "last": last, "states": states}


def the_cluster(dot: Dot) -> str:
    found = dot.of_class("scan")
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------- tests


def test_vanilla_scan_is_one_cluster_with_its_body():
    g, _ = vanilla(5)
    dot = read_dot(g.to_dot().source)
    cluster = the_cluster(dot)
    assert dot.clusters[cluster]["attrs"]["label"] == "scan × 5"
    inside = [b for b in dot.boxes if dot.inside(b, cluster)]
    ops = sorted(dot.boxes[b]["attrs"]["label"].split("\n")[0] for b in inside)
    # the two body inputs (carry, step of xs) and the step's five ops
    assert ops == ["add", "add", "carry0", "matmul", "matmul", "tanh", "x0"]
    outside = sorted(dot.boxes[b]["attrs"]["label"].split("\n")[0]
                     for b in dot.boxes if b not in inside)
    # params and inputs outside; the final carry and the states leave it; the saved
    # carries (kept for a gradient nobody asked for) are not drawn
    assert outside == ["U", "W", "b", "s0", "unpack", "unpack", "xs"]
    assert "saved" not in g.to_dot().source


def test_vanilla_scan_wiring():
    g, _ = vanilla(5)
    dot = read_dot(g.to_dot().source)
    (carry,) = dot.labelled("carry0\ncarry (?, 4)")
    (x_t,) = dot.labelled("x0\nstep of xs (?, 3)")
    (new,) = dot.labelled("tanh\ns_new\n(?, 4)")
    (s0,) = dot.labelled("s0\ninput (?, 4)")
    (xs,) = dot.labelled("xs\ninput (5, ?, 3)")
    (back,) = back_edges(dot)
    assert back[:2] == (new, carry)
    assert back[2]["label"] == "next step" and back[2]["class"] == "recurrent"
    edges = {(s, d): a.get("label") for s, d, a in dot.edges}
    assert edges[(s0, carry)] == "init" and (xs, x_t) in edges
    finals = {a["label"]: d for s, d, a in dot.edges if s == new and "label" in a}
    assert set(finals) == {"final", "stacked", "next step"}
    assert dot.boxes[finals["final"]]["attrs"]["label"].startswith("unpack\nscan.carry0")
    assert dot.boxes[finals["stacked"]]["attrs"]["label"].startswith("unpack\nscan.ys0")
    # captured params feed the body's matmuls straight from outside
    for name, shape in (("U", "(3, 4)"), ("W", "(4, 4)")):
        (param,) = dot.labelled(f"{name}\nparam {shape}")
        readers = [d for s, d, _ in dot.edges if s == param]
        assert len(readers) == 1 and dot.boxes[readers[0]]["attrs"]["label"].startswith("matmul")


@pytest.mark.parametrize(("steps", "label"), [(7, "scan × 7"), (None, "scan × T steps")])
def test_label_states_the_length(steps, label):
    g, _ = vanilla(steps)
    dot = read_dot(g.to_dot().source)
    assert dot.clusters[the_cluster(dot)]["attrs"]["label"] == label


def test_length_without_xs_and_optimizer_style_unpacks():
    g = tg.Graph("count")
    total, _ = tg.scan(lambda c, _: (c + 1.0, None), g.const(np.zeros(())), length=3)
    scan = total.inputs[0]
    # An unpack with another name (as a pass may make): matched by its index attr.
    other = g.add_node("unpack", [scan], {"index": 1, "shape": (3,), "dtype": "float64"},
                       name="kept_carries")
    assert "kept_carries" not in g.to_dot().source  # saved carries nobody reads: hidden
    dot = read_dot(g.to_dot(fetches=[total, other]).source)  # fetched: drawn
    assert dot.clusters[the_cluster(dot)]["attrs"]["label"] == "scan × 3"
    (box,) = dot.labelled("unpack\nkept_carries\n(3,)")
    (carry,) = dot.labelled("carry0\ncarry ()")
    # output 1 of a 1-carry, 0-ys scan is the saved carry: the body's carry input itself
    assert [(s, a["label"]) for s, d, a in dot.edges if d == box] == [(carry, "saved")]
    assert other.name in g


def test_svg_cluster_holds_the_body_and_one_recurrent_edge():
    g, _ = vanilla(5)
    root = ET.fromstring(render_svg(g, engine="wasm"))
    clusters = [el for el in root.iter(SVG + "g") if el.get("class") == "cluster scan"]
    assert len(clusters) == 1
    assert [t.text for t in clusters[0].iter(SVG + "text")] == ["scan × 5"]
    xs, ys = _points(clusters[0].find(SVG + "path") if clusters[0].find(SVG + "path")
                     is not None else clusters[0].find(SVG + "polygon"))
    box = (min(xs), max(xs), min(ys), max(ys))
    inside = []
    for node in root.iter(SVG + "g"):
        if node.get("class", "").split()[:1] != ["node"]:
            continue
        text = node.find(SVG + "text").text
        cx, cy = _centre(node)
        if box[0] < cx < box[1] and box[2] < cy < box[3]:
            inside.append(text)
    assert sorted(inside) == ["add", "add", "carry0", "matmul", "matmul", "tanh", "x0"]
    recurrent = [el for el in root.iter(SVG + "g") if "recurrent" in el.get("class", "").split()]
    assert len(recurrent) == 1


def _points(shape: ET.Element) -> tuple[list[float], list[float]]:
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", shape.get("d") or
                                            shape.get("points"))]
    return numbers[0::2], numbers[1::2]


def _centre(node: ET.Element) -> tuple[float, float]:
    ellipse = node.find(SVG + "ellipse")
    if ellipse is not None:
        return float(ellipse.get("cx")), float(ellipse.get("cy"))
    xs, ys = _points(node.find(SVG + "path") if node.find(SVG + "path") is not None
                     else node.find(SVG + "polygon"))
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2


def test_lstm_scanned_has_two_back_edges_and_displays_without_system_dot(monkeypatch, tmp_path):
    net = rnn.scan(rnn.LSTMCell(input_size=3, hidden_size=4, seed=0))
    dot = read_dot(net.to_dot().source)
    cluster = the_cluster(dot)
    assert dot.clusters[cluster]["attrs"]["label"] == "scan × T steps"
    back = back_edges(dot)
    assert len(back) == 2  # h and c
    heads = sorted(dot.boxes[d]["attrs"]["label"].split("\n")[0] for _, d, _ in back)
    assert heads == ["carry0", "carry1"]
    assert all(dot.inside(s, cluster) and dot.inside(d, cluster) for s, d, _ in back)
    # the final state leaves the same nodes that loop back
    finals = sorted(s for s, _, a in dot.edges if a.get("label") == "final")
    assert finals == sorted(s for s, _, _ in back)
    initial = sorted(s for s, _, a in dot.edges if a.get("label") == "init")
    assert sorted(dot.boxes[s]["attrs"]["label"].split("\n")[0] for s in initial) == ["c0", "h0"]

    monkeypatch.setenv("PATH", str(tmp_path))  # no system dot: the WebAssembly engine draws
    bundle = net._repr_mimebundle_()
    root = ET.fromstring(bundle["image/svg+xml"])
    assert sum(el.get("class") == "cluster scan" for el in root.iter(SVG + "g")) == 1
    assert net.to_dot()._repr_mimebundle_()["image/svg+xml"].count("recurrent") == 2
    out = net.render(tmp_path / "lstm.svg")
    assert out.endswith("lstm.svg") and "cluster scan" in (tmp_path / "lstm.svg").read_text()


def test_gradient_graph_draws_the_reverse_scan():
    g, n = vanilla(5)
    loss = tg.sum(n["states"] * n["states"])
    tg.grad(loss, [n["U"], n["W"], n["b"], n["s0"], n["xs"]])
    dot = read_dot(g.to_dot().source)
    scans_ = dot.of_class("scan")
    assert len(scans_) == 2
    labels = sorted(dot.clusters[c]["attrs"]["label"] for c in scans_)
    assert labels == ["scan × 5", "scan × 5\nreversed"]
    forward, backward = sorted(scans_, key=lambda c: "reversed" in dot.clusters[c]["attrs"]
                               ["label"])
    per = {c: [e for e in back_edges(dot) if dot.inside(e[1], c)] for c in scans_}
    # forward: the state; backward: d state, and one running sum per captured param
    assert len(per[forward]) == 1 and len(per[backward]) == 1 + 3
    # the reverse scan reads the saved states: that unpack is drawn now
    (saved,) = [b for b, v in dot.boxes.items()
                if v["attrs"]["label"].startswith("unpack\nscan.saved0")]
    (carry,) = dot.labelled("carry0\ncarry (?, 4)")
    assert [(s, a.get("label")) for s, d, a in dot.edges if d == saved] == [(carry, "saved")]
    # ... and steps through them: its per-step input is fed by that unpack
    (step_input,) = dot.labelled("carry0\nstep of scan.saved0 (?, 4)")
    assert dot.inside(step_input, backward) and (saved, step_input) in [e[:2] for e in dot.edges]
    root = ET.fromstring(render_svg(g, engine="wasm"))
    assert sum(el.get("class") == "cluster scan" for el in root.iter(SVG + "g")) == 2


def nested() -> tg.Graph:
    g = tg.Graph("nested")
    xss = g.input("xss", shape=(5, 3, 2))

    def outer(c, xs):
        inner_total, _ = tg.scan(lambda a, x: (a + x * c, None), c, xs, name="inner")
        return inner_total, inner_total

    tg.scan(outer, g.const(np.ones(2)), xss, name="outer")
    return g


def test_nested_scan_is_a_cluster_in_a_cluster():
    dot = read_dot(nested().to_dot().source)
    by_label = {dot.clusters[c]["attrs"]["label"]: c for c in dot.of_class("scan")}
    assert sorted(by_label) == ["inner × 3", "outer × 5"]
    outer, inner = by_label["outer × 5"], by_label["inner × 3"]
    assert dot.clusters[inner]["parent"] == outer
    back = back_edges(dot)
    assert len(back) == 2
    inner_back = [e for e in back if dot.inside(e[0], inner)]
    assert len(inner_back) == 1 and dot.inside(inner_back[0][1], inner)
    (outer_back,) = [e for e in back if e not in inner_back]
    # the outer carry comes back from the inner scan's final carry (an unpack in the outer body)
    assert dot.boxes[outer_back[0]]["attrs"]["label"].startswith("unpack\ninner.carry0")
    assert dot.inside(outer_back[1], outer) and not dot.inside(outer_back[1], inner)
    # the inner body reads the outer carry it captured, across its cluster's border
    (outer_carry,) = [b for b in dot.boxes if dot.boxes[b]["cluster"] == outer
                      and dot.boxes[b]["attrs"]["label"].startswith("carry0")]
    into_inner = [d for s, d, _ in dot.edges if s == outer_carry and dot.inside(d, inner)]
    assert sorted(dot.boxes[d]["attrs"]["label"].split("\n")[0] for d in into_inner) == [
        "carry0", "mul"]
    ET.fromstring(render_svg(nested(), engine="wasm"))


def test_nesting_deeper_than_the_limit_says_so(monkeypatch):
    monkeypatch.setattr(scans, "MAX_DEPTH", 1)
    with pytest.raises(tg.RenderError, match=r"scan 'inner' is nested 2 scans deep; .* at "
                                             r"most 1 level"):
        nested().to_dot()


def test_same_dot_twice_and_in_another_process():
    first = nested().to_dot().source + vanilla(None)[0].to_dot().source
    assert nested().to_dot().source + vanilla(None)[0].to_dot().source == first
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_render_scan import nested, vanilla
        sys.stdout.write(nested().to_dot().source + vanilla(None)[0].to_dot().source)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout == first


def test_hostile_scan_name_and_options():
    g = tg.Graph("hostile")
    xs = g.input("xs", shape=(2, 3))
    tg.scan(lambda c, x: (c * x, c), g.input("c0", shape=(3,)), xs, name='loop "1" <a|b>\\')
    source = g.to_dot().source
    assert 'label="loop \\"1\\" <a|b>\\\\ × 2"' in source
    root = ET.fromstring(render_svg(g, engine="wasm"))
    (cluster,) = [el for el in root.iter(SVG + "g") if el.get("class") == "cluster scan"]
    assert [t.text for t in cluster.iter(SVG + "text")] == ['loop "1" <a|b>\\ × 2']
    # a body without ops still draws: the carry and the step input
    hidden = read_dot(g.to_dot(hide_params=True, order=True).source)
    assert len(hidden.of_class("scan")) == 1


def test_collapsed_scope_keeps_a_scan_folded():
    g = tg.Graph("layered")
    xs = g.input("xs", shape=(4, 2))
    with g.scope("layer"):
        tg.scan(lambda c, x: (tg.tanh(c + x), None), g.input("c0", shape=(2,)), xs)
    dot = read_dot(g.to_dot(collapse=True).source)
    assert dot.of_class("scan") == []
    assert len(read_dot(g.to_dot().source).of_class("scan")) == 1

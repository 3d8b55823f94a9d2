"""The `tinygraph` command line: render and info on saved graphs."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.cli import main

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def saved(tmp_path):
    g = tg.Graph("small rnn")
    U = g.param("U", np.ones((2, 3)))
    s = g.input("s0", shape=(None, 3))
    for k in range(3):
        with g.scope(f"t={k}"):
            s = tg.tanh(g.input("x", shape=(None, 2)) @ U + s, name="s")
    return g, g.save(tmp_path / "net.tgraph")


def node_groups(path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [g for g in root.iter(SVG + "g") if "node" in g.get("class", "").split()]


def test_render_writes_svg_and_prints_the_path(saved, tmp_path, capsys):
    g, path = saved
    out = tmp_path / "out.svg"
    assert main(["render", str(path), "-o", str(out), "--engine", "wasm"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len(node_groups(out)) == len(g)


def test_render_collapse_and_default_output_name(saved, tmp_path):
    g, path = saved
    assert main(["render", str(path), "--collapse", "--hide-params", "--engine", "wasm"]) == 0
    boxes = node_groups(tmp_path / "net.svg")
    assert len(boxes) == 3 + 1  # three scopes, s0 (U hidden)


def test_render_dot_format_is_the_dot_text(saved, tmp_path):
    g, path = saved
    assert main(["render", str(path), "--format", "dot", "-o", str(tmp_path / "g.txt"),
                 "--rankdir", "LR"]) == 0
    assert (tmp_path / "g.txt").read_text() == tg.load(path).to_dot(rankdir="LR").source


def test_render_errors_are_one_line_and_status_1(saved, tmp_path, monkeypatch, capsys):
    g, path = saved
    monkeypatch.setenv("PATH", str(tmp_path))  # no system dot: png is impossible
    assert main(["render", str(path), "--format", "png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinygraph: error: format 'png' needs the system Graphviz `dot`")
    assert err.count("\n") == 1
    (tmp_path / "bad.tgraph").write_bytes(b"not a zip")
    assert main(["info", str(tmp_path / "bad.tgraph")]) == 1
    assert capsys.readouterr().err.startswith("tinygraph: error: ")
    assert main(["info", str(tmp_path / "missing.tgraph")]) == 1
    assert "missing.tgraph" in capsys.readouterr().err
    assert main(["render"]) == 2  # usage error from argparse


def test_info_counts_nodes_ops_inputs_params_outputs(saved, capsys):
    g, path = saved
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"graph 'small rnn': {len(g)} nodes, 15 edges"  # 5 a step
    assert lines[1] == "ops (9): matmul ×3, add ×3, tanh ×3"
    assert lines[2].startswith("inputs (4): s0 (?, 3) float64, t=0/x (?, 2) float64")
    assert lines[3] == "params (1, 6 values): U (2, 3) float64"
    assert lines[5] == "outputs (1): t=2/s (?, 3) float64"
    assert lines[6] == "scopes (3): t=0 (4 nodes), t=1 (4 nodes), t=2 (4 nodes)"


def test_info_json(saved, capsys):
    g, path = saved
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["nodes"] == len(g) and info["ops"] == {"matmul": 3, "add": 3, "tanh": 3}
    assert [p["name"] for p in info["params"]] == ["U"]
    assert [o["name"] for o in info["outputs"]] == ["t=2/s"]


def test_installed_console_script_runs(saved, tmp_path):
    g, path = saved
    done = subprocess.run([sys.executable, "-m", "tinygraph.cli", "info", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("graph 'small rnn'")


def test_run_evaluates_outputs_with_feeds_from_npz(tmp_path, capsys):
    import tinygraph as tg
    from tinygraph.cli import main

    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 2))
    W = g.param("W", np.array([[1.0, -2.0], [0.5, 3.0]]))
    tg.tanh(x @ W, name="y")
    path = tmp_path / "g.tgraph"
    g.save(path)
    xv = np.array([[0.1, 0.2], [-0.3, 0.4]])
    np.savez(tmp_path / "feeds.npz", x=xv)
    out = tmp_path / "out.npz"
    assert main(["run", str(path), "--feeds", str(tmp_path / "feeds.npz"), "-o", str(out)]) == 0
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["y"], np.tanh(xv @ W.value), rtol=1e-15)
    capsys.readouterr()
    assert main(["run", str(path), "--feeds", str(tmp_path / "feeds.npz")]) == 0
    assert capsys.readouterr().out.startswith("y (2, 2) float64:")


def test_run_reports_missing_feeds_and_bad_feed_files(tmp_path, capsys):
    import tinygraph as tg
    from tinygraph.cli import main

    g = tg.Graph()
    tg.exp(g.input("x", shape=(2,)), name="y")
    path = tmp_path / "g.tgraph"
    g.save(path)
    assert main(["run", str(path)]) == 1
    assert "input 'x'" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["run", str(path), "--feeds", str(tmp_path / "bad.npz")]) == 1
    assert "cannot read feeds" in capsys.readouterr().err

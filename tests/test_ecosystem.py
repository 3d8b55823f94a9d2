"""What a user outside the library meets: g.nx export, check_finite, --version."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import networkx as nx
import numpy as np
import pytest
from networkx.readwrite import json_graph

import tinygraph as tg
import tinygraph_rnn as rnn


def test_graphml_of_an_unrolled_lstm_reads_back_with_op_shape_and_step(tmp_path):
    net = rnn.unroll(rnn.LSTMCell(input_size=3, hidden_size=4, seed=0), steps=3)
    path = tmp_path / "lstm.graphml"
    nx.write_graphml(net.graph.nx, path)
    back = nx.read_graphml(path)
    assert list(back.nodes) == list(net.graph.nodes)
    for name, node in net.graph.nodes.items():
        data = back.nodes[name]
        assert data["op"] == node.op and data["dtype"] == str(node.dtype)
        assert data["shape"] == "(" + ", ".join("?" if d is None else str(d)
                                               for d in node.shape) + (",)" if len(node.shape)
                                                                       == 1 else ")")
        if name.startswith("t=2/"):
            assert data["t"] == 2 and data["template"] == name[len("t=2/"):]
    assert set(back.edges) == {(s.name, n.name) for n in net.graph.nodes.values()
                               for s in n.inputs}
    # The file is GraphML a non-networkx reader parses: keys declared, one <node> per node.
    root = ET.parse(path).getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == len(net.graph.nodes)
    assert {k.get("attr.name") for k in root.findall("g:key", ns)} >= {"op", "kind", "shape",
                                                                      "dtype", "t", "template"}
    json.dumps(json_graph.node_link_data(net.graph.nx, edges="links"))


def test_repeated_inputs_show_every_slot_and_nx_users_filter_by_op():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    y = g.param("y", np.ones(2))
    z = tg.where(x > 0.0, x, x) * y
    edges = g.nx.edges
    where = z.inputs[0]
    assert edges["x", where.name]["slots"] == "1,2" and edges["x", where.name]["slot"] == 1
    assert edges["y", z.name]["slots"] == "1"
    w = x * x  # added after g.nx was made: kept in sync
    assert g.nx.edges["x", w.name]["slots"] == "0,1"
    assert [n for n, k in g.nx.nodes(data="kind") if k != "op"][:2] == ["x", "y"]
    assert g.nx.nodes[w.name]["node"] is w and "node" not in g.nx.nodes[w.name]


def test_check_finite_names_the_node_that_took_log_of_zero():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.eye(3))
    h = tg.tanh(x @ W)
    bad = tg.log(h, name="log_h")            # log(0) = -inf where x is 0
    loss = tg.mean(bad * 2.0)
    feeds = {"x": np.array([[1.0, 0.0, 2.0]])}
    with np.errstate(divide="ignore"):  # unchecked: -inf and at best a numpy warning
        assert np.isneginf(g.run(loss, feeds=feeds))
    with pytest.raises(tg.EvaluationError, match=r"node 'log_h' \(log\) produced -inf at index "
                                                 r"\(0, 1\) from inputs of shape \[\(1, 3\)\]"):
        g.run(loss, feeds=feeds, check_finite=True)
    fn = g.compile(loss, inputs=["x"], check_finite=True)
    with pytest.raises(tg.EvaluationError, match="node 'log_h'"):
        fn(feeds["x"])
    assert fn(np.ones((2, 3))) == pytest.approx(2 * np.log(np.tanh(1.0)))


def test_check_finite_blames_a_fed_nan_not_the_node_reading_it():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    with pytest.raises(tg.EvaluationError, match=r"input 'x' holds nan at index \(1,\)"):
        g.run(tg.exp(x), feeds={"x": np.array([0.0, np.nan])}, check_finite=True)


def test_version_flag_prints_the_installed_version():
    out = subprocess.run([sys.executable, "-m", "tinygraph.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"tinygraph {tg.__version__}"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _NotebookStream(io.StringIO):
    """Looks like ipykernel's OutStream (what sys.stdout is in a Jupyter kernel)."""


_NotebookStream.__module__ = "ipykernel.iostream"


@pytest.mark.parametrize("stream", [_Terminal, _NotebookStream])
def test_progress_is_live_on_terminals_and_in_notebooks(stream):
    out = stream()
    lm = rnn.CharLM.from_text("abcabd " * 30, hidden_size=8, seq_len=4, batch_size=2)
    seen = []
    history = lm.train(4, file=out, callback=lambda *a: seen.append(a), val_every=2)
    text = out.getvalue()
    assert "\r" in text and "4/4" in text and f"loss={history[-1]:.4f}" in text
    assert text.count("\n") <= 1  # redrawn in place, not one line per update
    assert [s[0] for s in seen] == [1, 2, 3, 4] and [s[1] for s in seen] == history
    assert [s[2] is None for s in seen] == [True, False, True, False]
    assert seen[-1][2] == pytest.approx(lm.validation_loss())


def test_callback_returning_false_stops_training():
    lm = rnn.CharLM.from_text("abcabd " * 30, hidden_size=8, seq_len=4, batch_size=2)
    history = lm.train(10, verbose=False, callback=lambda step, *_: step < 3)
    assert len(history) == 3 and lm.trained_steps == 3

"""Issue 13: each class of silent wrong result or raw exception, refused or fixed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph import cli
from tinygraph.core.ops import OPS
from tinygraph.exec.interpreter import Interpreter
from tinygraph.passes import fold_constants


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16"])
@pytest.mark.parametrize("op,ref", [("tanh", np.tanh), ("exp", np.exp), ("log", np.log)])
def test_unary_float_ops_compute_in_the_recorded_dtype(op, ref, dtype):
    g = tg.Graph()
    x = g.input("x", shape=(2,), dtype=dtype)
    y = getattr(tg, op)(x)
    value = np.array([1, 1] if dtype == "bool" else [100, 3], dtype=dtype)
    want = ref(value.astype(np.float64))  # hand-written reference in float64
    with np.errstate(all="ignore"):
        got = g.run(y, {"x": value})
        folded = Interpreter(g, y).run({"x": value})
    assert y.dtype == got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(folded, want, rtol=1e-15)


def test_constant_folding_agrees_with_the_interpreter_for_int16():
    g = tg.Graph()
    y = tg.exp(g.const(np.array([100], dtype=np.int16)))
    folded = fold_constants(g, [y])
    value = next(n for n in folded.nodes.values() if n.op == "const").value
    np.testing.assert_allclose(value, np.exp(100.0), rtol=1e-15)
    np.testing.assert_allclose(g.run(y), np.exp(100.0), rtol=1e-15)


def test_shapes_too_large_to_exist_are_refused():
    g = tg.Graph()
    with pytest.raises(tg.ShapeError, match="more than an array can hold"):
        g.input("big", shape=(2**62, 4))
    v = g.input("v", shape=(4,))
    with pytest.raises(tg.GraphError):
        tg.reshape(v, (10**20,))


def test_values_that_do_not_fit_are_refused():
    g = tg.Graph()
    i8 = g.input("i8", shape=(2,), dtype="int8")
    with pytest.raises(tg.FeedError, match="do not fit int8"):
        g.run(i8 * 1, {"i8": [257, -300]})
    assert g.run(i8 * 1, {"i8": [127, -128]}).tolist() == [127, -128]
    W = g.param("W", np.ones(2))
    with pytest.raises(tg.DtypeError):
        W.value = np.ones(2) + 1j
    np.testing.assert_array_equal(W.value, np.ones(2))
    ids = g.input("ids", shape=(3,), dtype="int64")
    for bad in (lambda: ids + 10**30, lambda: W + 10**400):
        with pytest.raises(tg.GraphError):
            bad()
    for dtype in ("complex128", object):
        with pytest.raises(tg.DtypeError):
            tg.one_hot(ids, 5, dtype=dtype)


def test_attrs_are_checked_when_the_node_is_built():
    g = tg.Graph()
    v = g.input("v", shape=(4, 2))
    with pytest.raises(tg.GraphError, match="unknown attribute.*'axiz'"):
        g.add_node("sum", [v], {"axiz": 1})
    with pytest.raises(tg.GraphError, match="attrs must be a dict"):
        g.add_node("tanh", [v], attrs=[1])
    assert tg.sum(v, axis=np.int64(0)).shape == (2,)
    ids = g.input("ids", shape=(3,), dtype="int64")
    assert tg.one_hot(ids, np.int64(5)).shape == (3, 5)


def test_names_that_cannot_be_saved_or_printed_are_refused():
    g = tg.Graph()
    with pytest.raises(tg.NodeNameError, match="surrogate"):
        g.input("x\ud800", shape=())
    assert len(g) == 0


def test_a_failing_grad_leaves_the_graph_as_it_was(monkeypatch):
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    loss = tg.sum(tg.tanh(x) * x)
    names = list(g.nodes)
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], vjp=None))
    with pytest.raises(tg.GraphError, match="no vjp rule"):
        tg.grad(loss, [x])  # sum's and mul's rules ran before tanh's was missed
    assert list(g.nodes) == names
    assert tg.grad(loss, []) == [] and list(g.nodes) == names
    for wrt in (None, 3):
        with pytest.raises(tg.GraphError, match="wrt takes"):
            tg.grad(loss, wrt)


@pytest.mark.parametrize("call", [
    lambda o: tg.optim.SGD(o, lr=10**400),
    lambda o: tg.optim.SGD(o, lr=float("nan")),
    lambda o: tg.optim.SGD(o, lr=0.1).step(["abc"]),
    lambda o: tg.optim.SGD(o, lr=0.1).step([np.array([object()])]),
    lambda o: tg.optim.clip_grad_norm([None], 1.0),
])
def test_optimizer_misuse_is_a_graph_error(call):
    w = tg.Graph().param("w", [1.0])
    with pytest.raises(tg.GraphError):
        call([w])
    assert w.value.tolist() == [1.0]


@pytest.mark.parametrize("timeout", [1e10, float("inf"), 10**400, float("nan"), 0, -1])
def test_render_timeout_is_checked(timeout, tmp_path):
    g = tg.Graph()
    tg.tanh(g.input("x", shape=(2,)))
    with pytest.raises(tg.RenderError, match="timeout"):
        g.render(tmp_path / "g.svg", timeout=timeout)
    with pytest.raises(tg.RenderError):
        g.render(None)


def test_unroll_refuses_sizes_that_cannot_fit():
    with pytest.raises(tg.GraphError, match="steps must be an int"):
        rnn.unroll(rnn.VanillaRNNCell(2, 3), steps=10**12)


def test_a_failed_training_step_changes_nothing():
    lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
    with pytest.raises(tg.EvaluationError), np.errstate(all="ignore"):
        lm.train(10, lr=1.7e308, verbose=False)
    assert lm.trained_steps == len(lm.history)
    assert all(np.isfinite(p.value).all() for p in lm.params)


def test_tampered_checkpoints_are_refused_on_load(tmp_path):
    lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
    loss = lm._h["loss"]
    for tamper in (lambda c: c["sizes"].update(seq_len=0),
                   lambda c: c["sizes"].update(seq_len=3),
                   lambda c: c["handles"].update(loss=lm._h["first_logits"]),
                   lambda c: c.update(vocab=c["vocab"][1:])):
        record = lm._checkpoint()
        tamper(record)
        loss.meta["char_lm"] = record
        path = tmp_path / "lm.tgraph"
        try:
            lm.graph.save(path)
        finally:
            del loss.meta["char_lm"]
        with pytest.raises(tg.FormatError, match="damaged CharLM checkpoint"):
            rnn.CharLM.load(path)


def test_cli_prints_one_line_and_no_traceback(tmp_path, capsys):
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    tg.tanh(x, name="file")
    tg.exp(x, name="allow_pickle")
    path = str(tmp_path / "g.tgraph")
    g.save(path)
    np.save(tmp_path / "x.npy", np.ones(2))
    np.savez(tmp_path / "f.npz", x=np.ones(2))
    cases = [["run", path, "--feeds", str(tmp_path / "x.npy")],
             ["run", path, "--feeds", str(tmp_path / "f.npz"), "-o", str(tmp_path / "no/o.npz")],
             ["render", path, "--timeout", "inf", "-o", str(tmp_path / "g.svg")],
             ["info", "/dev/zero"]]
    for argv in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("tinygraph: error: ") and err.count("\n") == 1, err
    out = str(tmp_path / "result")
    assert cli.main(["run", path, "--feeds", str(tmp_path / "f.npz"), "-o", out]) == 0
    assert capsys.readouterr().out.strip() == out
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["file"], np.tanh(np.ones(2)))
        np.testing.assert_allclose(saved["allow_pickle"], np.exp(np.ones(2)))

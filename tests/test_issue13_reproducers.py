"""Issue 13's own reproducers, each as written in the issue: answered right or refused.

Every case either gives the right answer (checked against numpy) or raises a
``tg.GraphError`` subclass; hostile files are refused in under 0.1 s and 64 MB.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph import cli
from tinygraph.core.ops import OPS
from tinygraph.io import writer

FAST_SECONDS = 0.1
SMALL_BYTES = 64 * 2**20


def _graph():
    g = tg.Graph("repro")
    x = g.input("x", shape=(2,))
    ids = g.input("ids", shape=(3,), dtype="int64")
    W = g.param("W", np.ones(2))
    tg.sum(x * W, name="loss")
    return g, x, ids, W


# ---------------------------------------------- OverflowError, TypeError, ValueError, ...
REFUSED = {
    "reshape(v, (10**20,))": lambda g, x, ids, W: tg.reshape(x, (10**20,)),
    "x + 10**400": lambda g, x, ids, W: x + 10**400,
    "ids + 10**30": lambda g, x, ids, W: ids + 10**30,
    "render(timeout=10**400)": lambda g, x, ids, W: g.render("never.svg", timeout=10**400),
    "SGD(lr=10**400)": lambda g, x, ids, W: tg.optim.SGD([W], lr=10**400),
    "add_node(attrs=[1])": lambda g, x, ids, W: g.add_node("tanh", [x], attrs=[1]),
    "grad(loss, None)": lambda g, x, ids, W: tg.grad(g["loss"], None),
    "grad(loss, 3)": lambda g, x, ids, W: tg.grad(g["loss"], 3),
    "render(None)": lambda g, x, ids, W: g.render(None),
    "step([object array])": lambda g, x, ids, W: tg.optim.SGD([W], lr=0.1).step(
        [np.array([object(), object()])]),
    "to_dot(values={('x','W'): a})": lambda g, x, ids, W: g.to_dot(
        values={("x", "W"): np.ones(2)}),
    "step(['abc'])": lambda g, x, ids, W: tg.optim.SGD([W], lr=0.1).step(["abc"]),
    "clip_grad_norm([None], 1.0)": lambda g, x, ids, W: tg.optim.clip_grad_norm([None], 1.0),
    "add_node(axiz=1)": lambda g, x, ids, W: g.add_node("sum", [x], {"axiz": 1}),
    "input (2**62, 4)": lambda g, x, ids, W: g.input("big", shape=(2**62, 4)),
    "one_hot(dtype=complex128)": lambda g, x, ids, W: tg.one_hot(ids, 5, dtype="complex128"),
    "one_hot(dtype=object)": lambda g, x, ids, W: tg.one_hot(ids, 5, dtype=object),
    "one_hot(depth=10**12)": lambda g, x, ids, W: tg.one_hot(ids, 10**12),
    "broadcast_to((10**12, 2))": lambda g, x, ids, W: tg.broadcast_to(x, (10**12, 2)),
    "reshape(v, (10**12,))": lambda g, x, ids, W: tg.reshape(x, (10**12,)),
    "feed [257, -300] to int8": lambda g, x, ids, W: g.run(
        g.input("i8", shape=(2,), dtype="int8") * 1, {"i8": [257, -300]}),
    "W.value = complex": lambda g, x, ids, W: setattr(W, "value", np.ones(2) + 1j),
    "name 'x\\ud800'": lambda g, x, ids, W: g.input("x\ud800", shape=()),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_each_raw_exception_of_the_issue_is_now_a_graph_error(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repo
    g, x, ids, W = _graph()
    before = (list(g.nodes), W.value.copy())
    with pytest.raises(tg.GraphError):
        REFUSED[case](g, x, ids, W)
    assert list(g.nodes) == before[0] or case.startswith("feed")  # feeding adds its input
    np.testing.assert_array_equal(W.value, before[1])
    assert os.listdir(tmp_path) == []


def test_the_absurd_sizes_say_why():
    g, x, ids, W = _graph()
    with pytest.raises(tg.ShapeError, match=r"needs 21\.8 TiB, more than this machine's memory"):
        tg.one_hot(ids, 10**12)
    with pytest.raises(tg.GraphError, match=r"in \[1, 1000000\].*use rnn\.scan\(cell\)"):
        rnn.unroll(rnn.VanillaRNNCell(2, 3), 10**7)


def test_a_huge_feed_is_still_fine_to_declare():
    g = tg.Graph()
    x = g.input("x", shape=(None, 4))
    y = tg.reshape(x, (-1,))
    assert y.shape == (None,)
    np.testing.assert_array_equal(g.run(y, {"x": np.ones((3, 4))}), np.ones(12))


def test_numpy_integers_are_accepted_as_axis_and_depth():
    g, x, ids, W = _graph()
    m = g.input("m", shape=(2, 3))
    value = np.arange(6.0).reshape(2, 3)
    got = g.run(tg.sum(m, axis=np.int64(0)), {"m": value})
    np.testing.assert_array_equal(got, value.sum(axis=0))
    hot = g.run(tg.one_hot(ids, np.int64(5)), {"ids": [0, 4, 2]})
    np.testing.assert_array_equal(hot, np.eye(5)[[0, 4, 2]])


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16"])
@pytest.mark.parametrize("op", ["tanh", "log", "exp"])
def test_float_ops_of_small_ints_record_and_compute_float64(op, dtype):
    g = tg.Graph()
    x = g.input("x", shape=(2,), dtype=dtype)
    y = getattr(tg, op)(x)
    value = np.array([True, True] if dtype == "bool" else [90, 3], dtype=dtype)
    got = g.run(y, {"x": value})
    assert y.dtype == got.dtype == np.float64
    np.testing.assert_allclose(got, getattr(np, op)(value.astype(np.float64)), rtol=1e-15)


@pytest.mark.parametrize("make", [lambda c: rnn.unroll(c, 3), rnn.scan])
def test_net_run_refuses_complex_input_as_g_run_does(make):
    net = make(rnn.VanillaRNNCell(2, 3, seed=0))
    for bad in (np.ones((3, 2)) + 1j, [[10**400, 0]] * 3, np.full((3, 2), "a")):
        with pytest.raises(tg.FeedError):
            net.run(bad)
    x = np.random.default_rng(0).normal(size=(3, 2))
    ref = rnn.unroll(rnn.VanillaRNNCell(2, 3, seed=0), 3).run(x)["outputs"]
    np.testing.assert_allclose(net.run(x.tolist())["outputs"], ref, rtol=1e-12)


def test_net_run_refuses_values_that_overflow_a_float32_cell():
    cell = rnn.VanillaRNNCell(2, 3, seed=0, dtype="float32")
    with pytest.raises(tg.FeedError, match="overflow float32"):
        rnn.unroll(cell, 2).run(np.full((2, 2), 1e300))
    with pytest.raises(tg.FeedError, match="overflow float32"):
        rnn.scan(cell).run(np.full((2, 2), 1e300))


# ------------------------------------------------------------------------------- saving
def test_save_to_closed_or_read_only_streams_is_a_graph_error(tmp_path):
    g, *_ = _graph()
    closed = io.BytesIO()
    closed.close()
    with pytest.raises(tg.GraphError, match="closed"):
        g.save(closed)
    (tmp_path / "ro").write_bytes(b"")
    with open(tmp_path / "ro", "rb") as read_only, pytest.raises(tg.GraphError,
                                                                 match="not writable"):
        g.save(read_only)


def test_a_lone_surrogate_in_meta_is_refused_and_leaves_no_file(tmp_path):
    g, x, *_ = _graph()
    x.meta["note"] = "x\ud800"
    with pytest.raises(tg.GraphError, match="lone surrogate"):
        g.save(tmp_path / "g.tgraph")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", [RuntimeError("a bug in the middle"), KeyboardInterrupt(),
                                     OSError(28, "No space left on device")])
def test_a_save_failing_in_the_middle_leaves_no_temporary_file(failure, tmp_path, monkeypatch):
    g, *_ = _graph()
    target = tmp_path / "g.tgraph"
    g.save(target)
    old = target.read_bytes()

    def half_written(f, text, arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise failure

    monkeypatch.setattr(writer, "write_archive", half_written)
    with pytest.raises(tg.GraphError if isinstance(failure, OSError) else type(failure)):
        g.save(target)
    assert os.listdir(tmp_path) == ["g.tgraph"] and target.read_bytes() == old


# --------------------------------------------------------------------- grad and training
def test_a_failing_grad_adds_no_node_and_an_empty_grad_adds_none(monkeypatch):
    g, x, ids, W = _graph()
    loss = tg.sum(tg.tanh(x * W))
    names = list(g.nodes)
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], vjp=None))
    with pytest.raises(tg.GraphError, match="tanh"):
        tg.grad(loss, [W])
    assert list(g.nodes) == names
    assert tg.grad(loss, []) == [] and list(g.nodes) == names


def test_a_diverging_training_step_is_not_half_recorded():
    lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
    with pytest.raises(tg.EvaluationError), np.errstate(all="ignore"):
        lm.train(10, lr=1.7e308, verbose=False)
    assert lm.trained_steps == len(lm.history)


# --------------------------------------------------------------------------- hostile files
def _fast_and_small(call) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        call()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < FAST_SECONDS and peak < SMALL_BYTES, (elapsed, peak)


def _with_surrogate_name(path) -> str:
    """A saved graph whose node name was edited to hold a lone surrogate (JSON allows it)."""
    g = tg.Graph()
    tg.tanh(g.input("x", shape=(2,)))
    buf = io.BytesIO()
    g.save(buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "graph.json":
                doc = json.loads(data)
                doc["nodes"][0]["name"] = "x\ud800"
                doc["nodes"][1]["inputs"] = ["x\ud800"]
                data = json.dumps(doc).encode()  # ensure_ascii: the surrogate as \ud800
            out.writestr(info, data)
    return str(path)


def test_a_file_with_a_surrogate_name_is_refused_fast(tmp_path):
    path = _with_surrogate_name(tmp_path / "s.tgraph")

    def refused():
        with pytest.raises(tg.FormatError):
            tg.load(path)

    _fast_and_small(refused)


def _cli_one_line(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 1, argv
    captured = capsys.readouterr()
    assert captured.err.startswith("tinygraph: error: ") and captured.err.count("\n") == 1
    assert "\x1b" not in captured.err and "Traceback" not in captured.err
    return captured.err


def test_the_cli_cases_of_the_issue(tmp_path, capsys):
    g = tg.Graph()
    x = g.input("in\nput\x1b[32m", shape=(2,))
    tg.tanh(x, name="file")
    tg.exp(x, name="allow_pickle")
    path = str(tmp_path / "g.tgraph")
    g.save(path)
    np.save(tmp_path / "x.npy", np.ones(2))
    np.savez(tmp_path / "bad.npz", wrong=np.ones(2))
    np.savez(tmp_path / "f.npz", **{"in\nput\x1b[32m": np.ones(2)})
    surrogate = _with_surrogate_name(tmp_path / "s.tgraph")
    _cli_one_line(capsys, ["run", path, "--feeds", str(tmp_path / "x.npy")])
    _cli_one_line(capsys, ["run", path, "--feeds", str(tmp_path / "f.npz"),
                           "-o", str(tmp_path / "missing_dir" / "out.npz")])
    _cli_one_line(capsys, ["info", surrogate])
    _cli_one_line(capsys, ["run", surrogate])
    _cli_one_line(capsys, ["render", path, "--timeout", "inf", "-o", str(tmp_path / "g.svg")])
    err = _cli_one_line(capsys, ["run", path, "--feeds", str(tmp_path / "bad.npz")])
    assert "in\\nput\\x1b[32m" in err  # the name shown escaped, on the same line
    out = str(tmp_path / "result")
    assert cli.main(["run", path, "--feeds", str(tmp_path / "f.npz"), "-o", out]) == 0
    assert capsys.readouterr().out.strip() == out and os.listdir(tmp_path).count("result") == 1
    with np.load(out) as saved:  # fetches named like np.savez's keywords do not collide
        np.testing.assert_allclose(saved["file"], np.tanh(np.ones(2)))
        np.testing.assert_allclose(saved["allow_pickle"], np.exp(np.ones(2)))


def test_the_feeds_npz_is_read_with_limits(tmp_path, capsys):
    g = tg.Graph()
    tg.tanh(g.input("x", shape=(2,)))
    path = str(tmp_path / "g.tgraph")
    g.save(path)
    bomb = io.BytesIO()
    np.save(bomb, np.ones(2))
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", bomb.getvalue() + b"\0" * (64 * 2**20),
                   compress_type=zipfile.ZIP_DEFLATED)
    _fast_and_small(lambda: _cli_one_line(capsys, ["run", path, "--feeds",
                                                   str(tmp_path / "bomb.npz")]))


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("tamper", [
    lambda c, h: c["sizes"].update(seq_len=0),
    lambda c, h: c["sizes"].update(seq_len=3),
    lambda c, h: c["handles"].update(loss=h["first_logits"]),
    lambda c, h: c.update(vocab=c["vocab"][1:]),
], ids=["seq_len 0", "seq_len disagrees", "loss not a scalar", "vocab missing a char"])
def test_tampered_checkpoints_are_refused(tamper, tmp_path):
    lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
    loss = lm._h["loss"]
    record = lm._checkpoint()
    tamper(record, lm._h)
    loss.meta["char_lm"] = record
    try:
        lm.graph.save(tmp_path / "lm.tgraph")
    finally:
        del loss.meta["char_lm"]
    with pytest.raises(tg.FormatError, match="damaged CharLM checkpoint"):
        rnn.CharLM.load(tmp_path / "lm.tgraph")

"""Input projections computed in the loop or all at once (tinygraph/exec/projections.py).

References are hand-written numpy loops; both paths (whole product, a step at a
time) are forced through the module's thresholds and must agree with them.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_scan import MinimalGatedUnit

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.exec import projections
from tinygraph.exec.projections import ProjectedRows, project


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_mgu(X, p):
    h, out = np.zeros((X.shape[1], p["U_f"].shape[0])), []
    for x in X:
        f = _sigmoid(x @ p["W_f"] + h @ p["U_f"] + p["b_f"])
        h = (1 - f) * h + f * np.tanh(x @ p["W_h"] + (f * h) @ p["U_h"] + p["b_h"])
        out.append(h)
    return np.stack(out)


@pytest.fixture(params=["in the loop", "whole"])
def path(request, monkeypatch):
    """Force either path, whatever the sizes."""
    if request.param == "in the loop":
        monkeypatch.setattr(projections, "LOOP_MIN_ROWS", 1)
        monkeypatch.setattr(projections, "LOOP_MAX_WEIGHT_BYTES", 1 << 40)
    else:
        monkeypatch.setattr(projections, "LOOP_MIN_ROWS", 1 << 40)
    return request.param


def _scan_kernels(compiled):
    return [step.forward for step in compiled.plan.steps if step.node.op == "scan"]


def test_mgu_forward_equals_numpy_on_both_paths(path):
    rng = np.random.default_rng(0)
    net = rnn.unroll(MinimalGatedUnit(input_size=3, hidden_size=5, seed=1), steps=6)
    p = {k: v.value for k, v in net.params.items()}
    for name in ("b_f", "b_h"):  # zero-initialised: give the biases a value to add
        p[name][...] = rng.normal(size=p[name].shape)
    X = rng.normal(size=(6, 4, 3))
    view, seq, nodes = net._view()
    compiled = view.compile(nodes, inputs=[seq, *[n.name for n in net._initial]])
    got = compiled(X, np.zeros((4, 5)))
    assert np.allclose(got[0], numpy_mgu(X, p), rtol=0, atol=1e-12)
    # The scan computed both projections itself, on the fast path (no fallback).
    (kernel,) = _scan_kernels(compiled)
    assert [j for j, *_ in kernel._projected] == [0, 1]
    assert compiled.plan.fallback_reason is None
    again = compiled(X, np.zeros((4, 5)))  # the generated loop from step 0 on
    assert np.array_equal(again[0], got[0])


def test_a_carry_that_is_the_row_itself_is_not_overwritten(path):
    """new carry = x_t @ W + b and output = the old carry: with one buffer for every
    step's row, step t+1's row would overwrite the carry before it is output."""
    rng = np.random.default_rng(1)
    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, 3))
    W, b = g.param("W", rng.normal(size=(3, 4))), g.param("b", rng.normal(size=4))
    h0 = g.input("h0", shape=(None, 4))
    last, ys = tg.scan(lambda h, x: (x @ W + b, h * 1.0), h0, xs)
    X = rng.normal(size=(5, 2, 3))
    fn = g.compile([last, ys], inputs=["xs", "h0"])
    got_last, got_ys = fn(X, np.zeros((2, 4)))
    rows = X @ W.value + b.value
    assert np.allclose(got_ys, np.concatenate([np.zeros((1, 2, 4)), rows[:-1]]), atol=1e-12)
    assert np.allclose(got_last, rows[-1], atol=1e-12)
    assert fn.plan.fallback_reason is None


def test_an_operand_freed_by_a_later_reader_lives_until_the_scan(path):
    """X (computed: a plan frees it after its last reader) feeds the projection and
    another product after it: X must not be dropped before the scan that now computes
    the projection reads it."""
    rng = np.random.default_rng(2)
    g = tg.Graph()
    xs = tg.tanh(g.input("xs", shape=(None, None, 3)))
    A, G = g.param("A", rng.normal(size=(3, 4))), g.param("G", rng.normal(size=(3, 4)))
    B = g.param("B", rng.normal(size=(4, 4)) * 0.3)
    h0 = g.input("h0", shape=(None, 4))

    def step(h, x):
        new = tg.sigmoid(x @ G) * tg.tanh(x @ A + h @ B)
        return new, new

    _, ys = tg.scan(step, h0, xs)
    X = rng.normal(size=(6, 2, 3))
    fn = g.compile(ys, inputs=["xs", "h0"])
    h, want = np.zeros((2, 4)), []
    for x in np.tanh(X):
        h = _sigmoid(x @ G.value) * np.tanh(x @ A.value + h @ B.value)
        want.append(h)
    assert np.allclose(fn(X, np.zeros((2, 4))), np.stack(want), rtol=0, atol=1e-12)
    assert fn.plan.fallback_reason is None


def test_a_fetched_projection_stays_a_step_of_its_own(path):
    rng = np.random.default_rng(3)
    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, 3))
    W = g.param("W", rng.normal(size=(3, 4)))
    h0 = g.input("h0", shape=(None, 4))
    projected = xs @ W
    _, ys = tg.scan(lambda h, p: (tg.tanh(h + p), h), h0, projected)
    X = rng.normal(size=(4, 2, 3))
    fn = g.compile([projected, ys], inputs=["xs", "h0"])
    got_p, got_ys = fn(X, np.zeros((2, 4)))
    assert np.allclose(got_p, X @ W.value, atol=1e-12)
    h, want = np.zeros((2, 4)), []
    for row in X @ W.value:
        want.append(h)
        h = np.tanh(h + row)
    assert np.allclose(got_ys, np.stack(want), atol=1e-12)
    assert all(not k._projected for k in _scan_kernels(fn))


def test_project_chooses_by_rows_and_weight_size():
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(3, 5)), rng.normal(size=5)
    few, many = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, projections.LOOP_MIN_ROWS, 3))
    assert isinstance(project(few, w, b, reuse=False), np.ndarray)
    rows = project(many, w, b, reuse=True)
    assert isinstance(rows, ProjectedRows) and len(rows) == 4
    assert np.allclose(rows[2], many[2] @ w + b, atol=1e-12)
    wide = rng.normal(size=(3, projections.LOOP_MAX_WEIGHT_BYTES // 24 + 1))
    assert isinstance(project(many, wide, None, reuse=False), np.ndarray)
    assert project(many[:0], w, b, reuse=False).shape == (0, projections.LOOP_MIN_ROWS, 5)


@pytest.mark.parametrize("n", [2, 7])  # bias added after the product / in it as a row
def test_projected_rows_equal_the_whole_product(n):
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(5, n)), rng.normal(size=n)
    for reuse in (False, True):
        rows = ProjectedRows(x, w, b, reuse)
        for t in range(3):
            assert np.allclose(rows[t], x[t] @ w + b, rtol=0, atol=1e-12)
    plain = ProjectedRows(x, w)
    assert np.allclose(plain[1], x[1] @ w, rtol=0, atol=1e-12)

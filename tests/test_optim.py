"""Optimizers and clipping against update formulas written out by hand here."""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg

RNG = np.random.default_rng(42)


def make_params(*shapes, dtype="float64"):
    g = tg.Graph()
    return g, [g.param(f"p{i}", RNG.normal(size=s).astype(dtype)) for i, s in enumerate(shapes)]


def random_grads(shapes, steps):
    return [[RNG.normal(size=s) for s in shapes] for _ in range(steps)]


def test_sgd_plain_and_in_place():
    shapes = [(3, 2), (4,)]
    g, params = make_params(*shapes)
    live = [p.value for p in params]
    want = [p.value.copy() for p in params]
    opt = tg.optim.SGD(params, lr=0.1)
    for grads in random_grads(shapes, 3):
        opt.step(grads)
        want = [w - 0.1 * d for w, d in zip(want, grads, strict=True)]
    for p, arr, w in zip(params, live, want, strict=True):
        assert p.value is arr  # updated in place: compiled plans see it
        np.testing.assert_allclose(p.value, w, rtol=1e-15)
    np.testing.assert_allclose(g.run(params[0]), want[0], rtol=1e-15)


def test_sgd_momentum_and_weight_decay():
    shapes = [(2, 3)]
    _, params = make_params(*shapes)
    p = params[0].value.copy()
    buf = None
    lr, mu, wd = 0.05, 0.9, 0.01
    opt = tg.optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd)
    for (grad,) in random_grads(shapes, 4):
        opt.step([grad])
        d = grad + wd * p
        buf = d.copy() if buf is None else mu * buf + d
        p = p - lr * buf
    np.testing.assert_allclose(params[0].value, p, rtol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_the_paper_update(weight_decay):
    shapes = [(3,), (2, 2)]
    _, params = make_params(*shapes)
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-6
    ps = [p.value.copy() for p in params]
    ms = [np.zeros(s) for s in shapes]
    vs = [np.zeros(s) for s in shapes]
    opt = tg.optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay)
    for t, grads in enumerate(random_grads(shapes, 6), start=1):
        opt.step(grads)
        for i, grad in enumerate(grads):
            d = grad + weight_decay * ps[i]
            ms[i] = b1 * ms[i] + (1 - b1) * d
            vs[i] = b2 * vs[i] + (1 - b2) * d**2
            m_hat = ms[i] / (1 - b1**t)
            v_hat = vs[i] / (1 - b2**t)
            ps[i] = ps[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    for p, want in zip(params, ps, strict=True):
        np.testing.assert_allclose(p.value, want, rtol=1e-13)


def test_adam_keeps_float32():
    _, params = make_params((3,), dtype="float32")
    tg.optim.Adam(params, lr=0.1).step([np.ones(3)])
    assert params[0].value.dtype == np.float32


def test_training_loop_reaches_least_squares_solution():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))  # noqa: N806
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    y = g.input("y", shape=(None, 2))
    W = g.param("W", np.zeros((3, 2)))  # noqa: N806
    b = g.param("b", np.zeros(2))
    loss = tg.mean((x @ W + b - y) ** 2)
    grads = tg.grad(loss, [W, b])
    opt = tg.optim.SGD([W, b], lr=0.3, momentum=0.5)
    for _ in range(400):
        opt.step(g.run(grads, {x: X, y: Y}))
    design = np.hstack([X, np.ones((20, 1))])
    solution = np.linalg.lstsq(design, Y, rcond=None)[0]
    np.testing.assert_allclose(W.value, solution[:3], atol=1e-8)
    np.testing.assert_allclose(b.value, solution[3], atol=1e-8)


# -------------------------------------------------------------------- clipping


def test_clip_grad_norm_scales_when_above():
    grads = [RNG.normal(size=(3, 2)), RNG.normal(size=(4,))]
    originals = [a.copy() for a in grads]
    norm = np.sqrt(sum((a**2).sum() for a in originals))
    got = tg.optim.clip_grad_norm(grads, max_norm=0.5)
    assert got == pytest.approx(norm, rel=1e-14)
    for a, o in zip(grads, originals, strict=True):
        np.testing.assert_allclose(a, o * 0.5 / (norm + 1e-6), rtol=1e-14)
    assert np.sqrt(sum((a**2).sum() for a in grads)) <= 0.5


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = [np.array([0.3, 0.4])]
    kept = grads[0]
    assert tg.optim.clip_grad_norm(grads, max_norm=1.0) == pytest.approx(0.5)
    assert grads[0] is kept


def test_clip_handles_read_only_and_repeated_arrays_from_run():
    g = tg.Graph()
    a = g.param("a", np.array([3.0]))
    b = g.param("b", np.array([1.0]))
    loss = tg.sum(a + b)  # both gradients are the same node: the same array comes back twice
    grads = g.run(tg.grad(loss, [a, b, loss]))
    assert grads[0] is grads[1] and not grads[2].flags.writeable
    norm = tg.optim.clip_grad_norm(grads, max_norm=0.1)
    assert norm == pytest.approx(np.sqrt(3.0))
    scale = 0.1 / (np.sqrt(3.0) + 1e-6)
    np.testing.assert_allclose(np.concatenate([np.ravel(v) for v in grads]), [scale] * 3)


def test_clip_non_finite():
    with pytest.raises(tg.EvaluationError, match="nan"):
        tg.optim.clip_grad_norm([np.array([1.0, np.nan])], 1.0, error_if_nonfinite=True)
    grads = [np.array([np.inf, 1.0])]
    assert tg.optim.clip_grad_norm(grads, 1.0) == np.inf
    np.testing.assert_array_equal(grads[0], [np.inf, 1.0])  # left as is: no scale helps


# ---------------------------------------------------------------------- errors


def test_errors_name_the_problem():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    p = g.param("p", np.ones(2))
    with pytest.raises(tg.GraphError, match="input node 'x'"):
        tg.optim.SGD([p, x], lr=0.1)
    with pytest.raises(tg.GraphError, match="int64"):
        tg.optim.Adam([g.param("i", np.arange(3))])
    with pytest.raises(tg.GraphError, match="at least one param"):
        tg.optim.Adam([])
    with pytest.raises(tg.GraphError, match="lr"):
        tg.optim.SGD([p], lr=-1.0)
    with pytest.raises(tg.GraphError, match="momentum"):
        tg.optim.SGD([p], lr=0.1, momentum=1.0)
    with pytest.raises(tg.GraphError, match="betas"):
        tg.optim.Adam([p], betas=0.9)
    opt = tg.optim.SGD([p], lr=0.1)
    with pytest.raises(tg.GraphError, match="1 gradients .*'?p'?.*got 2"):
        opt.step([np.ones(2), np.ones(2)])
    with pytest.raises(tg.ShapeError, match="param 'p'.*\\(3,\\)"):
        opt.step([np.ones(3)])
    with pytest.raises(tg.GraphError, match="list in place"):
        tg.optim.clip_grad_norm((np.ones(2),), 1.0)
    with pytest.raises(tg.GraphError, match="max_norm"):
        tg.optim.clip_grad_norm([np.ones(2)], 0.0)
    np.testing.assert_array_equal(p.value, np.ones(2))  # failed steps changed nothing

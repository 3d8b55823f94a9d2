"""The numpy-named primitives against numpy itself, in float64, and their numerics.

Each value comes from both evaluators (compiled plan and interpreter, which
must agree bit for bit) and is compared with the numpy function of the same
name, or with the definition written out here. The numerics tests pin what
the issue found broken: sigmoid in the negative tail and pow's gradient at 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinygraph as tg

RNG = np.random.default_rng(14)
X = RNG.normal(size=(3, 4, 5))
Y = RNG.normal(size=(4, 5))


def run(node, feeds):
    g = node.graph
    planned = g.run(node, feeds)
    np.testing.assert_array_equal(planned, g.run(node, feeds, optimize=False), strict=True)
    assert np.asarray(planned).dtype == node.dtype
    assert len(node.shape) == np.ndim(planned)
    assert all(d is None or d == s for d, s in zip(node.shape, np.shape(planned), strict=True))
    return planned


def graph():
    g = tg.Graph()
    return g, g.input("x", shape=(None, 4, 5)), g.input("y", shape=(4, 5))


FEEDS = {"x": X, "y": Y}

CASES = {
    "maximum": (lambda x, y: tg.maximum(x, y), lambda: np.maximum(X, Y)),
    "minimum": (lambda x, y: tg.minimum(x, 0.1), lambda: np.minimum(X, 0.1)),
    "where": (lambda x, y: tg.where(x > y, x, y * 2), lambda: np.where(X > Y, X, Y * 2)),
    "abs": (lambda x, y: abs(x), lambda: np.abs(X)),
    "sign": (lambda x, y: tg.sign(x), lambda: np.sign(X)),
    "sqrt": (lambda x, y: tg.sqrt(tg.abs(x)), lambda: np.sqrt(np.abs(X))),
    "rsqrt": (lambda x, y: tg.rsqrt(tg.abs(x)), lambda: 1 / np.sqrt(np.abs(X))),
    "clip": (lambda x, y: tg.clip(x, -0.5, y), lambda: np.clip(X, -0.5, Y)),
    "max": (lambda x, y: tg.max(x, axis=(0, 2)), lambda: np.max(X, axis=(0, 2))),
    "min": (lambda x, y: tg.min(x, keepdims=True), lambda: np.min(X, keepdims=True)),
    "argmax": (lambda x, y: tg.argmax(x, axis=1), lambda: np.argmax(X, axis=1)),
    "argmin": (lambda x, y: tg.argmin(x), lambda: np.argmin(X)),
    "logsumexp": (lambda x, y: tg.logsumexp(x, axis=-1),
                  lambda: np.log(np.exp(X).sum(axis=-1))),
    "var": (lambda x, y: tg.var(x, axis=0, ddof=1), lambda: np.var(X, axis=0, ddof=1)),
    "std": (lambda x, y: tg.std(x), lambda: np.std(X)),
    "cumsum": (lambda x, y: tg.cumsum(x, axis=1), lambda: np.cumsum(X, axis=1)),
    "cumsum_flat": (lambda x, y: tg.cumsum(y), lambda: np.cumsum(Y)),
    "gather": (lambda x, y: tg.gather(y, np.array([[4], [0], [1], [1]]), axis=1),
               lambda: np.take_along_axis(Y, np.array([[4], [0], [1], [1]]), axis=1)),
    "pad": (lambda x, y: tg.pad(y, (1, 2)), lambda: np.pad(Y, (1, 2))),
    "broadcast_to": (lambda x, y: tg.broadcast_to(y, (2, 4, 5)),
                     lambda: np.broadcast_to(Y, (2, 4, 5))),
    "expand_dims": (lambda x, y: tg.expand_dims(y, -1), lambda: np.expand_dims(Y, -1)),
    "squeeze": (lambda x, y: tg.squeeze(y[:1], axis=0), lambda: np.squeeze(Y[:1], axis=0)),
    "sin": (lambda x, y: tg.sin(x), lambda: np.sin(X)),
    "cos": (lambda x, y: tg.cos(x), lambda: np.cos(X)),
    "erf": (lambda x, y: tg.erf(y), lambda: np.vectorize(math.erf)(Y)),
    "softplus": (lambda x, y: tg.softplus(x), lambda: np.log(1 + np.exp(X))),
    "logsigmoid": (lambda x, y: tg.logsigmoid(x), lambda: -np.log(1 + np.exp(-X))),
    "leaky_relu": (lambda x, y: tg.leaky_relu(x, 0.2), lambda: np.where(X > 0, X, 0.2 * X)),
    "silu": (lambda x, y: tg.silu(x), lambda: X / (1 + np.exp(-X))),
    "gelu": (lambda x, y: tg.gelu(y),
             lambda: Y * 0.5 * (1 + np.vectorize(math.erf)(Y / math.sqrt(2)))),
    "stop_gradient": (lambda x, y: tg.stop_gradient(x), lambda: X),
    "equal": (lambda x, y: tg.equal(x, x[0]), lambda: X == X[0]),
    "not_equal": (lambda x, y: tg.not_equal(x, y), lambda: X != Y),
    "less": (lambda x, y: x < y, lambda: X < Y),
    "less_equal": (lambda x, y: tg.less_equal(0.0, y), lambda: Y >= 0),
    "greater": (lambda x, y: 0.5 < x, lambda: X > 0.5),
    "greater_equal": (lambda x, y: x >= y, lambda: X >= Y),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_numpy(name):
    _, x, y = graph()
    build, want = CASES[name]
    node = build(x, y)
    got = run(node, FEEDS)
    expected = want()
    assert got.dtype == np.asarray(expected).dtype or got.dtype.kind == "f"
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_split_as_numpy():
    g = tg.Graph()
    x = g.input("x", shape=(6, None))
    val = RNG.normal(size=(6, 3))
    for cuts in (3, [1, 4], [2, 10]):
        parts = tg.split(x, cuts, axis=0)
        got = g.run(parts, {"x": val})
        want = np.split(val, cuts, axis=0)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert [p.shape for p in tg.split(x, [2], axis=1)] == [(6, None), (6, None)]


INDEXES = [
    (1,), (slice(None), 2), (None,), (Ellipsis, 1), (None, Ellipsis, None), (1, None, 2),
    (slice(None, None, -1), Ellipsis), (np.array([2, 0, 2]),), (slice(None), [3, 0]),
    ([[0, 1]], slice(1, 3), [[4], [0]]), (0, slice(None), [1, 4]),
    ([0, 2], slice(None), [1, 4]), (Ellipsis, np.array([[0, 1], [2, 3]])),
    (None, [1, 2], None), (-1, -2, [-1, 0]),
]


@pytest.mark.parametrize("index", INDEXES, ids=[repr(i) for i in INDEXES])
@pytest.mark.parametrize("decl", [(3, 4, 5), (None, 4, None)])
def test_indexing_as_numpy(index, decl):
    g = tg.Graph()
    x = g.input("x", shape=decl)
    node = x[index]
    want = X[index]
    assert len(node.shape) == want.ndim
    np.testing.assert_array_equal(run(node, {"x": X}), want)
    # The adjoint: d sum(x[index] * w) / dx adds w where index read (repeats accumulate).
    w = RNG.normal(size=want.shape)
    gx = tg.grad(tg.sum(node * w), x)
    expected = np.zeros_like(X)
    np.add.at(expected, index, w)
    np.testing.assert_allclose(run(gx, {"x": X}), expected, rtol=1e-14)


def test_comparisons_make_bool_nodes_and_eq_stays_identity():
    g, x, y = graph()
    assert (x < y).dtype == np.bool_ and (y >= 1).op == "greater_equal"
    assert (x == x) is True and (x == y) is False and x != y
    assert {x: 1, y: 2}[y] == 2
    mask = (x > 0) * 1.0
    assert mask.dtype == np.float64
    np.testing.assert_array_equal(run(mask, FEEDS), (X > 0) * 1.0)


@pytest.mark.parametrize("size", [40, 200, 2001])  # logaddexp, SciPy's expit, numpy's exp
@pytest.mark.parametrize("dtype,rtol,low", [("float64", 1e-14, -700.0), ("float32", 1e-6, -87.0)])
def test_sigmoid_is_accurate_in_both_tails(dtype, rtol, low, size):
    import warnings

    g = tg.Graph()
    x = g.input("x", shape=(None,), dtype=dtype)
    val = np.linspace(low, -low, size).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from any of the three forms
        got = run(tg.sigmoid(x), {"x": val})
    assert got.dtype == np.dtype(dtype)
    got = got.astype(np.float64)
    wide = val.astype(np.float64)
    # 1 / (1 + e^-x) is exact-ish for x >= 0; e^x / (1 + e^x) for x < 0 (no cancellation).
    want = np.where(wide >= 0, 1 / (1 + np.exp(-np.abs(wide))),
                    np.exp(-np.abs(wide)) / (1 + np.exp(-np.abs(wide))))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    assert run(tg.sigmoid(x), {"x": np.array([-20.0], dtype)})[0] > 2.0e-9


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 0.5, 2.0, 6.0, 30.0])
def test_erf_is_within_a_few_units_in_the_last_place_of_math_erf(scale):
    g = tg.Graph()
    x = g.input("x", shape=(None,))
    val = np.random.default_rng(7).normal(size=2000) * scale
    got = run(tg.erf(x), {"x": val})
    want = np.array([math.erf(v) for v in val])
    assert np.all(np.abs(got - want) <= 4 * np.spacing(np.abs(want).clip(1e-300)))
    ends = run(tg.erf(x), {"x": np.array([np.inf, -np.inf, 0.0, -0.0, np.nan])})
    np.testing.assert_array_equal(ends, [1.0, -1.0, 0.0, -0.0, np.nan])
    assert np.signbit(ends[3])


def test_erf_keeps_float32():
    g = tg.Graph()
    x = g.input("x", shape=(None,), dtype="float32")
    val = np.linspace(-4, 4, 801, dtype=np.float32)
    got = run(tg.erf(x), {"x": val})
    assert got.dtype == np.float32
    want = np.array([math.erf(float(v)) for v in val])
    assert np.all(np.abs(got - want) <= np.spacing(np.float32(1.0)))


def test_log_of_sigmoid_has_a_finite_gradient_far_in_the_tail():
    g = tg.Graph()
    x = g.input("x", shape=(3,), dtype="float32")
    val = np.array([-20.0, -60.0, -80.0], np.float32)
    for loss in (tg.sum(tg.log(tg.sigmoid(x))), tg.sum(tg.logsigmoid(x))):
        value, grad = g.run([loss, tg.grad(loss, x)], {"x": val})
        np.testing.assert_allclose(value, val.sum(), rtol=1e-6)
        np.testing.assert_allclose(grad, 1.0, rtol=1e-6)  # d log sigmoid / dx = 1 - sigmoid


def test_softplus_and_logsigmoid_stay_finite():
    g = tg.Graph()
    x = g.input("x", shape=(None,))
    val = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    np.testing.assert_allclose(run(tg.softplus(x), {"x": val}),
                               [0.0, 0.0, math.exp(-30), math.log(2), 30 + math.exp(-30),
                                800.0, 1e4], rtol=1e-12)
    np.testing.assert_allclose(run(tg.logsigmoid(x), {"x": val}),
                               [-1e4, -800.0, -30 - math.exp(-30), -math.log(2), -math.exp(-30),
                                0.0, 0.0], rtol=1e-12)


def test_pow_gradient_is_zero_where_the_maths_says_so():
    g = tg.Graph()
    x = g.input("x", shape=(4,))
    val = np.array([0.0, 0.0, 1.5, 2.0])
    # d/dx x**0 = 0 everywhere, base 0 included; d/dy 0**y = 0 for y > 0.
    np.testing.assert_array_equal(g.run(tg.grad(tg.sum(x ** 0.0), x), {"x": val}), 0.0)
    y = g.input("y", shape=(3,))
    np.testing.assert_array_equal(
        g.run(tg.grad(tg.sum(0.0 ** y), y), {"y": np.array([0.5, 1.0, 2.0])}), 0.0)
    # Away from 0 the usual rules hold: d/dx x**3 = 3x², d/dy 2**y = 2**y log 2.
    np.testing.assert_allclose(g.run(tg.grad(tg.sum(x ** 3.0), x), {"x": val}), 3 * val ** 2)
    yv = np.array([0.0, 1.0, -2.0])
    np.testing.assert_allclose(g.run(tg.grad(tg.sum(2.0 ** y), y), {"y": yv}),
                               2.0 ** yv * math.log(2.0))


def test_cross_entropy_ignore_index_and_label_smoothing_by_hand():
    g = tg.Graph()
    logits = g.input("l", shape=(None, 3))
    val = RNG.normal(size=(4, 3))
    targets = np.array([0, -1, 2, 2])
    loss = tg.cross_entropy(logits, targets, ignore_index=-1, label_smoothing=0.3)
    logp = val - np.log(np.exp(val).sum(axis=1, keepdims=True))
    rows = [0.7 * -logp[i, t] + 0.3 * -logp[i].mean() for i, t in enumerate(targets) if t >= 0]
    np.testing.assert_allclose(run(loss, {"l": val}), np.mean(rows), rtol=1e-14)


def test_mistakes_name_the_node():
    g, x, y = graph()
    with pytest.raises(tg.DtypeError, match="where.*bool"):
        tg.where(x, x, y)
    with pytest.raises(tg.ShapeError, match="squeeze.*axis 0 of size 4"):
        tg.squeeze(y, axis=0)
    with pytest.raises(tg.ShapeError, match="cannot broadcast"):
        tg.broadcast_to(y, (3, 5))
    with pytest.raises(tg.GraphError, match="mask"):
        x[np.array([True, False, True])]
    with pytest.raises(tg.GraphError, match="ignore_index"):
        tg.cross_entropy(y, np.array([0, 1, 2, 3]), ignore_index=1.5)
    before = len(g)
    with pytest.raises(tg.ShapeError):
        tg.gather(y, np.zeros((2,), int), axis=0)
    assert len(g) == before


def test_docs_core_op_table_lists_every_primitive():
    from pathlib import Path
    page = (Path(__file__).parent.parent / "docs" / "core.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in page.splitlines() if line.startswith("| `"))
    for name in CASES:
        if name in tg.__all__:
            assert f"`{name}`" in table, name
    for name in ("split", "squeeze", "take", "one_hot", "getitem", "pow", "sigmoid"):
        assert f"`{name}`" in table, name


def _softmax_parts(z):
    """Written out with each row's own max: log-probabilities and probabilities."""
    shifted = z - z.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return logp, np.exp(logp)


@pytest.mark.parametrize("spread", [1.0, 80.0, 2000.0])
def test_softmax_log_softmax_and_cross_entropy_on_rows_far_apart(spread):
    # The rows are shifted by the whole array's max when every row's max is near it
    # (fast for short rows), by their own max otherwise: both agree with the reference.
    g = tg.Graph()
    x = g.input("x", shape=(None, 7))
    t = g.input("t", shape=(None,), dtype="int64")
    z = RNG.normal(size=(40, 7)) + np.linspace(-spread, spread, 40)[:, None]
    targets = RNG.integers(0, 7, 40)
    logp, p = _softmax_parts(z)
    np.testing.assert_allclose(run(tg.softmax(x), {"x": z}), p, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(run(tg.log_softmax(x), {"x": z}), logp, rtol=1e-13)
    loss = run(tg.cross_entropy(x, t), {"x": z, "t": targets})
    np.testing.assert_allclose(loss, -logp[np.arange(40), targets].mean(), rtol=1e-13)


def test_a_nan_logit_spoils_only_its_own_row():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    z = np.array([[0.0, 1.0, 2.0], [np.nan, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    got = run(tg.softmax(x), {"x": z})
    np.testing.assert_allclose(got[[0, 2]], _softmax_parts(z[[0, 2]])[1], rtol=1e-14)
    assert np.isnan(got[1]).all()


@pytest.mark.parametrize("dtype,classes,rtol", [("float32", 20000, 2e-6), ("float64", 3000, 1e-13)])
def test_softmax_rows_sum_accurately(dtype, classes, rtol):
    # Row sums of short float64 rows are one BLAS product; float32 and long rows keep
    # numpy's pairwise reduction: each probability within rtol of a float64 reference.
    g = tg.Graph()
    x = g.input("x", shape=(None, classes), dtype=dtype)
    z = (RNG.normal(size=(3, classes)) * 3).astype(dtype)
    got = run(tg.softmax(x), {"x": z}).astype(np.float64)
    np.testing.assert_allclose(got, _softmax_parts(z.astype(np.float64))[1], rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int64", "bool"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_the_wrapper_free_reductions_equal_numpys_to_the_bit(dtype, axis, keepdims):
    # sum and mean skip numpy's Python wrappers (core/forwards.py); values, dtypes and
    # shapes must be numpy's own, 0-d arrays included.
    from tinygraph.core.forwards import mean_forward, sum_forward

    x = np.random.default_rng(3).normal(size=(3, 4, 5)).astype(dtype)
    for ours, theirs in ((sum_forward, np.sum), (mean_forward, np.mean)):
        got, want = ours(x, axis, keepdims=keepdims), np.asarray(theirs(x, axis,
                                                                         keepdims=keepdims))
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype, (got, want)
        np.testing.assert_array_equal(got, want)


def test_the_wrapper_free_shape_forwards_equal_numpys():
    from tinygraph.core.forwards import (
        concat_forward,
        expand_dims_forward,
        reshape_forward,
        transpose_forward,
    )

    x = np.arange(24.0).reshape(2, 3, 4)
    for axis in (0, 1, -1, -4, (0, 2), (-1, 0), (1, -2)):
        np.testing.assert_array_equal(expand_dims_forward(x, axis), np.expand_dims(x, axis))
        assert expand_dims_forward(x, axis).shape == np.expand_dims(x, axis).shape
    for bad in (4, -5, (0, 0)):  # numpy's own error
        with pytest.raises((np.exceptions.AxisError, ValueError)):
            expand_dims_forward(x, bad)
    assert expand_dims_forward(np.float64(2.0), 0).shape == (1,)
    np.testing.assert_array_equal(transpose_forward(x), np.transpose(x))
    np.testing.assert_array_equal(transpose_forward(x, (1, 0, 2)), np.transpose(x, (1, 0, 2)))
    np.testing.assert_array_equal(reshape_forward(x, (4, -1)), np.reshape(x, (4, -1)))
    np.testing.assert_array_equal(concat_forward(x, x, axis=-1), np.concatenate([x, x], -1))
    assert np.shares_memory(expand_dims_forward(x, 0), x)  # views, as numpy's

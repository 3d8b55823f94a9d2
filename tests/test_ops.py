"""Every primitive's values against numpy written independently here.

The references below are written from the textbook definitions (softmax as a
max-shifted exp/sum, cross-entropy as an explicit loop, one-hot by setting
ones) and never call tinygraph. Each value is produced by both evaluators
(the compiled Plan and the plain Interpreter), which must agree bit for bit,
and the inferred shape and dtype of the node must describe the value that
came out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinygraph as tg

RNG = np.random.default_rng(20240607)

DESIGN_PRIMITIVES = (
    "add sub mul div neg pow matmul tanh sigmoid relu exp log softmax log_softmax sum mean "
    "transpose reshape concat stack take one_hot cross_entropy getitem"
).split()

TESTED: set[str] = set()  # filled by evaluate(); checked by the last test of this module


def evaluate(node: tg.Node, feeds: dict | None = None) -> np.ndarray:
    """The value of ``node`` from both evaluators, after checking they agree with its spec."""
    g = node.graph
    planned = g.run(node, feeds or {})
    interpreted = g.run(node, feeds or {}, optimize=False)
    np.testing.assert_array_equal(planned, interpreted, strict=True)
    value = np.asarray(planned)
    assert value.dtype == node.dtype, (node, value.dtype)
    assert value.ndim == len(node.shape), (node, value.shape)
    assert all(d is None or d == s for d, s in zip(node.shape, value.shape, strict=True)), (
        node, value.shape)
    TESTED.add(node.op)
    return value


def close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-13, atol: float = 1e-14) -> None:
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def ref_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    shifted = moved - moved.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return np.moveaxis(e / e.sum(axis=-1, keepdims=True), -1, axis)


def ref_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    peak = moved.max(axis=-1, keepdims=True)
    log_norm = peak + np.log(np.exp(moved - peak).sum(axis=-1, keepdims=True))
    return np.moveaxis(moved - log_norm, -1, axis)


def ref_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    rows = np.asarray(logits, dtype=np.float64).reshape(-1, logits.shape[-1])
    total = 0.0
    for row, target in zip(rows, np.asarray(targets).reshape(-1), strict=True):
        peak = max(row)
        log_norm = peak + math.log(sum(math.exp(v - peak) for v in row))
        total += log_norm - row[target]
    return total / len(rows)


# ------------------------------------------------------------- elementwise

BINARY = {
    "add": (tg.add, lambda a, b: a + b),
    "sub": (tg.sub, lambda a, b: a - b),
    "mul": (tg.mul, lambda a, b: a * b),
    "div": (tg.div, lambda a, b: a / b),
}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (2, 1)),
                                    ((), (2, 2)), ((1,), ())])
def test_binary_broadcasts_like_numpy(op, shapes):
    g = tg.Graph()
    a_val = RNG.uniform(0.5, 2.0, shapes[0])
    b_val = RNG.uniform(0.5, 2.0, shapes[1])
    a, b = g.input("a", shape=shapes[0]), g.input("b", shape=shapes[1])
    build, ref = BINARY[op]
    out = build(a, b)
    want = ref(a_val, b_val)
    assert out.shape == want.shape
    close(evaluate(out, {"a": a_val, "b": b_val}), want)


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_with_unknown_sizes(op):
    g = tg.Graph()
    a = g.input("a", shape=(None, 3))
    b = g.input("b", shape=(None, 1))
    build, ref = BINARY[op]
    out = build(a, b)
    assert out.shape == (None, 3)
    a_val, b_val = RNG.uniform(1, 2, (5, 3)), RNG.uniform(1, 2, (5, 1))
    close(evaluate(out, {"a": a_val, "b": b_val}), ref(a_val, b_val))


def test_pow_values_and_integer_exponents():
    g = tg.Graph()
    x = g.input("x", shape=(4,))
    val = np.array([0.5, 1.5, 2.0, 3.0])
    close(evaluate(tg.pow(x, 3.0), {"x": val}), val * val * val)
    close(evaluate(tg.pow(2.0, x), {"x": val}), np.array([2 ** v for v in val]))
    y = g.input("y", shape=(4,))
    close(evaluate(x ** y, {"x": val, "y": val[::-1].copy()}),
          np.array([a ** b for a, b in zip(val, val[::-1], strict=True)]))
    ids = g.input("ids", shape=(3,), dtype="int64")
    squared = ids ** 2
    assert squared.dtype == np.int64
    np.testing.assert_array_equal(evaluate(squared, {"ids": np.array([-2, 3, 4])}), [4, 9, 16])


def test_neg_and_relu():
    g = tg.Graph()
    x = g.input("x", shape=(None,))
    val = np.array([-2.0, -0.0, 0.0, 0.5, 3.0])
    close(evaluate(tg.neg(x), {"x": val}), np.array([2.0, 0.0, -0.0, -0.5, -3.0]))
    close(evaluate(tg.relu(x), {"x": val}), np.where(val > 0, val, 0.0))
    ids = g.input("ids", shape=(3,), dtype="int32")
    r = tg.relu(ids)
    assert r.dtype == np.int32
    np.testing.assert_array_equal(evaluate(r, {"ids": np.array([-1, 0, 7], "int32")}), [0, 0, 7])
    np.testing.assert_array_equal(evaluate(-ids, {"ids": np.array([-1, 0, 7], "int32")}),
                                  [1, 0, -7])


@pytest.mark.parametrize("op,ref", [
    ("tanh", lambda v: (np.exp(2 * v) - 1) / (np.exp(2 * v) + 1)),
    ("sigmoid", lambda v: 1.0 / (1.0 + np.exp(-v))),
    ("exp", lambda v: np.array([math.exp(t) for t in v.ravel()]).reshape(v.shape)),
    ("log", lambda v: np.array([math.log(abs(t) + 0.5) for t in v.ravel()]).reshape(v.shape)),
])
def test_unary_float_ops(op, ref):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    val = RNG.uniform(-3, 3, (4, 3))
    arg = abs(val) + 0.5 if op == "log" else val
    node = getattr(tg, op)(x)
    assert node.shape == (None, 3) and node.dtype == np.float64
    close(evaluate(node, {"x": arg}), ref(val), rtol=1e-12)


def test_sigmoid_and_tanh_saturate_without_overflow():
    g = tg.Graph()
    x = g.input("x", shape=(4,))
    val = np.array([-1e4, -800.0, 800.0, 1e4])
    np.testing.assert_array_equal(evaluate(tg.sigmoid(x), {"x": val}), [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(evaluate(tg.tanh(x), {"x": val}), [-1.0, -1.0, 1.0, 1.0])


@pytest.mark.parametrize("op", ["tanh", "sigmoid", "relu", "exp", "log", "neg"])
def test_unary_float32_stays_float32(op):
    g = tg.Graph()
    x = g.input("x", shape=(3,), dtype="float32")
    node = getattr(tg, op)(x)
    assert node.dtype == np.float32
    val = np.array([0.25, 1.0, 2.0], dtype=np.float32)
    got = evaluate(node, {"x": val})
    refs = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "relu": lambda v: np.where(v > 0, v, 0), "exp": np.exp, "log": np.log,
            "neg": lambda v: -v}
    close(got, refs[op](val.astype(np.float64)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op", ["tanh", "sigmoid", "exp", "log", "div"])
def test_int_inputs_give_float64(op):
    g = tg.Graph()
    ids = g.input("ids", shape=(3,), dtype="int64")
    node = tg.div(ids, 2) if op == "div" else getattr(tg, op)(ids)
    assert node.dtype == np.float64
    val = np.array([1, 2, 3])
    refs = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "exp": np.exp,
            "log": np.log, "div": lambda v: v / 2.0}
    close(evaluate(node, {"ids": val}), refs[op](val.astype(np.float64)))


def test_mixed_float32_and_int_binary_ops_follow_numpy_promotion():
    g = tg.Graph()
    x32 = g.input("x", shape=(2,), dtype="float32")
    i64 = g.input("i", shape=(2,), dtype="int64")
    feeds = {"x": np.array([1.5, 2.5], "float32"), "i": np.array([2, 3])}
    cases = [  # python numbers take the node's dtype; arrays promote as in numpy
        (x32 + i64, np.float64, [3.5, 5.5]), (x32 * 2, np.float32, [3.0, 5.0]),
        (2.0 * x32, np.float32, [3.0, 5.0]), (x32 / 4, np.float32, [0.375, 0.625]),
        (1.0 - x32, np.float32, [-0.5, -1.5]), (i64 * 3, np.int64, [6, 9]),
        (i64 + 1, np.int64, [3, 4]), (i64 / 2, np.float64, [1.0, 1.5]),
        (x32 + np.ones(2), np.float64, [2.5, 3.5]),
    ]
    for node, dtype, want in cases:
        assert node.dtype == dtype, node
        np.testing.assert_array_equal(evaluate(node, feeds), np.array(want, dtype))


# ---------------------------------------------------------------- matmul


@pytest.mark.parametrize("a_shape,b_shape,spec", [
    ((2, 3), (3, 4), "ij,jk->ik"),
    ((3,), (3, 4), "j,jk->k"),
    ((2, 3), (3,), "ij,j->i"),
    ((3,), (3,), "j,j->"),
    ((5, 2, 3), (3, 4), "bij,jk->bik"),
    ((5, 2, 3), (5, 3, 4), "bij,bjk->bik"),
    ((2, 1, 2, 3), (4, 3, 2), "xbij,cjk->xcik"),  # batch dims broadcast (1 vs 4)
])
def test_matmul_follows_np_matmul_rules(a_shape, b_shape, spec):
    g = tg.Graph()
    a_val, b_val = RNG.normal(size=a_shape), RNG.normal(size=b_shape)
    a, b = g.input("a", shape=a_shape), g.input("b", shape=b_shape)
    if spec == "xbij,cjk->xcik":
        # (2,1,2,3) @ (4,3,2): batch (2,1) and (4,) broadcast to (2,4)
        want = np.einsum("xij,cjk->xcik", a_val[:, 0], b_val)
    else:
        want = np.einsum(spec, a_val, b_val)
    out = a @ b
    assert out.shape == want.shape
    close(evaluate(out, {"a": a_val, "b": b_val}), want)


def test_matmul_unknown_sizes_float32_and_int():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3), dtype="float32")
    W = g.param("W", np.arange(6, dtype=np.float32).reshape(3, 2))
    y = x @ W
    assert y.shape == (None, 2) and y.dtype == np.float32
    val = np.ones((4, 3), np.float32)
    close(evaluate(y, {"x": val}), np.full((4, 2), [6.0, 9.0]))
    ids = g.input("ids", shape=(2, 2), dtype="int64")
    z = ids @ ids
    assert z.dtype == np.int64
    np.testing.assert_array_equal(evaluate(z, {"ids": np.array([[1, 2], [3, 4]])}),
                                  [[7, 10], [15, 22]])


# ------------------------------------------------------------ along an axis


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis):
    g = tg.Graph()
    x = g.input("x", shape=(None, 4, 5))
    val = RNG.normal(size=(3, 4, 5)) * 5
    close(evaluate(tg.softmax(x, axis=axis), {"x": val}), ref_softmax(val, axis))
    close(evaluate(tg.log_softmax(x, axis=axis), {"x": val}), ref_log_softmax(val, axis))


def test_softmax_family_is_finite_for_inputs_up_to_1e4():
    g = tg.Graph()
    x = g.input("x", shape=(3, 3))
    val = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1.0, 1e4]])
    sm = evaluate(tg.softmax(x), {"x": val})
    lsm = evaluate(tg.log_softmax(x), {"x": val})
    assert np.isfinite(sm).all() and np.isfinite(lsm).all()
    e = math.exp(-1.0)
    close(sm, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [1 / (2 + e), e / (2 + e), 1 / (2 + e)]])
    close(lsm[0], [0.0, -2e4, -1e4])
    targets = g.input("t", shape=(3,), dtype="int64")
    ce = evaluate(tg.cross_entropy(x, targets), {"x": val, "t": np.array([1, 0, 1])})
    assert np.isfinite(ce)
    close(ce, (2e4 + math.log(3) + (1 + math.log(2 + e))) / 3)


def test_softmax_float32_and_int_inputs():
    g = tg.Graph()
    x = g.input("x", shape=(2, 3), dtype="float32")
    val = np.array([[1, 2, 3], [0, 0, 50]], np.float32)
    out = evaluate(tg.softmax(x), {"x": val})
    assert out.dtype == np.float32
    close(out, ref_softmax(val, -1), rtol=1e-6, atol=1e-7)
    ids = g.input("ids", shape=(3,), dtype="int64")
    close(evaluate(tg.log_softmax(ids), {"ids": np.array([1, 2, 3])}),
          ref_log_softmax(np.array([1.0, 2.0, 3.0]), 0))


def test_cross_entropy_against_explicit_loop():
    g = tg.Graph()
    logits = g.input("logits", shape=(None, 4, 6))
    targets = g.input("t", shape=(None, 4), dtype="int64")
    loss = tg.cross_entropy(logits, targets)
    assert loss.shape == () and loss.dtype == np.float64
    lv = RNG.normal(size=(3, 4, 6)) * 3
    tv = RNG.integers(0, 6, size=(3, 4))
    close(evaluate(loss, {"logits": lv, "t": tv}), ref_cross_entropy(lv, tv))
    # rank-1 logits with a scalar target; float32 logits keep float32
    one = g.input("one", shape=(5,), dtype="float32")
    scalar_loss = tg.cross_entropy(one, np.array(2))
    assert scalar_loss.dtype == np.float32
    v = np.array([0.5, -1.0, 2.0, 0.0, 1.0], np.float32)
    close(evaluate(scalar_loss, {"one": v}), ref_cross_entropy(v[None], np.array([2])),
          rtol=1e-6)


# ------------------------------------------------------------- reductions


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_and_mean(axis, keepdims):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3, 4))
    val = RNG.normal(size=(2, 3, 4))
    axes = range(3) if axis is None else [axis] if isinstance(axis, int) else axis
    axes = sorted(a % 3 for a in axes)
    # hand-rolled reduction: add up slices one axis at a time
    total = val
    for a in reversed(axes):
        acc = np.zeros(total.shape[:a] + total.shape[a + 1:])
        for k in range(total.shape[a]):
            acc = acc + np.take(total, k, axis=a)
        total = acc
    count = math.prod(val.shape[a] for a in axes)
    if keepdims:
        total = total.reshape([1 if i in axes else d for i, d in enumerate(val.shape)])
    s = tg.sum(x, axis=axis, keepdims=keepdims)
    m = tg.mean(x, axis=axis, keepdims=keepdims)
    declared = (None, 3, 4)
    if keepdims:
        want_shape = tuple(1 if i in axes else d for i, d in enumerate(declared))
    else:
        want_shape = tuple(d for i, d in enumerate(declared) if i not in axes)
    assert s.shape == m.shape == want_shape
    close(evaluate(s, {"x": val}), total)
    close(evaluate(m, {"x": val}), total / count)


def test_sum_and_mean_dtypes():
    g = tg.Graph()
    x32 = g.input("x", shape=(2, 2), dtype="float32")
    i32 = g.input("i", shape=(3,), dtype="int32")
    flags = g.input("b", shape=(3,), dtype="bool")
    feeds = {"x": np.ones((2, 2), np.float32), "i": np.array([1, 2, 3], np.int32),
             "b": np.array([True, False, True])}
    assert evaluate(tg.sum(x32, axis=0), feeds).dtype == np.float32
    assert evaluate(tg.mean(x32), feeds).dtype == np.float32
    assert evaluate(tg.sum(i32), feeds) == 6
    assert evaluate(tg.sum(flags), feeds) == 2
    m = evaluate(tg.mean(i32), feeds)
    assert m.dtype == np.float64 and m == 2.0


# ------------------------------------------------------------ restructuring


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1)])
def test_transpose(axes):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3, 4))
    val = RNG.normal(size=(2, 3, 4))
    perm = (2, 1, 0) if axes is None else tuple(a % 3 for a in axes)
    want = np.empty(tuple(val.shape[p] for p in perm))
    for idx in np.ndindex(*val.shape):
        want[tuple(idx[p] for p in perm)] = val[idx]
    out = tg.transpose(x, axes)
    assert out.shape == tuple((None, 3, 4)[p] for p in perm)
    close(evaluate(out, {"x": val}), want)


def test_dot_T_on_a_matrix():
    g = tg.Graph()
    x = g.input("x", shape=(2, 3))
    val = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(evaluate(x.T, {"x": val}), [[0, 3], [1, 4], [2, 5]])


@pytest.mark.parametrize("target,declared,want_shape,run_shape", [
    ((6, 2), (3, 4), (6, 2), (6, 2)),
    ((-1,), (3, 4), (12,), (12,)),
    ((2, -1, 3), (3, 4), (2, 2, 3), (2, 2, 3)),
    ((-1, 4), (None, 4), (None, 4), (3, 4)),
    ((12,), (3, None), (12,), (12,)),
])
def test_reshape(target, declared, want_shape, run_shape):
    g = tg.Graph()
    x = g.input("x", shape=declared)
    val = np.arange(12.0).reshape(3, 4)
    out = tg.reshape(x, target)
    assert out.shape == want_shape
    flat = [v for row in val for v in row]  # C order, written out
    got = evaluate(out, {"x": val})
    assert got.shape == run_shape
    assert list(got.ravel()) == flat


def test_reshape_of_int_array_keeps_dtype():
    g = tg.Graph()
    ids = g.input("ids", shape=(2, 3), dtype="int32")
    out = tg.reshape(ids, 6)
    assert out.dtype == np.int32 and out.shape == (6,)
    np.testing.assert_array_equal(evaluate(out, {"ids": np.arange(6, dtype="int32")
                                                 .reshape(2, 3)}), np.arange(6))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    g = tg.Graph()
    a = g.input("a", shape=(None, 3))
    b = g.param("b", RNG.normal(size=(2, 3)))
    a_val = RNG.normal(size=(2, 3))
    out = tg.concat([a, b, a], axis=axis)
    if axis == 0:
        assert out.shape == (None, 3)
        want = np.zeros((6, 3))
        want[0:2], want[2:4], want[4:6] = a_val, b.value, a_val
    else:
        assert out.shape == (2, 9)
        want = np.zeros((2, 9))
        want[:, 0:3], want[:, 3:6], want[:, 6:9] = a_val, b.value, a_val
    close(evaluate(out, {"a": a_val}), want)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(axis):
    g = tg.Graph()
    a = g.input("a", shape=(None, 3))
    c = g.const(np.ones((2, 3)))
    a_val = RNG.normal(size=(2, 3))
    out = tg.stack([a, c], axis=axis)
    pos = axis % 3
    shape = [2, 3]
    shape.insert(pos, 2)
    want = np.zeros(shape)
    for k, part in enumerate([a_val, np.ones((2, 3))]):
        index = [slice(None)] * 3
        index[pos] = k
        want[tuple(index)] = part
    assert out.shape == tuple(shape)
    close(evaluate(out, {"a": a_val}), want)


def test_concat_and_stack_of_float32_stay_float32():
    g = tg.Graph()
    a = g.input("a", shape=(2,), dtype="float32")
    feeds = {"a": np.array([1, 2], np.float32)}
    assert evaluate(tg.concat([a, a]), feeds).dtype == np.float32
    assert evaluate(tg.stack([a, a], axis=1), feeds).dtype == np.float32


def test_take_rows_and_along_an_axis():
    g = tg.Graph()
    E = g.param("E", RNG.normal(size=(5, 3)))
    ids = g.input("ids", shape=(None, 2), dtype="int64")
    rows = tg.take(E, ids)
    assert rows.shape == (None, 2, 3)
    id_val = np.array([[0, 4], [2, 2], [1, 3]])
    want = np.zeros((3, 2, 3))
    for i in range(3):
        for j in range(2):
            want[i, j] = E.value[id_val[i, j]]
    close(evaluate(rows, {"ids": id_val}), want)
    cols = tg.take(E, [2, 0], axis=1)
    assert cols.shape == (5, 2)
    close(evaluate(cols), np.stack([E.value[:, 2], E.value[:, 0]], axis=1))
    ints = g.const(np.array([10, 20, 30]))
    picked = tg.take(ints, np.array([2, 2, 0]))
    assert picked.dtype == ints.dtype
    np.testing.assert_array_equal(evaluate(picked), [30, 30, 10])


def test_one_hot():
    g = tg.Graph()
    ids = g.input("ids", shape=(None,), dtype="int64")
    oh = tg.one_hot(ids, depth=4)
    assert oh.shape == (None, 4) and oh.dtype == np.float64
    id_val = np.array([3, 0, 0, 2])
    want = np.zeros((4, 4))
    for row, i in enumerate(id_val):
        want[row, i] = 1.0
    np.testing.assert_array_equal(evaluate(oh, {"ids": id_val}), want)
    oh32 = tg.one_hot(ids, depth=5, dtype="float32")
    assert evaluate(oh32, {"ids": id_val}).dtype == np.float32


@pytest.mark.parametrize("index", [0, -1, (slice(None), 1), (1, slice(0, 3, 2)),
                                   slice(None, None, -1), (slice(1, None), -2), (0, 0)])
def test_getitem_basic_indexing(index):
    g = tg.Graph()
    x = g.input("x", shape=(3, 4))
    val = np.arange(12.0).reshape(3, 4)
    items = index if isinstance(index, tuple) else (index,)
    # the reference: index a nested python list by hand
    rows = val.tolist()
    want = rows[items[0]]
    if len(items) == 2:
        want = ([r[items[1]] for r in want] if isinstance(items[0], slice)
                else want[items[1]])
    out = x[index]
    np.testing.assert_array_equal(evaluate(out, {"x": val}), np.array(want))
    assert out.shape == np.shape(want)


def test_getitem_with_unknown_sizes_and_ints():
    g = tg.Graph()
    x = g.input("x", shape=(None, 4), dtype="int64")
    out = x[1:, ::2]
    assert out.shape == (None, 2) and out.dtype == np.int64
    val = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(evaluate(out, {"x": val}), [[4, 6], [8, 10]])
    assert x[0].shape == (4,)


# ------------------------------------------------------- python operators


def test_operators_with_numbers_and_arrays_on_either_side():
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    val = np.array([1.0, 2.0, 4.0])
    arr = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]])
    cases = [
        (x + 1, [2, 3, 5]), (1 + x, [2, 3, 5]), (x - 1, [0, 1, 3]), (1 - x, [0, -1, -3]),
        (2 * x, [2, 4, 8]), (x * 2, [2, 4, 8]), (10.0 / x, [10, 5, 2.5]), (x / 4, [.25, .5, 1]),
        (x ** 3, [1, 8, 64]), (2 ** x, [2, 4, 16]), (-x, [-1, -2, -4]),
        (arr @ x, [9, 10]), (x @ arr.T, [9, 10]), (x + val, [2, 4, 8]), (val * x, [1, 4, 16]),
        (np.float64(3.0) * x, [3, 6, 12]), (x[1:], [2, 4]), (x[-1], 4),
    ]
    for node, want in cases:
        np.testing.assert_array_equal(evaluate(node, {"x": val}), np.array(want, float))


def test_operators_keep_float32_and_int_dtypes():
    g = tg.Graph()
    x = g.input("x", shape=(2,), dtype="float32")
    ids = g.input("ids", shape=(2,), dtype="int64")
    feeds = {"x": np.array([1, 2], np.float32), "ids": np.array([3, 4])}
    for node in (2 * x, x * 2, 10.0 / x, x ** 3, 1 - x, -x, x.T, x[0]):
        assert node.dtype == np.float32
        assert evaluate(node, feeds).dtype == np.float32
    for node in (ids + 1, 2 * ids, ids - 1, ids ** 2, -ids):
        assert node.dtype == np.int64
        assert evaluate(node, feeds).dtype == np.int64
    assert (ids * 0.5).dtype == np.float64
    np.testing.assert_array_equal(evaluate(ids * 0.5, feeds), [1.5, 2.0])


def test_float32_stays_float32_through_every_float_primitive():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3), dtype="float32")
    W = g.param("W", np.ones((3, 2), np.float32))
    ids = g.const(np.array([1, 0]))
    built = [x + x, x - 1, x * x, x / 2, -x, x ** 2, tg.pow(x, x), x @ W, tg.tanh(x),
             tg.sigmoid(x), tg.relu(x), tg.exp(x), tg.log(x), tg.softmax(x),
             tg.log_softmax(x, axis=0), tg.sum(x, axis=1), tg.mean(x), x.T,
             tg.reshape(x, (-1,)), tg.concat([x, x]), tg.stack([x, x], axis=2),
             tg.take(x, ids), tg.one_hot(ids, 3, dtype="float32"),
             tg.cross_entropy(x, np.array([2, 0])), x[:, 0]]
    val = np.array([[0.5, 1.0, 2.0], [1.5, 0.25, 3.0]], np.float32)
    wide = val.astype(np.float64)
    for node in built:
        assert node.dtype == np.float32, node
        got = evaluate(node, {"x": val})
        assert got.dtype == np.float32, node
    # Spot values: float32 arithmetic stays close to the float64 reference.
    close(evaluate(built[7], {"x": val}), wide.sum(axis=1, keepdims=True).repeat(2, 1),
          rtol=1e-6)
    close(evaluate(built[23], {"x": val}), ref_cross_entropy(wide, np.array([2, 0])),
          rtol=1e-6)


def test_every_design_primitive_was_value_tested():
    # Runs last in this module (pytest keeps file order): all tests above filled TESTED.
    missing = [op for op in DESIGN_PRIMITIVES if op not in TESTED]
    assert not missing, f"no value test evaluated {missing}"
    assert set(DESIGN_PRIMITIVES) <= set(tg.OPS)

"""``affine(x, w, b) = x @ w + b`` and the pass that makes it, against numpy written out.

The op's forward takes one of two paths by shape (the bias folded into the
product as a column of ones when the rows come out wider than they go in; else
product, then an in-place add): both are compared with ``x @ w + b`` in numpy.
The pass must rewrite a loop's hoisted input projection and nothing it cannot
prove is ``x @ w + b`` with the product read nowhere else.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph import passes
from tinygraph.core.ops import OPS
from tinygraph.passes.affine import affine_pass
from tinygraph.passes.draft import Draft

RNG = np.random.default_rng(17)
forward = OPS["affine"].forward


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, n", [((40, 3), 5),       # wider out, many rows: in the product
                                         ((4, 6, 3), 9),     # a stack of steps, wider out
                                         ((7, 3), 5),        # wider out, few rows: add in place
                                         ((7, 5), 2),        # narrower out: add in place
                                         ((2, 3, 5), 5),     # n == k: add in place
                                         ((0, 4), 6),        # no rows
                                         ((12, 1), 4),       # k = 1, in the product
                                         ((3, 1), 4)])       # k = 1, add in place
def test_forward_equals_numpy_on_both_paths(x_shape, n, dtype):
    x = RNG.normal(size=x_shape).astype(dtype)
    w = RNG.normal(size=(x_shape[-1], n)).astype(dtype)
    b = RNG.normal(size=n).astype(dtype)
    got = forward(x, w, b)
    want = x @ w + b
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-13)


def test_the_bias_rides_in_the_product_only_for_many_rows_widening():
    from tinygraph.core.prim_affine import bias_in_product

    assert bias_in_product(40, 3, 5) and bias_in_product(24, 3, 9)
    assert not bias_in_product(7, 3, 5)      # copying w would cost more than the add
    assert not bias_in_product(3200, 64, 64)  # n == k: nothing to save
    assert bias_in_product(3200, 64, 768) and not bias_in_product(50, 64, 128)


def test_a_large_input_rides_with_its_bias_in_blocks_of_rows(monkeypatch):
    # Small limits here stand for the module's MiB ones: rows not a multiple of a block,
    # and a strided stack, each compared with numpy written out.
    from tinygraph.core import prim_affine
    monkeypatch.setattr(prim_affine, "_COPY_WHOLE_MAX_BYTES", 8 * 4 * 100)
    monkeypatch.setattr(prim_affine, "_COPY_BLOCK_BYTES", 8 * 4 * 30)
    w, b = RNG.standard_normal((3, 7)), RNG.standard_normal(7)
    for x in (RNG.standard_normal((1001, 3)), RNG.standard_normal((50, 21, 6))[:, ::2, :3]):
        np.testing.assert_allclose(forward(x, w, b), x @ w + b, rtol=1e-13, atol=1e-14)


def test_a_large_input_is_not_copied_whole():
    import tracemalloc
    x, w, b = RNG.standard_normal((40_000, 64)), RNG.standard_normal((64, 128)), np.ones(128)
    tracemalloc.start()
    try:
        y = forward(x, w, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(y[::997], x[::997] @ w + b, rtol=1e-12)
    assert peak < y.nbytes + x.nbytes // 4  # the result and one block, not [x | 1] whole


def test_forward_of_a_strided_stack_equals_numpy():
    x = RNG.normal(size=(3, 8, 4))[:, ::2]  # (3, 4, 4), not contiguous: numpy's matmul
    w, b = RNG.normal(size=(4, 3)), RNG.normal(size=3)
    np.testing.assert_allclose(forward(x, w, b), x @ w + b, rtol=1e-13, atol=1e-13)


def test_forward_reads_views_and_row_shaped_biases_and_leaves_inputs_alone():
    x = RNG.normal(size=(5, 8)).T  # (8, 5), not contiguous
    w, b = RNG.normal(size=(5, 9)), RNG.normal(size=(1, 9))
    before = (x.copy(), w.copy(), b.copy())
    np.testing.assert_allclose(forward(x, w, b), x @ w + b, rtol=1e-13, atol=1e-13)
    for arr, kept in zip((x, w, b), before, strict=True):
        np.testing.assert_array_equal(arr, kept)


def test_forward_with_mixed_dtypes_promotes_as_numpy():
    x = RNG.integers(-3, 3, size=(4, 2))
    w, b = RNG.normal(size=(2, 6)), RNG.normal(size=6).astype(np.float32)
    got = forward(x, w, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, x @ w + b, rtol=1e-13)


def test_a_bias_that_widens_the_result_is_refused_at_build_time():
    g = tg.Graph()
    x, w = g.input("x", shape=(4, 3)), g.input("w", shape=(3, 5))
    with pytest.raises(tg.GraphError, match="broadcast along the rows"):
        g.add_node("affine", [x, w, g.input("b", shape=(2, 1, 5))], {})
    with pytest.raises(tg.GraphError, match="2 or more axes"):
        g.add_node("affine", [g.input("v", shape=(3,)), w, g.input("c", shape=(5,))], {})


def _ops(graph):
    return [n.op for n in graph.nodes.values() if n.op not in ("input", "param", "const")]


def test_a_loops_hoisted_input_projection_becomes_one_affine():
    net = rnn.unroll(rnn.GRUCell(input_size=3, hidden_size=4, seed=0), 6)
    xs = RNG.normal(size=(6, 2, 3))
    fn = net.graph.compile(tg.stack(net.states), inputs=[n.name for n in net.inputs])
    step = next(s.node for s in fn.plan.steps if s.node.op == "affine")
    assert step.shape == (6, None, 12)  # (T, B, 3H): all steps' x @ W_ih + b_ih at once
    # against the GRU's equations written out in numpy
    p = {k: v.value for k, v in net.params.items()}
    h, want = np.zeros((2, 4)), []
    for x in xs:
        gi, gh = x @ p["W_ih"] + p["b_ih"], h @ p["W_hh"] + p["b_hh"]
        r = 1 / (1 + np.exp(-(gi[:, :4] + gh[:, :4])))
        z = 1 / (1 + np.exp(-(gi[:, 4:8] + gh[:, 4:8])))
        n = np.tanh(gi[:, 8:] + r * gh[:, 8:])
        h = (1 - z) * n + z * h
        want.append(h)
    feeds = {node.name: xs[t] for t, node in enumerate(net.inputs)}
    np.testing.assert_allclose(fn(**feeds), np.stack(want), rtol=1e-12, atol=1e-12)


def _draft(fetch_product: bool = False, second_reader: bool = False, bias_shape=(5,)):
    g = tg.Graph()
    x, w = g.input("x", shape=(None, 3)), g.param("w", RNG.normal(size=(3, 5)))
    product = x @ w
    y = product + g.param("b", RNG.normal(size=bias_shape))
    roots = [y] + ([product] if fetch_product else []) + (
        [tg.exp(product)] if second_reader else [])
    return Draft(g, roots)


@pytest.mark.parametrize("case, expected", [
    ({}, ["affine"]),
    ({"fetch_product": True}, ["matmul", "add"]),        # the product itself is wanted
    ({"second_reader": True}, ["matmul", "add", "exp"]),  # the product is read twice
    ({"bias_shape": ()}, ["matmul", "add"]),             # a scalar is no row bias
    ({"bias_shape": (2, 5)}, ["matmul", "add"]),         # one bias per row: not along rows
])
def test_the_pass_rewrites_only_what_it_can_prove(case, expected):
    draft = _draft(**case)
    affine_pass(draft)
    assert [r.op for r in draft.live() if r.op not in ("input", "param")] == expected


def test_inside_a_loop_body_the_add_stays():
    g = tg.Graph()
    w, b = g.param("w", RNG.normal(size=(2, 2))), g.param("b", RNG.normal(size=2))
    final, _ = tg.scan(lambda s, x: (tg.tanh(s @ w + b + x), None),
                       g.input("s0", shape=(3, 2)), g.input("xs", shape=(4, 3, 2)))
    built = passes.rewrite(g, [final], [affine_pass])[0]
    scan = next(n for n in built.nodes.values() if n.op == "scan")
    assert "affine" not in _ops(scan.attrs["body"])


@pytest.mark.parametrize("make", [lambda: RNG.normal(size=(4, 3, 5)),              # one BLAS call
                                  lambda: RNG.normal(size=(4, 6, 5))[:, ::2],      # strided
                                  lambda: RNG.normal(size=(2, 4, 3, 5)).astype(np.float32),
                                  lambda: RNG.integers(-3, 3, size=(4, 3, 5))])    # ints
def test_stacked_product_equals_numpy(make):
    from tinygraph.core.prim_affine import stacked_product

    x = make()
    w = RNG.normal(size=(5, 2)).astype(x.dtype if x.dtype.kind == "f" else np.float64)
    got, want = stacked_product(x, w), np.matmul(x, w)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

"""Scan bugs found while writing docs/scan.md and its benchmarks (issue 11).

Each test compares against a hand-written numpy loop or against the same loop
unrolled into a graph; none uses the scan under test as its reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("optimize", [True, False])
def test_the_gradient_for_a_size_one_init_that_broadcasts_to_the_batch_has_its_shape(optimize):
    # A (1, H) initial carry meets a batch of B rows in the first step (scan allows it);
    # its gradient must be summed back over the batch, as for any broadcast.
    X, S = RNG.normal(size=(4, 2, 3)), RNG.normal(size=(1, 3))
    W0 = RNG.normal(size=(3, 3)) * 0.5
    g = tg.Graph()
    xs, s0 = g.input("xs", shape=(None, None, 3)), g.input("s0", shape=(1, 3))
    W = g.param("W", W0)
    last, _ = tg.scan(lambda s, x: (tg.tanh(s @ W + x), None), s0, xs)
    got_last, got = g.run([last, tg.grad(tg.sum(last), s0)], {"xs": X, "s0": S},
                          optimize=optimize)
    assert got_last.shape == (2, 3)
    assert last.shape[0] in (None, 2)  # the static shape may not claim 1 for a batch of 2

    u = tg.Graph()  # the same loop unrolled: the reference
    su = u.input("s0", shape=(1, 3))
    Wu, s = u.param("W", W0), su
    for x in X:
        s = tg.tanh(s @ Wu + u.const(x))
    want = u.run(tg.grad(tg.sum(s), su), {"s0": S}, optimize=False)
    assert want.shape == (1, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_a_carry_that_does_not_read_xs_beside_an_output_that_only_reads_xs():
    # A step counter (or any carry that ignores xs) next to a per-step output that
    # depends on x alone: hoisting moves `x * 2` out of the loop.
    X = RNG.normal(size=(5, 2))
    g = tg.Graph()
    xs = g.input("xs", shape=(None, 2))
    count, doubled = tg.scan(lambda c, x: (c + 1.0, x * 2.0), g.const(np.array(0.0)), xs)
    got_count, got_doubled = g.run([count, doubled], {"xs": X})  # optimized, the default
    np.testing.assert_array_equal(got_doubled, X * 2.0)
    assert float(got_count) == len(X)  # the numpy loop: five steps of c + 1

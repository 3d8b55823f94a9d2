"""The layout a loop's weight is handed over in: measured per shape, kept per process."""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
import tinygraph.core.loop_weight as lw


@pytest.fixture
def fake_speed(monkeypatch):
    """Make column-major ``ratio`` times the C-order time; record what was measured."""
    measured = []

    def use(ratio):
        monkeypatch.setattr(lw, "_speeds", {})
        monkeypatch.setattr(lw, "_measure", lambda *key: measured.append(key) or ratio)
        return measured

    return use


def test_a_clearly_faster_column_major_layout_gets_a_copy(fake_speed):
    fake_speed(0.5)
    w = np.arange(12.0).reshape(3, 4)
    laid = lw.loop_weight(w, rows=8, steps=50)
    assert laid.flags.f_contiguous and not np.shares_memory(laid, w)
    np.testing.assert_array_equal(laid, w)


def test_a_near_tie_or_a_slower_column_major_layout_keeps_the_weight(fake_speed):
    w = np.arange(12.0).reshape(3, 4)
    for ratio in (0.95, 1.0, 1.05, 2.0):
        fake_speed(ratio)
        assert lw.loop_weight(w, rows=8, steps=50) is w


def test_a_transposed_weight_goes_to_c_order_only_when_that_is_clearly_faster(fake_speed):
    w = np.arange(12.0).reshape(4, 3).T  # a view, column-major
    fake_speed(2.0)
    laid = lw.loop_weight(w, rows=8, steps=50)
    assert laid.flags.c_contiguous
    np.testing.assert_array_equal(laid, w)
    fake_speed(1.05)
    assert lw.loop_weight(w, rows=8, steps=50) is w


def test_a_strided_weight_is_copied_to_the_faster_layout(fake_speed):
    w = np.arange(48.0).reshape(6, 8)[::2, ::2]
    fake_speed(1.2)
    assert lw.loop_weight(w, rows=8, steps=50).flags.c_contiguous
    fake_speed(0.8)
    assert lw.loop_weight(w, rows=8, steps=50).flags.f_contiguous


def test_one_row_short_loops_and_non_float_weights_are_not_measured(fake_speed):
    measured = fake_speed(0.1)
    w = np.ones((3, 4))
    assert lw.loop_weight(w, rows=1, steps=50) is w          # a matrix-vector product
    assert lw.loop_weight(w, rows=8, steps=lw.LOOP_WEIGHT_MIN_STEPS - 1) is w
    ints = np.ones((3, 4), dtype=np.int64)
    assert lw.loop_weight(ints, rows=8, steps=50) is ints
    assert measured == []


def test_each_shape_and_dtype_is_measured_once(fake_speed):
    measured = fake_speed(0.5)
    for _ in range(3):
        lw.loop_weight(np.ones((3, 4)), rows=8, steps=50)
        lw.loop_weight(np.ones((3, 4), dtype=np.float32), rows=8, steps=50)
    assert measured == [(8, 3, 4, "<f8"), (8, 3, 4, "<f4")]


def test_large_products_are_not_timed(fake_speed):
    measured = fake_speed(0.5)
    assert lw.layout_speed(1024, 1024, 1024, np.float64) == 1.0
    assert measured == []


def test_a_real_measurement_is_a_positive_ratio():
    ratio = lw._measure(8, 16, 16, "<f8")
    assert np.isfinite(ratio) and ratio > 0


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_a_loop_gives_the_numpy_loops_values_in_either_layout(fake_speed, ratio):
    fake_speed(ratio)
    rng = np.random.default_rng(0)
    g = tg.Graph()
    xs = g.input("xs", shape=(None, None, 6))
    W = g.param("W", rng.normal(size=(6, 6)) * 0.4)

    def step(s, x):
        f = tg.sigmoid(s @ W + x)
        return f * s + (1.0 - f) * tg.tanh(x), None

    last, _ = tg.scan(step, g.input("s0", shape=(None, 6)), xs)
    x_value = rng.normal(size=(30, 5, 6))
    got = g.run(last, {"xs": x_value, "s0": np.zeros((5, 6))})
    s = np.zeros((5, 6))
    for x in x_value:
        f = 1 / (1 + np.exp(-(s @ W.value + x)))
        s = f * s + (1 - f) * np.tanh(x)
    np.testing.assert_allclose(got, s, rtol=1e-12)

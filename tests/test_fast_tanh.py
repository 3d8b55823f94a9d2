"""tanh from exp for large float64 steps (tinygraph/core/fast_tanh.py).

The reference is Python's ``math.tanh`` value by value (the C library's, not
numpy's loops); plans and the recurrence kernel are forced onto the exp form
(or off it) through the module's switch, whatever this machine measures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_projections import numpy_mgu
from test_scan import MinimalGatedUnit

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.core import fast_tanh
from tinygraph.core.fast_tanh import FAST_TANH_MIN_VALUES, tanh_from_exp, tanh_kernel

# The documented bound against the exact value (2.3e-16), plus the reference's own
# rounding (math.tanh is within one unit in the last place: up to 1.1e-16).
ABS = 3.4e-16


def exact(x: np.ndarray) -> np.ndarray:
    return np.array([math.tanh(v) for v in x.ravel()]).reshape(x.shape)


@pytest.fixture
def exp_form(monkeypatch):
    """Plans built in the test use the exp form (as on a machine where it is faster)."""
    monkeypatch.setattr(fast_tanh, "_measured", lambda: True)
    monkeypatch.delenv(fast_tanh.EXACT_TANH_ENV, raising=False)


def test_exp_form_is_within_its_documented_error():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20_000) * 3, rng.uniform(-25, 25, 5_000),
                        10.0 ** rng.uniform(-12, 0, 5_000) * rng.choice([-1, 1], 5_000)])
    got, want = tanh_from_exp(x), exact(x)
    assert np.max(np.abs(got - want)) <= ABS
    wide = np.abs(x) >= 0.5
    assert np.max(np.abs(got - want)[wide] / np.abs(want[wide])) <= 4.5e-16 + 2.3e-16


def test_exp_form_keeps_infinities_nan_signed_zero_and_huge_values_quietly():
    x = np.array([-np.inf, -1e308, -800.0, -0.0, 0.0, 5e-324, 800.0, 1e308, np.inf, np.nan])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = tanh_from_exp(x)
    assert got[:-1].tolist() == [-1.0, -1.0, -1.0, -0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert np.signbit(got[3]) and not np.signbit(got[4])
    assert np.isnan(got[-1])


def test_exp_form_may_write_over_its_input():
    x = np.random.default_rng(1).standard_normal((64, 128))
    want = exact(x)
    got = tanh_from_exp(x, out=x)
    assert got is x
    assert np.max(np.abs(x - want)) <= ABS


def test_small_or_non_float64_steps_keep_numpys_tanh(exp_form):
    assert tanh_kernel(FAST_TANH_MIN_VALUES - 1, np.float64) is np.tanh
    assert tanh_kernel(1 << 20, np.float32) is np.tanh
    fast = tanh_kernel(FAST_TANH_MIN_VALUES, np.float64)
    assert fast is not np.tanh
    # A step that turns out small (the batch shrank) still gets numpy's values exactly.
    small = np.random.default_rng(2).standard_normal((3, 5))
    assert np.array_equal(fast(small), np.tanh(small))


def test_the_environment_variable_asks_for_numpys_tanh(monkeypatch):
    monkeypatch.setattr(fast_tanh, "_measured", lambda: True)
    monkeypatch.setenv(fast_tanh.EXACT_TANH_ENV, "1")
    assert tanh_kernel(1 << 16, np.float64) is np.tanh
    monkeypatch.setenv(fast_tanh.EXACT_TANH_ENV, "0")
    assert tanh_kernel(1 << 16, np.float64) is not np.tanh


def _mgu_run(T=5, B=64, H=128):
    """The docs' MinimalGatedUnit at 64 x 128 = 8,192 values in its tanh, run three times
    (the first calls run step by step, later ones the generated loop), and a numpy loop."""
    rng = np.random.default_rng(4)
    net = rnn.unroll(MinimalGatedUnit(input_size=8, hidden_size=H, seed=1), steps=T)
    p = {k: v.value for k, v in net.params.items()}
    X = rng.normal(size=(T, B, 8))
    view, seq, nodes = net._view()
    fn = view.compile(nodes, inputs=[seq, *[n.name for n in net._initial]])
    for _ in range(3):
        got = fn(X, np.zeros((B, H)))
    (kernel,) = [step.forward for step in fn.plan.steps if step.node.op == "scan"]
    return got[0], numpy_mgu(X, p), kernel._loop.__globals__


def test_a_scan_body_computes_a_large_tanh_from_exp_within_the_bound(exp_form):
    got, want, loop_names = _mgu_run()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    # The loop ignores overflow once for all its steps, so it calls the five-call form.
    assert fast_tanh.large_tanh_unguarded in loop_names.values()
    assert fast_tanh._large_tanh not in loop_names.values()


def test_with_the_variable_set_a_scan_keeps_numpys_tanh(monkeypatch):
    monkeypatch.setattr(fast_tanh, "_measured", lambda: True)
    monkeypatch.setenv(fast_tanh.EXACT_TANH_ENV, "1")
    got, want, loop_names = _mgu_run()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert fast_tanh._large_tanh not in loop_names.values()
    assert fast_tanh.large_tanh_unguarded not in loop_names.values()
    assert np.tanh in loop_names.values()


def test_a_plain_plan_keeps_numpys_tanh(exp_form):
    g = tg.Graph("big tanh")
    x = g.input("x", shape=(None, 128))
    y = tg.tanh(x) * 2.0
    fn = g.compile(y, inputs=["x"])
    xv = np.random.default_rng(5).standard_normal((64, 128)) * 1e-9  # where the exp form is coarse
    for _ in range(3):
        got = fn(x=xv)
    assert np.array_equal(got, np.tanh(xv) * 2.0)
    assert fast_tanh._large_tanh not in fn.plan._body.__globals__.values()


def test_the_vanilla_recurrence_kernel_uses_it_and_matches_a_numpy_loop(exp_form):
    T, B, D, H = 12, 32, 16, 128  # 4,096 state values a step
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=4, seed=0)
    net = rnn.unroll(cell, steps=T)
    xs = np.random.default_rng(6).standard_normal((T, B, D))
    got = net.run(xs)["states"]
    p = cell.params
    s, want = np.zeros((B, H)), []
    for x in xs:
        s = np.tanh(x @ p["U"] + s @ p["W"] + p["b"])
        want.append(s)
    np.testing.assert_allclose(got, np.stack(want), rtol=0, atol=1e-14)


def test_the_recurrence_kernels_scaled_loop_is_within_its_bound_and_quiet(exp_form):
    # With W = 0 every step is tanh(a_t) alone: the kernel's 2 / (1 + exp(-2 z)) - 1
    # against math.tanh, value by value (documented: within 3.4e-16).
    from tinygraph.core.recurrence import RECURRENCE

    rng = np.random.default_rng(7)
    a = np.concatenate([rng.standard_normal((6, 32, 64)) * 3,
                        rng.uniform(-25, 25, (2, 32, 64))])
    # Last step only: 0 * inf and 0 * nan in the next step's product would be nan.
    a[-1, 0, :8] = [-np.inf, -1e308, -800.0, -400.0, 400.0, 1e308, np.inf, np.nan]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = RECURRENCE.forward(a, np.zeros((64, 64)), np.zeros((32, 64)))
    assert got[-1, 0, :7].tolist() == [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    assert np.isnan(got[-1, 0, 7])
    finite = np.isfinite(a)
    assert np.max(np.abs(got - exact(np.where(finite, a, 0.0)))[finite]) <= 4.5e-16


def test_the_unguarded_form_is_within_its_bound_and_quiet_under_the_loops_errstate():
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.standard_normal(20_000) * 3, rng.uniform(-25, 25, 5_000)])
    x[:6] = [-np.inf, -1e308, -400.0, 400.0, 1e308, np.inf]
    with np.errstate(over="ignore", invalid="raise", divide="raise"):
        got = fast_tanh.large_tanh_unguarded(x.copy())
    assert got[:6].tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    assert np.max(np.abs(got - exact(x))) <= 4.5e-16
    small = rng.standard_normal(10)  # below FAST_TANH_MIN_VALUES: numpy's own
    assert np.array_equal(fast_tanh.large_tanh_unguarded(small), np.tanh(small))


def test_the_scaled_loop_needs_no_second_sequence_sized_array(exp_form):
    # -2 a is written into the states' own rows, each overwritten by its state after use.
    import tracemalloc

    from tinygraph.core.recurrence import RECURRENCE

    rng = np.random.default_rng(9)
    a, w = rng.standard_normal((200, 32, 64)), rng.standard_normal((64, 64)) * 0.1
    s0 = np.zeros((32, 64))
    tracemalloc.start()
    try:
        states = RECURRENCE.forward(a, w, s0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * states.nbytes, (peak, states.nbytes)
    s, want = s0, []
    for a_t in a:
        s = np.tanh(s @ w + a_t)
        want.append(s)
    np.testing.assert_allclose(states, np.stack(want), rtol=0, atol=1e-14)

"""The fused cross-entropy: a loss and its gradient from one softmax
(tinygraph.passes.fused_loss), against a numpy reference and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from test_scan import central_differences

import tinygraph as tg

C = 5


def numpy_cross_entropy(z, targets, ignore_index=None, label_smoothing=0.0, batch_axes=0):
    """PyTorch's mean cross-entropy, written out (one mean per leading index of
    ``batch_axes`` axes)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    keep = np.ones(targets.shape) if ignore_index is None else (targets != ignore_index) * 1.0
    safe = np.where(keep > 0, targets, 0)
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    rows = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)
    axes = tuple(range(batch_axes, targets.ndim))
    return (rows * keep).sum(axis=axes) / keep.sum(axis=axes)


OPTIONS = [{}, {"ignore_index": -1}, {"label_smoothing": 0.1},
           {"batch_axes": 1}, {"batch_axes": 1, "ignore_index": -1, "label_smoothing": 0.2}]


@pytest.mark.parametrize("options", OPTIONS)
def test_a_loss_and_its_gradient_run_as_one_node_with_the_reference_values(options):
    rng = np.random.default_rng(len(str(options)))
    T, B = 3, 4
    z_value = rng.normal(size=(T, B, C)) * 2.0
    targets = rng.integers(0, C, (T, B))
    if "ignore_index" in options:
        targets[0, 1] = targets[2, 3] = -1
    weights = rng.uniform(0.5, 2.0, size=T)  # a weighted sum of per-step means
    g = tg.Graph()
    z = g.input("z", shape=(T, None, C))
    y = g.input("y", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(z, y, **options)
    if options.get("batch_axes"):
        loss = tg.sum(loss * g.const(weights))
    fetch = [loss, *tg.grad(loss, [z])]
    fn = g.compile(fetch, inputs=["z", "y"])
    got_loss, got_grad = fn(z_value, targets)

    def reference(value):
        per_mean = numpy_cross_entropy(value, targets, **options)
        return float((per_mean * weights).sum()) if options.get("batch_axes") else per_mean

    np.testing.assert_allclose(got_loss, reference(z_value), rtol=1e-13)
    # central differences of a sum of O(1) terms: rounding leaves ~1e-9 absolute error
    np.testing.assert_allclose(got_grad, central_differences(reference, z_value),
                               rtol=1e-6, atol=1e-8)
    ops = [step.node.op for step in fn.plan.steps]
    assert "cross_entropy_and_grad" in ops and "cross_entropy" not in ops, ops


def test_a_gradient_that_depends_on_the_loss_value_is_not_fused():
    # d(loss²)/dz = 2 loss * dloss/dz: the gradient's input g needs the loss first.
    rng = np.random.default_rng(3)
    z_value, targets = rng.normal(size=(6, C)), rng.integers(0, C, 6)
    g = tg.Graph()
    z = g.input("z", shape=(None, C))
    loss = tg.cross_entropy(z, g.const(targets))
    squared = loss * loss
    fn = g.compile([squared, *tg.grad(squared, [z])], inputs=["z"])
    got, grad = fn(z_value)

    def reference(value):
        return numpy_cross_entropy(value, targets) ** 2

    np.testing.assert_allclose(got, reference(z_value), rtol=1e-13)
    np.testing.assert_allclose(grad, central_differences(reference, z_value), rtol=1e-6,
                               atol=1e-9)
    assert "cross_entropy_and_grad" not in [step.node.op for step in fn.plan.steps]


def test_the_fused_node_differentiates_through_both_outputs():
    # Second derivatives: a graph holding the fused node (as an optimized graph would)
    # differentiated again, through the loss and through its gradient.
    rng = np.random.default_rng(5)
    z_value, targets = rng.normal(size=(4, C)), rng.integers(0, C, 4)
    w = rng.normal(size=(4, C))
    g = tg.Graph()
    z = g.input("z", shape=(4, C))
    scale = g.input("scale", shape=())
    both = g.add_node("cross_entropy_and_grad", [scale, z, g.const(targets)])
    loss = g.add_node("unpack", [both], {"index": 0, "shape": (), "dtype": "float64"})
    dz = g.add_node("unpack", [both], {"index": 1, "shape": (4, C), "dtype": "float64"})
    objective = loss * 3.0 + tg.sum(dz * g.const(w))
    grads = tg.grad(objective, [z, scale])
    got = g.run(grads, {"z": z_value, "scale": np.array(0.7)}, optimize=False)

    def reference(value, s=0.7):
        grad = central_differences(lambda v: numpy_cross_entropy(v, targets), value)
        return 3.0 * numpy_cross_entropy(value, targets) + (w * grad * s).sum()

    np.testing.assert_allclose(got[0], central_differences(reference, z_value, eps=1e-4),
                               rtol=1e-4, atol=1e-6)
    by_scale = (reference(z_value, 0.7 + 1e-4) - reference(z_value, 0.7 - 1e-4)) / 2e-4
    np.testing.assert_allclose(got[1], by_scale, rtol=1e-5)

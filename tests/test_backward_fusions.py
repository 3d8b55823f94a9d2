"""Training plans of the vanilla cell: what the kernels take over, checked against numpy.

- ``reverse_recurrence(..., slope="tanh")`` computes ``1 - s_t**2`` a step at a
  time from the states (core/reverse_recurrence.py);
- a hoisted ``x @ U + b`` read also as a ``sum_to`` like becomes one ``affine``
  (passes/affine.py);
- a loss on the last step only still runs the forward as one ``recurrence`` (the
  carries each step started from rebuilt from its states) and the backward as one
  ``reverse_recurrence(..., carry_in=True)`` (passes/kernels.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy_rnn import vanilla_bptt

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph.core.reverse_recurrence import SLOPE_PER_STEP_MIN

RNG = np.random.default_rng(11)


def numpy_chain(g, s, wt):
    """dz_t = (g_t + dz_{t+1} @ wt) * (1 - s_t**2), from the last step back."""
    dz, later = np.empty_like(g), None
    for t in reversed(range(len(g))):
        total = g[t] if later is None else g[t] + later @ wt
        later = dz[t] = total * (1.0 - s[t] ** 2)
    return dz


# (2, 4): the small-step kernel; (3, 40): three calls a step, the slope over all steps;
# (32, 128): at SLOPE_PER_STEP_MIN values a step, the slope a step at a time.
@pytest.mark.parametrize(("batch", "hidden"), [(2, 4), (3, 40), (32, 128)])
def test_the_tanh_slope_kernel_equals_numpy_and_the_given_slope_bit_for_bit(batch, hidden):
    steps = 5
    gv = RNG.standard_normal((steps, batch, hidden))
    sv = np.tanh(RNG.standard_normal((steps, batch, hidden)))
    wt = RNG.standard_normal((hidden, hidden)) / np.sqrt(hidden)
    g = tg.Graph()
    G, S = g.input("g", shape=(steps, None, hidden)), g.input("s", shape=(steps, None, hidden))
    Wt = g.param("Wt", wt)
    D = g.input("d", shape=(steps, None, hidden))
    with_slope = g.add_node("reverse_recurrence", [G, S, Wt], {"slope": "tanh"})
    given = g.add_node("reverse_recurrence", [G, D, Wt], {})
    got, plain = g.run([with_slope, given], {"g": gv, "s": sv, "d": 1.0 - sv * sv})
    np.testing.assert_allclose(got, numpy_chain(gv, sv, wt), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got, plain)  # the same two numpy calls make each d[t]
    assert (batch * hidden >= SLOPE_PER_STEP_MIN) == (hidden == 128)


# (2, 4) and (3, 40): the slope over all steps at once; (32, 128): a step at a time.
@pytest.mark.parametrize(("batch", "hidden"), [(2, 4), (3, 40), (32, 128)])
def test_a_chain_entered_by_its_carry_equals_numpy(batch, hidden):
    steps = 6
    cv = RNG.standard_normal((batch, hidden))
    sv = np.tanh(RNG.standard_normal((steps, batch, hidden)))
    wt = RNG.standard_normal((hidden, hidden)) / np.sqrt(hidden)
    gv = np.zeros((steps, batch, hidden))
    gv[-1] = cv  # the carry is a gradient arriving at the last step only
    g = tg.Graph()
    C, S = g.input("c", shape=(None, hidden)), g.input("s", shape=(steps, None, hidden))
    D = g.input("d", shape=(steps, None, hidden))
    Wt = g.param("Wt", wt)
    from_carry = g.add_node("reverse_recurrence", [C, D, Wt], {"carry_in": True})
    with_slope = g.add_node("reverse_recurrence", [C, S, Wt], {"carry_in": True,
                                                               "slope": "tanh"})
    got, got_slope = g.run([from_carry, with_slope], {"c": cv, "s": sv, "d": 1.0 - sv * sv})
    want = numpy_chain(gv, sv, wt)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got_slope, got)
    with pytest.raises(tg.EvaluationError, match="reverse_recurrence.*differ"):
        g.run(from_carry, {"c": np.zeros((batch + 1, hidden)), "d": 1.0 - sv * sv},
              optimize=False)
    # A (1, H) carry meets the batch as it would in the loop: c * d[T-1] broadcasts.
    one = cv[:1]
    gv[-1] = np.broadcast_to(one, cv.shape)
    np.testing.assert_allclose(g.run(from_carry, {"c": one, "d": 1.0 - sv * sv}),
                               numpy_chain(gv, sv, wt), rtol=1e-12, atol=1e-14)


def test_an_unknown_slope_is_refused_naming_the_node():
    g = tg.Graph()
    G = g.input("g", shape=(2, 1, 3))
    with pytest.raises(tg.GraphError, match="slope"):
        g.add_node("reverse_recurrence", [G, G, g.param("Wt", np.eye(3))], {"slope": "relu"},
                   name="back")


def _vanilla_training(steps, batch, hidden, vocab=5):
    cell = rnn.VanillaRNNCell(vocab, hidden, vocab, seed=3)
    net = rnn.unroll(cell, steps)
    g = net.graph
    targets = g.input("targets", shape=(steps, None), dtype="int64")
    loss = tg.cross_entropy(net.logits[0], targets[0])
    for t in range(1, steps):
        loss = loss + tg.cross_entropy(net.logits[t], targets[t])
    names = ("U", "W", "b", "V", "c")
    grads = tg.grad(loss, [net.params[k] for k in names])
    xs = RNG.standard_normal((steps, batch, vocab))
    ys = RNG.integers(0, vocab, (steps, batch))
    feeds = {node.name: xs[t] for t, node in enumerate(net.inputs)} | {"targets": ys}
    fn = g.compile([loss, *grads], inputs=list(feeds))
    return fn, feeds, dict(cell.params), xs, ys


@pytest.mark.parametrize(("batch", "hidden"), [(2, 4), (32, 128)])
def test_vanilla_training_plan_streams_no_slope_and_no_bias_pass(
        batch, hidden):
    fn, feeds, p, xs, ys = _vanilla_training(4, batch, hidden)
    nodes = list(fn.plan.graph.nodes.values())
    back = [n for n in nodes if n.op == "reverse_recurrence"]
    assert len(back) == 1 and back[0].attrs.get("slope") == "tanh"
    forward = next(n for n in nodes if n.op == "recurrence")
    assert forward in back[0].inputs  # the states themselves, not 1 - s*s
    assert forward.inputs[0].op == "affine"  # x @ U + b as one op, though a like reads it
    loss, *grads = fn(**feeds)
    want_loss, want = vanilla_bptt(p, xs, ys, scale=1 / ys.shape[1])
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    for got, k in zip(grads, ("U", "W", "b", "V", "c"), strict=True):
        np.testing.assert_allclose(got, want[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_a_slope_also_read_elsewhere_stays_a_given_slope():
    # d = 1 - s*s fetched too: it is computed anyway, so the kernel reads it.
    steps, hidden = 4, 3
    g = tg.Graph()
    G, S = g.input("g", shape=(steps, 2, hidden)), g.input("s", shape=(steps, 2, hidden))
    wt = RNG.standard_normal((hidden, hidden)) * 0.5
    Wt = g.param("Wt", wt)
    d = [1.0 - S[t] * S[t] for t in range(steps)]
    dz = G[steps - 1] * d[-1]
    chain = [dz]
    for t in reversed(range(steps - 1)):
        dz = (G[t] + dz @ Wt) * d[t]
        chain.append(dz)
    fetch = [tg.stack(chain[::-1]), tg.stack(d)]
    feeds = {"g": RNG.standard_normal((steps, 2, hidden)),
             "s": np.tanh(RNG.standard_normal((steps, 2, hidden)))}
    fn = g.compile(fetch, inputs=["g", "s"])
    back = [n for n in fn.plan.graph.nodes.values() if n.op == "reverse_recurrence"]
    assert all("slope" not in n.attrs for n in back)
    got, slopes = fn(**feeds)
    np.testing.assert_allclose(got, numpy_chain(feeds["g"], feeds["s"], wt), rtol=1e-12)
    np.testing.assert_allclose(slopes, 1.0 - feeds["s"] ** 2, rtol=1e-15)


@pytest.mark.parametrize(("batch", "hidden"), [(1, 8), (3, 5)])
def test_a_loss_on_the_last_step_only_runs_both_loops_on_the_kernels(batch, hidden):
    # Sequence classification: nothing reads the states but the backward, which reads the
    # carries each step started from (rebuilt from the kernel's states); the gradient
    # enters the backward chain through its initial carry alone.
    steps, vocab = 7, 4
    cell = rnn.VanillaRNNCell(vocab, hidden, vocab, seed=5)
    net = rnn.unroll(cell, steps)
    g = net.graph
    target = g.input("target", shape=(None,), dtype="int64")
    loss = tg.cross_entropy(net.logits[-1], target)
    names = ("U", "W", "b", "V", "c")
    fn = g.compile([loss, *tg.grad(loss, [net.params[k] for k in names])],
                   inputs=[*net.inputs, target])
    nodes = list(fn.plan.graph.nodes.values())
    assert [n.op for n in nodes].count("recurrence") == 1
    back = [n for n in nodes if n.op == "reverse_recurrence"]
    assert len(back) == 1 and back[0].attrs.get("carry_in") is True  # no per-step gradient
    assert "scan" not in [n.op for n in nodes]
    xs = RNG.standard_normal((steps, batch, vocab))
    y = RNG.integers(0, vocab, batch)
    got = fn(**{n.name: xs[t] for t, n in enumerate(net.inputs)}, target=y)
    p = dict(cell.params)
    s, states = np.zeros((batch, hidden)), [np.zeros((batch, hidden))]
    for t in range(steps):
        s = np.tanh(xs[t] @ p["U"] + s @ p["W"] + p["b"])
        states.append(s)
    z = s @ p["V"] + p["c"]
    e = np.exp(z - z.max(-1, keepdims=True))
    prob = e / e.sum(-1, keepdims=True)
    want = {"loss": -np.log(prob[np.arange(batch), y]).mean()}
    do = prob.copy()
    do[np.arange(batch), y] -= 1.0
    do /= batch
    want["V"], want["c"] = s.T @ do, do.sum(0)
    grads = {k: np.zeros_like(p[k]) for k in ("U", "W", "b")}
    ds = do @ p["V"].T
    for t in reversed(range(steps)):
        dz = ds * (1 - states[t + 1] ** 2)
        grads["U"] += xs[t].T @ dz
        grads["W"] += states[t].T @ dz
        grads["b"] += dz.sum(0)
        ds = dz @ p["W"].T
    want |= grads
    np.testing.assert_allclose(got[0], want["loss"], rtol=1e-12)
    for value, k in zip(got[1:], names, strict=True):
        np.testing.assert_allclose(value, want[k], rtol=1e-10, atol=1e-13, err_msg=k)

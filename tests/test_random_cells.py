"""Random recurrent cells, unrolled and run through the optimizing passes.

Each seeded cell is a random recipe of gates over ``x @ U``, ``h @ W``,
``h @ W2`` and a bias; the unrolled net (batch 3, the initial state fed with
that batch size, so batching over time applies) is compared with a numpy
loop that evaluates the same recipe directly, and its gradients with the
plain interpreter (tests/conftest.py runs every ``g.run`` both ways) and
with central differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

D, H, O, T, B = 3, 4, 5, 5, 3  # noqa: E741 - the sizes as the docs name them
LEAVES = ("xU", "hW", "hW2", "b")
UNARY = {"tanh": (tg.tanh, np.tanh),
         "sigmoid": (tg.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
         "neg": (tg.neg, np.negative)}
BINARY = {"add": (tg.add, np.add), "sub": (tg.sub, np.subtract), "mul": (tg.mul, np.multiply)}


def random_recipe(seed: int) -> list[tuple]:
    """Steps (op, args...) over the leaves and earlier steps; the last is the state."""
    rng = np.random.default_rng(seed)
    names = list(LEAVES)
    recipe = []
    for k in range(int(rng.integers(3, 8))):
        if rng.random() < 0.4:
            op = str(rng.choice(list(UNARY)))
            recipe.append((op, str(rng.choice(names))))
        else:
            op = str(rng.choice(list(BINARY)))
            recipe.append((op, str(rng.choice(names)), str(rng.choice(names))))
        names.append(f"v{k}")
    # the new state: tanh of the last value plus the standard pre-activation, so every
    # cell reads x, h and b and its state stays bounded
    recipe.append(("state", names[-1]))
    return recipe


class RandomCell(rnn.Cell):
    def __init__(self, recipe, **kwargs):
        self.recipe = recipe
        super().__init__(**kwargs)

    def declare(self):
        return {"U": rnn.ParamSpec((D, H)), "W": rnn.ParamSpec((H, H)),
                "W2": rnn.ParamSpec((H, H)), "b": rnn.ParamSpec((H,)),
                "V": rnn.ParamSpec((H, O)), "c": rnn.ParamSpec((O,))}

    def step(self, x, h, p):
        values = {"xU": x @ p["U"], "hW": h @ p["W"], "hW2": h @ p["W2"], "b": p["b"]}
        for k, (op, *args) in enumerate(self.recipe[:-1]):
            table = UNARY if op in UNARY else BINARY
            values[f"v{k}"] = table[op][0](*(values[a] for a in args))
        last = values[self.recipe[-1][1]]
        h_new = tg.tanh(last + values["xU"] + values["hW"] + values["b"], name="h")
        return h_new, tg.add(h_new @ p["V"], p["c"], name="logits")


def numpy_forward(recipe, P, xs, h0):
    h, states, logits = h0, [], []
    for x in xs:
        values = {"xU": x @ P["U"], "hW": h @ P["W"], "hW2": h @ P["W2"], "b": P["b"]}
        for k, (op, *args) in enumerate(recipe[:-1]):
            table = UNARY if op in UNARY else BINARY
            values[f"v{k}"] = table[op][1](*(values[a] for a in args))
        last = values[recipe[-1][1]]
        h = np.tanh(last + values["xU"] + values["hW"] + values["b"])
        states.append(h)
        logits.append(h @ P["V"] + P["c"])
    return np.stack(states), np.stack(logits)


@pytest.mark.parametrize("seed", range(30))
def test_random_cell_forward_and_gradients(seed):
    recipe = random_recipe(seed)
    cell = RandomCell(recipe, input_size=D, hidden_size=H, seed=seed)
    net = rnn.unroll(cell, steps=T)
    rng = np.random.default_rng(100 + seed)
    xs, h0 = rng.normal(size=(T, B, D)), rng.normal(size=(B, H)) * 0.5
    want_states, want_logits = numpy_forward(recipe, cell.params, xs, h0)
    got = net.run(xs, initial_state=h0)
    np.testing.assert_allclose(got["states"], want_states, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got["outputs"], want_logits, rtol=1e-11, atol=1e-13)

    g = net.graph
    targets = g.input("targets", shape=(T, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(net.outputs), targets)
    W2 = net.params["W2"]
    grads = tg.grad(loss, list(net.params.values()))
    feeds = {x: xs[k] for k, x in enumerate(net.inputs)}
    feeds.update({net.initial_state: h0, "targets": rng.integers(0, O, size=(T, B))})
    values = g.run(grads, feeds)  # conftest: optimized == interpreter to 1e-12
    plan = g._plans[next(reversed(g._plans))]
    assert plan.fallback is not None and plan.fallback_reason is None  # the batched path itself ran
    # over time: rerolled into a scan (or its fused kernels)
    assert any(n.op in ("scan", "recurrence", "reverse_recurrence")
               for n in plan.graph.nodes.values())
    gW2 = values[list(net.params).index("W2")]
    eps, base = 1e-6, W2.value.copy()
    for i in [(0, 0), (H - 1, 1)]:
        bumped = []
        for sign in (1, -1):
            W2.value = base.copy()
            W2.value[i] += sign * eps
            bumped.append(float(g.run(loss, feeds, optimize=False)))
        W2.value = base
        numeric = (bumped[0] - bumped[1]) / (2 * eps)
        assert abs(gW2[i] - numeric) <= 1e-6 + 1e-4 * abs(numeric), (seed, i, gW2[i], numeric)

"""Reverse mode (tinygraph.autodiff) against float64 central differences.

Every gradient here is compared with ``(L(x + eps) - L(x - eps)) / (2 eps)``
computed by running the forward graph only, never with the code under test.
``test_vjp_of_every_op`` loops over the op registry, so an op registered
without a case in ``CASES`` fails the suite; the random-graph test composes
ops the way real models do (fan-out, broadcasting, unknown sizes).
"""

from __future__ import annotations

import doctest
import time
from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.core.op import no_gradient
from tinygraph.core.ops import OPS, Op, register

EPS = 1e-6
RTOL = 1e-4
ATOL = 1e-7  # for entries whose true gradient is 0: central differences leave ~1e-10 noise


def f(*shape, decl=None, kind="normal"):
    """A float input: runtime ``shape``, declared shape ``decl`` (may hold None)."""
    return ("f", shape, shape if decl is None else decl, kind)


def ids(values):
    """An integer const (ids, targets)."""
    return ("i", np.asarray(values))


def bools(values):
    """A bool const (conditions)."""
    return ("i", np.asarray(values, dtype=bool))


NONE2 = (None, None)
W = (None, None, None)  # a whole-axis slice in an index attr

# op name -> list of (input specs, attrs). Every registered op must be here.
CASES: dict[str, list[tuple[list, dict]]] = {
    "add": [([f(3, 4), f(4)], {}), ([f(3, 1, decl=(None, 1)), f(1, 4)], {})],
    "sub": [([f(2, 3), f(2, 1)], {}), ([f(), f(2, 3, decl=(None, 3))], {})],
    "mul": [([f(3, 4, decl=(None, 4)), f(4)], {}), ([f(), f(2, 3)], {})],
    "div": [([f(3, 4), f(4, kind="away")], {}), ([f(2, 1), f(2, 3, kind="away")], {})],
    "pow": [([f(3, 4, kind="pos"), f(4)], {}), ([f(2, 3, kind="pos"), f()], {})],
    "neg": [([f(2, 3)], {})],
    "matmul": [([f(3, 4), f(4, 5)], {}), ([f(2, 3, 4, decl=(None, 3, 4)), f(4, 5)], {}),
               ([f(4), f(4, 5)], {}), ([f(2, 3, 4), f(4)], {}), ([f(4), f(4)], {}),
               ([f(2, 1, 3, 4), f(5, 4, 2)], {}), ([f(4), f(2, 4, 3)], {})],
    "affine": [([f(3, 4), f(4, 5), f(5)], {}), ([f(2, 3, 2, decl=(2, None, 2)), f(2, 5), f(1, 5)],
                                                  {}), ([f(3, 4), f(4, 2), f(2)], {})],
    "tanh": [([f(2, 3)], {})],
    "sigmoid": [([f(2, 3)], {})],
    "relu": [([f(2, 3, kind="away")], {})],
    "exp": [([f(2, 3)], {})],
    "log": [([f(2, 3, kind="pos")], {})],
    "softmax": [([f(3, 4)], {"axis": 0}), ([f(2, 4, decl=(None, 4))], {"axis": -1})],
    "log_softmax": [([f(3, 4)], {"axis": 0}), ([f(2, 4, decl=NONE2)], {"axis": -1})],
    "sum": [([f(2, 3)], {}), ([f(2, 3, 4)], {"axis": 1, "keepdims": True}),
            ([f(2, 3, 4, decl=(None, 3, None))], {"axis": (0, 2)})],
    "mean": [([f(2, 3, decl=NONE2)], {}), ([f(2, 3, 4, decl=(None, 3, 4))], {"axis": -1}),
             ([f(2, 3)], {"axis": 0, "keepdims": True})],
    "transpose": [([f(2, 3)], {}), ([f(2, 3, 4)], {"axes": (1, 2, 0)})],
    "reshape": [([f(3, 4)], {"shape": (2, 6)}), ([f(3, 4, decl=(None, 4))], {"shape": (-1,)})],
    "concat": [([f(2, 3), f(4, 3)], {"axis": 0}),
               ([f(3, 2, decl=NONE2), f(3, 4, decl=(3, None)), f(3, 1)], {"axis": 1})],
    "stack": [([f(2, 3), f(2, 3, decl=(None, 3))], {"axis": 0}),
              ([f(2, 3), f(2, 3)], {"axis": -1})],
    "take": [([f(4, 3), ids([[0, 2], [2, 2]])], {"axis": 0}),
             ([f(3, 4), ids([3, 0, 3])], {"axis": 1})],
    "one_hot": [([ids([0, 2, 1])], {"depth": 3})],
    "cross_entropy": [([f(3, 4), ids([1, 0, 3])], {}),
                      ([f(4, 3), ids([1, -100, 2, 1])], {"ignore_index": -100,
                                                         "label_smoothing": 0.2}),
                      ([f(2, 3, 4, decl=(None, 3, 4)), ids([[0, 1, 2], [3, 3, 0]])], {}),
                      # one mean per leading index (a loss per step)
                      ([f(2, 3, 4), ids([[0, 1, 2], [3, 3, 0]])], {"batch_axes": 1}),
                      ([f(2, 3, 4), ids([[0, -1, 2], [-1, 3, 0]])],
                       {"batch_axes": 1, "ignore_index": -1, "label_smoothing": 0.1}),
                      ([f(2, 2, 3, 4), ids([[[0, 1, 2], [3, 3, 0]], [[1, 1, 1], [0, 2, 3]]])],
                       {"batch_axes": 2})],
    "getitem": [([f(3, 4)], {"index": ((1, None, None), 2)}),
                ([f(3, 4, decl=(None, 4))], {"index": (None, "...", (None, None, -2))}),
                ([f(3, 4, decl=NONE2)], {"index": ((None, None, -1), (0, 3, 2))})],
    "sign": [([f(2, 3, kind="away")], {})],
    "zeros_like": [([f(2, 3)], {})],
    "sum_to": [([f(3, 4), f(4)], {}), ([f(2, 3, 4), f(1, 4, decl=(None, 4))], {})],
    "broadcast_to": [([f(4), f(3, 4)], {}),
                     ([f(3, 1, decl=(None, 1)), f(2, 3, 4, decl=(2, None, 4))], {})],
    "reshape_like": [([f(3, 4), f(2, 6)], {}),
                     ([f(3, 4, decl=(None, 4)), f(12, decl=(None,))], {})],
    "expand_dims": [([f(3, 4)], {"axis": (0, 2)}), ([f(3, 4, decl=(None, 4))], {"axis": -1})],
    "size": [([f(3, 4)], {"axis": 1}), ([f(2, 3, decl=NONE2)], {})],
    "concat_part": [([f(3, 7, decl=NONE2), f(3, 2, decl=(3, None)), f(3, 5)],
                     {"index": 1, "axis": 1}),
                    ([f(5, 2), f(2, 2), f(3, 2)], {"index": 0, "axis": 0})],
    "take_grad": [([f(2, 2, 4), ids([[0, 2], [2, 1]]), f(3, 4)], {"axis": 0}),
                  ([f(3, 5), ids([1, 1, 0, 3, 1]), f(3, 4)], {"axis": 1})],
    "getitem_grad": [([f(2), f(3, 4)], {"index": ((1, None, None), 2)})],
    "recurrence": [([f(3, 2, 4), f(4, 4), f(2, 4)], {"activation": "tanh"}),
                   ([f(2, 1, 3, decl=(2, None, 3)), f(3, 3), f(1, 3)], {"activation": "sigmoid"}),
                   ([f(3, 2, 2, kind="away"), f(2, 2), f(2, 2)], {"activation": "relu"}),
                   ([f(2, 3, 2), f(2, 2), f(1, 2, decl=(None, 2))], {"activation": "tanh"}),
                   ([f(2, 1, 2), f(2, 2), f(3, 2)], {"activation": "tanh"}),
                   ([f(3, 2, 4), f(4, 4), f(2, 4), f(4)], {"activation": "tanh"}),
                   ([f(2, 1, 3), f(3, 3), f(1, 3), f(3)], {"activation": "sigmoid"})],
    "reverse_recurrence": [([f(3, 2, 4), f(3, 2, 4), f(4, 4)], {}),
                           ([f(2, 1, 3), f(2, 1, 3), f(3, 3), f(2, 1, 3)], {}),
                           ([f(3, 2, 4), f(3, 2, 4), f(4, 4)], {"slope": "tanh"}),
                           ([f(2, 4), f(3, 2, 4), f(4, 4)], {"carry_in": True}),
                           ([f(2, 4), f(3, 2, 4), f(4, 4), f(3, 2, 4)],
                            {"carry_in": True, "slope": "tanh"})],
    "equal": [([f(2, 3), f(3)], {})],
    "not_equal": [([f(2, 3), f(2, 1)], {})],
    "less": [([f(2, 3), f(3)], {})],
    "less_equal": [([f(2, 3), f()], {})],
    "greater": [([f(2, 3, decl=(None, 3)), f(3)], {})],
    "greater_equal": [([f(3), f(2, 3)], {})],
    "logical_and": [([bools([True, False, True]), bools([[True], [False]])], {})],
    "logical_or": [([bools([True, False, True]), bools([False, False, True])], {})],
    "logical_not": [([bools([True, False])], {})],
    "where": [([bools([[True, False, True], [False, False, True]]), f(2, 3), f(3)], {}),
              ([bools([True, False, False]), f(2, 1, decl=(None, 1)), f()], {})],
    "maximum": [([f(2, 3), f(3)], {}), ([f(3, 1), f(1, 4, decl=(None, 4))], {})],
    "minimum": [([f(2, 3), f(3)], {}), ([f(), f(2, 3)], {})],
    "clip": [([f(3, 4), f(), f(4, kind="pos")], {}), ([f(2, 5) , f(1, 5), f(2, 1, kind="pos")],
                                                       {})],
    "abs": [([f(2, 3, kind="away")], {})],
    "sqrt": [([f(2, 3, kind="pos")], {})],
    "rsqrt": [([f(2, 3, kind="pos")], {})],
    "sin": [([f(2, 3)], {})],
    "cos": [([f(2, 3)], {})],
    "erf": [([f(2, 3)], {})],
    "softplus": [([f(2, 3)], {})],
    "logsigmoid": [([f(2, 3)], {})],
    "leaky_relu": [([f(2, 3, kind="away")], {}), ([f(4, kind="away")], {"negative_slope": 0.2})],
    "silu": [([f(2, 3)], {})],
    "gelu": [([f(2, 3)], {}), ([f(2, 3)], {"approximate": "tanh"})],
    "stop_gradient": [([f(2, 3)], {})],
    "max": [([f(2, 3)], {}), ([f(2, 3, 4, decl=(None, 3, 4))], {"axis": (0, 2)}),
            ([f(3, 4)], {"axis": 1, "keepdims": True})],
    "min": [([f(2, 3)], {"axis": 0}), ([f(2, 3, 4)], {"axis": -1, "keepdims": True})],
    "argmax": [([f(3, 4)], {"axis": 1})],
    "argmin": [([f(3, 4)], {})],
    "logsumexp": [([f(3, 4)], {}), ([f(2, 3, 4, decl=(None, 3, 4))], {"axis": 1}),
                  ([f(3, 4)], {"axis": (0, 1), "keepdims": True})],
    "var": [([f(3, 4)], {}), ([f(2, 3, 4, decl=(None, 3, 4))], {"axis": 1, "ddof": 1})],
    "std": [([f(3, 4)], {"axis": 0}), ([f(2, 5)], {"axis": -1, "ddof": 1, "keepdims": True})],
    "cumsum": [([f(3, 4)], {}), ([f(2, 3, 4, decl=(None, 3, 4))], {"axis": 1})],
    "pad": [([f(2, 3)], {"pad_width": ((1, 0), (2, 3))}),
            ([f(2, 3, decl=(None, 3))], {"pad_width": ((0, 2), (0, 0)), "constant_values": 1.5})],
    "broadcast_to_shape": [([f(3, 1)], {"shape": (2, 3, 4)}), ([f(4)], {"shape": (3, 4)})],
    "squeeze": [([f(3, 1, 2)], {}), ([f(1, 3, 1, decl=(1, None, 1))], {"axis": (0, 2)})],
    "gather": [([f(3, 4), ids([[0, 3], [1, 1], [2, 0]])], {"axis": 1}),
               ([f(3, 4), ids([[2, 0, 1, 2]])], {"axis": 0}),
               ([f(3, 1), ids([[0, 0, 0]])], {"axis": 1})],
    "gather_grad": [([f(3, 2), ids([[0, 3], [1, 1], [2, 0]]), f(3, 4)], {"axis": 1})],
    "advanced_getitem": [([f(4, 5), ids([[0, 3], [3, 1]]), ids([1, 1])], {"index": ("[]", "[]")}),
                         ([f(3, 4, 5, decl=(None, 4, 5)), ids([2, 0, 2])],
                          {"index": (W, "[]", 1)}),
                         ([f(3, 4, 5), ids([1, 0])], {"index": ("[]", W, 2)}),
                         ([f(3, 4), ids([[1], [0]])], {"index": (None, "...", "[]")})],
    "advanced_getitem_grad": [([f(2, 2), f(4, 5), ids([[0, 3], [3, 3]]), ids([1, 1])],
                               {"index": ("[]", "[]")})],
    "cross_entropy_grad": [([f(), f(3, 4), ids([1, 0, 3])], {}),
                           ([f(), f(3, 4), ids([1, 2, 3])], {"ignore_index": 2,
                                                             "label_smoothing": 0.1}),
                           ([f(), f(2, 2, 3, decl=(None, 2, 3)), ids([[0, 2], [1, 1]])], {}),
                           ([f(2), f(2, 3, 4), ids([[1, 0, 3], [2, 2, 0]])], {"batch_axes": 1}),
                           ([f(), f(2, 3, 4), ids([[1, 0, 3], [2, 2, 0]])], {"batch_axes": 1}),
                           ([f(2), f(2, 3, 4), ids([[1, 5, 3], [5, 2, 0]])],
                            {"batch_axes": 1, "ignore_index": 5, "label_smoothing": 0.2})],
}


def sample(rng, shape, kind):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, size=shape)
    if kind == "away":  # keeps kinks (relu, sign) and poles (div) more than eps away
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 1.5, size=shape)
    return rng.normal(size=shape)


def numeric_grad(g, loss, feeds, name):
    """Central differences of ``loss`` w.r.t. the fed array ``name``, forward runs only."""
    base = feeds[name]
    out = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        values = []
        for step in (EPS, -EPS):
            moved = base.copy()
            moved[idx] += step
            values.append(float(g.run(loss, {**feeds, name: moved})))
        out[idx] = (values[0] - values[1]) / (2 * EPS)
    return out


def check_gradients(g, loss, feeds, wrt):
    grads = tg.grad(loss, wrt)
    got = g.run(grads, feeds)
    for node, grad_node, value in zip(wrt, grads, got, strict=True):
        assert grad_node.shape == node.shape or None in node.shape, (node, grad_node)
        want = numeric_grad(g, loss, feeds, node.name)
        np.testing.assert_allclose(value, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d loss / d {node.name}")
    g.validate()


def build_case(op, specs, attrs, rng):
    g = tg.Graph(op)
    nodes, feeds = [], {}
    for k, spec in enumerate(specs):
        if spec[0] == "i":
            nodes.append(g.const(spec[1], name=f"ids{k}"))
        else:
            _, shape, decl, kind = spec
            node = g.input(f"x{k}", shape=decl)
            feeds[node.name] = sample(rng, shape, kind)
            nodes.append(node)
    y = g.add_node(op, nodes, attrs)
    return g, nodes, y, feeds


# Ops whose node needs a body graph, not arrays: their finite-difference checks
# (forward through the body, gradients through the reverse scan) are in test_scan.py.
CHECKED_IN_TEST_SCAN = ("scan", "unpack")
# A multi-output op made by the optimizer: its outputs and their gradients (finite
# differences) are checked through unpack nodes in test_fused_loss.py.
CHECKED_ELSEWHERE = (*CHECKED_IN_TEST_SCAN, "cross_entropy_and_grad")


def test_every_registered_op_has_a_case():
    missing = [name for name in OPS if name not in CASES and name not in CHECKED_ELSEWHERE]
    assert not missing, f"ops without a gradient-check case in CASES: {missing}"
    assert not [name for name in CASES if name not in OPS]


@pytest.mark.parametrize("op", [name for name in OPS if name not in CHECKED_ELSEWHERE])
def test_vjp_of_every_op(op):
    assert op in CASES, f"op {op!r} has no gradient-check case; add one to CASES"
    assert OPS[op].vjp is not None, f"op {op!r} has no vjp rule"
    rng = np.random.default_rng(sum(map(ord, op)))
    for specs, attrs in CASES[op]:
        g, nodes, y, feeds = build_case(op, specs, attrs, rng)
        floats = [n for n in nodes if n.op == "input"]
        if not floats:  # nothing differentiable goes in: the rule must say so
            assert OPS[op].vjp(y, g.const(np.ones(np.shape(g.run(y, feeds))))) == (None,) * len(
                nodes)
            continue
        weights = rng.normal(size=np.shape(g.run(y, feeds)))
        loss = tg.sum(y * weights)
        if OPS[op].vjp is no_gradient:
            # Piecewise constant (comparisons, argmax) or cut by definition (stop_gradient):
            # the rule says so by name, and reverse mode sends exact zeros back.
            assert OPS[op].vjp(y, loss) == (None,) * len(nodes)
            if y.dtype.kind != "f":  # piecewise constant: grad names the op instead of zeros
                with pytest.raises(tg.GraphError, match=f"only through node .*op '{op}'"):
                    tg.grad(loss, floats)
                continue
            for value in g.run(tg.grad(loss, floats), feeds):
                np.testing.assert_array_equal(value, 0.0)
            continue
        check_gradients(g, loss, feeds, floats)


# ------------------------------------------------------------- random graphs


def random_graph(seed):
    """A seeded random composition of differentiable ops; values stay broadcastable to (B, N)."""
    rng = np.random.default_rng(7000 + seed)
    B, N = int(rng.integers(1, 4)), int(rng.integers(2, 5))  # noqa: N806
    g = tg.Graph(f"random_{seed}")
    feeds = {}
    pool = []
    for k in range(int(rng.integers(2, 5))):
        shape = [(B, N), (N,), (B, 1), (1, N), ()][int(rng.integers(5))] if k else (B, N)
        unknown_batch = len(shape) == 2 and shape[0] == B and rng.random() < 0.5
        decl = (None, *shape[1:]) if unknown_batch else shape
        x = g.input(f"x{k}", shape=decl)
        feeds[x.name] = rng.normal(size=shape)
        pool.append(x)
    W = g.input("W", shape=(N, N))  # noqa: N806
    feeds["W"] = rng.normal(size=(N, N)) / N
    wrt = [*pool, W]
    base = pool[0]

    def full(a):  # broadcast to (B, N) through the graph
        return a if len(a.shape) == 2 and a.shape[1] == N and a.shape[0] != 1 else a + 0.5 * base

    builders = [
        lambda a, b: tg.tanh(a), lambda a, b: tg.sigmoid(a), lambda a, b: a * b,
        lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a / (1.5 + tg.tanh(b)),
        lambda a, b: (tg.sigmoid(a) + 0.5) ** b, lambda a, b: tg.exp(tg.tanh(a)),
        lambda a, b: tg.log(a * a + 1.0), lambda a, b: tg.softmax(full(a), axis=-1),
        lambda a, b: tg.log_softmax(full(a), axis=0),
        lambda a, b: tg.sum(full(a), axis=-1, keepdims=True),
        lambda a, b: tg.mean(full(a), axis=0, keepdims=bool(rng.random() < 0.5)),
        lambda a, b: full(a) @ W,
        lambda a, b: tg.concat([full(a), full(b)], axis=-1)[:, 1:N + 1],
        lambda a, b: tg.stack([full(a), full(b)])[1] - tg.sum(tg.stack([a, a], axis=-1), axis=-1),
        lambda a, b: tg.take(full(a), rng.integers(0, N, size=N), axis=-1),
        lambda a, b: 0.3 * (full(b) @ full(a).T @ full(b)),
        lambda a, b: tg.relu(a) + tg.neg(b),
        lambda a, b: tg.cross_entropy(full(a), g.const(rng.integers(0, N, size=B)), name=None)
        * full(b),
        lambda a, b: tg.reshape(tg.reshape(full(a), (-1,)), (-1, N)),
    ]
    for _ in range(int(rng.integers(4, 10))):
        a = pool[-1] if rng.random() < 0.5 else pool[int(rng.integers(len(pool)))]
        b = pool[int(rng.integers(len(pool)))]
        pool.append(builders[int(rng.integers(len(builders)))](a, b))
    last, other = pool[-1], pool[int(rng.integers(len(pool) - 1))]
    loss = tg.sum(last * rng.normal(size=np.shape(g.run(last, feeds)))) + tg.mean(other * other)
    return g, loss, feeds, wrt


@pytest.mark.parametrize("seed", range(60))
def test_random_graph_gradients(seed):
    g, loss, feeds, wrt = random_graph(seed)
    check_gradients(g, loss, feeds, wrt)


def test_second_order_gradients():
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    first = tg.grad(tg.sum(tg.tanh(x) * tg.sigmoid(x * 2.0)), x)
    feeds = {"x": np.array([0.3, -1.2, 0.8])}
    # The Hessian is diagonal here, so the gradient of sum(first) is its diagonal.
    check_gradients(g, tg.sum(first), feeds, [x])


# --------------------------------------------------------------- behaviour


def test_fan_out_is_summed_and_intermediates_and_y_itself():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    h = tg.tanh(x)
    y = tg.sum(h * h + h * x + x)
    gx, gh, gy = tg.grad(y, [x, h, y])
    xs = np.array([0.4, -0.7])
    t = np.tanh(xs)
    got = g.run([gx, gh, gy], {"x": xs})
    np.testing.assert_allclose(got[1], 2 * t + xs, rtol=1e-14)
    np.testing.assert_allclose(got[0], (2 * t + xs) * (1 - t * t) + t + 1, rtol=1e-14)
    assert float(got[2]) == 1.0


def test_gradient_nodes_are_scoped_marked_and_forward_is_not_recomputed():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.ones((3, 3)))  # noqa: N806
    y = tg.mean(tg.sigmoid(tg.tanh(x @ W)))
    before = list(g.nodes.values())
    (gW,) = tg.grad(y, [W])  # noqa: N806
    new = list(g.nodes.values())[len(before):]
    assert all(n.name.startswith("grad/") and n.meta["grad"] is True for n in new)
    assert not any(n.meta.get("grad") for n in before)
    assert gW.meta["grad_of"] == "W"
    # Backward reads the stored tanh/sigmoid outputs; it builds no new tanh or sigmoid.
    assert not [n for n in new if n.op in ("tanh", "sigmoid")]
    g.validate()


def test_grad_twice_gives_fresh_unique_names_and_equal_values():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    y = tg.sum(tg.exp(x))
    first, second = tg.grad(y, x), tg.grad(y, x)
    assert first.name != second.name
    xs = np.array([0.1, 2.0])
    np.testing.assert_array_equal(*g.run([first, second], {"x": xs}))
    g.validate()


def test_same_script_gives_same_backward_graph():
    def build():
        g = tg.Graph()
        x = g.input("x", shape=(None, 4))
        W = g.param("W", np.ones((4, 4)))  # noqa: N806
        y = tg.cross_entropy(tg.tanh(x @ W) @ W, np.array([1, 2]))
        tg.grad(y, [W, x])
        return [(n.name, n.op, [i.name for i in n.inputs]) for n in g.nodes.values()]

    assert build() == build()


def test_wrt_not_reached_gets_zeros_of_its_runtime_shape():
    g = tg.Graph()
    x = g.input("x", shape=(None, 2))
    unused_param = g.param("P", np.ones((3, 2)))
    y = tg.sum(x * x)
    gp, gx2 = tg.grad(y, [unused_param, g.input("z", shape=(None, 5))])
    got = g.run([gp, gx2], {"x": np.ones((4, 2)), "z": np.ones((6, 5))})
    np.testing.assert_array_equal(got[0], np.zeros((3, 2)))
    np.testing.assert_array_equal(got[1], np.zeros((6, 5)))


def test_no_gradient_flows_into_ints_and_grad_wrt_int_is_an_error():
    g = tg.Graph()
    E = g.param("E", np.arange(6.0).reshape(3, 2))  # noqa: N806
    ids_node = g.input("ids", shape=(None,), dtype="int64")
    y = tg.sum(tg.take(E, ids_node))
    gE = tg.grad(y, E)  # noqa: N806
    np.testing.assert_array_equal(g.run(gE, {"ids": np.array([2, 0, 2])}),
                                  [[1, 1], [0, 0], [2, 2]])
    with pytest.raises(tg.DtypeError, match="'ids'.*int64"):
        tg.grad(y, [ids_node])


@pytest.mark.parametrize("make, error, pattern", [
    (lambda g, x: (x * 2.0, [x]), tg.ShapeError, r"y 'mul'.*scalar, got shape \(\?, 3\)"),
    (lambda g, x: (tg.sum(g.input("i", shape=(2,), dtype="int32")), [x]), tg.DtypeError,
     "float scalar"),
    (lambda g, x: ("not a node", [x]), tg.GraphError, "y must be a node"),
    (lambda g, x: (tg.sum(x), [3.0]), tg.GraphError, "wrt takes nodes"),
    (lambda g, x: (tg.sum(x), ["nope"]), tg.NodeNameError, "nope"),
    (lambda g, x: (tg.sum(x), [tg.Graph("other").input("v", shape=())]), tg.GraphError,
     "graph 'other'"),
])
def test_bad_arguments(make, error, pattern):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    y, wrt = make(g, x)
    with pytest.raises(error, match=pattern):
        tg.grad(y, wrt)


def test_op_without_vjp_is_named():
    register(Op("double_no_vjp", 1, lambda a: 2 * a, lambda specs, attrs: specs[0]))
    try:
        g = tg.Graph()
        x = g.input("x", shape=(2,))
        node = g.add_node("double_no_vjp", [x], name="twice")
        y = tg.sum(node)
        with pytest.raises(tg.GraphError, match="'twice' has op 'double_no_vjp'.*no vjp"):
            tg.grad(y, [x])
        assert float(g.run(tg.grad(y, y), {"x": np.ones(2)})) == 1.0  # no error off the path
    finally:
        del OPS["double_no_vjp"]


def test_float32_graph_keeps_float32_gradients():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3), dtype="float32")
    W = g.param("W", np.ones((3, 4), np.float32))  # noqa: N806
    b = g.param("b", np.zeros(4, np.float32))
    y = tg.cross_entropy(tg.softmax(tg.tanh(x @ W + b)), np.array([1, 3])) + tg.mean(W * W)
    grads = tg.grad(y, [W, b, x])
    assert [n.dtype for n in grads] == [np.float32] * 3
    got = g.run(grads, {"x": np.ones((2, 3), np.float32)})
    assert [a.dtype for a in got] == [np.float32] * 3


def chain_reference(xs, w, steps):
    """Hand-written forward and backward of h_{k+1} = tanh(h_k * w + x), loss = sum(h_T)."""
    hs = [xs]
    for _ in range(steps):
        hs.append(np.tanh(hs[-1] * w + xs))
    dh, dw, dx = np.ones_like(xs), np.zeros_like(w), np.zeros_like(xs)
    for k in range(steps, 0, -1):
        da = dh * (1 - hs[k] ** 2)
        dw += da * hs[k - 1]
        dx += da
        dh = da * w
    return dw, dx + dh


def test_ten_thousand_step_chain_differentiates_without_recursion():
    steps = 10_000
    start = time.perf_counter()
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    w = g.param("w", np.array([0.9, -0.6]))
    h = x
    for _ in range(steps):
        h = tg.tanh(h * w + x)
    gw, gx = tg.grad(tg.sum(h), [w, x])
    xs = np.array([0.3, -0.2])
    got_w, got_x = g.run([gw, gx], {"x": xs})
    want_w, want_x = chain_reference(xs, w.value, steps)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-10)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-10)
    assert time.perf_counter() - start < 15


def test_docs_autodiff_page_examples_run():
    page = Path(__file__).parent.parent / "docs" / "autodiff.md"
    result = doctest.testfile(str(page), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              globs={})
    assert result.attempted >= 25, result
    assert result.failed == 0, result


def test_grad_only_through_no_gradient_ops_names_the_op():
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    W = g.param("W", np.arange(6.0).reshape(3, 2))
    before = len(g)
    through_argmax = tg.sum(tg.take(W, tg.argmax(x)))
    n_built = len(g)
    with pytest.raises(tg.GraphError, match=r"only through node 'argmax' \(op 'argmax'"):
        tg.grad(through_argmax, x)
    assert len(g) == n_built > before  # nothing of the failed backward pass stays
    only_cond = tg.sum(tg.where(tg.greater(x, 0.0, name="positive"), 1.0, 2.0))
    with pytest.raises(tg.GraphError, match=r"'positive' \(op 'greater', bool output\)"):
        tg.grad(only_cond, [W, x])
    # The gradient w.r.t. W through take is fine: W's path is differentiable.
    feeds = {"x": np.array([0.1, 3.0, -1.0])}
    np.testing.assert_array_equal(g.run(tg.grad(through_argmax, W), feeds),
                                  [[0, 0], [1, 1], [0, 0]])


def test_comparisons_that_only_pick_and_stop_gradient_do_not_raise():
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    xs = np.array([-1.0, 0.5, 2.0])
    relu_like = tg.sum(tg.where(x > 0, x * x, 0.0))  # the comparison picks; x*x carries d/dx
    np.testing.assert_array_equal(g.run(tg.grad(relu_like, x), {"x": xs}), [0.0, 1.0, 4.0])
    cut = tg.sum(tg.stop_gradient(x) * 3.0)  # a cut asked for: zeros
    np.testing.assert_array_equal(g.run(tg.grad(cut, x), {"x": xs}), np.zeros(3))
    unrelated = tg.sum(g.input("z", shape=(2,)))  # y does not depend on x at all: zeros
    np.testing.assert_array_equal(g.run(tg.grad(unrelated, x), {"x": xs, "z": np.ones(2)}),
                                  np.zeros(3))


def _slice_sum_grads(pieces, join):
    """d/dx of sum_k sum(x[:, lo_k:hi_k] * w_k) through backprop; the node and its value."""
    from tinygraph.core.backprop import backprop

    g = tg.Graph()
    x = g.input("x", shape=(2, 6))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(2, hi - lo)) for lo, hi in pieces]
    loss = None
    for (lo, hi), w in zip(pieces, weights, strict=True):
        term = tg.sum(x[:, lo:hi] * g.const(w))
        loss = term if loss is None else loss + term
    (gx,) = backprop(g, [(loss, g.const(1.0))], [x], join_slices=join)
    expected = np.zeros((2, 6))
    for (lo, hi), w in zip(pieces, weights, strict=True):
        expected[:, lo:hi] += w
    return gx, g.run(gx, {"x": np.ones((2, 6))}), expected


def test_adjoints_of_slices_that_tile_an_array_are_one_concat():
    gx, value, expected = _slice_sum_grads([(0, 2), (2, 4), (2, 4), (4, 6)], join=True)
    assert gx.op == "concat"
    np.testing.assert_array_equal(value, expected)


def test_slices_that_leave_a_gap_or_are_not_asked_to_join_stay_sums():
    for pieces, join in [([(0, 2), (3, 6)], True), ([(0, 3), (3, 6)], False)]:
        gx, value, expected = _slice_sum_grads(pieces, join)
        assert gx.op == "add"
        np.testing.assert_array_equal(value, expected)


def test_a_broadcast_operand_is_summed_before_it_is_divided_or_negated():
    # A layer norm's (B, 1) deviation: its gradient sums the (B, H) cotangent first,
    # then divides and negates B values, not B x H; a mean over known sizes divides by
    # a constant before broadcasting back.
    g = tg.Graph()
    x, d = g.input("x", shape=(None, 8)), g.input("d", shape=(None, 1))
    loss = tg.sum(x / d - d) + tg.sum(tg.mean(x * x, axis=1, keepdims=True) * d)
    gd, gx = tg.grad(loss, [d, x])
    of_d = [n for n in g.schedule(gd) if n.meta.get("grad")]
    assert [n.op for n in of_d if n.op in ("neg", "div") and n.shape == (None, 8)] == []
    assert "size" not in [n.op for n in g.schedule(gx) if n.meta.get("grad")]
    rng = np.random.default_rng(0)
    xs, ds = rng.normal(size=(3, 8)), rng.uniform(1.0, 2.0, size=(3, 1))
    got_d, got_x = g.run([gd, gx], {"x": xs, "d": ds})

    def value(xv, dv):
        return float(np.sum(xv / dv - dv) + np.sum((xv * xv).mean(axis=1, keepdims=True) * dv))

    for got, arr, other, first in ((got_d, ds, xs, False), (got_x, xs, ds, True)):
        numeric = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            up, down = arr.copy(), arr.copy()
            up[i] += EPS
            down[i] -= EPS
            numeric[i] = ((value(up, other) - value(down, other)) if first else
                          (value(other, up) - value(other, down))) / (2 * EPS)
        np.testing.assert_allclose(got, numeric, rtol=RTOL, atol=ATOL)

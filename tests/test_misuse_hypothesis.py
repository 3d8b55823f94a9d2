"""Random misuse of the public API: nothing but a tg.GraphError may come out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygraph as tg

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
    st.sampled_from([np.int64(2), np.float32(1.5), (1, -1), [0, 1], {"a": 1}, object(),
                     np.array([1 + 1j]), np.array(["abc"]), (10**20,), (-1,), 1j,
                     "complex128", "int8", "float16", object]),
)
CALLS = st.sampled_from([
    lambda g, x, ids, a: tg.reshape(x, a),
    lambda g, x, ids, a: x + a,
    lambda g, x, ids, a: ids + a,
    lambda g, x, ids, a: tg.sum(x, axis=a),
    lambda g, x, ids, a: tg.softmax(x, axis=a),
    lambda g, x, ids, a: tg.one_hot(ids, a),
    lambda g, x, ids, a: tg.one_hot(ids, 3, dtype=a),
    lambda g, x, ids, a: tg.concat([x, x], axis=a),
    lambda g, x, ids, a: g.add_node("tanh", [x], attrs=a),
    lambda g, x, ids, a: g.add_node("sum", [x], attrs={str(a): 1}),
    lambda g, x, ids, a: g.input(a, shape=(2,)),
    lambda g, x, ids, a: g.input("n", shape=a),
    lambda g, x, ids, a: g.input("n", shape=(2,), dtype=a),
    lambda g, x, ids, a: g.param("p", a),
    lambda g, x, ids, a: g.const(a, dtype="int8"),
    lambda g, x, ids, a: tg.grad(g["s"], a),
    lambda g, x, ids, a: g.run(g["y"], {"x": a}),
    lambda g, x, ids, a: g.run(g["iy"], {"ids": a}),
    lambda g, x, ids, a: g.run(a, {"x": np.ones((2, 3)), "ids": np.zeros(2, int)}),
    lambda g, x, ids, a: tg.optim.SGD([g["W"]], lr=a),
    lambda g, x, ids, a: tg.optim.Adam([g["W"]]).step([a]),
    lambda g, x, ids, a: tg.optim.clip_grad_norm([a], 1.0),
    lambda g, x, ids, a: setattr(g["W"], "value", a),
    lambda g, x, ids, a: g.render(a),
    lambda g, x, ids, a: g.to_dot(values=a),
    lambda g, x, ids, a: tg.load(a),
])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(call=CALLS, arg=JUNK)
def test_misuse_raises_only_graph_errors(call, arg):
    g = tg.Graph("misuse")
    x = g.input("x", shape=(None, 3))
    ids = g.input("ids", shape=(2,), dtype="int64")
    g.param("W", np.ones(3))
    tg.sum(x, name="s")
    tg.mul(x, 2.0, name="y") if hasattr(tg, "mul") else None
    tg.add(ids, 1, name="iy") if hasattr(tg, "add") else None
    before = list(g.nodes)
    try:
        call(g, x, ids, arg)
    except tg.GraphError:
        assert list(g.nodes) == before  # a refused call changes nothing

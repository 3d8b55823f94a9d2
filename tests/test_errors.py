"""Every error class is raised for the mistake it describes, with a useful message.

A message must name the node (or input) concerned and say what was expected
and what came. Beyond the classes, a table of user mistakes checks that none
of them lets a bare numpy, networkx, ``KeyError`` or ``TypeError`` escape.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg


def message_of(excinfo) -> str:
    return str(excinfo.value)


def test_the_hierarchy():
    for cls in (tg.CycleError, tg.ShapeError, tg.FeedError, tg.DtypeError, tg.NodeNameError,
                tg.EvaluationError):
        assert issubclass(cls, tg.GraphError)
    assert issubclass(tg.GraphError, Exception)


# ----------------------------------------------------------------- GraphError


def test_graph_error_for_mixing_graphs_names_both_graphs_and_the_node():
    g1, g2 = tg.Graph("left"), tg.Graph("right")
    a = g1.input("a", shape=(2,))
    b = g2.input("b", shape=(2,))
    with pytest.raises(tg.GraphError) as info:
        tg.add(a, b)
    msg = message_of(info)
    assert type(info.value) is tg.GraphError
    assert "'b'" in msg and "'right'" in msg and "'left'" in msg and "mixed" in msg


def test_graph_error_for_a_bad_fetch_and_an_op_without_nodes():
    g = tg.Graph()
    with pytest.raises(tg.GraphError, match="a fetch must be a node, a node name.*got float"):
        g.run(1.5)
    with pytest.raises(tg.GraphError, match="at least one Node"):
        tg.tanh(np.ones(3))


# ----------------------------------------------------------------- CycleError


def test_cycle_error_shows_the_cycle():
    g = tg.Graph("cyc")
    a = g.input("a", shape=())
    tg.tanh(a, name="b")
    g.nx.add_edge("b", "a")
    with pytest.raises(tg.CycleError) as info:
        g.validate()
    assert info.value.cycle in (["a", "b"], ["b", "a"])
    assert message_of(info) in ("graph 'cyc': the graph has a cycle: a -> b -> a",
                                "graph 'cyc': the graph has a cycle: b -> a -> b")


# ----------------------------------------------------------------- ShapeError


def test_shape_error_names_node_op_and_both_shapes():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.ones((4, 2)))
    with pytest.raises(tg.ShapeError) as info:
        x @ W
    msg = message_of(info)
    assert "node 'matmul'" in msg and "(matmul)" in msg
    assert "(?, 3)" in msg and "(4, 2)" in msg
    with pytest.raises(tg.ShapeError) as info:
        tg.add(x, g.param("v", np.ones(5)), name="biased")
    msg = message_of(info)
    assert "node 'biased' (add)" in msg and "(?, 3)" in msg and "(5,)" in msg


@pytest.mark.parametrize("build,fragments", [
    (lambda x: tg.concat([x, x[0]]), ["(concat)", "(?, 3)", "(3,)"]),
    (lambda x: tg.stack([x, x[:, :2]]), ["(stack)", "(?, 3)", "(?, 2)"]),
    (lambda x: tg.reshape(x[0], (2, 2)), ["(reshape)", "(3,)", "(2, 2)"]),
    (lambda x: tg.softmax(x, axis=2), ["(softmax)", "axis=2", "rank 2"]),
    (lambda x: tg.sum(x, axis=(1, 1)), ["(sum)", "repeats"]),
    (lambda x: tg.transpose(x, (0, 0)), ["(transpose)", "(0, 0)"]),
    (lambda x: tg.cross_entropy(x, np.zeros((2, 2), int)),
     ["(cross_entropy)", "(?,)", "(2, 2)"]),
    (lambda x: x[0, 5], ["(getitem)", "index 5", "size 3"]),
    (lambda x: tg.one_hot(tg.take(x, [0]), depth=0), ["(one_hot)"]),
])
def test_shape_errors_at_build_time(build, fragments):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    with pytest.raises((tg.ShapeError, tg.DtypeError)) as info:
        build(x)
    for fragment in fragments:
        assert fragment in message_of(info)


def test_shape_error_for_param_assignment_and_input_default():
    g = tg.Graph()
    p = g.param("p", np.zeros((2, 3)))
    with pytest.raises(tg.ShapeError, match=r"param 'p'.*\(3, 2\).*\(2, 3\)"):
        p.value = np.zeros((3, 2))
    with pytest.raises(tg.ShapeError, match=r"input 'h0'.*\(3,\).*\(2,\)"):
        g.input("h0", shape=(2,), default=np.zeros(3))
    with pytest.raises(tg.ShapeError, match="input 'z': shape= is required"):
        g.input("z")
    with pytest.raises(tg.ShapeError, match=r"input 'w'.*\(-1, 2\)"):
        g.input("w", shape=(-1, 2))


# ------------------------------------------------------------------ FeedError


@pytest.fixture
def fed_graph():
    g = tg.Graph("feeds")
    x = g.input("x", shape=(None, 3))
    ids = g.input("ids", shape=(2,), dtype="int64")
    y = tg.sum(x, axis=1) + tg.take(g.param("E", np.ones((4,))), ids)[0]
    return g, x, ids, y


@pytest.mark.parametrize("optimize", [True, False])
def test_feed_error_for_a_missing_feed_names_the_input_and_its_shape(fed_graph, optimize):
    g, x, ids, y = fed_graph
    with pytest.raises(tg.FeedError) as info:
        g.run(y, {"x": np.ones((1, 3))}, optimize=optimize)
    msg = message_of(info)
    assert "input 'ids'" in msg and "(2,) int64" in msg and "not fed" in msg


@pytest.mark.parametrize("optimize", [True, False])
def test_feed_error_for_an_unknown_feed_suggests_the_inputs(fed_graph, optimize):
    g, x, ids, y = fed_graph
    with pytest.raises(tg.FeedError) as info:
        g.run(y, {"x": np.ones((1, 3)), "idz": [0, 1]}, optimize=optimize)
    msg = message_of(info)
    assert "'idz'" in msg and "did you mean 'ids'" in msg and "'x', 'ids'" in msg


@pytest.mark.parametrize("optimize", [True, False])
def test_feed_error_for_a_wrong_shape_names_both_shapes(fed_graph, optimize):
    g, x, ids, y = fed_graph
    with pytest.raises(tg.FeedError) as info:
        g.run(y, {"x": np.ones((2, 4)), "ids": [0, 1]}, optimize=optimize)
    assert message_of(info) == "input 'x' wants shape (?, 3) float64; got shape (2, 4)"
    with pytest.raises(tg.FeedError, match=r"input 'ids' wants shape \(2,\) int64; got shape"):
        g.run(y, {"x": np.ones((2, 3)), "ids": 1}, optimize=optimize)


@pytest.mark.parametrize("optimize", [True, False])
def test_feed_error_for_a_wrong_dtype_names_both_dtypes(fed_graph, optimize):
    g, x, ids, y = fed_graph
    with pytest.raises(tg.FeedError) as info:
        g.run(y, {"x": np.ones((2, 3)), "ids": np.array([0.0, 1.0])}, optimize=optimize)
    msg = message_of(info)
    assert "input 'ids' wants shape (2,) int64" in msg and "got dtype float64" in msg
    with pytest.raises(tg.FeedError, match="input 'x'.*got dtype <U1"):
        g.run(y, {"x": [["a", "b", "c"]], "ids": [0, 1]}, optimize=optimize)


def test_feed_error_for_feeding_a_non_input_or_a_non_dict(fed_graph):
    g, x, ids, y = fed_graph
    with pytest.raises(tg.FeedError, match="feed 'E' is a param node; only inputs"):
        g.run(y, {"x": np.ones((1, 3)), "ids": [0, 1], "E": np.ones(4)})
    with pytest.raises(tg.FeedError, match="feeds must be a dict.*got list"):
        g.run(y, [np.ones((1, 3))])


def test_feed_errors_of_compiled_plans(fed_graph):
    g, x, ids, y = fed_graph
    fn = g.compile(y, inputs=["x", "ids"])
    with pytest.raises(tg.FeedError, match=r"takes 2 positional inputs \(x, ids\), got 3"):
        fn(np.ones((1, 3)), [0, 1], [0, 1])
    with pytest.raises(tg.FeedError, match="input 'x' was given twice"):
        fn(np.ones((1, 3)), x=np.ones((1, 3)))
    with pytest.raises(tg.FeedError, match="input 'ids'.*not fed"):
        fn(np.ones((1, 3)))
    with pytest.raises(tg.FeedError, match=r"input 'x' wants shape \(\?, 3\) float64"):
        fn(np.ones(3), [0, 1])
    with pytest.raises(tg.FeedError, match="takes input nodes or their names; got 'E'"):
        g.compile(y, inputs=["E"])
    with pytest.raises(tg.FeedError, match="input 'ids'.*not fed"):
        g.compile(y, inputs=["x"])


# ----------------------------------------------------------------- DtypeError


@pytest.mark.parametrize("build,fragments", [
    (lambda g, x: tg.take(x, np.array([0.0])), ["node 'take' (take)", "indices",
                                                "integer", "float64"]),
    (lambda g, x: tg.one_hot(x, depth=3), ["node 'one_hot' (one_hot)", "ids", "float64"]),
    (lambda g, x: tg.cross_entropy(x, x[:, 0]), ["node 'cross_entropy' (cross_entropy)",
                                                 "targets", "float64"]),
    (lambda g, x: g.input("s", shape=(), dtype="U3"), ["node 's'", "<U3", "not supported"]),
    (lambda g, x: g.input("c", shape=(), dtype="complex128"), ["node 'c'", "complex128"]),
    (lambda g, x: g.param("o", np.array([None, 1])), ["node 'o'", "object"]),
])
def test_dtype_errors_name_the_node_and_the_dtype(build, fragments):
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    with pytest.raises(tg.DtypeError) as info:
        build(g, x)
    for fragment in fragments:
        assert fragment in message_of(info)


# -------------------------------------------------------------- NodeNameError


def test_node_name_errors():
    g = tg.Graph("names")
    x = g.input("x", shape=())
    tg.tanh(x, name="hidden")
    with pytest.raises(tg.NodeNameError) as info:
        g.param("hidden", 1.0)
    assert "graph 'names' already has a node named 'hidden'" in message_of(info)
    with pytest.raises(tg.NodeNameError) as info:
        g.node("hiden")
    assert message_of(info) == "graph 'names' has no node named 'hiden'; did you mean 'hidden'?"
    with pytest.raises(tg.NodeNameError, match="no node named 'hiden'"):
        g.run("hiden", {"x": 1.0})
    with pytest.raises(tg.NodeNameError, match="no node named 'zzz'"):
        g["zzz"]
    with pytest.raises(tg.NodeNameError, match="non-empty string, got ''"):
        g.input("", shape=())
    with pytest.raises(tg.NodeNameError, match="non-empty string, got 3"):
        tg.tanh(x, name=3)
    with g.scope("s"):
        tg.exp(x, name="e")
        with pytest.raises(tg.NodeNameError, match="'s/e'"):
            tg.exp(x, name="e")


# ------------------------------------------------------------ EvaluationError


@pytest.mark.parametrize("mode", ["plan", "interpreter", "compiled"])
def test_evaluation_error_names_the_node_the_op_and_the_input_shapes(mode):
    g = tg.Graph()
    a = g.input("a", shape=(None,))
    b = g.input("b", shape=(None,))
    total = tg.add(tg.tanh(a), b, name="total")
    E = g.param("E", np.ones((3, 2)))
    ids = g.input("ids", shape=(None,), dtype="int64")
    rows = tg.take(E, ids, name="rows")
    runners = {
        "plan": lambda f, feeds: g.run(f, feeds),
        "interpreter": lambda f, feeds: g.run(f, feeds, optimize=False),
        "compiled": lambda f, feeds: g.compile(f, inputs=list(feeds))(**feeds),
    }
    run = runners[mode]
    with pytest.raises(tg.EvaluationError) as info:
        run(total, {"a": np.ones(2), "b": np.ones(3)})
    msg = message_of(info)
    assert "node 'total' (add)" in msg and "(2,)" in msg and "(3,)" in msg
    with pytest.raises(tg.EvaluationError) as info:
        run(rows, {"ids": np.array([0, 3])})
    msg = message_of(info)
    assert "node 'rows' (take)" in msg and "3" in msg and "[0, 3)" in msg


@pytest.mark.parametrize("build,feeds,fragments", [
    (lambda ids: tg.one_hot(ids, depth=2), [0, 2], ["(one_hot)", "id 2", "[0, 2)"]),
    (lambda ids: tg.cross_entropy(ids.graph.const(np.zeros((2, 4))), ids), [1, -1],
     ["(cross_entropy)", "target -1", "[0, 4)"]),
])
def test_evaluation_errors_for_ids_out_of_range(build, feeds, fragments):
    g = tg.Graph()
    ids = g.input("ids", shape=(2,), dtype="int64")
    node = build(ids)
    for optimize in (True, False):
        with pytest.raises(tg.EvaluationError) as info:
            g.run(node, {"ids": np.array(feeds)}, optimize=optimize)
        for fragment in fragments:
            assert fragment in message_of(info), message_of(info)


# --------------------------------------------- no bare exception escapes


def _graph():
    g = tg.Graph()
    return g, g.input("x", shape=(2, 3)), g.param("W", np.ones((3, 3)))


MISTAKES = {
    "one_hot bad dtype": lambda g, x, W: tg.one_hot(g.input("i", shape=(2,), dtype="int64"),
                                                    3, dtype="no-such-type"),
    "transpose axes int": lambda g, x, W: tg.transpose(x, axes=5),
    "reshape float": lambda g, x, W: tg.reshape(x, 2.5),
    "reshape two -1": lambda g, x, W: tg.reshape(x, (-1, -1)),
    "sum axis str": lambda g, x, W: tg.sum(x, axis="a"),
    "softmax axis float": lambda g, x, W: tg.softmax(x, axis=1.5),
    "concat not a list": lambda g, x, W: tg.concat(x),
    "stack empty": lambda g, x, W: tg.stack([]),
    "index with a float": lambda g, x, W: x[1.5],
    "index with two ellipses": lambda g, x, W: x[..., 0, ...],
    "index with a float array": lambda g, x, W: x[np.array([0.5, 1.0])],
    "index with a bool mask": lambda g, x, W: x[np.array([True, False])],
    "index too long": lambda g, x, W: x[0, 0, None, 0],
    "where on floats": lambda g, x, W: tg.where(x, x, 0.0),
    "split unequal": lambda g, x, W: tg.split(x, 2, axis=1),
    "pad_width wrong": lambda g, x, W: tg.pad(x, ((1, 2, 3),)),
    "gather float ids": lambda g, x, W: tg.gather(x, np.zeros((1, 1)), axis=0),
    "input default text": lambda g, x, W: g.input("d", shape=(), default="text"),
    "param value text": lambda g, x, W: setattr(W, "value", "text"),
    "param of a node": lambda g, x, W: g.param("q", x),
    "const of text": lambda g, x, W: g.const("text"),
    "input shape int": lambda g, x, W: g.input("s", shape=3),
    "input shape float entry": lambda g, x, W: g.input("s", shape=(2.5,)),
    "input bad dtype": lambda g, x, W: g.input("s", shape=(), dtype="nope"),
    "matmul of scalars": lambda g, x, W: g.const(2.0) @ x,
    "node with text": lambda g, x, W: x + "text",
    "add_node unknown op": lambda g, x, W: g.add_node("nope", [x]),
    "add_node non-node": lambda g, x, W: g.add_node("tanh", [np.ones(2)]),
    "add_node arity": lambda g, x, W: g.add_node("add", [x]),
    "fetch a number": lambda g, x, W: g.run(3),
    "fetch unknown name": lambda g, x, W: g.run("nope"),
    "fetch a set": lambda g, x, W: g.run({x}),
    "feeds a list": lambda g, x, W: g.run(x, [1]),
    "feed object array": lambda g, x, W: g.run(x, {"x": [[1, None, 3], [1, 2, 3]]}),
    "feed ragged": lambda g, x, W: g.run(x, {"x": [[1, 2], [3]]}),
    "feed a dict value": lambda g, x, W: g.run(x, {"x": {"a": 1}}),
    "feed unhashable key": lambda g, x, W: g.run(x, {("x",): 1}),
    "compile inputs number": lambda g, x, W: g.compile(x, inputs=[3]),
    "value of an op": lambda g, x, W: tg.tanh(x).value,
    "truth of a node": lambda g, x, W: bool(x),
    "scope empty": lambda g, x, W: g.scope("").__enter__(),
    "unknown node": lambda g, x, W: g.node(["x"]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_no_bare_exception_escapes(mistake):
    g, x, W = _graph()
    with pytest.raises(tg.GraphError) as info:
        MISTAKES[mistake](g, x, W)
    assert str(info.value)  # every error says something

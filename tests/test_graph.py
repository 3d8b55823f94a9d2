"""Graph building: nodes, names, scopes, mappings, params, ownership, validate().

Also runs the examples of ``docs/core.md`` as doctests, so the page cannot rot.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg

DOCS = Path(__file__).resolve().parent.parent / "docs"


def build_affine():
    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.ones((3, 4)))
    b = g.param("b", np.zeros(4))
    y = tg.softmax(tg.tanh(x @ W + b), axis=-1)
    return g, x, W, b, y


# ------------------------------------------------------------------- nodes


def test_nodes_record_op_inputs_shape_dtype_and_attrs():
    g, x, W, b, y = build_affine()
    assert list(g.nodes) == ["x", "W", "b", "matmul", "add", "tanh", "softmax"]
    mm = g.nodes["matmul"]
    assert mm.op == "matmul" and mm.inputs == (x, W) and isinstance(mm.inputs, tuple)
    assert mm.shape == (None, 4) and mm.dtype == np.float64 and mm.graph is g
    assert y.attrs == {"axis": -1} and y.inputs == (g.nodes["tanh"],)
    assert [n.index for n in g.nodes.values()] == list(range(7))
    assert (x.kind, W.kind, mm.kind) == ("input", "param", "op")
    assert g.const(1.0).kind == "const"
    assert x.dtype == np.float64 and x.shape == (None, 3) and x.inputs == ()
    assert g.input("i", shape=(2,), dtype="int32").dtype == np.int32
    assert repr(mm) == "<Node 'matmul' matmul (?, 4) float64>"


def test_nodes_params_inputs_are_insertion_ordered_mappings():
    g = tg.Graph()
    z = g.param("z", np.zeros(2))
    b = g.input("b", shape=(2,))
    a = g.param("a", np.ones(2))
    tg.tanh(a + z)
    c = g.input("c", shape=(2,))
    assert list(g.params) == ["z", "a"] and list(g.params.values()) == [z, a]
    assert list(g.inputs) == ["b", "c"] and g.inputs["b"] is b and g.inputs["c"] is c
    assert list(g.nodes) == ["z", "b", "a", "add", "tanh", "c"]
    assert len(g) == 6 and "tanh" in g and b in g and "nope" not in g
    assert g["add"] is g.node("add") is g.nodes["add"]
    with pytest.raises(TypeError):
        g.nodes["x"] = b  # a read-only view: nodes are added through the builders only


def test_g_nx_holds_the_graph_keyed_by_name():
    g, x, W, b, y = build_affine()
    assert list(g.nx.nodes) == list(g.nodes)
    assert sorted(g.nx.edges) == sorted([("x", "matmul"), ("W", "matmul"), ("matmul", "add"),
                                         ("b", "add"), ("add", "tanh"), ("tanh", "softmax")])
    assert g.nx.nodes["tanh"]["node"] is g.nodes["tanh"]


def test_leaves_input_default_param_const():
    g = tg.Graph()
    h0 = g.input("h0", shape=(None, 2), default=np.zeros((1, 2)))
    assert h0.attrs["default"].shape == (1, 2)
    p = g.param("p", [1, 2])  # python ints become float64
    assert p.dtype == np.float64 and p.value.tolist() == [1.0, 2.0]
    p32 = g.param("p32", np.ones(2), dtype="float32")
    assert p32.dtype == np.float32 and p32.value.dtype == np.float32
    c = g.const(np.arange(3))  # an int array keeps its dtype
    assert c.dtype == np.int64 and c.shape == (3,)
    with pytest.raises(ValueError):
        c.value[0] = 5  # consts are read-only
    src = np.ones(2)
    q = g.param("q", src)
    src[0] = 7.0  # the graph holds its own copy
    assert q.value[0] == 1.0


def test_param_assignment_checks_shape_and_casts_dtype():
    g = tg.Graph()
    p = g.param("p", np.zeros((2, 2), np.float32))
    p.value = [[1, 2], [3, 4]]
    assert p.value.dtype == np.float32 and p.value.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(tg.ShapeError, match=r"param 'p': new value has shape \(3,\)"):
        p.value = np.ones(3)
    x = g.input("x", shape=())
    with pytest.raises(tg.GraphError, match="only params can be assigned"):
        x.value = 1.0
    with pytest.raises(tg.GraphError, match="only params and consts hold a value"):
        _ = tg.tanh(x).value


# ----------------------------------------------------------- names, scopes


def test_auto_names_are_op_names_with_counters():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    a = [tg.tanh(x) for _ in range(3)]
    assert [n.name for n in a] == ["tanh", "tanh_1", "tanh_2"]
    assert (x * 2).name == "mul" and g.nodes["const"].op == "const"
    assert (x * 3).name == "mul_1" and "const_1" in g
    named = tg.exp(x, name="e")
    assert named.name == "e" and tg.exp(x).name == "exp"


def test_scopes_nest_and_prefix_names():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    with g.scope("t=0") as prefix:
        assert prefix == "t=0/"
        h = tg.tanh(x)
        with g.scope("gate"):
            z = tg.sigmoid(h, name="z")
            c = g.const(1.0)
            s = c - z
        h2 = tg.tanh(h)
        p = g.param("W", np.eye(2))
    with g.scope("t=1"):
        k = tg.tanh(x)
    assert [h.name, z.name, c.name, s.name, h2.name, p.name, k.name] == [
        "t=0/tanh", "t=0/gate/z", "t=0/gate/const", "t=0/gate/sub", "t=0/tanh_1",
        "t=0/W", "t=1/tanh"]
    assert tg.tanh(x).name == "tanh"  # the scope ended
    assert g["t=0/gate/z"] is z
    with pytest.raises(tg.NodeNameError, match="non-empty"):
        with g.scope(""):
            pass


def test_scope_is_left_even_when_the_block_raises():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    with pytest.raises(tg.ShapeError), g.scope("broken"):
        _ = x @ np.ones((3, 3))
    assert tg.tanh(x).name == "tanh"


def test_names_are_unique_and_stable():
    def script():
        g = tg.Graph()
        x = g.input("x", shape=(None, 2))
        h = x
        for t in range(3):
            with g.scope(f"t={t}"):
                h = tg.tanh(h @ np.eye(2) + 1.0)
        tg.sum(h * h) + 2.0
        return list(g.nodes), [n.shape for n in g.nodes.values()]

    first, second = script(), script()
    assert first == second
    assert len(set(first[0])) == len(first[0])
    with pytest.raises(tg.NodeNameError, match="already has a node named 'x'"):
        g = tg.Graph()
        g.input("x", shape=())
        g.param("x", 1.0)


def test_explicit_name_with_a_counter_suffix_does_not_collide():
    g = tg.Graph()
    x = g.input("x", shape=())
    tg.tanh(x)
    tg.tanh(x, name="tanh_1")
    assert tg.tanh(x).name == "tanh_2"
    assert len(set(g.nodes)) == len(g)


# ---------------------------------------------------------- failed builds


def snapshot(g):
    return list(g.nodes), sorted(g.nx.edges), [n.index for n in g.nodes.values()]


@pytest.mark.parametrize("bad", [
    lambda x: x + np.ones(4),                       # ShapeError after making a const
    lambda x: 2.0 * x @ np.ones((4, 4)),            # the mul stays, the matmul fails
    lambda x: tg.concat([x, np.ones((2, 2)), np.ones(3)]),
    lambda x: tg.take(x, [0.5]),                    # DtypeError on a const's dtype
    lambda x: tg.cross_entropy(x, np.zeros(5, int)),
    lambda x: x + "text",                           # the const itself cannot be built
])
def test_a_failed_build_leaves_the_graph_unchanged(bad):
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    tg.tanh(x)
    before = snapshot(g)
    kept = len(g)
    with pytest.raises(tg.GraphError):
        bad(x)
    after = snapshot(g)
    if len(g) > kept:  # a complete sub-expression built before the failing one stays
        assert after[0][:kept] == before[0]
        assert all(g.nodes[n].op in ("const", "mul") for n in after[0][kept:])
    else:
        assert after == before
    g.validate()
    # Automatic names continue without a gap.
    assert g.const(1.0).name == ("const_1" if "const" in after[0] else "const")
    assert tg.tanh(x).name == "tanh_1"
    assert (x + 1.0).name == "add"


def test_a_failed_build_inside_a_scope_leaves_no_trace():
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    with g.scope("s"):
        ok = x + 1.0
        with pytest.raises(tg.ShapeError):
            x + np.ones(5)
        again = x + 2.0
    assert [ok.name, again.name] == ["s/add", "s/add_1"]
    assert list(g.nodes) == ["x", "s/const", "s/add", "s/const_1", "s/add_1"]


# --------------------------------------------------------------- ownership


def test_nodes_of_two_graphs_cannot_be_mixed():
    g1, g2 = tg.Graph("one"), tg.Graph("two")
    a = g1.input("a", shape=(2,))
    b = g2.input("b", shape=(2,))
    builds = [lambda: a + b, lambda: b * a, lambda: a @ b, lambda: tg.concat([a, b]),
              lambda: tg.stack([b, a]), lambda: g1.add_node("add", [a, b]),
              lambda: tg.take(a, b), lambda: tg.cross_entropy(a, b)]
    for build in builds:
        with pytest.raises(tg.GraphError, match="cannot be mixed") as info:
            build()
        assert "'one'" in str(info.value) and "'two'" in str(info.value)
    assert list(g1.nodes) == ["a"] and list(g2.nodes) == ["b"]
    with pytest.raises(tg.GraphError, match="belongs to graph 'two'"):
        g1.run(b)
    with pytest.raises(tg.FeedError, match="belongs to graph 'two'"):
        g1.run(a, {b: np.ones(2)})


def test_nodes_have_no_truth_value():
    g = tg.Graph()
    x = g.input("x", shape=(None, 2))
    with pytest.raises(tg.GraphError, match="only known at run time"):
        bool(x)
    with pytest.raises(tg.ShapeError, match="len"):
        len(x)
    assert len(g.input("y", shape=(4, 2))) == 4


def test_add_node_builds_any_registered_op():
    g = tg.Graph()
    x = g.input("x", shape=(2, 3))
    s = g.add_node("sum", [x], {"axis": 1}, name="rowsum", meta={"t": 3})
    assert s.name == "rowsum" and s.shape == (2,) and s.meta == {"t": 3}
    np.testing.assert_array_equal(g.run(s, {"x": np.ones((2, 3))}), [3.0, 3.0])
    with pytest.raises(tg.GraphError, match="unknown op 'frobnicate'"):
        g.add_node("frobnicate", [x])
    with pytest.raises(tg.GraphError, match="op tanh takes 1 inputs, got 2"):
        g.add_node("tanh", [x, x])


# ----------------------------------------------------------------- validate


def test_validate_accepts_built_graphs():
    g, *_ = build_affine()
    g.validate()
    tg.Graph().validate()


def test_validate_shows_a_cycle_made_through_g_nx():
    g = tg.Graph("loop")
    a = g.input("a", shape=())
    tg.tanh(a, name="b")
    g.nx.add_edge("b", "a")
    with pytest.raises(tg.CycleError) as info:
        g.validate()
    assert "a -> b -> a" in str(info.value) or "b -> a -> b" in str(info.value)
    assert "graph 'loop'" in str(info.value)


def test_validate_shows_a_longer_cycle():
    g = tg.Graph()
    a = g.input("a", shape=())
    b = tg.exp(a, name="b")
    tg.neg(b, name="c")
    g.nx.add_edge("c", "a")
    with pytest.raises(tg.CycleError) as info:
        g.validate()
    message = str(info.value)
    assert any(path in message for path in
               ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c")), message


def test_validate_catches_edited_internals():
    g, x, W, b, y = build_affine()
    g.nx.add_edge("b", "tanh")  # an edge the node does not read
    with pytest.raises(tg.GraphError, match="'tanh'.*disagree"):
        g.validate()

    g, x, W, b, y = build_affine()
    g.nodes["tanh"].shape = (None, 5)  # a shape that no longer follows from the inputs
    with pytest.raises(tg.ShapeError, match=r"node 'tanh' \(tanh\) records \(\?, 5\)"):
        g.validate()

    g, x, W, b, y = build_affine()
    g.nx.remove_node("softmax")
    with pytest.raises(tg.GraphError, match="softmax"):
        g.validate()

    g, x, W, b, y = build_affine()
    other = tg.Graph("other").input("stranger", shape=(None, 4))
    g.nodes["tanh"].inputs = (other,)
    with pytest.raises(tg.GraphError, match="stranger"):
        g.validate()


def test_validate_a_long_chain_without_recursion():
    g = tg.Graph()
    h = g.input("x", shape=())
    for _ in range(20_000):
        h = tg.tanh(h)
    g.validate()
    g.nx.add_edge(h.name, "x")
    with pytest.raises(tg.CycleError):
        g.validate()


# -------------------------------------------------------------------- docs


def test_docs_core_page_examples_run():
    page = DOCS / "core.md"
    result = doctest.testfile(str(page), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              globs={})
    assert result.attempted >= 30, result
    assert result.failed == 0, result


def test_param_arrays_start_on_a_cache_line_and_stay_live():
    # Matrix-vector products are ~30% slower on a weight off a 64-byte boundary.
    g = tg.Graph()
    rng = np.random.default_rng(0)
    for shape in [(128, 128), (7,), (3, 5), ()]:
        raw = rng.standard_normal(shape)
        p = g.param(f"p{len(g)}", raw)
        assert p.value.ctypes.data % 64 == 0 and p.value.flags.c_contiguous
        np.testing.assert_array_equal(p.value, raw)
        p.value = raw * 2.0  # assignment realigns
        assert p.value.ctypes.data % 64 == 0
        np.testing.assert_array_equal(p.value, raw * 2.0)
        live = p.value
        p.value += 1.0  # in place: the same array
        assert p.value is live
    # a non-contiguous source is stored in C order
    q = g.param("q", np.arange(12.0).reshape(3, 4).T)
    assert q.value.flags.c_contiguous and q.value.ctypes.data % 64 == 0
    np.testing.assert_array_equal(q.value, np.arange(12.0).reshape(3, 4).T)

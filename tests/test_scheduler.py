"""The scheduler's contract: culling, order, fetch structures, feeds, plans, memory.

Values are checked against numpy or plain-Python arithmetic written here;
which nodes run is checked against ``networkx.ancestors`` on ``g.nx`` and
against hand-written expected orders.
"""

from __future__ import annotations

import math
import tracemalloc

import networkx as nx
import numpy as np
import pytest

import tinygraph as tg
from tinygraph import compiler
from tinygraph.exec import Interpreter


class Recorder(Interpreter):
    """The reference interpreter, noting the name of every op node it evaluates."""

    def __init__(self, graph, fetches):
        super().__init__(graph, fetches)
        self.ran: list[str] = []

    def run_node(self, node, args):
        self.ran.append(node.name)
        return super().run_node(node, args)


def names(nodes) -> list[str]:
    return [n.name for n in nodes]


# ------------------------------------------------------------------ culling


def build_branchy():
    g = tg.Graph("branchy")
    x = g.input("x", shape=(None, 2))
    unfed = g.input("unfed", shape=(3,))
    W = g.param("W", np.array([[1.0, 2.0], [3.0, 4.0]]))
    h = tg.tanh(x @ W)
    side = tg.exp(unfed)  # needs an input nobody feeds: must never run for y
    y = tg.sum(h * 2.0, axis=1)
    bad = tg.take(W, [7])  # row 7 of a 2-row matrix: fails if it ever runs
    return g, x, h, side, y, bad


def test_schedule_is_exactly_the_ancestors_in_insertion_order():
    g, x, h, side, y, bad = build_branchy()
    order = g.schedule(y)
    assert names(order) == ["x", "W", "matmul", "tanh", "const", "mul", "sum"]
    want = nx.ancestors(g.nx, y.name) | {y.name}
    assert set(names(order)) == want
    assert [n.index for n in order] == sorted(n.index for n in order)
    assert names(g.schedule(side)) == ["unfed", "exp"]
    assert names(g.schedule([h, side])) == ["x", "unfed", "W", "matmul", "tanh", "exp"]
    assert names(g.schedule("W")) == ["W"]


def test_ties_are_broken_by_insertion_order():
    g = tg.Graph()
    x = g.input("x", shape=())
    p1 = tg.tanh(x, name="p1")
    q1 = tg.exp(x, name="q1")
    q2 = tg.exp(q1, name="q2")
    p2 = tg.tanh(p1, name="p2")
    out = tg.add(q2, p2, name="out")
    assert names(g.schedule(out)) == ["x", "p1", "q1", "q2", "p2", "out"]
    assert names(g.schedule({"b": p2, "a": q2})) == ["x", "p1", "q1", "q2", "p2"]


def test_run_evaluates_exactly_the_schedule_in_order():
    g, x, h, side, y, bad = build_branchy()
    rec = Recorder(g, y)
    xv = np.array([[0.1, -0.2], [0.3, 0.4]])
    got = rec.run({"x": xv})
    assert rec.ran == [n.name for n in g.schedule(y) if n.kind == "op"]
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    want = [2 * sum(math.tanh(sum(xv[i, k] * W[k, j] for k in range(2))) for j in range(2))
            for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # The unfed input and the failing take are culled in both evaluators.
    np.testing.assert_allclose(g.run(y, {"x": xv}), want, rtol=1e-14)
    np.testing.assert_allclose(g.run(y, {"x": xv}, optimize=False), want, rtol=1e-14)
    with pytest.raises(tg.EvaluationError):
        g.run(bad)


# ------------------------------------------------------------------ fetches


def test_fetch_structures_come_back_in_the_same_shape():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    with g.scope("t=0"):
        h = tg.tanh(x, name="h")
    y = h * 3.0
    xv = np.array([0.5, -1.0])
    hv = np.tanh(xv)
    feeds = {"x": xv}
    for optimize in (True, False):
        def run(fetches, optimize=optimize):
            return g.run(fetches, feeds, optimize=optimize)
        np.testing.assert_allclose(run(y), 3 * hv)
        np.testing.assert_allclose(run("t=0/h"), hv)
        as_list = run([y, "t=0/h"])
        assert isinstance(as_list, list) and len(as_list) == 2
        as_tuple = run((h,))
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
        as_dict = run({"y": y, "h": "t=0/h", "x": x})
        assert list(as_dict) == ["y", "h", "x"]
        np.testing.assert_allclose(as_dict["y"], 3 * hv)
        np.testing.assert_allclose(as_dict["h"], hv)
        np.testing.assert_array_equal(as_dict["x"], xv)
        nested = run({"pair": (h, [y, y]), "one": [x]})
        np.testing.assert_allclose(nested["pair"][1][1], 3 * hv)
        assert isinstance(nested["pair"], tuple) and isinstance(nested["pair"][1], list)
        assert run([]) == [] and run({}) == {}


def test_feeds_keyed_by_node_or_name_and_defaults():
    g = tg.Graph()
    x = g.input("x", shape=(None,))
    h0 = g.input("h0", shape=(2,), default=np.zeros(2))
    y = tg.sum(x) + h0
    xv = np.array([1.0, 2.0, 3.5])
    np.testing.assert_array_equal(g.run(y, {x: xv}), [6.5, 6.5])
    np.testing.assert_array_equal(g.run(y, {"x": xv}), [6.5, 6.5])
    np.testing.assert_array_equal(g.run(y, {"x": xv, h0: [1.0, -1.0]}), [7.5, 5.5])
    np.testing.assert_array_equal(g.run(y, {"x": xv}, optimize=False), [6.5, 6.5])
    # Ints convert to a float input; a None size takes any length.
    np.testing.assert_array_equal(g.run(y, {"x": [1, 2]}), [3.0, 3.0])
    assert g.run(x, {"x": np.arange(5)}).dtype == np.float64


# -------------------------------------------------------------------- plans


@pytest.fixture
def plan_counter(monkeypatch):
    """How many plans ``g.run`` builds (it must reuse them per fetches and fed names)."""
    built = []
    original = compiler.make_plan

    def counting_make_plan(*args, **kwargs):
        built.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(compiler, "make_plan", counting_make_plan)
    return built


def test_run_caches_its_plan_per_fetches_and_fed_names(plan_counter):
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    b = g.input("b", shape=(2,), default=np.ones(2))
    y = tg.tanh(x) + b
    xv = np.array([0.2, 0.4])
    for _ in range(3):
        np.testing.assert_allclose(g.run(y, {"x": xv}), np.tanh(xv) + 1)
    assert len(plan_counter) == 1
    g.run(y, {x: xv * 2})  # keyed by node instead of name: same fed names
    g.run("add", {"x": xv})  # the same node fetched by name
    assert len(plan_counter) == 1
    np.testing.assert_allclose(g.run(y, {"x": xv, "b": [2.0, 3.0]}), np.tanh(xv) + [2, 3])
    assert len(plan_counter) == 2  # a different set of fed names
    g.run([y], {"x": xv})
    g.run({"y": y}, {"x": xv})
    assert len(plan_counter) == 4  # other fetch structures
    g.run([y], {"x": xv})
    assert len(plan_counter) == 4


def test_compile_returns_a_reusable_plan():
    g = tg.Graph()
    x = g.input("x", shape=(None, 2))
    s = g.input("s", shape=())
    h0 = g.input("h0", shape=(2,), default=np.zeros(2))
    W = g.param("W", np.eye(2))
    y = tg.tanh(x @ W + h0) * s
    fn = g.compile({"y": y, "h": "tanh"}, inputs=["x", s])
    assert fn.input_names == ["x", "s"]
    xv = np.array([[0.5, -0.5], [1.0, 2.0]])
    by_position = fn(xv, 2.0)
    by_keyword = fn(s=2.0, x=xv)
    for out in (by_position, by_keyword):
        np.testing.assert_allclose(out["y"], np.tanh(xv) * 2)
        np.testing.assert_allclose(out["h"], np.tanh(xv))
    np.testing.assert_allclose(fn(xv[:1], 1.0)["y"], np.tanh(xv[:1]))
    # Default inputs stay out of the compiled signature unless listed.
    auto = g.compile(y)
    assert auto.input_names == ["x", "s"]
    with_h0 = g.compile(y, inputs=["x", "s", "h0"])
    np.testing.assert_allclose(with_h0(xv, 1.0, np.ones(2)), np.tanh(xv + 1))


def test_param_updates_take_effect_on_the_next_run_and_in_compiled_plans():
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    W = g.param("W", np.eye(2))
    b = g.param("b", np.zeros(2))
    y = x @ W + b
    fn = g.compile(y, inputs=["x"])
    xv = np.array([1.0, 2.0])

    def check(W_now, b_now):
        want = [xv[0] * W_now[0][j] + xv[1] * W_now[1][j] + b_now[j] for j in range(2)]
        np.testing.assert_allclose(g.run(y, {"x": xv}), want, rtol=1e-15)
        np.testing.assert_allclose(g.run(y, {"x": xv}, optimize=False), want, rtol=1e-15)
        np.testing.assert_allclose(fn(xv), want, rtol=1e-15)

    check([[1, 0], [0, 1]], [0, 0])
    W.value[0, 1] = 5.0  # in place, element
    check([[1, 5], [0, 1]], [0, 0])
    b.value += 1.0  # in place, augmented
    check([[1, 5], [0, 1]], [1, 1])
    W.value = [[2.0, 0.0], [0.0, 3.0]]  # assignment of a new array
    check([[2, 0], [0, 3]], [1, 1])
    W.value *= 0.5
    check([[1, 0], [0, 1.5]], [1, 1])
    # A fetched param is a copy: changing it does not change the param.
    fetched = g.run(W)
    fetched[0, 0] = 100.0
    assert W.value[0, 0] == 1.0
    assert g.run(b, optimize=False) is not b.value


def test_an_identity_keeping_augmented_assignment():
    # An optimizer may hold on to p.value and update it in place later.
    g = tg.Graph()
    p = g.param("p", np.zeros(3))
    held = p.value
    p.value += 1.0
    held -= 0.5
    np.testing.assert_array_equal(g.run(p), [0.5, 0.5, 0.5])


# ------------------------------------------------------------------- memory


def long_chain(length: int, size: int):
    g = tg.Graph("chain")
    x = g.input("x", shape=(size,))
    h = x
    for _ in range(length):
        h = tg.tanh(h) * 0.5
    return g, x, h


@pytest.mark.parametrize("mode", ["run", "interpreter", "compiled"])
def test_intermediates_are_released_after_their_last_consumer(mode):
    size = 20_000  # 160 kB per array; holding all 2,000 would be 320 MB
    g, x, h = long_chain(1_000, size)
    xv = np.linspace(-1, 1, size)
    fn = g.compile(h, inputs=["x"])
    runners = {"run": lambda: g.run(h, {"x": xv}),
               "interpreter": lambda: g.run(h, {"x": xv}, optimize=False),
               "compiled": lambda: fn(xv)}
    runner = runners[mode]
    runner()  # build and cache the plan outside the measurement
    tracemalloc.start()
    try:
        out = runner()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * xv.nbytes, f"peak {peak / xv.nbytes:.1f} arrays"
    want = xv.copy()
    for _ in range(1_000):
        want = np.tanh(want) * 0.5
    np.testing.assert_allclose(out, want, rtol=1e-12)


# ------------------------------------------------------------ long graphs


def test_a_100000_node_chain_schedules_and_runs_without_recursion():
    g = tg.Graph("long")
    x = g.input("x", shape=())
    quarter = g.const(0.25)
    h = x
    for _ in range(50_000):
        h = tg.tanh(h) + quarter
    assert len(g) == 100_002
    order = g.schedule(h)
    assert len(order) == len(g) and order[0] is x and order[-1] is h
    want = 0.5
    for _ in range(50_000):
        want = math.tanh(want) + 0.25
    assert g.run(h, {"x": 0.5}, optimize=False) == pytest.approx(want, rel=1e-12)
    assert g.run(h, {"x": 0.5}) == pytest.approx(want, rel=1e-12)


def test_the_overhead_benchmark_runs_and_reports_per_node_times(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "overhead.py"
    spec = importlib.util.spec_from_file_location("overhead_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    per_node = module.main(["--steps", "20", "--repeats", "2"])
    assert set(per_node) >= {"bare numpy loop", "compiled plan (g.compile)"}
    assert all(v > 0 for v in per_node.values())
    assert "µs per node" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["run", "interpreter", "compiled"])
def test_runs_never_overwrite_feeds_params_consts_or_earlier_results(mode):
    # Plans may write ufunc results into dead intermediates; nothing a caller
    # can see (feeds, params, consts, returned arrays, views of them) may change.
    g = tg.Graph()
    x = g.input("x", shape=(None, 3))
    W = g.param("W", np.ones((2, 3)))
    c = g.const(np.full((2, 3), 2.0))
    t = tg.tanh(x)
    view_T, view_flat, view_slice = t.T, tg.reshape(t, (-1,)), t[:, 1:]
    u = tg.exp(t)  # the last use of t: a plan might like to reuse its buffer
    fetch = [u + 1.0, view_T, view_flat, view_slice, tg.tanh(x * W) * c + u, x * 1.0, W + 0.0]
    fn = g.compile(fetch, inputs=["x"])
    runners = {"run": lambda v: g.run(fetch, {"x": v}),
               "interpreter": lambda v: g.run(fetch, {"x": v}, optimize=False),
               "compiled": fn}
    xv = np.linspace(-1, 1, 6).reshape(2, 3)
    first = runners[mode](xv)
    kept = [a.copy() for a in first]
    runners[mode](xv * 3)
    for got, saved in zip(first, kept, strict=True):
        np.testing.assert_array_equal(got, saved)
    np.testing.assert_array_equal(xv, np.linspace(-1, 1, 6).reshape(2, 3))
    assert (W.value == 1).all() and (c.value == 2).all()
    tanh_x = np.tanh(xv)
    np.testing.assert_allclose(kept[0], np.exp(tanh_x) + 1, rtol=1e-15)
    np.testing.assert_allclose(kept[1], tanh_x.T, rtol=1e-15)
    np.testing.assert_allclose(kept[2], tanh_x.ravel(), rtol=1e-15)
    np.testing.assert_allclose(kept[3], tanh_x[:, 1:], rtol=1e-15)
    np.testing.assert_allclose(kept[4], np.tanh(xv) * 2 + np.exp(tanh_x), rtol=1e-15)


@pytest.mark.parametrize("optimize", [True, False])
def test_a_result_broadcast_larger_than_its_dead_operand_is_still_right(optimize):
    # tanh(x) dies at the add, so the plan writes the sum into it; fed x of one
    # row and y of three, the sum has three rows and cannot go there. numpy
    # refuses before writing; the plan must still give the sum, on every call.
    g = tg.Graph()
    x = g.input("x", shape=(None, 2))
    y = g.input("y", shape=(None, 2))
    fn = g.compile(tg.tanh(x) + y, inputs=["x", "y"], optimize=optimize)
    row, rows = np.array([[0.5, -1.0]]), np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(fn(row, row), np.tanh(row) + row, rtol=1e-15)  # sizes the plan
    for _ in range(2):
        np.testing.assert_allclose(fn(row, rows), np.tanh(row) + rows, rtol=1e-15)
    np.testing.assert_allclose(fn(row, row), np.tanh(row) + row, rtol=1e-15)
    with pytest.raises(tg.EvaluationError, match="add"):
        fn(rows, np.ones((2, 2)))  # a real mismatch still names the node


def test_a_long_plan_reuses_the_locals_of_dead_values():
    # 3,000 chained nodes, each value dead after the next reads it: the generated
    # function keeps a handful of locals (a frame of thousands of locals makes every
    # call of it, and of the Python functions it calls, map a new frame-stack block).
    g = tg.Graph()
    x = g.input("x", shape=(3,))
    y, want = x, np.array([0.1, -0.2, 0.3])
    value = want.copy()
    for k in range(1000):
        y = tg.tanh(y * 0.9 + float(k % 3) * 0.01)
        value = np.tanh(value * 0.9 + (k % 3) * 0.01)
    fn = g.compile(y, inputs=["x"], optimize=False)
    for _ in range(2):  # the second call runs the generated code
        np.testing.assert_allclose(fn(want), value, rtol=1e-12)
    assert len(fn.plan.steps) > 2000
    assert fn.plan._body.__code__.co_nlocals < 20, fn.plan._body.__code__.co_nlocals


def test_a_plan_of_many_inputs_loads_each_where_it_is_first_read():
    # 200 step inputs (an unrolled net's): each is loaded before its reader and dropped
    # after it, so the frame stays small; a fetched input comes back as fed.
    g = tg.Graph()
    xs = [g.input(f"x{k}", shape=(2,)) for k in range(200)]
    total = xs[0]
    for x in xs[1:]:
        total = tg.tanh(total + x)
    fn = g.compile([total, xs[7]], inputs=[x.name for x in xs], optimize=False)
    values = np.random.default_rng(0).normal(size=(200, 2))
    want = values[0]
    for v in values[1:]:
        want = np.tanh(want + v)
    for _ in range(2):
        got, seventh = fn(*values)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_array_equal(seventh, values[7])
    assert fn.plan._body.__code__.co_nlocals < 20, fn.plan._body.__code__.co_nlocals

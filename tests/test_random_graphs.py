"""Seeded random DAGs, evaluated by tinygraph and by a numpy evaluator written here.

Each seed draws a *recipe*: a list of steps (leaves, elementwise ops with
broadcasting, matmul, reductions, softmax, concat, stack, transpose,
reshape, indexing, take, one_hot, cross_entropy, python numbers and numpy
arrays on either side of an operator). The recipe is turned into a tinygraph
graph by :func:`build` and, independently, walked step by step by
:func:`evaluate_numpy`, which never looks at the graph. The two must agree to
1e-12, for the default compiled plan, the plain interpreter
(``optimize=False``) and ``g.compile``; every node's inferred shape (``None``
where unknown) and dtype must describe the value numpy computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import tinygraph as tg

N_GRAPHS = 240
RTOL = ATOL = 1e-12


@dataclass
class Step:
    kind: str
    args: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Value:
    shape: tuple[int, ...]  # the run-time shape
    declared: tuple  # the shape tinygraph should infer (None where unknown)
    bound: float  # a bound on |entries|, to keep the numbers finite


# ----------------------------------------------------------------- recipes


def broadcast(a: tuple, b: tuple) -> tuple | None:
    """numpy broadcasting of two shapes written out; None if they do not broadcast."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 1 in (x, y) else x)
    return tuple(out)


def broadcast_declared(a: tuple, b: tuple) -> tuple:
    """The shape tinygraph infers when ``None`` (unknown) meets a size."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        else:
            out.append(x if x is not None else y)
    return tuple(out)


class RecipeMaker:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.steps: list[Step] = []
        self.values: list[Value] = []
        self.batch = int(self.rng.integers(1, 5))
        self.width = int(self.rng.integers(1, 5))

    def add(self, step: Step, value: Value) -> int:
        self.steps.append(step)
        self.values.append(value)
        if value.bound > 30 and value.shape:
            # Squash big values so long chains of products stay finite.
            self.steps.append(Step("tanh", (len(self.values) - 1,)))
            self.values.append(Value(value.shape, value.declared, 1.0))
        return len(self.values) - 1

    def pick(self, where=lambda v: True) -> int | None:
        options = [i for i, v in enumerate(self.values) if where(v)]
        if not options:
            return None
        # Prefer recent values so graphs get deep, not just wide.
        weights = np.arange(1, len(options) + 1, dtype=float) ** 2
        return int(self.rng.choice(options, p=weights / weights.sum()))

    def leaves(self) -> None:
        B, D = self.batch, self.width
        shapes = [(B, D), (D,), (B, 1), (1, D), (), (D, D), (B, D, 2)]
        for k in range(int(self.rng.integers(2, 4))):
            shape = shapes[int(self.rng.integers(len(shapes)))]
            declared = tuple(None if (d == B and self.rng.random() < 0.5) else d
                             for d in shape)
            array = self.rng.uniform(-1, 1, shape)
            self.add(Step("input", extra={"name": f"in{k}", "declared": declared,
                                          "array": array}), Value(shape, declared, 1.0))
        for k in range(int(self.rng.integers(1, 3))):
            shape = shapes[int(self.rng.integers(len(shapes)))]
            array = self.rng.uniform(-1, 1, shape)
            self.add(Step("param", extra={"name": f"p{k}", "array": array}),
                     Value(shape, shape, 1.0))

    def op(self) -> None:
        rng = self.rng
        kind = str(rng.choice([
            "binary", "binary", "binary", "number", "number", "unary", "unary", "matmul",
            "lmatmul", "reduce", "softmax", "concat", "stack", "transpose", "reshape",
            "getitem", "take", "one_hot", "cross_entropy", "pow", "div_safe",
        ]))
        getattr(self, "make_" + kind)()

    # One maker per kind; each appends a step (or does nothing if nothing fits).
    def make_binary(self) -> None:
        a = self.pick()
        va = self.values[a]
        b = self.pick(lambda v: broadcast(va.shape, v.shape) is not None)
        vb = self.values[b]
        op = str(self.rng.choice(["add", "sub", "mul"]))
        bound = va.bound * vb.bound if op == "mul" else va.bound + vb.bound
        self.add(Step(op, (a, b)), Value(broadcast(va.shape, vb.shape),
                                         broadcast_declared(va.declared, vb.declared), bound))

    def make_div_safe(self) -> None:
        a = self.pick()
        va = self.values[a]
        b = self.pick(lambda v: broadcast(va.shape, v.shape) is not None)
        vb = self.values[b]
        self.add(Step("div_safe", (a, b)), Value(broadcast(va.shape, vb.shape),
                                                 broadcast_declared(va.declared, vb.declared),
                                                 va.bound))

    def make_number(self) -> None:
        a = self.pick()
        v = self.values[a]
        number = float(np.round(self.rng.uniform(0.5, 3.0), 2))
        form = str(self.rng.choice(["x+c", "c+x", "x-c", "c-x", "x*c", "c*x", "x/c",
                                    "c/(x*x+1)"]))
        bound = {"*": v.bound * number, "/": v.bound / number}.get(form[1], v.bound + number)
        if form == "c/(x*x+1)":
            bound = number
        self.add(Step("number", (a,), {"form": form, "c": number}),
                 Value(v.shape, v.declared, bound))

    def make_unary(self) -> None:
        a = self.pick()
        v = self.values[a]
        op = str(self.rng.choice(["tanh", "sigmoid", "relu", "neg", "exp", "log1p_sq"]))
        if op == "exp" and v.bound > 3:
            op = "tanh"
        bound = {"tanh": 1.0, "sigmoid": 1.0, "relu": v.bound, "neg": v.bound,
                 "exp": math.exp(v.bound), "log1p_sq": math.log(v.bound ** 2 + 1)}[op]
        self.add(Step(op, (a,)), Value(v.shape, v.declared, bound))

    def make_pow(self) -> None:
        a = self.pick()
        v = self.values[a]
        if self.rng.random() < 0.5:
            self.add(Step("square", (a,)), Value(v.shape, v.declared, v.bound ** 2))
        else:
            self.add(Step("sqrt_sq1", (a,)), Value(v.shape, v.declared,
                                                   math.sqrt(v.bound ** 2 + 1)))

    def make_matmul(self) -> None:
        a = self.pick(lambda v: 1 <= len(v.shape) <= 3)
        if a is None:
            return
        v = self.values[a]
        inner = v.shape[-1]
        vector = self.rng.random() < 0.3
        weight = self.rng.uniform(-1, 1, (inner,) if vector else
                                  (inner, int(self.rng.integers(1, 4))))
        shape = v.shape[:-1] + weight.shape[1:]
        declared = v.declared[:-1] + weight.shape[1:]
        self.add(Step("matmul", (a,), {"weight": weight, "name": f"w{len(self.steps)}"}),
                 Value(shape, declared, v.bound * inner))

    def make_lmatmul(self) -> None:
        a = self.pick(lambda v: len(v.shape) in (1, 2))
        if a is None:
            return
        v = self.values[a]
        left = self.rng.uniform(-1, 1, (int(self.rng.integers(1, 4)), v.shape[0]))
        shape = (left.shape[0],) + v.shape[1:]
        self.add(Step("lmatmul", (a,), {"left": left}),
                 Value(shape, (left.shape[0],) + v.declared[1:], v.bound * v.shape[0]))

    def make_reduce(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        ndim = len(v.shape)
        choice = self.rng.integers(3)
        if choice == 0:
            axis = None
            axes = list(range(ndim))
        elif choice == 1:
            axis = int(self.rng.integers(-ndim, ndim))
            axes = [axis % ndim]
        else:
            axes = sorted(int(i) for i in self.rng.choice(ndim, size=min(2, ndim),
                                                          replace=False))
            axis = tuple(axes)
        keepdims = bool(self.rng.random() < 0.4)
        op = str(self.rng.choice(["sum", "mean"]))
        keep = [i for i in range(ndim) if i not in axes]
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(v.shape))
            declared = tuple(1 if i in axes else d for i, d in enumerate(v.declared))
        else:
            shape = tuple(v.shape[i] for i in keep)
            declared = tuple(v.declared[i] for i in keep)
        count = math.prod(v.shape[i] for i in axes)
        self.add(Step(op, (a,), {"axis": axis, "keepdims": keepdims}),
                 Value(shape, declared, v.bound * (count if op == "sum" else 1)))

    def make_softmax(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        axis = int(self.rng.integers(-len(v.shape), len(v.shape)))
        log = bool(self.rng.random() < 0.5)
        bound = 2 * v.bound + math.log(v.shape[axis]) if log else 1.0
        self.add(Step("log_softmax" if log else "softmax", (a,), {"axis": axis}),
                 Value(v.shape, v.declared, bound))

    def make_concat(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        va = self.values[a]
        axis = int(self.rng.integers(len(va.shape)))
        b = self.pick(lambda v: len(v.shape) == len(va.shape) and all(
            x == y for i, (x, y) in enumerate(zip(v.shape, va.shape, strict=True))
            if i != axis))
        vb = self.values[b]
        shape = tuple(d + vb.shape[i] if i == axis else d for i, d in enumerate(va.shape))
        declared = []
        for i, (x, y) in enumerate(zip(va.declared, vb.declared, strict=True)):
            if i == axis:
                declared.append(None if None in (x, y) else x + y)
            else:
                declared.append(x if x is not None else y)
        self.add(Step("concat", (a, b), {"axis": axis}),
                 Value(shape, tuple(declared), max(va.bound, vb.bound)))

    def make_stack(self) -> None:
        a = self.pick()
        va = self.values[a]
        b = self.pick(lambda v: v.shape == va.shape)
        vb = self.values[b]
        axis = int(self.rng.integers(len(va.shape) + 1))
        shape = va.shape[:axis] + (2,) + va.shape[axis:]
        common = tuple(x if x is not None else y
                       for x, y in zip(va.declared, vb.declared, strict=True))
        self.add(Step("stack", (a, b), {"axis": axis}),
                 Value(shape, common[:axis] + (2,) + common[axis:], max(va.bound, vb.bound)))

    def make_transpose(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 2)
        if a is None:
            return
        v = self.values[a]
        if self.rng.random() < 0.4:
            perm = None  # x.T
            order = list(reversed(range(len(v.shape))))
        else:
            order = [int(i) for i in self.rng.permutation(len(v.shape))]
            perm = tuple(order)
        self.add(Step("transpose", (a,), {"axes": perm}),
                 Value(tuple(v.shape[i] for i in order), tuple(v.declared[i] for i in order),
                       v.bound))

    def make_reshape(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        size = math.prod(v.shape)
        known = None not in v.declared
        if self.rng.random() < 0.5:
            target, shape, declared = (-1,), (size,), ((size,) if known else (None,))
        else:
            target, shape, declared = (size, 1), (size, 1), (size, 1)
        self.add(Step("reshape", (a,), {"shape": target}), Value(shape, declared, v.bound))

    def make_getitem(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        n = v.shape[0]
        if self.rng.random() < 0.4:
            index = int(self.rng.integers(-n, n))
            if v.declared[0] is None:
                index = abs(index) % n  # stays valid at run time; known only then
            self.add(Step("getitem", (a,), {"index": index}),
                     Value(v.shape[1:], v.declared[1:], v.bound))
            return
        start = int(self.rng.integers(0, n))
        step = int(self.rng.choice([1, 1, 2, -1]))
        index = slice(start, None, step) if step > 0 else slice(None, None, -1)
        length = len(range(*index.indices(n)))
        declared0 = None if v.declared[0] is None else length
        self.add(Step("getitem", (a,), {"index": index}),
                 Value((length,) + v.shape[1:], (declared0,) + v.declared[1:], v.bound))

    def make_take(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        ids = self.rng.integers(0, v.shape[0], size=int(self.rng.integers(1, 4)))
        self.add(Step("take", (a,), {"ids": ids}),
                 Value((len(ids),) + v.shape[1:], (len(ids),) + v.declared[1:], v.bound))

    def make_one_hot(self) -> None:
        depth = int(self.rng.integers(1, 5))
        ids = self.rng.integers(0, depth, size=self.batch)
        # one_hot reads an int input, so this also feeds an integer array.
        name = f"ids{len(self.steps)}"
        self.add(Step("one_hot", (), {"ids": ids, "depth": depth, "name": name}),
                 Value((self.batch, depth), (None, depth), 1.0))

    def make_cross_entropy(self) -> None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return
        v = self.values[a]
        targets = self.rng.integers(0, v.shape[-1], size=v.shape[:-1])
        self.add(Step("cross_entropy", (a,), {"targets": targets}),
                 Value((), (), 2 * v.bound + math.log(v.shape[-1])))

    def make(self) -> list[Step]:
        self.leaves()
        for _ in range(int(self.rng.integers(6, 16))):
            self.op()
        return self.steps


# ------------------------------------------------------------ tinygraph side


def operator_node(kind: str, a: tg.Node, b: tg.Node) -> tg.Node:
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    return a * b


def number_node(form: str, v: tg.Node, c: float) -> tg.Node:
    """A python number on the left or the right of an operator."""
    if form == "x+c":
        return v + c
    if form == "c+x":
        return c + v
    if form == "x-c":
        return v - c
    if form == "c-x":
        return c - v
    if form == "x*c":
        return v * c
    if form == "c*x":
        return c * v
    if form == "x/c":
        return v / c
    return c / (v * v + 1)


def build(steps: list[Step]) -> tuple[tg.Graph, list[tg.Node], dict[str, np.ndarray]]:
    g = tg.Graph("random")
    nodes: list[tg.Node] = []
    feeds: dict[str, np.ndarray] = {}
    for step in steps:
        x = [nodes[i] for i in step.args]
        e = step.extra
        k = step.kind
        if k == "input":
            node = g.input(e["name"], shape=e["declared"])
            feeds[e["name"]] = e["array"]
        elif k == "param":
            node = g.param(e["name"], e["array"])
        elif k in ("add", "sub", "mul"):
            # Alternate between the operator and the function spelling.
            node = operator_node(k, x[0], x[1]) if len(g) % 2 else getattr(tg, k)(x[0], x[1])
        elif k == "div_safe":
            node = x[0] / (x[1] * x[1] + 1.0)
        elif k == "number":
            node = number_node(e["form"], x[0], e["c"])
        elif k in ("tanh", "sigmoid", "relu", "exp"):
            node = getattr(tg, k)(x[0])
        elif k == "neg":
            node = -x[0]
        elif k == "log1p_sq":
            node = tg.log(x[0] * x[0] + 1.0)
        elif k == "square":
            node = x[0] ** 2
        elif k == "sqrt_sq1":
            node = tg.pow(x[0] ** 2 + 1.0, 0.5)
        elif k == "matmul":
            node = x[0] @ g.param(e["name"], e["weight"])
        elif k == "lmatmul":
            node = e["left"] @ x[0]
        elif k in ("sum", "mean"):
            node = getattr(tg, k)(x[0], axis=e["axis"], keepdims=e["keepdims"])
        elif k in ("softmax", "log_softmax"):
            node = getattr(tg, k)(x[0], axis=e["axis"])
        elif k in ("concat", "stack"):
            node = getattr(tg, k)([x[0], x[1]], axis=e["axis"])
        elif k == "transpose":
            node = x[0].T if e["axes"] is None else tg.transpose(x[0], e["axes"])
        elif k == "reshape":
            node = tg.reshape(x[0], e["shape"])
        elif k == "getitem":
            node = x[0][e["index"]]
        elif k == "take":
            node = tg.take(x[0], e["ids"])
        elif k == "one_hot":
            ids = g.input(e["name"], shape=(None,), dtype="int64")
            feeds[e["name"]] = e["ids"]
            node = tg.one_hot(ids, depth=e["depth"])
        elif k == "cross_entropy":
            node = tg.cross_entropy(x[0], e["targets"])
        else:
            raise AssertionError(k)
        nodes.append(node)
    return g, nodes, feeds


# ---------------------------------------------------------------- numpy side


def softmax_ref(v: np.ndarray, axis: int) -> np.ndarray:
    shifted = v - v.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_ref(v: np.ndarray, axis: int) -> np.ndarray:
    peak = v.max(axis=axis, keepdims=True)
    return v - peak - np.log(np.exp(v - peak).sum(axis=axis, keepdims=True))


def evaluate_numpy(steps: list[Step]) -> list[np.ndarray]:
    vals: list[np.ndarray] = []
    for step in steps:
        x = [vals[i] for i in step.args]
        e = step.extra
        k = step.kind
        if k in ("input", "param"):
            out = e["array"]
        elif k == "add":
            out = x[0] + x[1]
        elif k == "sub":
            out = x[0] - x[1]
        elif k == "mul":
            out = x[0] * x[1]
        elif k == "div_safe":
            out = x[0] / (x[1] * x[1] + 1.0)
        elif k == "number":
            c, v = e["c"], x[0]
            out = {"x+c": v + c, "c+x": c + v, "x-c": v - c, "c-x": c - v, "x*c": v * c,
                   "c*x": c * v, "x/c": v / c, "c/(x*x+1)": c / (v * v + 1)}[e["form"]]
        elif k == "tanh":
            out = np.tanh(x[0])
        elif k == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-x[0]))
        elif k == "relu":
            out = np.where(x[0] > 0, x[0], 0.0)
        elif k == "neg":
            out = -x[0]
        elif k == "exp":
            out = np.exp(x[0])
        elif k == "log1p_sq":
            out = np.log(x[0] * x[0] + 1.0)
        elif k == "square":
            out = x[0] * x[0]
        elif k == "sqrt_sq1":
            out = np.sqrt(x[0] * x[0] + 1.0)
        elif k == "matmul":
            out = x[0] @ e["weight"]
        elif k == "lmatmul":
            out = e["left"] @ x[0]
        elif k == "sum":
            out = np.sum(x[0], axis=e["axis"], keepdims=e["keepdims"])
        elif k == "mean":
            out = np.mean(x[0], axis=e["axis"], keepdims=e["keepdims"])
        elif k == "softmax":
            out = softmax_ref(x[0], e["axis"])
        elif k == "log_softmax":
            out = log_softmax_ref(x[0], e["axis"])
        elif k == "concat":
            out = np.concatenate([x[0], x[1]], axis=e["axis"])
        elif k == "stack":
            out = np.stack([x[0], x[1]], axis=e["axis"])
        elif k == "transpose":
            out = np.transpose(x[0], e["axes"])
        elif k == "reshape":
            out = x[0].reshape(e["shape"])
        elif k == "getitem":
            out = x[0][e["index"]]
        elif k == "take":
            out = np.stack([x[0][i] for i in e["ids"]])
        elif k == "one_hot":
            out = np.zeros((len(e["ids"]), e["depth"]))
            out[np.arange(len(e["ids"])), e["ids"]] = 1.0
        elif k == "cross_entropy":
            logp = log_softmax_ref(x[0], -1).reshape(-1, x[0].shape[-1])
            picked = [logp[r, t] for r, t in enumerate(e["targets"].reshape(-1))]
            out = -sum(picked) / len(picked)
        else:
            raise AssertionError(k)
        vals.append(np.asarray(out, dtype=np.float64))
    return vals


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", range(N_GRAPHS))
def test_random_graph_matches_direct_numpy(seed):
    maker = RecipeMaker(seed)
    steps = maker.make()
    g, nodes, feeds = build(steps)
    want = evaluate_numpy(steps)
    g.validate()

    for node, value, ref in zip(nodes, maker.values, want, strict=True):
        assert ref.shape == value.shape, (node, ref.shape, value.shape)
        assert node.shape == value.declared, (node, value.declared)
        assert np.isfinite(ref).all()

    # Fetch the last node alone (so culling and freeing act) and a dict of a random sample.
    rng = np.random.default_rng(seed + 10_000)
    sample = sorted(set(rng.choice(len(nodes), size=min(5, len(nodes)), replace=False)))
    fetches = {f"v{i}": nodes[i] for i in sample}
    last = nodes[-1]
    results = {
        "plan": (g.run(last, feeds), g.run(fetches, feeds)),
        "interpreter": (g.run(last, feeds, optimize=False),
                        g.run(fetches, feeds, optimize=False)),
        "compiled": (g.compile(last, inputs=list(feeds))(**feeds),
                     g.compile(fetches, inputs=list(feeds))(**feeds)),
    }
    for mode, (got_last, got_sample) in results.items():
        assert np.asarray(got_last).dtype == last.dtype, mode
        np.testing.assert_allclose(got_last, want[-1], rtol=RTOL, atol=ATOL, err_msg=mode)
        assert list(got_sample) == list(fetches)
        for i in sample:
            np.testing.assert_allclose(got_sample[f"v{i}"], want[i], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{mode}: node {nodes[i].name}")
    # Every value of the recipe, fetched as one list, from both evaluators.
    for optimize in (True, False):
        everything = g.run(nodes, feeds, optimize=optimize)
        assert isinstance(everything, list) and len(everything) == len(nodes)
        for node, got, ref in zip(nodes, everything, want, strict=True):
            assert np.asarray(got).dtype == node.dtype == np.float64, node
            np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL,
                                       err_msg=f"optimize={optimize}: node {node.name}")


def test_the_recipes_cover_every_kind_of_step():
    kinds = set()
    for seed in range(N_GRAPHS):
        kinds.update(step.kind for step in RecipeMaker(seed).make())
    assert kinds == {
        "input", "param", "add", "sub", "mul", "div_safe", "number", "tanh", "sigmoid",
        "relu", "neg", "exp", "log1p_sq", "square", "sqrt_sq1", "matmul", "lmatmul", "sum",
        "mean", "softmax", "log_softmax", "concat", "stack", "transpose", "reshape",
        "getitem", "take", "one_hot", "cross_entropy",
    }

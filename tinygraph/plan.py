"""Compiled plans: a schedule turned into straight-line Python over numpy.

A :class:`Plan` is what ``g.run`` caches and ``g.compile`` returns. Building
one (1) optionally rewrites the graph with :func:`tinygraph.passes.optimize`,
(2) orders the needed nodes (:func:`tinygraph.scheduler.ancestors`), and
(3) emits one Python function whose body is one line per node::

    def plan(inputs, params):
        v0 = inputs[0]            # x
        v1 = params[0]            # W, read at call time: updates take effect
        v2 = f2(v0, v1)           # matmul
        del v0                    # dead after its last use: memory stays flat
        v3 = f3(v2)               # tanh
        return [v3]

Running that function costs one numpy call per node and almost nothing else
(about 0.05 µs per node, against ~0.3 µs for a loop over step tuples). Very
long plans (more than ``CODEGEN_MAX_STEPS`` nodes) skip code generation,
whose compile time grows with the line count, and run the same steps in a
loop; graphs of more than ``OPTIMIZE_MAX_NODES`` needed nodes skip the
passes. A failure inside numpy is reported as an ``EvaluationError`` naming
the node, found from the failing line.
"""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .buffers import BUFFER_MIN_BYTES, into_buffer, stack_into
from .errors import EvaluationError, FeedError, GraphError
from .gcpause import gc_paused
from .graph import Graph, Node
from .ops import OPS
from .plan_stacks import stack_destinations, stack_lines
from .shapes import format_shape

__all__ = ["Plan", "CompiledGraph", "CODEGEN_MAX_STEPS", "OPTIMIZE_MAX_NODES"]

CODEGEN_MAX_STEPS = 20_000
# Above this many needed nodes plans skip the rewrite passes: in Python they
# cost ~50 µs per node, more than a first run saves on graphs that large.
OPTIMIZE_MAX_NODES = 50_000
_LEAVES = ("input", "param", "const")
_FLOATS = ("float64", "float32")


def _last_uses(order: list[Node], keep: set[str]) -> dict[str, list[str]]:
    """step name -> names of the values that die right after that step."""
    last: dict[str, str] = {}
    for node in order:
        for src in node.inputs:
            last[src.name] = node.name
    dying: dict[str, list[str]] = {}
    for value, step in last.items():
        if value not in keep:
            dying.setdefault(step, []).append(value)
    return dying


def failure(node: Node, args: Sequence[Any], exc: Exception) -> EvaluationError:
    """The error for numpy failing on ``node`` with arguments ``args``."""
    shapes = ", ".join(format_shape(np.shape(a)) for a in args)
    return EvaluationError(f"node '{node.name}' ({node.op}) failed on inputs of shape "
                           f"[{shapes}]: {exc}")


def missing_feed(node: Node, fetched: Sequence[Node]) -> FeedError:
    names = ", ".join(f"'{n.name}'" for n in fetched[:3])
    return FeedError(f"input '{node.name}' (shape {format_shape(node.shape)} {node.dtype}) "
                     f"is needed to compute {names} but was not fed; pass feeds={{'{node.name}': "
                     "array}")


def _bind(node: Node) -> Callable:
    """The node's forward with its attributes bound, as cheap to call as possible."""
    if node.op == "getitem":
        # x[index] through operator.itemgetter: one C call, no per-run tuple building.
        index = tuple(slice(*i) if isinstance(i, tuple) else i for i in node.attrs["index"])
        return operator.itemgetter(index[0] if len(index) == 1 else index)
    if node.op == "matmul":
        if all(len(src.shape) == 2 and src.dtype in _FLOATS for src in node.inputs):
            # Matrix by matrix: np.dot has the least overhead (0.39 µs against 0.66
            # for @ on 8 x 8), which is what a recurrence pays once per step.
            return np.dot
        return operator.matmul  # the @ operator dispatches faster than the np.matmul ufunc
    forward = OPS[node.op].forward
    return functools.partial(forward, **node.attrs) if node.attrs else forward


# Shape-adapting helpers of reverse mode that return x itself when its shape
# already is like's; the plan inlines that test.
_IDENTITY_WHEN_SHAPES_AGREE = {"sum_to", "broadcast_to", "reshape_like"}
# Ops whose result may share memory with their first input.
_VIEWS = {"getitem", "reshape", "transpose", "expand_dims", *_IDENTITY_WHEN_SHAPES_AGREE}
# Forwards that take out= for the steps plans keep buffers for (other ops: their own).
_BUFFERED_FORWARD = {"matmul": np.matmul, "stack": stack_into}
# Elementwise ufunc ops: their result may be written into a dead operand.
_ELEMENTWISE = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "exp", "log", "sign"}
# Ops whose result is always a new array (never a view of an input), so once
# dead it may be overwritten by a later ufunc's ``out=``.
_FRESH = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "exp", "log", "relu", "matmul",
          "sigmoid", "softmax", "log_softmax", "take", "one_hot", "stack", "concat"}


class Plan:
    """``fetches`` of ``graph`` compiled for the inputs named in ``fed``.

    ``optimize=True`` runs the rewrite passes first; the plan then evaluates
    the rewritten graph (``plan.graph``) while reading params from the
    original graph, so in-place updates and assignments take effect.
    """

    @gc_paused()
    def __init__(self, graph: Graph, fetches: Any, fed: Sequence[str] = (),
                 optimize: bool = False):
        from .scheduler import Fetches, ancestors

        self.source = graph
        self.fetches = Fetches(graph, fetches)
        nodes = self.fetches.nodes
        if optimize and len(ancestors(graph, nodes)) > OPTIMIZE_MAX_NODES:
            optimize = False  # the passes would cost more than they save on a first run
        self.optimized = optimize
        self._unoptimized: tuple[Any, Sequence[str]] | Plan = (fetches, tuple(fed))
        self._fell_back: set[tuple] = set()  # input shapes the batched path failed on
        if optimize:
            from .passes import OPTIMIZE_PASSES, rewrite

            graph, nodes = rewrite(graph, nodes, OPTIMIZE_PASSES)
        self.graph = graph
        self.order = ancestors(graph, nodes)
        slot = {node.name: i for i, node in enumerate(self.order)}
        dying = _last_uses(self.order, {n.name for n in nodes})
        self.consts: dict[int, np.ndarray] = {}
        self.params: list[tuple[int, Node]] = []
        self.inputs: list[tuple[int, Node]] = []
        self.steps: list[tuple[Callable, tuple[int, ...], int, tuple[int, ...]]] = []
        self.step_nodes: list[Node] = []
        fed_set = set(fed)
        for i, node in enumerate(self.order):
            if node.op == "input":
                if node.name in fed_set:
                    self.inputs.append((i, node))
                elif "default" in node.attrs:
                    self.consts[i] = node.attrs["default"]
                else:
                    raise missing_feed(node, self.fetches.nodes)
            elif node.op == "param":
                self.params.append((i, graph._param_sources.get(node.name, node)))
            elif node.op == "const":
                self.consts[i] = node.value
            else:
                forward = _bind(node)
                # Leaves are never freed: their arrays belong to the graph or the caller.
                frees = tuple(slot[n] for n in dying.get(node.name, ())
                              if self.order[slot[n]].op not in _LEAVES)
                self.steps.append((forward, tuple(slot[s.name] for s in node.inputs), i, frees))
                self.step_nodes.append(node)
        self.fetch_slots = [slot[n.name] for n in nodes]
        # Values some view op reads: overwriting them would change the view too.
        self._viewed = {slot[src.name] for node in self.step_nodes
                        if node.op in _VIEWS for src in node.inputs[:1]}
        self.input_names = [node.name for _, node in self.inputs]
        self._detach = [n.op == "param" for n in nodes]
        self._escaping = self._values_leaving_the_plan()
        self._stacks = stack_destinations(self)
        for destination in {id(d): d for d in self._stacks.values()}.values():
            # parts are rows of the stack's array: neither may be overwritten in place
            self._viewed.update(destination.parts)
            self._viewed.add(destination.out)
        self._threads = threading.local()  # per-thread output buffers, see buffers.py
        # The first call runs the loop and records each step's result size; code is
        # generated after it, so large steps can be given buffers.
        self._body = self._first_call if len(self.steps) <= CODEGEN_MAX_STEPS else self._loop

    # -------------------------------------------------------------- running
    def __call__(self, fed: Mapping[str, np.ndarray]) -> Any:
        """Evaluate with already-checked feeds (input name -> array)."""
        inputs = [fed[node.name] for _, node in self.inputs]
        if self._fell_back and tuple(np.shape(x) for x in inputs) in self._fell_back:
            return self._fall_back(inputs, fed)  # these input sizes failed the fast path before
        params = [node._value for _, node in self.params]
        try:
            values = self._body(inputs, params, self._buffers())
        except Exception as exc:
            if not self.optimized and (isinstance(exc, GraphError) or self._body == self._loop):
                raise exc if isinstance(exc, GraphError) else self._locate(exc) from exc
            # The fast path assumed sizes that only the run showed wrong: a batched
            # rewrite, equal sizes (a (1, H) initial state next to a (B, H) batch),
            # or a result written into a dead operand that broadcasting made larger
            # (numpy refuses before writing). Inputs and params are never written in
            # place, so running again the plain way is safe; it gives the value or
            # the error naming the user's node. Remember the sizes for next time.
            self._fell_back.add(tuple(np.shape(x) for x in inputs))
            return self._fall_back(inputs, fed)
        return self._finish(values)

    def _fall_back(self, inputs: list, fed: Mapping[str, np.ndarray]) -> Any:
        if self.optimized:
            return self.unoptimized()(fed)
        params = [node._value for _, node in self.params]
        return self._finish(self._loop(inputs, params))

    def _finish(self, values: list) -> Any:
        # A fetched param must not alias the live array an optimizer updates.
        values = [v.copy() if d else v for v, d in zip(values, self._detach, strict=True)]
        return self.fetches.rebuild(values)

    def unoptimized(self) -> Plan:
        """The same fetches compiled without the rewrite passes (made on first use)."""
        if not isinstance(self._unoptimized, Plan):
            fetches, fed = self._unoptimized
            self._unoptimized = Plan(self.source, fetches, fed, optimize=False)
        return self._unoptimized

    def _buffers(self) -> dict[int, np.ndarray]:
        buffers = getattr(self._threads, "buffers", None)
        if buffers is None:
            buffers = self._threads.buffers = {}
        return buffers

    def _values_leaving_the_plan(self) -> set[int]:
        """Slots whose array the caller gets: fetches, and what a fetched view reads."""
        leaving = set(self.fetch_slots)
        for (_, args, out, _), node in zip(reversed(self.steps), reversed(self.step_nodes),
                                           strict=True):
            if out in leaving and node.op in _VIEWS:
                leaving.add(args[0])
        return leaving

    def _first_call(self, inputs: list, params: list, buffers: dict) -> list[Any]:
        sizes: list[int] = []
        values = self._loop(inputs, params, buffers, sizes)
        with gc_paused():
            self._body = self._generate(sizes)
        return values

    def _loop(self, inputs: list[np.ndarray], params: list[np.ndarray],
              buffers: dict | None = None, sizes: list[int] | None = None) -> list[Any]:
        vals: list[Any] = [None] * len(self.order)
        for i, value in self.consts.items():
            vals[i] = value
        for (i, _), value in zip(self.inputs, inputs, strict=True):
            vals[i] = value
        for (i, _), value in zip(self.params, params, strict=True):
            vals[i] = value
        for position, (forward, args, out, frees) in enumerate(self.steps):
            try:
                vals[out] = forward(*[vals[a] for a in args])
            except Exception as exc:
                node = self.step_nodes[position]
                raise failure(node, [vals[a] for a in args], exc) from exc
            if sizes is not None:
                sizes.append(getattr(vals[out], "nbytes", 0))
            for f in frees:
                vals[f] = None
        return [vals[s] for s in self.fetch_slots]

    def _generate(self, sizes: list[int]) -> Callable[[list, list, dict], list]:
        names: dict[str, Any] = {"into_buffer": into_buffer}
        lines = ["def plan(inputs, params, buffers):"]
        for k, (i, _) in enumerate(self.inputs):
            lines.append(f"    v{i} = inputs[{k}]")
        for k, (i, _) in enumerate(self.params):
            lines.append(f"    v{i} = params[{k}]")
        for i, value in self.consts.items():
            names[f"c{i}"] = value
            lines.append(f"    v{i} = c{i}")
        self._line_of_step: dict[int, int] = {}
        backed: set[int] = set()  # slots holding a kept buffer (directly or written in place)
        for position, (forward, args, out, frees) in enumerate(self.steps):
            names[f"f{out}"] = forward
            first_line = len(lines) + 1
            call = f"f{out}({', '.join(f'v{a}' for a in args)}"
            if position in self._stacks:
                lines.extend(stack_lines(self, position, names))
                if frees:
                    lines.append(f"    del {', '.join(f'v{f}' for f in frees)}")
                for line in range(first_line, len(lines) + 1):
                    self._line_of_step[line] = position
                continue
            self._line_of_step[first_line] = position
            target = self._reusable(position)
            if target in backed:
                if out in self._escaping:
                    target = None  # the caller's array must not be a buffer the next call reuses
                else:
                    backed.add(out)
            if self.step_nodes[position].op in _IDENTITY_WHEN_SHAPES_AGREE:
                # The common case (no broadcasting happened) costs a tuple compare, no call.
                x, like = (f"v{i}" for i in args)
                lines.append(f"    v{out} = {x} if {x}.shape == {like}.shape else {call})")
            elif target is None and self._bufferable(position, sizes[position]):
                backed.add(out)
                names[f"f{out}"] = _BUFFERED_FORWARD.get(self.step_nodes[position].op, forward)
                lines.append(f"    v{out} = into_buffer(f{out}, {out}, buffers, "
                             f"{', '.join(f'v{a}' for a in args)})")
            elif target is None:
                lines.append(f"    v{out} = {call})")
            else:
                # No shape test needed: when broadcasting makes the result larger than
                # the dead operand, numpy raises before writing, and __call__ reruns.
                lines.append(f"    v{out} = {call}, out=v{target})")
            if frees:
                lines.append(f"    del {', '.join(f'v{f}' for f in frees)}")
        lines.append(f"    return [{', '.join(f'v{s}' for s in self.fetch_slots)}]")
        self.python_source = "\n".join(lines)  # for debugging: print(plan.python_source)
        code = compile(self.python_source, f"<tinygraph plan of '{self.graph.name}'>", "exec")
        exec(code, names)  # noqa: S102 - our own generated source: identifiers only, no user text
        self._code = names["plan"].__code__
        return names["plan"]

    def _reusable(self, position: int) -> int | None:
        """A dead input slot this ufunc step can write its result into, if any.

        The value must die at this step, come from an op that returns a new
        array (a view could alias a live value), and have the result's dtype.
        """
        forward, args, _, frees = self.steps[position]
        node = self.step_nodes[position]
        if node.op not in _ELEMENTWISE or not isinstance(forward, np.ufunc) or node.attrs:
            return None
        for a in args:
            source = self.order[a]
            if (a in frees and source.op in _FRESH and source.dtype == node.dtype
                    and len(source.shape) == len(node.shape) >= 1  # 0-d results are scalars
                    and a not in self._viewed):
                return a
        return None

    def _bufferable(self, position: int, size: int) -> bool:
        """A large elementwise or matmul step whose value stays inside the plan."""
        node = self.step_nodes[position]
        forward, _, out, _ = self.steps[position]
        if size < BUFFER_MIN_BYTES or out in self._escaping:
            return False
        if node.op == "stack":
            return node.attrs.get("axis", 0) == 0
        return not node.attrs and (node.op == "matmul" or node.op in _ELEMENTWISE
                                   and isinstance(forward, np.ufunc))

    def _locate(self, exc: Exception) -> Exception:
        """Turn an exception from the generated body into an error naming the node."""
        if isinstance(exc, EvaluationError):
            return exc
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is getattr(self, "_code", None):
                position = self._line_of_step.get(tb.tb_lineno)
                if position is not None:
                    _, args, _, _ = self.steps[position]
                    frame = tb.tb_frame.f_locals
                    return failure(self.step_nodes[position],
                                   [frame.get(f"v{a}") for a in args], exc)
            tb = tb.tb_next
        return EvaluationError(f"evaluating graph '{self.graph.name}' failed: {exc}")


class CompiledGraph:
    """A callable plan: ``fn(x=arr, h0=arr)`` or positionally in ``inputs`` order.

    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> x = g.input("x", shape=(None,))
    >>> fn = g.compile(tg.sum(x * x), inputs=["x"])
    >>> float(fn(np.array([3.0, 4.0])))
    25.0
    """

    def __init__(self, graph: Graph, fetches: Any, inputs: Sequence[Any] | None,
                 optimize: bool = True):
        from .scheduler import Fetches, ancestors

        needed = [n for n in ancestors(graph, Fetches(graph, fetches).nodes) if n.op == "input"]
        if inputs is None:
            names = [n.name for n in needed if "default" not in n.attrs]
        else:
            names = [_input_name(graph, item) for item in inputs]
        self.graph = graph
        self.input_names = names
        self.plan = Plan(graph, fetches, names, optimize=optimize)
        self._input_nodes = {name: graph.nodes[name] for name in names}
        self.schedule = self.plan.order

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .scheduler import check_feed, resolve_feeds

        nodes = self._input_nodes
        if not args and len(kwargs) == len(nodes) and all(name in nodes for name in kwargs):
            # The usual call, every input by name: check each feed and run.
            return self.plan({name: check_feed(nodes[name], value)
                              for name, value in kwargs.items()})
        if len(args) > len(self.input_names):
            raise FeedError(f"compiled graph takes {len(self.input_names)} positional inputs "
                            f"({', '.join(self.input_names)}), got {len(args)}")
        feeds = dict(zip(self.input_names, args, strict=False))
        for name, value in kwargs.items():
            if name in feeds:
                raise FeedError(f"input '{name}' was given twice")
            feeds[name] = value
        fed = resolve_feeds(self.graph, feeds)
        for name in self.input_names:
            if name not in fed:
                raise missing_feed(self.graph.nodes[name], self.plan.fetches.nodes)
        extra = set(fed) - set(self.input_names)
        if extra:
            raise FeedError(f"input(s) {sorted(extra)} are not inputs of this compiled graph; "
                            f"it takes {self.input_names}")
        return self.plan(fed)

    def __repr__(self) -> str:
        return (f"<CompiledGraph of '{self.graph.name}': inputs {self.input_names}, "
                f"{len(self.plan.steps)} steps>")


def _input_name(graph: Graph, item: Any) -> str:
    node = item if isinstance(item, Node) else graph.node(item) if isinstance(item, str) else None
    if node is None or node.graph is not graph or node.op != "input":
        raise FeedError(f"compile(inputs=...) takes input nodes or their names; got {item!r}")
    return node.name

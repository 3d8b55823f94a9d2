"""Compiled plans: a schedule turned into straight-line Python over numpy.

A :class:`Plan` evaluates the fetches of one graph for one set of fed
inputs. Building one orders the needed nodes
(:func:`tinygraph.core.traverse.ancestors`) into :class:`Step` records; the
first call runs them in a loop and records each result's size, then
:mod:`tinygraph.exec.codegen` emits one Python function whose body is one
line per node::

    def plan(inputs, params, buffers):
        v0 = inputs[0]            # x
        v1 = params[0]            # W, read at call time: updates take effect
        v2 = f2(v0, v1)           # matmul
        del v0                    # dead after its last use: memory stays flat
        v3 = f3(v2)               # tanh
        return [v3]

Running that function costs one numpy call per node and almost nothing else
(about 0.05 µs per node, against ~0.3 µs for a loop over steps). Very long
plans (more than ``CODEGEN_MAX_STEPS`` nodes) skip code generation, whose
compile time grows with the line count, and keep running the loop.

The generated code assumes sizes the build could not prove (a batched
rewrite, equal sizes of a (1, H) initial state and a (B, H) batch, a result
written into a dead operand). When a call shows one wrong, the plan runs its
``fallback`` (the same fetches compiled from the graph as built, or its own
plain loop), remembers the input sizes, and says why in ``fallback_reason``.
A failure inside numpy is reported as an ``EvaluationError`` naming the node.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.forwards import dot
from ..core.gcpause import gc_paused
from ..core.node import Node
from ..core.op import LEAF_OPS, OPS, bind_forward
from ..core.shape_rules_numpy import to_numpy_index
from ..core.traverse import Fetches, ancestors
from ..errors import EvaluationError, GraphError
from .allocator import keep_freed, tune_allocator
from .buffers import stacked_matmul
from .codegen import fresh_output, generate
from .feeds import missing_feed
from .interpreter import failure, last_uses
from .projections import fuse_projections
from .scan import ScanKernel
from .stacks import stack_destinations

if TYPE_CHECKING:
    from ..core.graph import Graph

__all__ = ["Plan", "Step", "CODEGEN_MAX_STEPS"]

CODEGEN_MAX_STEPS = 20_000
_FLOATS = ("float64", "float32")


@dataclass(frozen=True, slots=True)
class Step:
    """One op node of a plan: ``values[out] = forward(*values[args])``, then ``frees`` die."""

    node: Node
    forward: Callable[..., Any]
    args: tuple[int, ...]
    out: int
    frees: tuple[int, ...]


def bind(node: Node) -> Callable:
    """The node's forward with its attributes bound, as cheap to call as possible."""
    if node.op == "getitem":
        # x[index] through operator.itemgetter: one C call, no per-run tuple building.
        index = to_numpy_index(node.attrs["index"])
        return operator.itemgetter(index[0] if len(index) == 1 else index)
    if node.op == "matmul":
        if all(len(src.shape) == 2 and src.dtype in _FLOATS for src in node.inputs):
            # Matrix by matrix: np.dot has the least overhead (0.39 µs against 0.66
            # for @ on 8 x 8), which is what a recurrence pays once per step; without
            # its array-function dispatch, less still (core/forwards.py).
            return dot
        a, b = node.inputs
        if len(a.shape) >= 3 and len(b.shape) == 2 and a.dtype == b.dtype and a.dtype in _FLOATS:
            return stacked_matmul
        return operator.matmul  # the @ operator dispatches faster than the np.matmul ufunc
    return bind_forward(node.op, node.attrs, [n.dtype for n in node.inputs], node.dtype)


class Plan:
    """``fetches`` of ``graph`` compiled for the inputs named in ``fed``.

    Parameters
    ----------
    graph, fetches
        What to evaluate (``fetches``: a node, name, or list/tuple/dict of those).
    fed : sequence of str
        The inputs a call will feed; other needed inputs must have defaults.
    fallback : callable, optional
        Makes the plan to run when this one's fast path fails (e.g. the plan of
        the graph as built, when ``graph`` is a rewritten copy). Default: this
        plan's own plain loop.

    Params are read at call time through ``graph.param_source`` (a rewritten
    graph shares the original's live arrays), so updates take effect.
    """

    @gc_paused()
    def __init__(self, graph: Graph, fetches: Any, fed: Sequence[str] = (),
                 fallback: Callable[[], Plan] | None = None):
        tune_allocator()  # once per process: freed temporaries stay mapped (allocator.py)
        self.graph = graph
        self.fetches = Fetches(graph, fetches)
        roots = self.fetches.nodes
        self.order: list[Node] = ancestors(graph, roots)
        slot = {node.name: i for i, node in enumerate(self.order)}
        dying = last_uses(self.order, {n.name for n in roots})
        self.consts: dict[int, np.ndarray] = {}
        self.params: list[tuple[int, Node]] = []
        self.inputs: list[tuple[int, Node]] = []
        self.steps: list[Step] = []
        fed_set = set(fed)
        read_outputs: dict[Node, set[int]] = {}  # multi-output node -> the outputs read
        for node in self.order:
            if node.op == "unpack":
                read_outputs.setdefault(node.inputs[0], set()).add(node.attrs["index"])
        for i, node in enumerate(self.order):
            if node.op == "input":
                if node.name in fed_set:
                    self.inputs.append((i, node))
                elif "default" in node.attrs:
                    self.consts[i] = node.attrs["default"]
                else:
                    raise missing_feed(node, roots)
            elif node.op == "param":
                self.params.append((i, graph.param_source(node)))
            elif node.op == "const":
                self.consts[i] = node.value
            else:
                # Leaves are never freed: their arrays belong to the graph or the caller.
                frees = tuple(slot[n] for n in dying.get(node.name, ())
                              if self.order[slot[n]].op not in LEAF_OPS)
                forward = (ScanKernel(node, read_outputs.get(node), Plan) if node.op == "scan"
                           else bind(node))
                self.steps.append(Step(node, forward, tuple(slot[s.name] for s in node.inputs),
                                   i, frees))
        self.fetch_slots = [slot[n.name] for n in roots]
        self.steps = fuse_projections(self.steps, self.fetch_slots)
        self.input_names = [node.name for _, node in self.inputs]
        self._detach = [n.op == "param" for n in roots]
        self.escaping = self._values_leaving_the_plan()
        self.stacks = stack_destinations(self.steps, self.escaping)
        self.viewed = self._values_seen_through_views()
        self.fallback: Plan | Callable[[], Plan] | None = fallback
        self.fallback_reason: str | None = None  # why the last fallback happened, if one did
        self._failed_sizes: set[tuple] = set()  # input sizes the fast path failed on
        self.python_source: str | None = None  # the generated code, once made
        # A scan's body, run once per step: its code may call kernels that are only
        # accurate enough for a loop's sums (a tanh from exp: core/fast_tanh.py).
        self.in_loop = False
        self.line_of_step: dict[int, int] = {}  # generated line -> step position
        self.slot_names: dict[int, str] = {}  # slot -> the generated code's local for it
        self._code: Any = None
        self._threads = threading.local()  # per-thread output buffers, see buffers.py
        # The first call runs the loop and records each step's result size; code is
        # generated after it, so large steps can be given buffers.
        self._body = self._first_call if len(self.steps) <= CODEGEN_MAX_STEPS else self._loop

    # -------------------------------------------------------------- running
    def __call__(self, fed: Mapping[str, np.ndarray]) -> Any:
        """Evaluate with already-checked feeds (input name -> array)."""
        inputs = [fed[node.name] for _, node in self.inputs]
        if self._failed_sizes and tuple(np.shape(x) for x in inputs) in self._failed_sizes:
            return self._fall_back(inputs, fed)  # these input sizes failed the fast path before
        params = [node._value for _, node in self.params]
        try:
            values = self._body(inputs, params, self._buffers())
        except Exception as exc:
            if self.fallback is None and (isinstance(exc, GraphError) or self._body == self._loop):
                raise exc if isinstance(exc, GraphError) else self._locate(exc) from exc
            # Inputs and params are never written in place, so running again the
            # plain way is safe; it gives the value or the error naming the node.
            self._failed_sizes.add(tuple(np.shape(x) for x in inputs))
            self.fallback_reason = (f"the fast path failed for input sizes "
                                    f"{[np.shape(x) for x in inputs]}: "
                                    f"{type(exc).__name__}: {exc}")
            return self._fall_back(inputs, fed)
        return self._finish(values)

    def _fall_back(self, inputs: list, fed: Mapping[str, np.ndarray]) -> Any:
        if self.fallback is not None:
            if not isinstance(self.fallback, Plan):
                self.fallback = self.fallback()  # made on first need, then kept
            return self.fallback(fed)
        params = [node._value for _, node in self.params]
        return self._finish(self._loop(inputs, params))

    def _finish(self, values: list) -> Any:
        # A fetched param must not alias the live array an optimizer updates.
        values = [v.copy() if d else v for v, d in zip(values, self._detach, strict=True)]
        return self.fetches.rebuild(values)

    def _buffers(self) -> dict[int, np.ndarray]:
        buffers = getattr(self._threads, "buffers", None)
        if buffers is None:
            buffers = self._threads.buffers = {}
        return buffers

    def _values_leaving_the_plan(self) -> set[int]:
        """Slots whose array the caller gets: fetches, and whatever a fetched value may alias.

        An op that is not known to return a fresh array (a view, a shape helper
        that may return its input, a user's op) may hand out its inputs' memory,
        so those inputs leave the plan too, and never live in a reused buffer.
        """
        leaving = set(self.fetch_slots)
        for step in reversed(self.steps):
            if step.out not in leaving or OPS[step.node.op].fresh or fresh_output(step.node):
                continue
            leaving.update(step.args)
        return leaving

    def _values_seen_through_views(self) -> set[int]:
        """Slots a view may read, or a stack is written into: never overwritten in place."""
        viewed = {a for step in self.steps if not OPS[step.node.op].fresh for a in step.args}
        for destination in {id(d): d for d in self.stacks.values()}.values():
            viewed.update(destination.parts)
            viewed.add(destination.out)
        return viewed

    def _first_call(self, inputs: list, params: list, buffers: dict) -> list[Any]:
        sizes: list[int] = []
        values = self._loop(inputs, params, buffers, sizes)
        keep_freed(sum(sizes))  # the next calls reuse these pages instead of faulting them in
        with gc_paused():
            self._body, self.python_source, self.line_of_step, self.slot_names = generate(
                self, sizes)
            self._code = self._body.__code__
        return values

    def _loop(self, inputs: list[np.ndarray], params: Sequence[np.ndarray | None],
              buffers: dict | None = None, sizes: list[int] | None = None) -> list[Any]:
        vals: list[Any] = [None] * len(self.order)
        for i, value in self.consts.items():
            vals[i] = value
        for (i, _), value in zip(self.inputs, inputs, strict=True):
            vals[i] = value
        for (i, _), param in zip(self.params, params, strict=True):
            vals[i] = param
        for step in self.steps:
            try:
                vals[step.out] = step.forward(*[vals[a] for a in step.args])
            except GraphError:
                raise  # already names what is wrong (a kernel's own check, e.g. scan lengths)
            except Exception as exc:
                raise failure(step.node, [vals[a] for a in step.args], exc) from exc
            if sizes is not None:
                sizes.append(getattr(vals[step.out], "nbytes", 0))
            for f in step.frees:
                vals[f] = None
        return [vals[s] for s in self.fetch_slots]

    def _locate(self, exc: Exception) -> Exception:
        """Turn an exception from the generated body into an error naming the node."""
        if isinstance(exc, EvaluationError):
            return exc
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is self._code:
                position = self.line_of_step.get(tb.tb_lineno)
                if position is not None:
                    step = self.steps[position]
                    local, shared = tb.tb_frame.f_locals, tb.tb_frame.f_globals  # consts: globals
                    names = [self.slot_names[a] for a in step.args]
                    return failure(step.node, [local.get(n, shared.get(n)) for n in names], exc)
            tb = tb.tb_next
        return EvaluationError(f"evaluating graph '{self.graph.name}' failed: {exc}")

    def __repr__(self) -> str:
        return (f"<Plan of '{self.graph.name}': {len(self.steps)} steps, "
                f"inputs {self.input_names}>")

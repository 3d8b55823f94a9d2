"""The scan kernel: a scan node's body compiled once, run T times in a generated loop.

A :class:`ScanKernel` compiles the body graph into a :class:`Plan` and, on
the first call, generates a loop specialised to the node (how many carry
parts, sequences, captured values and outputs it has), with the body's
generated code inline (:mod:`tinygraph.exec.scan_loop`). Memory is the
stacked outputs plus one carry: no graph and no value per step survive the
step. Steps 0 and 1 run on their own first, to learn the outputs' shapes (a
``(1, H)`` initial carry may meet a batch in step 0); once a call showed the
carries keep their shapes, later calls with inputs of the same shapes and
dtypes run every step in the loop. If the fast loop fails (e.g. a size only the
run shows wrong), the scan runs again through the body's plain step loop, whose
error names the body node.
:func:`tinygraph.exec.interpreter.interpret_scan` is the reference: the
interpreter on the body, one step at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.loop_weight import loop_weight
from ..core.node import Node
from ..errors import EvaluationError, FeedError, GraphError
from .projections import ProjectedRows, project
from .scan_loop import generate_loop

__all__ = ["ScanKernel", "scan_steps", "empty_outputs"]


def scan_steps(node: Node, xs: Sequence[np.ndarray]) -> int:
    """T for this run: the sequences' common length (or the node's ``length``)."""
    lengths = {len(x) if np.ndim(x) else -1 for x in xs}
    if node.attrs["length"] is not None:
        lengths.add(node.attrs["length"])
    if len(lengths) > 1 or -1 in lengths:
        names = ", ".join(f"'{s.name}' {np.shape(x)}" for s, x in
                          zip(node.inputs[node.attrs["num_carry"]:], xs, strict=False))
        raise FeedError(f"scan '{node.name}': the sequences fed together have different "
                        f"lengths: {names}; every sequence needs the same number of steps")
    return lengths.pop() if lengths else 0


class ScanKernel:
    """The forward of one scan node (see the module docstring).

    ``needed``: the output indices something reads (the others, such as the
    saved carries when no gradient runs, are not stored). ``make_plan``
    compiles the body (:class:`~tinygraph.exec.plan.Plan`, passed in by the
    plan that binds this kernel).
    """

    def __init__(self, node: Node, needed: set[int] | None, make_plan: Any):
        a = node.attrs
        self.node = node
        self.k, self.m, self.ny = a["num_carry"], a["num_xs"], a["num_ys"]
        body = a["body"]
        self.plan = make_plan(body, [body.node(n) for n in a["outputs"][:self.k + self.ny]],
                         fed=a["inputs"])
        self.plan.in_loop = True  # its generated code may use loop-only kernels (codegen.py)
        position = {name: i for i, name in enumerate(a["inputs"])}
        self.arg_of_input = [position[n.name] for _, n in self.plan.inputs]
        self.weights = self._loop_weights(a["inputs"])
        everything = set(range(2 * self.k + self.ny))
        self.needed = everything if needed is None else set(needed) | set(range(self.k))
        self._loop: Any = None
        self.loop_source: str | None = None
        # Input shapes and dtypes -> how their outputs were laid out (and rows per step),
        # for inputs whose carries keep their shapes: such calls run every step in the loop.
        self._layouts: dict[tuple, tuple] = {}
        # Sequences fed as the operands of their projection: (sequence index, has a bias,
        # whether its row may live in one buffer for all steps).
        self._projected: list[tuple[int, bool, bool]] = []

    def project_inputs(self, projected: list[tuple[int, bool]]) -> None:
        """Sequences ``j`` come as ``X`` with ``W`` (and ``b``) after the other arguments:
        the scan computes ``X @ W (+ b)`` itself (:mod:`tinygraph.exec.projections`)."""
        self._projected = [(j, biased, self._reusable(j)) for j, biased in projected]

    def __call__(self, *args: np.ndarray) -> tuple:
        k, m = self.k, self.m
        if self._projected:
            args = self._projections(args)
        steps = scan_steps(self.node, args[k:k + m])
        try:
            return self._run(args, steps, fast=True)
        except GraphError:
            raise
        except Exception:  # noqa: BLE001 - rerun the plain way: its error names the node
            return self._run(args, steps, fast=False)

    def _projections(self, args: Sequence[Any]) -> tuple:
        """The arguments with each projected sequence made (whole, or row by row)."""
        count = len(self.node.inputs)
        out, extra = list(args[:count]), iter(args[count:])
        for j, biased, reusable in self._projected:
            w = next(extra)
            b = next(extra) if biased else None
            out[self.k + j] = project(out[self.k + j], w, b, reusable)
        return tuple(out)

    def _reusable(self, j: int) -> bool:
        """Whether sequence ``j``'s row can live in one buffer for all steps: nothing a
        step returns may alias it (a carry that is the row itself would be overwritten
        by the next row)."""
        name = self.node.attrs["inputs"][self.k + j]
        return all(node.name != name or slot not in self.plan.escaping
                   for slot, node in self.plan.inputs)

    def _loop_weights(self, names: Sequence[str]) -> list[int]:
        """The captured values (argument positions) the body reads only as ``rows @ w``.

        They are handed to the loop in the layout that multiplies fastest here
        (:func:`~tinygraph.core.loop_weight.loop_weight`): at most one copy per run.
        """
        readers: dict[str, list[tuple[Node, int]]] = {}
        for step in self.plan.steps:
            for slot, src in enumerate(step.node.inputs):
                readers.setdefault(src.name, []).append((step.node, slot))
        start = self.k + self.m
        return [j for j in range(start, len(names))
                if readers.get(names[j]) and all(
                    node.op == "matmul" and slot == 1 and len(node.inputs[1].shape) == 2
                    for node, slot in readers[names[j]])]

    def _run(self, args: Sequence[np.ndarray], steps: int, fast: bool) -> tuple:
        k, m, ny = self.k, self.m, self.ny
        carry = list(args[:k])
        xs = args[k:k + m]
        plan = self.plan
        params = [p._value for _, p in plan.params]
        order = range(steps - 1, -1, -1) if self.node.attrs["reverse"] else range(steps)
        if steps == 0:
            return (*carry, *empty_outputs(self.node, carry, args))
        key = _signature(args, k, m) if fast else ()
        known = self._layouts.get(key) if fast else None
        if known is not None:  # every step in the generated loop (see below)
            return self._run_known(args, order, params, known)
        # Steps 0 and 1 run here: a (1, H) initial carry may meet a batch of B in step 0,
        # so outputs are allocated in the shape both steps broadcast to. Step 0 runs the
        # plain way: the generated body writes results into dead operands, and a (1, H)
        # carry's product cannot hold a (B, H) sum (the fast path would fail on every call).
        head = order[:2]
        outs = []
        for i, t in enumerate(head):
            step = self._step([*carry, *[x[t] for x in xs], *args[k + m:]], params,
                              fast and i > 0)
            outs.append((list(step), list(carry)))
            carry = list(outs[-1][0][:k])
        # Carries that kept their shapes through step 0: later calls with these inputs
        # may run step 0 in the generated loop too.
        stable = fast and all(_shape(a) == _shape(c) for a, c in zip(args[:k], carry, strict=True))
        ys = [self._alloc(steps, [o[k + j] for o, _ in outs]) if k + j in self.needed else None
              for j in range(ny)]
        # Saved carries take the shape every carry broadcasts to, the new ones included
        # (one step of a (1, H) init against a batch of B leaves a (B, H) final carry).
        saved = [self._alloc(steps, [c[i] for _, c in outs] + [o[i] for o, _ in outs])
                 if k + ny + i in self.needed else None for i in range(k)]
        for t, (out, before) in zip(head, outs, strict=True):
            self._store(t, out, before, ys, saved)
        rest = order[2:]
        # Rows per step as the loop runs them (after step 0, a (1, H) init has met the batch).
        rows = math.prod(_shape(carry[0])[:-1]) if k else 0
        consts = self._laid_out(args[k + m:], rows, len(rest))
        if fast:
            loop = self._loop or self._generate()
            carry = loop(plan._body, params, plan._buffers(), rest, *carry, *xs, *consts,
                         *ys, *saved)
            if stable:  # the next call with inputs like these runs every step in the loop
                self._layouts[key] = ([_layout(y) for y in ys], [_layout(c) for c in saved],
                                      rows)
        else:
            for t in rest:
                full = [*carry, *[x[t] for x in xs], *consts]
                out = self._step(full, params, fast)
                self._store(t, out, carry, ys, saved)
                carry = list(out[:k])
        return (*carry, *ys, *saved)

    def _run_known(self, args: Sequence[np.ndarray], order: range, params: list,
                   known: tuple) -> tuple:
        """All steps in the generated loop, outputs allocated as a call with inputs of these
        shapes and dtypes allocated them (its carries kept their shapes through step 0)."""
        k, m = self.k, self.m
        ys_layout, saved_layout, rows = known
        steps = len(order)
        ys = [_empty(steps, spec) for spec in ys_layout]
        saved = [_empty(steps, spec) for spec in saved_layout]
        consts = self._laid_out(args[k + m:], rows, steps)
        loop = self._loop or self._generate()
        carry = loop(self.plan._body, params, self.plan._buffers(), order, *args[:k],
                     *args[k:k + m], *consts, *ys, *saved)
        return (*carry, *ys, *saved)

    def _laid_out(self, consts: Sequence[Any], rows: int, steps: int) -> list:
        """The captured values, the weights among them laid out for the loop's products."""
        consts = list(consts)
        start = self.k + self.m
        for j in self.weights:
            consts[j - start] = loop_weight(consts[j - start], rows, steps)
        return consts

    def _store(self, t: int, out: list, before: list, ys: list, saved: list) -> None:
        """Step ``t``'s per-step outputs and the carries it started from, where stored."""
        for j, y in enumerate(ys):
            if y is not None:
                y[t] = out[self.k + j]
        for i, s in enumerate(saved):
            if s is not None:
                s[t] = before[i]

    def _step(self, full: list, params: list, fast: bool) -> list:
        inputs = [full[i] for i in self.arg_of_input]
        if fast:
            return self.plan._body(inputs, params, self.plan._buffers())
        try:
            return self.plan._loop(inputs, params)
        except EvaluationError as exc:
            raise EvaluationError(f"scan '{self.node.name}', in its body: {exc}") from None

    @staticmethod
    def _alloc(steps: int, rows: list) -> np.ndarray:
        """Room for ``steps`` rows of the shape the first ``rows`` broadcast to."""
        shapes = {_shape(r) for r in rows}  # one shape, one dtype: the usual case, and
        dtypes = {getattr(r, "dtype", None) for r in rows}  # numpy's general path costs
        shape = shapes.pop() if len(shapes) == 1 else np.broadcast_shapes(*shapes)  # ~20 µs
        dtype = dtypes.pop() if len(dtypes) == 1 and None not in dtypes else np.result_type(*rows)
        return np.empty((steps, *shape), dtype)

    def _generate(self) -> Any:
        """The loop over steps 2.. (see :mod:`tinygraph.exec.scan_loop`)."""
        self._loop, self.loop_source = generate_loop(self)
        return self._loop


def _signature(args: Sequence[Any], k: int, m: int) -> tuple:
    """The shapes and dtypes of a scan's arguments, a sequence's without its length: what
    its outputs' layout depends on."""
    return tuple(((a.shape[1:] if k <= i < k + m else a.shape), a.dtype)
                 if isinstance(a, np.ndarray | ProjectedRows) else (np.shape(a), type(a))
                 for i, a in enumerate(args))


def _layout(out: np.ndarray | None) -> tuple | None:
    """A stacked output's row shape and dtype (None: not stored)."""
    return None if out is None else (out.shape[1:], out.dtype)


def _empty(steps: int, layout: tuple | None) -> np.ndarray | None:
    """Room for ``steps`` rows of a :func:`_layout` (None: not stored)."""
    return None if layout is None else np.empty((steps, *layout[0]), layout[1])


def _shape(value: Any) -> tuple:
    """``np.shape(value)``, without its dispatch for an array (~1 µs, several per call)."""
    return value.shape if isinstance(value, np.ndarray) else np.shape(value)


def empty_outputs(node: Node, init: Sequence[np.ndarray],
                  args: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """T = 0: empty stacks of a scan's per-step outputs (saved carries: of the initial
    carries' shapes, which they would have held). A step's output shape comes from the
    body's shape rules run on the actual carries, rows of the sequences and captured
    values (``args``: the scan's inputs), so an unknown batch size is the one fed;
    without them, from the outputs' static shapes (unknown sizes: 0)."""
    a = node.attrs
    k, ny = a["num_carry"], a["num_ys"]
    outs = [a["body"].node(n) for n in a["outputs"][k:]]
    shapes = _step_shapes(node, args) if len(args) == len(node.inputs) else None
    stacks = [np.empty((0, *(shapes[o.name] if shapes and o.name in shapes
                             else tuple(d or 0 for d in o.shape))), o.dtype) for o in outs[:ny]]
    return stacks + [np.empty((0, *np.shape(c)), o.dtype)
                     for c, o in zip(init, outs[ny:], strict=True)]


def _step_shapes(node: Node, args: Sequence[np.ndarray]) -> dict[str, tuple] | None:
    """Every body node's shape for one step of these inputs (None if a rule refuses)."""
    from ..core.op import OPS  # the shape rules of the ops a body holds

    a = node.attrs
    k, m = a["num_carry"], a["num_xs"]
    body = a["body"]
    specs: dict[str, tuple] = {}
    for j, (name, value) in enumerate(zip(a["inputs"], args, strict=True)):
        shape = np.shape(value)
        specs[name] = shape[1:] if k <= j < k + m else shape
    try:
        for n in body.nodes.values():
            if n.op == "const":
                specs[n.name] = np.shape(n.value)
            elif n.op in OPS:
                specs[n.name] = OPS[n.op].infer([(specs[s.name], s.dtype) for s in n.inputs],
                                                n.attrs)[0]
    except Exception:  # noqa: BLE001 - a refusal here is the body's own error at T > 0
        return None
    return specs

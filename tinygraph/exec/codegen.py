"""Code generation for a :class:`~tinygraph.exec.plan.Plan`: one Python line per step.

Besides the plain ``v3 = f3(v1, v2)``, a line may

- write an elementwise result into a dead operand (``out=v1``): no allocation;
- write a large result into a buffer the plan keeps between calls
  (:mod:`tinygraph.exec.buffers`), unless the value reaches the caller;
- write the parts of a stack straight into its rows (:mod:`tinygraph.exec.stacks`);
- skip a reverse-mode shape helper when the shapes already agree (a tuple compare);
- in a loop's body, call a faster function for the same maths where this machine
  has one (a large float64 tanh from exp: :mod:`tinygraph.core.fast_tanh`).

The source is kept as ``plan.python_source`` for debugging.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.fast_tanh import tanh_kernel
from ..core.forwards import dot
from ..core.node import Node
from ..core.op import OPS
from .buffers import buffer_min_bytes, into_buffer, stack_into, stacked_matmul
from .stacks import stack_lines

if TYPE_CHECKING:
    from .plan import Plan

__all__ = ["generate", "fresh_output"]

# Forwards that take out= for the steps plans keep buffers for (other ops: their own).
_BUFFERED_FORWARD = {"matmul": np.matmul, "stack": stack_into}


def generate(plan: Plan, sizes: list[int]
             ) -> tuple[Callable, str, dict[int, int], dict[int, str]]:
    """The plan's function, its source, the step position of each source line, and the
    local variable holding each slot (see :func:`_registers`).

    ``sizes`` holds each step's result size in bytes from a first run.
    """
    names: dict[str, Any] = {"into_buffer": into_buffer}
    lines = ["def plan(inputs, params, buffers):"]
    registers = _Registers(plan)
    for i, value in plan.consts.items():
        names[f"c{i}"] = value  # read as a global: no local, no load line
    for slot in registers.loads_first:
        lines.append(registers.load(slot))
    line_of_step: dict[int, int] = {}
    smallest_buffer = buffer_min_bytes()
    backed: set[int] = set()  # slots holding a kept buffer (directly or written in place)
    for position, step in enumerate(plan.steps):
        lines += [registers.load(slot) for slot in registers.loads_at.get(position, ())]
        registers.take(step.out)
        out, args = step.out, step.args
        frees = (*step.frees, *registers.drops_at.get(position, ()))
        names[f"f{out}"] = _faster_kernel(plan, step, step.forward, sizes[position])
        first_line = len(lines) + 1
        call = f"f{out}({', '.join(f'v{a}' for a in args)}"
        if position in plan.stacks:
            lines.extend(stack_lines(plan.steps, plan.stacks, position, names))
            if frees:
                lines.append(f"    del {', '.join(f'v{f}' for f in frees)}")
            registers.release(frees)
            for line in range(first_line, len(lines) + 1):
                line_of_step[line] = position
            continue
        line_of_step[first_line] = position
        target = _reusable(plan, position)
        if target in backed:
            if out in plan.escaping:
                target = None  # the caller's array must not be a buffer the next call reuses
            else:
                backed.add(out)
        if OPS[step.node.op].identity_when_shapes_agree:
            # The common case (no broadcasting happened) costs a tuple compare, no call.
            x, like = (f"v{i}" for i in args)
            lines.append(f"    v{out} = {x} if {x}.shape == {like}.shape else {call})")
        elif target is None and _bufferable(plan, position, sizes[position], smallest_buffer):
            backed.add(out)
            # np.dot and the stacked matmul take out= themselves (np.dot of two matrices
            # is about twice as fast as the np.matmul ufunc writing into a buffer).
            names[f"f{out}"] = (step.forward if step.forward in (stacked_matmul, dot)
                                else _BUFFERED_FORWARD.get(step.node.op, names[f"f{out}"]))
            lines.append(f"    v{out} = into_buffer(f{out}, {out}, buffers, "
                         f"{', '.join(f'v{a}' for a in args)})")
        elif target is None:
            lines.append(f"    v{out} = {call})")
        else:
            # No shape test needed: when broadcasting makes the result larger than
            # the dead operand, numpy raises before writing, and the plan falls back.
            lines.append(f"    v{out} = {call}, out=v{target})")
        if frees:
            lines.append(f"    del {', '.join(f'v{f}' for f in frees)}")
        registers.release(frees)
    lines.append(f"    return [{', '.join(f'v{s}' for s in plan.fetch_slots)}]")
    source = _SLOT.sub(lambda m: registers.names[int(m.group(1))], "\n".join(lines))
    code = compile(source, f"<tinygraph plan of '{plan.graph.name}'>", "exec")
    exec(code, names)  # noqa: S102 - our own generated source: identifiers only, no user text
    return names["plan"], source, line_of_step, registers.names


_SLOT = re.compile(r"\bv(\d+)\b")
# With more inputs and params than this, each is loaded just before its first reader
# and dropped after its last (an unrolled net's T step inputs are not all live at once).
_LAZY_LEAVES = 32


class _Registers:
    """The local variable holding each slot, reusing the names of dead values.

    One local per slot would give a plan of thousands of steps a frame of thousands
    of locals, and CPython 3.11 then maps a new block of its frame stack on every call
    of the plan and of each Python function it calls, and unmaps it on return (a
    1,800-step plan measured 2.4x slower called from inside a function). With names
    reused, a frame holds about as many locals as values are live at once. Consts are
    read as globals (``c<slot>``). ``take`` and ``release`` must be called in the order
    the lines are generated.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.names: dict[int, str] = {i: f"c{i}" for i in plan.consts}
        self._free: list[int] = []
        self._count = 0
        self._source = {i: f"inputs[{k}]" for k, (i, _) in enumerate(plan.inputs)}
        self._source.update({i: f"params[{k}]" for k, (i, _) in enumerate(plan.params)})
        self.loads_at: dict[int, list[int]] = {}  # step position -> leaves loaded before it
        self.drops_at: dict[int, list[int]] = {}  # step position -> leaves dropped after it
        if len(self._source) <= _LAZY_LEAVES:
            self.loads_first = list(self._source)
            return
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for position, step in enumerate(plan.steps):
            for a in step.args:
                if a in self._source:
                    first.setdefault(a, position)
                    last[a] = position
        self.loads_first = [i for i in self._source if i not in first]
        fetched = set(plan.fetch_slots)
        for slot, position in first.items():
            self.loads_at.setdefault(position, []).append(slot)
        for slot, position in last.items():
            if slot not in fetched:
                self.drops_at.setdefault(position, []).append(slot)

    def load(self, slot: int) -> str:
        self.take(slot)
        return f"    v{slot} = {self._source[slot]}"

    def take(self, slot: int) -> None:
        if self._free:
            self.names[slot] = f"r{heapq.heappop(self._free)}"
        else:
            self.names[slot] = f"r{self._count}"
            self._count += 1

    def release(self, slots: Any) -> None:
        for slot in slots:
            heapq.heappush(self._free, int(self.names[slot][1:]))


def _faster_kernel(plan: Plan, step: Any, forward: Callable, size: int) -> Callable:
    """``forward``, or a faster function computing nearly the same for this step's size:
    in a loop's body, a large float64 tanh from exp where numpy's tanh is slow
    (:mod:`tinygraph.core.fast_tanh`, which says why only there)."""
    if plan.in_loop and forward is np.tanh and not step.node.attrs:
        return tanh_kernel(size // step.node.dtype.itemsize, step.node.dtype)
    return forward


def fresh_output(node: Node) -> bool:
    """An output of a multi-output op that its forward allocates on every run: a scan's
    stacked per-step output, or any output of an op marked ``fresh`` (the fused loss).

    (A scan's final carry may be the init, a captured value or a row of a sequence.)
    """
    if node.op != "unpack":
        return False
    source = node.inputs[0]
    if source.op == "scan":
        return node.attrs["index"] >= source.attrs["num_carry"]
    return source.op in OPS and OPS[source.op].fresh


def _reusable(plan: Plan, position: int) -> int | None:
    """A dead input slot this ufunc step can write its result into, if any.

    The value must die at this step, come from an op that returns a new
    array (a view could alias a live value), and have the result's dtype and
    no known size that differs from the result's: a ``(B, 1)`` operand of a
    ``(B, H)`` result would make numpy refuse the ``out=`` on every call, and
    the plan fall back to the graph as built.
    """
    step = plan.steps[position]
    node = step.node
    takes_out = isinstance(step.forward, np.ufunc) or getattr(step.forward, "takes_out", False)
    if not OPS[node.op].elementwise or not takes_out or node.attrs:
        return None
    for a in step.args:
        source = plan.order[a]
        if (a in step.frees and (source.op in OPS and OPS[source.op].fresh
                                     or fresh_output(source))
                and source.dtype == node.dtype
                and len(source.shape) == len(node.shape) >= 1  # 0-d results are scalars
                and all(d is None or r is None or d == r
                        for d, r in zip(source.shape, node.shape, strict=True))
                and a not in plan.viewed):
            return a
    return None


def _bufferable(plan: Plan, position: int, size: int, smallest: int) -> bool:
    """A large elementwise or matmul step whose value stays inside the plan."""
    step = plan.steps[position]
    node = step.node
    if size < smallest or step.out in plan.escaping:
        return False
    if node.op == "stack":
        return node.attrs.get("axis", 0) == 0
    return not node.attrs and (node.op == "matmul" or OPS[node.op].elementwise
                               and isinstance(step.forward, np.ufunc))

"""Stacks written in place: the parts of ``stack(p_0, …, p_T-1)`` computed into it.

An unrolled graph stacks per-step values — the states, to project them all
at once — and ``np.stack`` copies every part. When each part comes from an
elementwise ufunc step of the plan, that step can write its result straight
into row t of the stack's array (``out=S[t]``), and the stack step then only
hands the array on: no copy. Each part becomes a view of the stack, so no
later step may overwrite a part or the stack in place (the plan treats them
as viewed).

This module decides which stacks qualify and writes their lines of the
plan's generated code. At run time a part whose shape differs from the first part's is
computed the ordinary way and the stack falls back to copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .buffers import result_shape, stack_buffer

if TYPE_CHECKING:
    from .plan import Plan

__all__ = ["StackDestination", "stack_destinations", "stack_lines"]

# Ops whose ufunc forward can write into row t of the stack's array.
_WRITABLE = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "exp", "log", "sign"}


@dataclass
class StackDestination:
    """A stack step whose parts are written into its array by their own steps."""

    position: int  # the stack's step
    out: int  # the stack's slot
    parts: list[int]  # part slots, in stack order
    first: int  # the step position that computes a part first (allocates the array)
    keep: bool  # the array may be kept between calls (nothing of it reaches the caller)
    row_of: dict[int, int] = field(default_factory=dict)  # part slot -> row


def stack_destinations(plan: Plan) -> dict[int, StackDestination]:
    """step position of each part (and of each qualifying stack) -> its destination."""
    producer = {out: position for position, (_, _, out, _) in enumerate(plan.steps)}
    claimed: set[int] = set()
    found: dict[int, StackDestination] = {}
    for position, node in enumerate(plan.step_nodes):
        _, args, out, _ = plan.steps[position]
        if (node.op != "stack" or node.attrs.get("axis", 0) != 0 or len(args) < 2
                or len(set(args)) != len(args) or claimed.intersection(args)):
            continue
        makers = [producer.get(a) for a in args]
        if None in makers or not all(
            plan.step_nodes[m].op in _WRITABLE and not plan.step_nodes[m].attrs
            and isinstance(plan.steps[m][0], np.ufunc)
            and plan.step_nodes[m].dtype == node.dtype for m in makers
        ):
            continue
        keep = out not in plan._escaping and not plan._escaping.intersection(args)
        destination = StackDestination(position, out, list(args), min(makers), keep,
                                       {a: t for t, a in enumerate(args)})
        claimed.update(args)
        found[position] = destination
        for maker in makers:
            found[maker] = destination
    return found


def stack_lines(plan: Plan, position: int, names: dict[str, Any]) -> list[str]:
    """The generated lines of a stack written in place, or of one of its parts."""
    d = plan._stacks[position]
    _, args, out, _ = plan.steps[position]
    call = f"f{out}({', '.join(f'v{a}' for a in args)}"
    if position == d.position:
        return [f"    v{out} = sb{out} if ok{out} else {call})"]
    lines = []
    if position == d.first:
        names.setdefault("stack_buffer", stack_buffer)
        names.setdefault("result_shape", result_shape)
        names[f"dt{d.out}"] = plan.step_nodes[d.position].dtype
        lines += [f"    sb{d.out} = stack_buffer({d.out}, {'buffers' if d.keep else 'None'}, "
                  f"{len(d.parts)}, result_shape(f{out}, ({''.join(f'v{a}, ' for a in args)}"
                  f")), dt{d.out})",
                  f"    ok{d.out} = True",
                  f"    rs{d.out} = sb{d.out}.shape[1:]"]
    # A smaller part would be broadcast into its row without complaint: test it.
    fits = " and ".join(f"v{a}.shape == rs{d.out}" for a in args)
    lines += [f"    if {fits}:",
              f"        v{out} = {call}, out=sb{d.out}[{d.row_of[out]}])",
              "    else:",
              f"        v{out} = {call})",
              f"        ok{d.out} = False"]
    return lines

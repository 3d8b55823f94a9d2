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

from ..core.op import OPS
from .buffers import result_shape, stack_buffer

if TYPE_CHECKING:
    from .plan import Step

__all__ = ["StackDestination", "stack_destinations", "stack_lines"]


@dataclass
class StackDestination:
    """A stack step whose parts are written into its array by their own steps."""

    position: int  # the stack's step
    out: int  # the stack's slot
    parts: list[int]  # part slots, in stack order
    first: int  # the step position that computes a part first (allocates the array)
    keep: bool  # the array may be kept between calls (nothing of it reaches the caller)
    row_of: dict[int, int] = field(default_factory=dict)  # part slot -> row


def stack_destinations(steps: list[Step], escaping: set[int]) -> dict[int, StackDestination]:
    """step position of each part (and of each qualifying stack) -> its destination.

    ``escaping``: the slots whose arrays reach the caller (their stack gets a
    new array every call instead of a kept one).
    """
    producer = {step.out: position for position, step in enumerate(steps)}
    claimed: set[int] = set()
    found: dict[int, StackDestination] = {}
    for position, step in enumerate(steps):
        node, args, out = step.node, step.args, step.out
        if (node.op != "stack" or node.attrs.get("axis", 0) != 0 or len(args) < 2
                or len(set(args)) != len(args) or claimed.intersection(args)):
            continue
        makers: list[Any] = [producer.get(a) for a in args]  # ints once None is ruled out
        if None in makers or not all(
            OPS[steps[m].node.op].elementwise and not steps[m].node.attrs
            and isinstance(steps[m].forward, np.ufunc)
            and steps[m].node.dtype == node.dtype for m in makers
        ):
            continue
        keep = out not in escaping and not escaping.intersection(args)
        destination = StackDestination(position, out, list(args), min(makers), keep,
                                       {a: t for t, a in enumerate(args)})
        claimed.update(args)
        found[position] = destination
        for maker in makers:
            found[maker] = destination
    return found


def stack_lines(steps: list[Step], stacks: dict[int, StackDestination], position: int,
                names: dict[str, Any]) -> list[str]:
    """The generated lines of a stack written in place, or of one of its parts."""
    d = stacks[position]
    args, out = steps[position].args, steps[position].out
    call = f"f{out}({', '.join(f'v{a}' for a in args)}"
    if position == d.position:
        return [f"    v{out} = sb{out} if ok{out} else {call})"]
    lines = []
    if position == d.first:
        names.setdefault("stack_buffer", stack_buffer)
        names.setdefault("result_shape", result_shape)
        names[f"dt{d.out}"] = steps[d.position].node.dtype
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

"""The generated loop a :class:`~tinygraph.exec.scan.ScanKernel` runs steps 2.. in.

With the body's plan generated (its second step on), the loop holds the body's
code inline, so a step costs its numpy calls and little else::

    def loop(body, params, buffers, ts, c0, x0, k0, y0, s0):
        r3 = k0                                  # captured values and params: once
        with errstate(over="ignore"):            # only if the body has a sigmoid or a large tanh
            for t in ts:
                r0 = c0
                r1 = x0[t]
                r4 = f4(r0, r3)
                r5 = f5(r4, r1, out=r4)
                y0[t] = r5                       # per-step outputs, preallocated
                s0[t] = c0                       # saved carries (only if read)
                c0 = r5
        return [c0]

- Params and captured values are loaded once, before the loop (a plan never frees
  or overwrites a leaf).
- Sigmoid's overflow (``exp(-x)`` for x < -709, result 0) is ignored once for the
  loop instead of in every call: entering numpy's errstate costs ~0.6 µs. So is the
  overflow of a large tanh's ``exp(-2 x)``
  (:func:`~tinygraph.core.fast_tanh.large_tanh_unguarded`: five calls where the
  guarded exp form takes seven).

Without generated body code (its first call, or a body that loads its inputs
lazily) the loop calls the body's plan once per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.fast_tanh import UNGUARDED_TANH
from ..core.forwards import sigmoid_forward, sigmoid_unguarded

if TYPE_CHECKING:
    from .plan import Plan
    from .scan import ScanKernel

__all__ = ["UNGUARDED", "generate_loop"]

# (kernel that guards against overflow in every call, the same function for a loop that
# ignores overflow once for all its steps): the guard costs an errstate or two calls.
UNGUARDED: tuple[tuple[Any, Any], ...] = ((sigmoid_forward, sigmoid_unguarded),
                                          *UNGUARDED_TANH)

def generate_loop(kernel: ScanKernel) -> tuple[Any, str]:
    """The loop function of ``kernel`` and its source."""
    k, m, ny = kernel.k, kernel.m, kernel.ny
    c = [f"c{i}" for i in range(k)]
    x = [f"x{j}" for j in range(m)]
    consts = [f"k{i}" for i in range(len(kernel.node.inputs) - k - m)]
    y = [f"y{j}" for j in range(ny)]
    s = [f"s{i}" for i in range(k)]
    per_step = [*c, *[f"{v}[t]" for v in x], *consts]
    lines = [f"def loop(body, params, buffers, ts, {', '.join([*c, *x, *consts, *y, *s])}):"]
    plan = kernel.plan
    stored = [j for j in range(ny) if k + j in kernel.needed]
    inlined = _inlined_body(plan)
    if inlined is None:
        body_args = ", ".join(per_step[i] for i in kernel.arg_of_input)
        lines += ["    for t in ts:", f"        o = body([{body_args}], params, buffers)"]
        result = [f"o[{j}]" for j in range(k + ny)]
        inner = "        "
        names: dict[str, Any] = {}
    else:
        steps, result = inlined
        fixed = [(slot, per_step[kernel.arg_of_input[n]]) for n, (slot, _) in
                 enumerate(plan.inputs)]
        local = plan.slot_names
        lines += [f"    {local[slot]} = params[{n}]" for n, (slot, _) in enumerate(plan.params)]
        lines += [f"    {local[slot]} = {arg}" for slot, arg in fixed if arg in consts]
        names = dict(plan._body.__globals__)  # the body's kernels and consts
        guarded = {name: free for name, f in names.items()
                   for kernel, free in UNGUARDED if f is kernel}  # (consts are unhashable)
        names.update(guarded)
        indent = "    "
        if guarded:
            names["errstate"] = np.errstate
            lines.append('    with errstate(over="ignore"):')
            indent = "        "
        inner = indent + "    "
        lines += [f"{indent}for t in ts:"]
        lines += [f"{inner}{local[slot]} = {arg}" for slot, arg in fixed if arg not in consts]
        lines += [indent + line for line in steps]
    lines += [f"{inner}{y[j]}[t] = {result[k + j]}" for j in stored]
    lines += [f"{inner}{s[i]}[t] = {c[i]}" for i in range(k) if k + ny + i in kernel.needed]
    lines += [f"{inner}{c[i]} = {result[i]}" for i in range(k)]
    lines.append(f"    return [{', '.join(c)}]")
    source = "\n".join(lines)
    exec(compile(source, f"<scan loop of '{kernel.node.name}'>", "exec"),  # noqa: S102
         names)  # our own generated source: identifiers only, no user text
    return names["loop"], source


def _inlined_body(plan: Plan) -> tuple[list[str], list[str]] | None:
    """The body's generated step lines and the locals it returns (None while it has no
    generated code, or when it loads its inputs lazily)."""
    if plan.python_source is None:
        return None
    body = plan.python_source.split("\n")
    skip = 1 + len(plan.inputs) + len(plan.params)  # the def line, input and param loads
    loads = [line.split(" = ")[1] for line in body[1:skip]]
    wanted = ([f"inputs[{k}]" for k in range(len(plan.inputs))]
              + [f"params[{k}]" for k in range(len(plan.params))])
    if loads != wanted or not body[-1].startswith("    return ["):
        return None
    return body[skip:-1], [plan.slot_names[slot] for slot in plan.fetch_slots]

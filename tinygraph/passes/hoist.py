"""Hoisting: body work that does not depend on the carry leaves the loop, batched over steps.

In a scan's body, a node whose inputs do not depend (even indirectly) on a
carry computes the same thing the loop could compute before it starts:

- from captured values only (``W.T``, ``b * 2``): once, outside, as is;
- from the step's sequence values (``x_t @ U + b``): once for all steps, through
  the op's batch rule (:mod:`tinygraph.core.batch_rules`) on the stacked
  sequence (``X @ U + b``, one large matmul instead of T small ones).

The body keeps only what needs the carry and reads the hoisted values as new
per-step inputs (or captured values). A per-step output computed without
the carry leaves the scan entirely. In a backward scan (the vjp of a scan)
this hoists the recomputed forward values — everything but the gradient
chain itself. An op without a batch rule (or whose rule declines) stays in
the loop, and so do the nodes that read it.
"""

from __future__ import annotations

from typing import Any

from ..core.op import OPS
from .draft import Draft, Rec, Value, per_scan

__all__ = ["hoist_pass"]


def _hoist(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, m = a["body"], a["num_carry"], a["num_xs"]
    names = a["inputs"]
    inputs = [body.node(n) for n in names]
    outer = dict(zip(inputs, rec.inputs, strict=True))  # body input -> outer rec id
    kind: dict[Any, str] = {}  # body node -> "carry" | "step" (batched) | "fixed" (invariant)
    for i, node in enumerate(inputs):
        kind[node] = "carry" if i < k else "step" if i < k + m else "fixed"
    hoisted: dict[Any, Value] = {}  # body node -> its outer value (batched if "step")

    def emit(op: str, *args: Value, **attrs: Any) -> Value:
        return Value(draft, draft.add(op, [v.id for v in args], attrs, name=f"hoisted/{op}"))

    def value_of(node: Any) -> Value:
        return hoisted[node] if node in hoisted else Value(draft, outer[node])

    for node in body.nodes.values():
        if node.op in ("input", "param"):
            continue
        if node.op == "const":
            kind[node] = "fixed"
            hoisted[node] = Value(draft, draft.add_const(node.value, name="hoisted/const"))
            continue
        kinds = [kind.get(src, "carry") for src in node.inputs]
        if "carry" in kinds or OPS[node.op].outputs is not None or node.op == "unpack":
            kind[node] = "carry"
            continue
        args = [value_of(src) for src in node.inputs]
        if "step" not in kinds:
            kind[node] = "fixed"
            hoisted[node] = emit(node.op, *args, **node.attrs)
            continue
        rule = OPS[node.op].batch
        out = None if rule is None else rule(emit, node, args, [k == "step" for k in kinds])
        if out is None:
            kind[node] = "carry"  # stays in the loop (and so does what reads it)
        else:
            kind[node] = "step"
            hoisted[node] = out
    looped = [n for n in body.nodes.values() if kind.get(n) == "carry" and n.op != "input"]
    if not looped or not any(n in hoisted for n in body.nodes.values() if n.op != "const"):
        return  # nothing to hoist, or nothing left to loop over
    _rebuild(draft, rec, kind, hoisted, outer)


def _rebuild(draft: Draft, rec: Rec, kind: dict, hoisted: dict, outer: dict) -> None:
    """A new scan whose body keeps the carry-dependent nodes, reading hoisted values."""
    a = rec.attrs
    body, k, ny = a["body"], a["num_carry"], a["num_ys"]
    outs = [body.node(n) for n in a["outputs"]]
    carry_outs, ys = outs[:k], outs[k:k + ny]
    # Body values the new body reads from outside: what looped nodes and carried /
    # looped outputs need that is not computed in the loop.
    needed: dict[Any, None] = {}
    for node in body.nodes.values():
        if kind.get(node) == "carry" and node.op != "input":
            for src in node.inputs:
                if kind.get(src) != "carry":
                    needed[src] = None
    for node in carry_outs:
        if kind.get(node) != "carry":
            needed[node] = None
    # Per-step outputs computed without the carry leave through their batched value; the
    # rest (and an invariant one, fed in as a captured value) stay outputs of the loop.
    looped_ys = [y for y in ys if not (kind.get(y) == "step" and y in hoisted)]
    for y in looped_ys:
        if kind.get(y) != "carry":
            needed[y] = None
    new = type(body)(body.name)
    mapping: dict[Any, Any] = {}
    carry_inputs = [body.node(n) for n in a["inputs"][:k]]
    for node in carry_inputs:
        mapping[node] = new.input(new._unique_name(node.name), shape=node.shape, dtype=node.dtype)
    step_in: list[Any] = []
    fixed_in: list[Any] = []
    for node in needed:
        (step_in if kind[node] == "step" else fixed_in).append(node)
    outer_xs, outer_consts = [], []
    if not step_in and a["length"] is None and a["num_xs"]:
        # Without a sequence the loop could not tell how many steps to run: keep the first
        # one as an input nothing in the body reads.
        step_in.append(body.node(a["inputs"][k]))
    for i, node in enumerate(step_in):
        mapping[node] = new.input(new._unique_name(f"x{i}"), shape=node.shape, dtype=node.dtype)
        outer_xs.append(hoisted[node].id if node in hoisted else outer[node])
    for i, node in enumerate(fixed_in):
        mapping[node] = new.input(new._unique_name(f"c{i}"), shape=node.shape, dtype=node.dtype)
        outer_consts.append(hoisted[node].id if node in hoisted else outer[node])
    for node in body.nodes.values():
        if kind.get(node) == "carry" and node not in mapping:
            mapping[node] = new.add_node(node.op, [mapping[s] for s in node.inputs],
                                         dict(node.attrs), name=node.name
                                         if node.name not in new.nodes else None)
    new_outs = [mapping[n] for n in carry_outs] + [mapping[y] for y in looped_ys]
    new_outs += [mapping[n] for n in carry_inputs]
    attrs = {**a, "body": new, "num_xs": len(step_in), "num_ys": len(looped_ys),
             "inputs": tuple(n.name for n in new.inputs.values()),
             "outputs": tuple(n.name for n in new_outs)}
    scan = draft.add("scan", [*rec.inputs[:k], *outer_xs, *outer_consts], attrs, name=rec.name)
    # Each old output: from the new scan, or (a per-step output computed without the carry)
    # the hoisted batched value itself.
    old_unpacks = [u for u in draft.users[rec.id] if draft.recs[u].op == "unpack"]
    index_of_looped = {id(y): i for i, y in enumerate(looped_ys)}
    for unpack in old_unpacks:  # every reader (two may read the same output)
        u = draft.recs[unpack]
        index = u.attrs["index"]
        if index < k:
            new_index = index
        elif index < k + ny:
            y = ys[index - k]
            if id(y) not in index_of_looped:  # computed for all steps outside: that value
                draft.replace(unpack, hoisted[y].id)
                continue
            new_index = k + index_of_looped[id(y)]
        else:
            new_index = k + len(looped_ys) + (index - k - ny)
        draft.replace(unpack, draft.add("unpack", [scan], {**u.attrs, "index": new_index},
                                        name=u.name))


hoist_pass = per_scan(_hoist, "Hoist carry-independent body nodes out of every scan of the draft.")

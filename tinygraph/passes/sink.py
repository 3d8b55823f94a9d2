"""Sinking: per-step work that feeds no carry runs after the loop, on the stacked values.

In a scan's body, a node that no new carry depends on (an output head
``softmax(s_t @ V + c)``, a per-step loss) only produces per-step outputs.
The loop can hand out the values it reads instead (the new state, stacked:
one more per-step output), and the node runs once after the loop on all
steps through its batch rule: ``softmax(S @ V + c)``, one large matmul. What
is left in the loop is the recurrence itself.

:func:`reassociate` first regroups sums in a body so that the terms that do
not depend on the carry are added together (``(x U + s W) + b`` becomes
``s W + (x U + b)``), which lets :mod:`tinygraph.passes.hoist` take them out.
"""

from __future__ import annotations

from typing import Any

from ..core.op import OPS
from ..core.traverse import ancestors
from .bodies import copy_body, prune, use_body
from .draft import Draft, Rec, Value, per_scan

__all__ = ["sink_pass", "reassociate_pass"]


def _carry_dependent(body: Any, k: int, names: tuple) -> set:
    """Body nodes that depend (even indirectly) on a carry input."""
    dependent = {body.node(n) for n in names[:k]}
    for node in body.nodes.values():
        if any(src in dependent for src in node.inputs):
            dependent.add(node)
    return dependent


def reassociate_pass(draft: Draft) -> None:
    """In every scan body, sums regrouped: carry-free terms first (see the module doc)."""
    for rec in draft.live():
        if rec.op != "scan":
            continue
        a = rec.attrs
        body = a["body"]
        dependent = _carry_dependent(body, a["num_carry"], a["inputs"])
        users: dict[Any, int] = {}
        for node in body.nodes.values():
            for src in node.inputs:
                users[src] = users.get(src, 0) + 1
        outputs = {body.node(n) for n in a["outputs"]}
        plans = {}
        for node in body.nodes.values():
            if node.op != "add" or node not in dependent:
                continue
            terms, stack = [], [node]
            while stack:  # the add tree under node, through adds used only there
                part = stack.pop()
                if part is not node and (part.op != "add" or users.get(part, 0) != 1
                                         or part in outputs):
                    terms.append(part)
                else:
                    stack.extend(reversed(part.inputs))
            free = [t for t in terms if t not in dependent]
            bound = [t for t in terms if t in dependent]
            if len(free) >= 2 and bound and len(terms) >= 3:
                plans[node] = (free, bound)
        if plans:
            _rebuild_sums(draft, rec, plans)


def _rebuild_sums(draft: Draft, rec: Rec, plans: dict) -> None:
    def regroup(node: Any, new: Any, mapping: dict) -> Any:
        if node not in plans:
            return None
        free, bound = plans[node]
        total = mapping[free[0]]
        for t in free[1:]:
            total = new.add_node("add", [total, mapping[t]])
        for t in bound:
            total = new.add_node("add", [mapping[t], total])
        return total

    body = rec.attrs["body"]
    new, mapping = copy_body(body, regroup)
    outs = tuple(mapping[body.node(n)].name for n in rec.attrs["outputs"])
    if len(set(outs)) != len(outs) and len(set(rec.attrs["outputs"])) == len(outs):
        return
    for node, made in mapping.items():  # shapes must survive the regrouping
        if node.op != "input" and made.shape != node.shape and None not in node.shape:
            return
    use_body(draft, rec, new, mapping)


def _sink(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, m, ny = a["body"], a["num_carry"], a["num_xs"], a["num_ys"]
    inputs = [body.node(n) for n in a["inputs"]]
    outs = [body.node(n) for n in a["outputs"]]
    carry_outs, ys = outs[:k], outs[k:k + ny]
    on_path: set = set()
    stack = list(carry_outs)
    while stack:
        node = stack.pop()
        if node not in on_path:
            on_path.add(node)
            stack.extend(node.inputs)
    for_ys = set(ancestors(body, ys))
    # Sinkable: feeds no carry, some output needs it, has a batch rule, and reads only
    # inputs, consts, loop values on the carry path or other sinkable nodes — or is a
    # matmul, which may read any loop value: ``x_tᵀ dz_t`` then runs as one product on
    # the stacks instead of T small ones (elementwise work stays in the loop, where its
    # values are in cache). The loop values read become per-step outputs; outputs
    # that are not sinkable stay in the loop (with what they need).
    tail, sinkable = [], set()
    for n in body.nodes.values():
        if (n in for_ys and n not in on_path and n.op not in ("input", "const")
                and OPS[n.op].batch is not None
                and (n.op == "matmul" or all(
                    src in sinkable or src in on_path or src.op in ("input", "const")
                    for src in n.inputs))):
            tail.append(n)
            sinkable.add(n)
    if not any(y in sinkable for y in ys):
        return
    # Keep only the sinkable nodes some sinkable output needs.
    wanted = set(ancestors(body, [y for y in ys if y in sinkable]))
    tail = [n for n in tail if n in wanted]
    tail_set = set(tail)
    exported: dict[Any, None] = {}
    for node in tail:
        for src in node.inputs:
            if src not in tail_set and src.op not in ("input", "const"):
                exported[src] = None
    kept_ys = [y for y in ys if y not in tail_set]
    new_ys = kept_ys + [e for e in exported if e not in kept_ys]
    carry_in = inputs[:k]
    outputs = tuple(n.name for n in [*carry_outs, *new_ys, *carry_in])
    attrs = {**a, "num_ys": len(new_ys), "outputs": outputs, "body": prune(body, outputs)}
    scan = draft.add("scan", list(rec.inputs), attrs, name=rec.name)
    final_shapes = {u.attrs["index"]: u.shape for u in draft.readers(rec.id)
                    if u.op == "unpack" and u.attrs["index"] < k}
    unpacked = []
    for i, node in enumerate([*carry_outs, *new_ys, *carry_in]):
        # final carries keep the shape their readers saw; stacks lead with the steps
        shape = final_shapes.get(i, node.shape) if i < k else (a["length"], *node.shape)
        unpacked.append(draft.add("unpack", [scan], {"index": i, "shape": shape,
                                                     "dtype": node.dtype.name}))
    outer_of: dict[Any, Value] = {}
    for i, node in enumerate(inputs):
        if i < k:
            outer_of[node] = Value(draft, unpacked[k + len(new_ys) + i])  # saved carries
        else:
            outer_of[node] = Value(draft, rec.inputs[i])
    for j, node in enumerate(new_ys):
        outer_of.setdefault(node, Value(draft, unpacked[k + j]))
    batched_of = {node: (i < k + m) for i, node in enumerate(inputs)}
    batched_of.update({node: True for node in new_ys})

    def emit(op: str, *args: Value, **kw: Any) -> Value:
        return Value(draft, draft.add(op, [v.id for v in args], kw, name=f"sunk/{op}"))

    for node in tail:
        args, flags = [], []
        for src in node.inputs:
            if src.op == "const":
                outer_of.setdefault(src, Value(draft, draft.add_const(src.value)))
                batched_of.setdefault(src, False)
            args.append(outer_of[src])
            flags.append(batched_of[src])
        if not any(flags):
            out = emit(node.op, *args, **node.attrs)
        else:
            rule = OPS[node.op].batch
            assert rule is not None  # the tail holds only ops with a batch rule (above)
            out = rule(emit, node, args, flags)
        if out is None:
            return  # a rule declined: the new scan stays unused, the old one as it was
        outer_of[node] = out
        batched_of[node] = any(flags)
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users) or any(
            ys[u.attrs["index"] - k] in tail_set and not batched_of[ys[u.attrs["index"] - k]]
            for u in users if k <= u.attrs["index"] < k + ny):
        return  # an output that is the same every step (no batch axis): left as it was
    for u in users:
        index = u.attrs["index"]
        if index < k:
            draft.replace(u.id, unpacked[index])
        elif index < k + ny:
            y = ys[index - k]
            draft.replace(u.id, outer_of[y].id if y in tail_set
                          else unpacked[k + new_ys.index(y)])
        else:
            draft.replace(u.id, unpacked[k + len(new_ys) + index - k - ny])


sink_pass = per_scan(
    _sink,
    "Move the per-step work no carry depends on out of every scan, after the loop.")

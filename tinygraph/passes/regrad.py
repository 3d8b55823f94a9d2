"""Gradients rebuilt on the rerolled forward graph: backward through a scan, not T copies.

A training graph holds the forward steps AND the backward nodes ``tg.grad``
built for every step. Rerolling the forward alone would leave T copies of the
backward pass reading T copies of every intermediate value. So when the
fetched gradients are results of ``tg.grad`` (``meta["grad_of"]`` and
``meta["grad_y"]``), :func:`regrad` rebuilds them instead: it rerolls the
forward part (the fetched forward values and each ``y``) into a scan, then
differentiates that graph with the same reverse-mode engine
(:func:`tinygraph.core.backprop.backprop`) — whose rule for a scan is a
reverse scan of the body's vjp. Hoisting and sinking then apply to both loops.

The gradient is the same function of the same values (exact up to the order
of float additions). When anything does not fit (a gradient fetched that is
not a ``tg.grad`` result, a ``wrt`` that rerolling removed, no scan formed),
:func:`regrad` returns ``None`` and the graph is optimized as built.
"""

from __future__ import annotations

from typing import Any

from ..core.backprop import backprop
from ..core.graph import Graph
from ..core.node import Node
from .common_subexpr import cse_pass
from .draft import Draft
from .reroll import reroll_pass
from .rows import unstack_rows
from .running import running_sums_pass
from .vectorize import vectorize_pass

__all__ = ["regrad", "expose_residuals"]


def regrad(graph: Graph, nodes: list[Node]) -> tuple[Graph, list[Node]] | None:
    """``(new graph, new fetch nodes)`` with gradients through a scan, or ``None``."""
    grads = [n for n in nodes if "grad_y" in n.meta and "grad_of" in n.meta]
    if not grads or any(n.meta.get("grad") and n not in grads for n in nodes):
        return None
    ys = list(dict.fromkeys(n.meta["grad_y"] for n in grads))
    forward = [n for n in nodes if not n.meta.get("grad")]
    try:
        # The wrt nodes too: a param the loss does not read still gets its (zero) gradient.
        roots = (forward + [graph.node(y) for y in ys]
                 + [graph.node(n.meta["grad_of"]) for n in grads])
    except Exception:  # noqa: BLE001 - a renamed or missing node: optimize as built
        return None
    draft = Draft(graph, roots)
    if any(rec.meta.get("grad") for rec in draft.live()):
        return None  # the forward values themselves read gradients (grad of grad)
    reroll_pass(draft)
    if not any(rec.op == "scan" for rec in draft.live()):
        return None
    running_sums_pass(draft)  # a loss summed in a carry: per-step terms the backward hoists
    unstack_rows(draft)  # stack(ys[0], …, ys[T-1]) -> ys: a stacked loss reads ys itself
    cse_pass(draft)  # a weight built in every step (concat([V, V])) is one weight
    vectorize_pass(draft)  # per-step losses and heads -> one op on the stacked outputs
    expose_residuals(draft)  # the backward reads stored values instead of recomputing them
    rebuilt, built_roots = draft.build()
    by_name = dict(zip([n.name for n in roots], built_roots, strict=True))
    new_grads: dict[str, Any] = {}
    with rebuilt.scope("grad"):
        for y in ys:
            wanted = [n for n in grads if n.meta["grad_y"] == y]
            targets, picks = [], []
            for n in wanted:
                target, pick = _wrt_target(graph, rebuilt, n.meta["grad_of"])
                if target is None:
                    return None  # the wrt value now lives inside the scan
                targets.append(target)
                picks.append(pick)
            y_node = by_name[y]
            seed = rebuilt.const(1.0, dtype=y_node.dtype)
            found = backprop(rebuilt, [(y_node, seed)], targets)
            for n, target, value, pick in zip(wanted, targets, found, picks, strict=True):
                value = (value if value is not None
                         else rebuilt.add_node("zeros_like", [target]))
                new_grads[n.name] = (value if pick is None else  # d/dX[k] = (d/dX)[k]
                                     rebuilt.add_node("getitem", [value], {"index": pick}))
    result = [new_grads[n.name] if n.name in new_grads else by_name[n.name] for n in nodes]
    return rebuilt, result


def _wrt_target(graph: Graph, rebuilt: Graph, name: str) -> tuple[Any, Any]:
    """``(node to differentiate by, index into its gradient or None)`` for wrt ``name``.

    A step's own row of a sequence (``X[k]``, or a step input picked from ``xs``) is
    read inside the loop after rerolling; its gradient is row k of ``X``'s."""
    target = rebuilt.nodes.get(name)
    if target is not None and not (target.op == "getitem" and target.inputs[0].op == "unpack"):
        return target, None
    original = graph.nodes.get(name)
    if original is None or original.op != "getitem":
        return None, None
    source = rebuilt.nodes.get(original.inputs[0].name)
    if source is None or source.op not in ("input", "param", "const"):
        return None, None
    return source, original.attrs["index"]


def expose_residuals(draft: Draft) -> None:
    """Every scan's body values as per-step outputs, so its vjp reads them stored.

    The vjp of a scan reads the forward's stored per-step outputs instead of
    replaying the body (:mod:`tinygraph.core.scan_rules`); handing out every
    value it may need (JAX's residuals) leaves nothing to recompute. A plan
    stores only the outputs something reads, so unread ones cost nothing.
    """
    for rec in draft.live():
        if rec.op != "scan":
            continue
        a = rec.attrs
        body, k, ny = a["body"], a["num_carry"], a["num_ys"]
        outs = [body.node(n) for n in a["outputs"]]
        present = set(outs[:k + ny])
        extra = [n for n in body.nodes.values()
                 if n.op not in ("input", "const", "param") and n not in present
                 and len(n.shape) >= 1 and n.dtype.kind == "f"]
        if not extra:
            continue
        users = draft.readers(rec.id)
        if any(u.op != "unpack" for u in users):
            continue
        outputs = [*outs[:k + ny], *extra, *outs[k + ny:]]
        scan = draft.add("scan", list(rec.inputs),
                         {**a, "num_ys": ny + len(extra),
                          "outputs": tuple(n.name for n in outputs)}, name=rec.name)
        for u in users:
            index = u.attrs["index"]
            moved = index if index < k + ny else index + len(extra)
            draft.replace(u.id, draft.add("unpack", [scan], {**u.attrs, "index": moved},
                                          name=u.name))

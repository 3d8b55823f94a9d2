"""The reverse-mode engine: cotangents pushed back through vjp rules, as new graph nodes.

:func:`backprop` walks the ancestors of the seeded outputs in reverse
insertion (= reverse topological) order — a plain loop, never recursion —
sums each node's incoming cotangents with ``add`` nodes in a fixed order and
hands the total to the vjp rule of its op. Only nodes on a path from some
target to some seeded output are visited. :func:`tinygraph.grad` is this
with one seed, ``1`` for a scalar loss; the vjp of a ``scan`` runs it on the
scan's body.

A multi-output op (``scan``) is read through ``unpack`` nodes, one per
output; their cotangents reach the op's vjp rule as one list (``None`` for
an output nobody differentiates through).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> y = tg.tanh(x)
>>> (gx,) = backprop(g, [(y, g.const(np.ones(2)))], [x])
>>> g.run(gx, {"x": np.zeros(2)})
array([1., 1.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GraphError
from .node import Node
from .op import LEAF_OPS, OPS
from .traverse import ancestors

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["backprop"]


def backprop(graph: Graph, seeds: Sequence[tuple[Node, Node]],
             targets: Sequence[Node], join_slices: bool = False) -> list[Node | None]:
    """Nodes computing, for each target, the sum over ``seeds`` ``(out, cot)`` of ``cot · ∂out``.

    Returns one node per target, or ``None`` for a target no seeded output
    depends on. Raises :class:`~tinygraph.GraphError` naming the node when
    an op on the way has no vjp rule. ``join_slices``: adjoints of slices
    that tile an array are joined by one ``concat`` (see :func:`_sum_of`);
    the getitem adjoints it replaces stay in the graph, unused, so this is
    for graphs users do not see (a scan's backward body).
    """
    order = ancestors(graph, [out for out, _ in seeds])
    # Forward mark: which nodes lie downstream of some target (only they need cotangents).
    wanted = bytearray(len(graph))
    for node in targets:
        wanted[node.index] = 1
    for node in order:
        if not wanted[node.index] and any(wanted[src.index] for src in node.inputs):
            wanted[node.index] = 1
    pending: dict[int, list[Node]] = {}
    for out, cot in seeds:
        pending.setdefault(out.index, []).append(cot)
    outputs: dict[int, dict[int, Node]] = {}  # multi-output node -> output index -> cotangent
    totals: dict[int, Node] = {}
    for node in reversed(order):
        parts = pending.pop(node.index, None)
        by_output = outputs.pop(node.index, None)
        if parts is None and by_output is None:
            continue
        total: Any  # a Node, or for a multi-output op the list of its outputs' cotangents
        if by_output is not None:  # a multi-output op: its outputs' cotangents, as a list
            count = OPS[node.op].outputs(node)  # type: ignore[misc]  # multi-output ops define outputs
            total = [by_output.get(i) for i in range(count)]
        else:
            total = _sum_of(graph, parts, join_slices)  # type: ignore[arg-type]  # parts is set
            totals[node.index] = total
        if node.op in LEAF_OPS:
            continue
        if node.op == "unpack":  # route to the multi-output op, by output index
            source, index = node.inputs[0], node.attrs["index"]
            if wanted[source.index]:
                slot = outputs.setdefault(source.index, {})
                slot[index] = total if index not in slot else graph.add_node(
                    "add", [slot[index], total])
            continue
        needs = tuple(bool(wanted[src.index]) and src.dtype.kind == "f" for src in node.inputs)
        if any(needs):
            _push(node, total, needs, pending)
    return [totals.get(node.index) for node in targets]


def _push(node: Node, total: object, needs: tuple[bool, ...],
          pending: dict[int, list[Node]]) -> None:
    """Run ``node``'s vjp rule and file each input's cotangent under that input."""
    rule = OPS[node.op].vjp
    if rule is None:
        raise GraphError(f"grad: node '{node.name}' has op '{node.op}', which has no vjp rule, "
                         "so no gradient can flow through it; add vjp= to its Op record "
                         "(tinygraph.core.op.Op)")
    outs = rule(node, total, needs)
    if len(outs) != len(node.inputs):
        raise GraphError(f"grad: the vjp rule of op '{node.op}' returned {len(outs)} gradients "
                         f"for the {len(node.inputs)} inputs of node '{node.name}'")
    for src, want, part in zip(node.inputs, needs, outs, strict=True):
        if want and part is not None:
            pending.setdefault(src.index, []).append(part)


def _sum_of(graph: Graph, parts: list[Node], join_slices: bool) -> Node:
    """The parts added in order — or, when they are the adjoints of slices that tile one
    array along one axis (a GRU's ``gh[:, :H]``, ``gh[:, H:2H]``, ``gh[:, 2H:]``), one
    ``concat`` of them: no zero-filled arrays of the whole shape and no adds of them.
    Equal slices are added first; the values are the same (the zeros added nothing)."""
    tiles = _tiles(parts) if join_slices else None
    if tiles is None:
        total = parts[0]
        for part in parts[1:]:
            total = graph.add_node("add", [total, part])
        return total
    axis, groups = tiles
    pieces = []
    for group in groups:
        piece = group[0].inputs[0]
        for part in group[1:]:
            piece = graph.add_node("add", [piece, part.inputs[0]])
        pieces.append(piece)
    return graph.add_node("concat", pieces, {"axis": axis})


def _tiles(parts: list[Node]) -> tuple[int, list[list[Node]]] | None:
    """(axis, parts grouped by slice in slice order) if ``parts`` tile their array, else None."""
    if len(parts) < 2 or any(p.op != "getitem_grad" for p in parts):
        return None
    like = parts[0].inputs[1]
    if any(p.inputs[1] is not like or p.inputs[0].dtype != p.dtype for p in parts):
        return None
    spans: dict[tuple[int, int], list[Node]] = {}
    axes = set()
    for part in parts:
        index = part.attrs["index"]
        if len(index) != len(like.shape) or any(not isinstance(i, tuple) for i in index):
            return None
        cut = [k for k, (start, stop, step) in enumerate(index)
               if (start, stop, step) != (None, None, None)]
        if len(cut) != 1:
            return None
        k = cut[0]
        start, stop, step = index[k]
        size = like.shape[k]
        if size is None or step not in (None, 1):
            return None
        span = (0 if start is None else start, size if stop is None else stop)
        if not 0 <= span[0] < span[1] <= size:
            return None
        axes.add(k)
        spans.setdefault(span, []).append(part)
    if len(axes) != 1:
        return None
    (axis,) = axes
    order = sorted(spans)
    edges = [0, *[end for _, end in order]]
    if [start for start, _ in order] != edges[:-1] or edges[-1] != like.shape[axis]:
        return None
    return axis, [spans[span] for span in order]

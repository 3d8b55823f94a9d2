"""A graph fed one sequence instead of T per-step inputs, and fetching stacks.

An unrolled graph has an input per step (``t=0/x`` … ``t=T-1/x``); feeding it
means checking T arrays and stacking them again inside the plan, and its
per-step results come back as T arrays to stack. :func:`sequence_view`
returns a new graph where the step inputs are rows of ONE input ``xs``
(``xs[t]``, which rerolling reads as the sequence itself) and each group of
per-step fetches is one stacked node (a stack of rows of one array, which
:func:`tinygraph.passes.unstack_rows` turns into that array). The original
graph is untouched; params are shared (live), so the view runs with the
current values.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> xs = [g.input(f"x{t}", shape=(2,)) for t in range(3)]
>>> view, seq, (total,) = sequence_view(g, xs, [[x * 2.0 for x in xs]])
>>> view.run(total, {seq: np.arange(6.0).reshape(3, 2)}).tolist()
[[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.graph import Graph
from ..core.node import Node
from .draft import Draft

__all__ = ["sequence_view"]


def sequence_view(graph: Graph, inputs: Sequence[Node] | None,
                  groups: Sequence[Sequence[Node]],
                  name: str = "xs") -> tuple[Graph, str | None, list[Node]]:
    """``(view, name of the sequence input, one stacked node per group)``; see the module.

    ``inputs=None`` keeps the graph's inputs (only the fetches are stacked).
    """
    roots = [n for group in groups for n in group]
    draft = Draft(graph, roots)
    seq_name = None
    for t, node in enumerate(inputs or ()):
        if t == 0:
            assert inputs is not None  # this loop runs over inputs
            taken = {rec.name for rec in draft.recs.values()}
            seq_name = name
            while seq_name in taken:
                seq_name = f"_{seq_name}"
            seq = draft.add_input(seq_name, (len(inputs), *node.shape), node.dtype)
        if node.index in draft.recs:
            draft.replace(node.index, draft.add("getitem", [seq], {"index": (t,)},
                                                name=node.name, meta=dict(node.meta)))
    stacks, start = [], 0
    for i, group in enumerate(groups):  # the roots now point at what replaced them
        ids = draft.roots[start:start + len(group)]
        start += len(group)
        stacks.append(draft.add("stack", ids, {"axis": 0}, name=f"stacked{i}"))
    draft.roots = stacks
    draft.root_set = set(stacks)
    draft._root_places = {s: [i] for i, s in enumerate(stacks)}
    view, nodes = draft.build(f"{graph.name}/sequence")
    return view, seq_name, nodes


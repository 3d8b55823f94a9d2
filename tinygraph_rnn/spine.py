"""Where each node of an unrolled step goes: the rows of the textbook picture.

The unrolled view is laid out from the graph's time structure
(``node.meta["t"]``, ``node.meta["template"]``), for any cell, the way
Goodfellow et al. draw it (*Deep Learning*, Fig. 10.3)::

      o_0        o_1             outputs above          level > every state row
       ▲          ▲
    s0 ─▶ [… s_0] ─▶ [… s_1] ─▶   the state row        level 0 (an LSTM: h row, c row)
       ▲          ▲
      x_0        x_1             inputs below           level < 0

:func:`plan_step` works on one step's *templates* and gives every node an
integer level (a DOT rank); all drawn steps use the same plan, so each step
is drawn alike and the steps line up. The rules:

* the **spine** of state part ``p`` is the shortest path from a reader of
  the previous ``s_p`` to the new ``s_p`` (``strict=True``: every node on
  any such path); it is one ``{rank=same}`` row across all steps, so the
  recurrent edges are flat edges, which Graphviz draws left to right —
  that keeps the steps in order and the row straight;
* nodes that depend on the state sit above the rows, by longest path from
  the spines (a topological sort over the step with each spine as one unit;
  when the step's data flow forms a cycle through two spines — an LSTM's
  ``h → gates → c → tanh → h`` — the earliest spine is placed first and the
  edges that close the cycle are marked ``back``, drawn without constraint);
* nodes that do not depend on the state (the input branch) sit below the
  lowest row, by longest path back from their readers;
* consts get no level (they sit next to their reader).

>>> import tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, output_size=2), 3)
>>> plan = plan_step(net)
>>> plan.spines, plan.levels["x"], plan.levels["o"] > 0
([['mulw', 'add', 'add_b', 's']], -2, True)
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import tinygraph as tg

from .gradflow import step_of

__all__ = ["StepPlan", "plan_step", "nodes_by_step", "state_parts", "template"]


@dataclass
class StepPlan:
    """One step's layout, by template name.

    levels:  template -> rank level (0 = the first state row; ``None``: free).
    spines:  per state part, its row's templates in path order.
    rows:    per state part, the level of its row.
    back:    template edges ``(src, dst)`` drawn without constraint.
    gates:   template of an unnamed slice -> the named node it feeds (``r``, ``f``, …).
    """

    levels: dict[str, int | None] = field(default_factory=dict)
    spines: list[list[str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    back: set[tuple[str, str]] = field(default_factory=set)
    gates: dict[str, str] = field(default_factory=dict)


def template(node: tg.Node) -> str:
    """A step node's name inside the cell (``meta["template"]``)."""
    return str(node.meta.get("template", node.name))


def state_parts(state: Any) -> tuple:
    """A state (a node or a tuple of nodes) as a tuple of its parts."""
    return state if isinstance(state, tuple) else (state,)


def nodes_by_step(graph: tg.Graph, steps: int) -> list[list[tg.Node]]:
    """Each step's nodes in insertion (topological) order; one pass over the graph."""
    by_step: list[list[tg.Node]] = [[] for _ in range(steps)]
    for node in graph.nodes.values():
        t = step_of(node)
        if t is not None and 0 <= t < steps:
            by_step[t].append(node)
    return by_step


def _automatic(node: tg.Node) -> bool:
    base = template(node).rpartition("/")[2]
    return base == node.op or re.fullmatch(re.escape(node.op) + r"_\d+", base) is not None


def _shortest(starts: list[tg.Node], goal: tg.Node, allowed: set[tg.Node],
              readers: dict[tg.Node, list[tg.Node]]) -> list[tg.Node]:
    """The shortest reader-path from any of ``starts`` to ``goal`` inside ``allowed``."""
    parent: dict[tg.Node, tg.Node | None] = {}
    queue: deque[Any] = deque()
    for node in starts:
        if node in allowed and node not in parent:
            parent[node] = None
            queue.append(node)
    while queue:
        node = queue.popleft()
        if node is goal:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])  # type: ignore[arg-type]  # a parent on the path
            return path[::-1]
        for reader in readers.get(node, ()):
            if reader in allowed and reader not in parent:
                parent[reader] = node
                queue.append(reader)
    return [goal]


def _closure(seeds: list[tg.Node], step: dict[tg.Node, int], forward: bool,
             readers: dict[tg.Node, list[tg.Node]]) -> set[tg.Node]:
    seen = {n for n in seeds if n in step}
    stack = list(seen)
    while stack:
        node = stack.pop()
        for nxt in (readers.get(node, ()) if forward else node.inputs):
            if nxt in step and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def plan_step(net: Any, t: int = 0, strict: bool = False,
              nodes: list[tg.Node] | None = None) -> StepPlan:
    """The :class:`StepPlan` of step ``t`` (the same for every step of an unroll)."""
    if nodes is None:
        nodes = [n for n in net.graph.nodes.values() if step_of(n) == t]
    step = {node: i for i, node in enumerate(nodes)}
    readers: dict[tg.Node, list[tg.Node]] = {}
    for node in nodes:
        for src in node.inputs:
            readers.setdefault(src, []).append(node)
    prev = state_parts(net.initial_state if t == 0 else net.states[t - 1])
    new = state_parts(net.states[t])
    plan = StepPlan()

    # The spines: one row per state part.
    on_spine: dict[tg.Node, int] = {}
    for p, (old, goal) in enumerate(zip(prev, new, strict=True)):
        starts = [r for r in readers.get(old, ()) if r in step]
        feeds_goal = _closure([goal], step, False, readers)
        if strict:
            path = [n for n in nodes if n in feeds_goal and n in _closure(starts, step, True,
                                                                          readers)] or [goal]
        else:
            path = _shortest(starts, goal, feeds_goal, readers)
        path = [n for n in path if n not in on_spine] or ([goal] if goal not in on_spine else [])
        for node in path:
            on_spine[node] = p
        plan.spines.append([template(n) for n in path])

    # Units: a spine counts as one node; everything that depends on the state is ranked
    # by longest path from the spines (Kahn's algorithm, earliest first, never recursive).
    depends = _closure([r for old in prev for r in readers.get(old, ())], step, True, readers)
    depends |= set(on_spine)

    def unit(node: tg.Node) -> Any:
        return ("spine", on_spine[node]) if node in on_spine else node

    spine_units = {("spine", p) for p in on_spine.values()}
    preds: dict[Any, set[Any]] = {}
    first: dict[Any, int] = {}
    for node in nodes:
        if node not in depends:
            continue
        u = unit(node)
        first.setdefault(u, step[node])
        mine = preds.setdefault(u, set())
        for src in node.inputs:
            if src in depends and unit(src) != u:
                mine.add(unit(src))
            for q, old in enumerate(prev):
                if src is old and u != ("spine", q) and ("spine", q) in spine_units:
                    mine.add(("spine", q))  # it reads the previous state: above that row
    level: dict[Any, int] = {}
    left = sorted(preds, key=first.__getitem__)
    while left:
        ready = [u for u in left if preds[u] <= level.keys()]
        if ready:
            u = ready[0]
        else:  # a cycle: place the earliest spine (else the earliest node) and cut its rest
            spines = [u for u in left if isinstance(u, tuple)]
            u = min(spines, key=lambda s: s[1]) if spines else left[0]
        level[u] = max((level[src] + 1 for src in preds[u] if src in level), default=0)
        left.remove(u)
    base = level.get(("spine", 0), 0)
    plan.rows = [level.get(("spine", p), 0) - base for p in range(len(prev))]
    for node in nodes:
        if node in depends:
            plan.levels[template(node)] = level[unit(node)] - base

    # The input branch, below the lowest row: by longest path back from the readers.
    low = min(plan.rows)
    for node in reversed(nodes):
        if node in depends:
            continue
        if node.op == "const":
            plan.levels[template(node)] = None
            continue
        below = [plan.levels[template(r)] for r in readers.get(node, ()) if r in step
                 and plan.levels.get(template(r)) is not None]
        plan.levels[template(node)] = min([min(v, low) for v in below], default=low) - 1  # type: ignore[type-var, operator]

    # Outputs (that are not states) above every row.
    top = max(plan.rows)
    outputs = net.outputs[t] if t < len(net.outputs) else None
    if outputs is not None and outputs not in on_spine and outputs in step:
        key = template(outputs)
        plan.levels[key] = max(plan.levels[key] or 0, top + 1)

    # Edges drawn without constraint: those the levels point downward (the cycle-closing
    # edges of a cut cycle among them).
    for node in nodes:
        for src in node.inputs:
            if src in step:
                a, b = plan.levels.get(template(src)), plan.levels.get(template(node))
                if a is not None and b is not None and b < a:
                    plan.back.add((template(src), template(node)))

    # Gate names: an unnamed slice is labelled with the first named node it feeds.
    for node in nodes:
        if node.op != "getitem" or not _automatic(node):
            continue
        queue, seen = deque(readers.get(node, ())), set()
        while queue:
            reader = queue.popleft()
            if reader in seen or reader not in step:
                continue
            seen.add(reader)
            if not _automatic(reader):
                plan.gates[template(node)] = template(reader).rpartition("/")[2]
                break
            queue.extend(readers.get(reader, ()))
    return plan

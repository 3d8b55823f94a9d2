"""A mutable working copy of a graph, on which rewrite passes operate.

:mod:`tinygraph.passes` are pure ``graph -> graph`` functions; internally each
copies the needed part of the graph into a :class:`Draft`, edits records
(add a node, redirect a node's users to another), and builds a fresh
:class:`~tinygraph.core.graph.Graph` from it. Building re-sorts the records
topologically, so a pass may add a node that must run before nodes that came
earlier in the original (a batched matmul over all time steps, say) without
thinking about order; ties keep the original insertion order.

The original graph is never touched. Params of the built graph share the
original's live arrays, and the built graph maps each param to its source
(:meth:`~tinygraph.core.graph.Graph.param_source`), so compiled plans read the
original params at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.graph import Graph
from ..core.node import Node
from ..core.op import infer
from ..core.traverse import ancestors

__all__ = ["Rec", "Draft", "Value", "freeze", "per_scan"]


@dataclass
class Rec:
    """One node of a draft: what :class:`Node` records, plus an ordering key."""

    id: int
    op: str
    inputs: list[int]
    attrs: dict[str, Any]
    shape: tuple
    dtype: np.dtype
    name: str
    key: tuple
    meta: dict[str, Any] = field(default_factory=dict)
    source: Node | None = None  # the original node, for leaves


class Value:
    """A draft record seen as an argument of a batch rule (``.id``, ``.shape``, ``.dtype``)."""

    def __init__(self, draft: Draft, rec_id: int):
        rec = draft.recs[rec_id]
        self.id, self.shape, self.dtype = rec_id, rec.shape, rec.dtype


class Draft:
    """The ancestors of ``roots`` in ``graph``, as editable records."""

    def __init__(self, graph: Graph, roots: list[Node]):
        self.graph = graph
        self.recs: dict[int, Rec] = {}
        self.users: dict[int, dict[int, None]] = {}  # ordered set of user ids
        for node in ancestors(graph, roots):
            rec = Rec(node.index, node.op, [src.index for src in node.inputs], dict(node.attrs),
                      node.shape, node.dtype, node.name, (node.index, 0), dict(node.meta), node)
            self.recs[rec.id] = rec
            self.users[rec.id] = {}
            for src in rec.inputs:
                self.users[src][rec.id] = None
        self.roots = [node.index for node in roots]  # in fetch order, may repeat
        self.root_set = set(self.roots)  # for membership tests
        self._root_places: dict[int, list[int]] = {}  # root id -> its positions in roots
        for place, root in enumerate(self.roots):
            self._root_places.setdefault(root, []).append(place)
        self._next_id = len(graph)
        self._sub = 0
        self._edits = 0  # bumped by every change; live() reuses its order until then
        self._live: tuple[int, list[Rec]] = (-1, [])
        self._live_ids: tuple[int, set[int]] = (-1, set())

    # ------------------------------------------------------------ editing
    def add(self, op: str, inputs: list[int], attrs: dict[str, Any] | None = None,
            name: str | None = None, meta: dict[str, Any] | None = None) -> int:
        """A new op record after its inputs; its shape is inferred (errors name it)."""
        self._edits += 1
        attrs = dict(attrs or {})
        name = name or f"opt/{op}"
        shape, dtype = infer(op, name, [(self.recs[i].shape, self.recs[i].dtype)
                                        for i in inputs], attrs)
        self._sub += 1
        key = (max(self.recs[i].key[0] for i in inputs), self._sub) if inputs else (0, self._sub)
        rec = Rec(self._next_id, op, list(inputs), attrs, shape, dtype, name, key, dict(meta or {}))
        self._next_id += 1
        self.recs[rec.id] = rec
        self.users[rec.id] = {}
        for src in inputs:
            self.users[src][rec.id] = None
        return rec.id

    def add_const(self, value: np.ndarray, name: str = "opt/const") -> int:
        self._edits += 1
        value = np.asarray(value)
        value.setflags(write=False)
        self._sub += 1
        rec = Rec(self._next_id, "const", [], {"value": value}, value.shape, value.dtype,
                  name, (0, self._sub))
        self._next_id += 1
        self.recs[rec.id] = rec
        self.users[rec.id] = {}
        return rec.id

    def add_input(self, name: str, shape: tuple, dtype: np.dtype) -> int:
        """A new input record (fed at run time), ordered before every other record."""
        self._edits += 1
        self._sub += 1
        rec = Rec(self._next_id, "input", [], {}, tuple(shape), np.dtype(dtype), name,
                  (-1, self._sub))
        self._next_id += 1
        self.recs[rec.id] = rec
        self.users[rec.id] = {}
        return rec.id

    def replace(self, old: int, new: int) -> None:
        """Every user of ``old`` (and the roots) reads ``new`` instead."""
        self.replace_all({old: new})

    def replace_all(self, mapping: dict[int, int]) -> None:
        """:meth:`replace` for many records at once: each user's inputs are rewritten
        once (a stack of T step values is one pass, not T)."""
        self._edits += 1
        mapping = {old: new for old, new in mapping.items() if old != new}
        users: dict[int, None] = {}
        for old in mapping:
            users.update(self.users[old])
        for user in users:
            rec = self.recs[user]
            rec.inputs = [mapping.get(i, i) for i in rec.inputs]
        for old, new in mapping.items():
            for user in self.users[old]:
                self.users[new][user] = None
            self.users[old] = {}
            self._replace_root(old, new)

    def rewire(self, user: int, old: int, new: int) -> None:
        """``user`` reads ``new`` wherever it read ``old``; other users of ``old`` keep it."""
        self._edits += 1
        rec = self.recs[user]
        rec.inputs = [new if i == old else i for i in rec.inputs]
        self.users[new][user] = None
        self.users[old].pop(user, None)
        self._release(old)

    def _replace_root(self, old: int, new: int) -> None:
        if old in self.root_set:
            places = self._root_places.pop(old)
            for place in places:
                self.roots[place] = new
            self._root_places.setdefault(new, []).extend(places)
            self.root_set.discard(old)
            self.root_set.add(new)
            if self.recs[new].source is None and self.recs[new].name.startswith("opt/"):
                self.recs[new].name = self.recs[old].name  # a fetched name survives its rewrite
        self._release(old)

    def _release(self, rec_id: int) -> None:
        """Forget a record nobody reads, and then whatever only it read."""
        stack = [rec_id]
        released: set[int] = set()  # each record lets go of its inputs once (diamonds!)
        while stack:
            dead = stack.pop()
            if dead in released or self.users[dead] or dead in self.root_set:
                continue
            released.add(dead)
            for src in set(self.recs[dead].inputs):
                self.users[src].pop(dead, None)
                stack.append(src)

    def readers(self, rec_id: int) -> list[Rec]:
        """The live records reading ``rec_id`` (``users`` may still hold dead ones)."""
        if self._live_ids[0] != self._edits:
            self._live_ids = (self._edits, {r.id for r in self.live()})
        live = self._live_ids[1]
        return [self.recs[u] for u in self.users[rec_id] if u in live]

    def live(self) -> list[Rec]:
        """The records the roots need, inputs before users (depth-first, deterministic).

        Iterative post-order from the roots in order, inputs in order: no
        recursion, O(n), and valid however passes reordered dependencies.
        """
        if self._live[0] == self._edits:
            return list(self._live[1])
        order: list[Rec] = []
        state: dict[int, bool] = {}  # id -> finished?
        for root in self.roots:
            if root in state:
                continue
            stack = [(root, False)]
            while stack:
                rec_id, expanded = stack.pop()
                if expanded:
                    state[rec_id] = True
                    order.append(self.recs[rec_id])
                    continue
                if rec_id in state:
                    continue
                state[rec_id] = False
                stack.append((rec_id, True))
                for src in reversed(self.recs[rec_id].inputs):
                    if src not in state:
                        stack.append((src, False))
        self._live = (self._edits, order)
        return list(order)

    def descendants(self, start: list[int]) -> set[int]:
        """``start`` and every live record that reads one of them, directly or not."""
        seen = set(start)
        stack = list(start)
        while stack:
            for user in self.users[stack.pop()]:
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
        return seen

    def build(self, name: str | None = None) -> tuple[Graph, list[Node]]:
        """A new Graph holding the live records, and the node of each root."""
        graph = type(self.graph)(name or self.graph.name)
        built: dict[int, Node] = {}
        for rec in self.live():
            node_name = rec.name if rec.name not in graph.nodes else graph._unique_name(rec.name)
            if rec.op == "param":
                assert rec.source is not None  # params are only copied from the original graph
                # Share the live array: in-place updates of the original show through.
                node = graph._insert(node_name, "param", (), {}, rec.shape, rec.dtype, rec.meta)
                node._value = rec.source.graph.param_source(rec.source)._value
            elif rec.op in ("input", "const"):
                node = graph._insert(node_name, rec.op, (), dict(rec.attrs), rec.shape,
                                     rec.dtype, rec.meta)
            else:  # shapes were inferred when the record was made
                node = graph._insert(node_name, rec.op, tuple(built[i] for i in rec.inputs),
                                     rec.attrs, rec.shape, rec.dtype, rec.meta)
            if rec.source is not None and rec.op == "param":
                # A draft of a pass-built graph: point at the original param, not its copy.
                graph._param_sources[node.name] = rec.source.graph.param_source(rec.source)
            built[rec.id] = node
        return graph, [built[r] for r in self.roots]


def freeze(value: Any) -> Any:
    """A hashable stand-in for attrs (tuples, dicts, arrays), for comparing nodes."""
    if isinstance(value, dict):
        items = tuple(sorted(value.items()))
        try:
            hash(items)  # the usual attrs (ints, None, tuples of them) already are hashable
            return items
        except TypeError:
            return tuple((k, freeze(v)) for k, v in items)
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return value


def per_scan(rewrite: Callable[[Draft, Rec], None], doc: str) -> Callable[[Draft], None]:
    """A pass applying ``rewrite(draft, rec)`` to every live scan record of a draft."""
    def run(draft: Draft) -> None:
        for rec in draft.live():
            if rec.op == "scan":
                rewrite(draft, rec)

    run.__doc__ = doc
    return run

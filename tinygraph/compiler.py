"""From a graph and its fetches to a running plan: rewrite, compile, cache.

This module sits above :mod:`tinygraph.passes` and :mod:`tinygraph.exec`
and joins them::

    graph, fetches ──passes.rewrite──▶ optimized graph ──exec.Plan──▶ plan(feeds)
                                                           │ fast path fails
                                                           ▼
                                   exec.Plan(graph as built)  (plan.fallback)

``g.run`` caches one plan per (fetches, fed inputs) on the graph;
``g.compile`` returns a :class:`~tinygraph.exec.CompiledGraph`;
``optimize=False`` runs the reference :class:`~tinygraph.exec.Interpreter`
(``run``) or compiles the graph exactly as built (``compile``).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(None,))
>>> plan = make_plan(g, tg.tanh(x) * 2.0, ["x"])
>>> plan.graph is not g, plan(({"x": np.zeros(2)}))
(True, array([0., 0.]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import passes
from .core.gcpause import gc_paused
from .core.graph import Graph
from .core.node import Node
from .core.traverse import Fetches, ancestors
from .exec import CompiledGraph, Interpreter, Plan, input_names, resolve_feeds
from .exec.finite import FiniteInterpreter
from .exec.threads import call_with_threads

__all__ = ["make_plan", "run", "compile_plan", "OPTIMIZE_MAX_NODES", "UNROLLED_OPTIMIZE_MAX_NODES"]

# Above this many needed nodes plans skip the rewrite passes: in Python they
# cost ~10-20 µs per node, more than a first run saves on graphs that large...
OPTIMIZE_MAX_NODES = 50_000
# ...unless the nodes carry step marks (rnn.unroll's meta["t"]): rerolling then
# shrinks the graph to one loop and every later run is much faster (measured: a
# 2-layer GRU unrolled 500 steps, 86,000 nodes, optimizes in 0.7 s and then
# trains 35x faster per call; a 10,000-step vanilla unroll compiles in 1.05 s
# instead of 0.30 s and then runs 2.5x faster). Without marks, a graph that
# large is optimized if rerolling finds a loop in it (a 5,000-step training loop
# written by hand, 150,000 nodes: compiled in 1.8 s to 39 plan steps).
UNROLLED_OPTIMIZE_MAX_NODES = 500_000
_PLAN_CACHE_SIZE = 64


@gc_paused()  # rewriting allocates a record per node; nothing is garbage until it ends
def make_plan(graph: Graph, fetches: Any, fed: Sequence[str] = (), optimize: bool = True) -> Plan:
    """A plan of ``fetches`` for the inputs ``fed``; rewritten by the passes when ``optimize``.

    An optimized plan evaluates the rewritten graph and falls back to the
    plan of the graph as built when its fast path fails (see
    :class:`~tinygraph.exec.Plan`).
    """
    nodes = Fetches(graph, fetches).nodes
    worth = _worth_optimizing(ancestors(graph, nodes)) if optimize else "no"
    if worth == "no":
        return Plan(graph, fetches, fed)
    source, source_nodes = graph, nodes
    regraded = passes.regrad(graph, nodes)  # gradients through a scan, when it rerolls
    if regraded is not None:
        source, source_nodes = regraded
    elif worth == "if it rerolls":  # a large graph without step marks: only a loop pays
        draft = passes.Draft(graph, nodes)
        passes.reroll_pass(draft)
        if not any(rec.op == "scan" for rec in draft.live()):
            return Plan(graph, fetches, fed)
        source, source_nodes = draft.build()
    rewritten, new_nodes = passes.rewrite(source, source_nodes, passes.OPTIMIZE_PASSES)
    template = Fetches(graph, fetches)
    new_fetches = template.rebuild(new_nodes)
    return Plan(rewritten, new_fetches, fed, fallback=lambda: Plan(graph, fetches, fed))


def _worth_optimizing(needed: list[Node]) -> str:
    """Whether to optimize: ``"yes"``, ``"no"``, or ``"if it rerolls"`` (large, no step
    marks: a loop written by hand shrinks to one and pays for the passes; any other
    graph that large does not)."""
    if len(needed) <= OPTIMIZE_MAX_NODES:
        return "yes"
    if len(needed) > UNROLLED_OPTIMIZE_MAX_NODES:
        return "no"
    return "yes" if any("t" in node.meta for node in needed) else "if it rerolls"


def _cached_plan(graph: Graph, fetches: Any, fed: frozenset[str]) -> Plan:
    key = (Fetches(graph, fetches).key, fed)
    plan = graph._plans.get(key)
    if plan is None:
        plan = make_plan(graph, fetches, sorted(fed))
        if len(graph._plans) >= _PLAN_CACHE_SIZE:
            graph._plans.pop(next(iter(graph._plans)))
        graph._plans[key] = plan
    return plan


def run(graph: Graph, fetches: Any, feeds: Mapping[Any, Any], optimize: bool = True,
        check_finite: bool = False) -> Any:
    """Evaluate ``fetches`` given ``feeds``; see :meth:`tinygraph.Graph.run`."""
    if check_finite:  # node by node, stopping at the first NaN or inf: exec/finite.py
        return FiniteInterpreter(graph, fetches).run(feeds)
    if not optimize:
        return Interpreter(graph, fetches).run(feeds)
    fed = resolve_feeds(graph, feeds)
    plan = _cached_plan(graph, fetches, frozenset(fed))
    return call_with_threads(plan, lambda: plan(fed))  # BLAS threads: exec/threads.py


def compile_plan(graph: Graph, fetches: Any, inputs: Sequence[Any] | None = None,
                 optimize: bool = True, check_finite: bool = False) -> CompiledGraph:
    """See :meth:`tinygraph.Graph.compile`."""
    names = input_names(graph, fetches, inputs)
    finite = FiniteInterpreter(graph, fetches) if check_finite else None
    return CompiledGraph(graph, make_plan(graph, fetches, names, optimize=optimize), names,
                         finite=finite, fetches=fetches)

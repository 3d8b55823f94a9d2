"""The unrolled picture: steps left to right on straight state rows (see :mod:`.spine`).

::

                 o          o                 o          o
    s0 ─▶ [t=0 … s] ─▶ [t=1 … s] ─▶ «… N steps …» ─▶ [t=T-2 … s] ─▶ [t=T-1 … s]
                 x          x                 x          x

Every drawn node carries SVG classes for checking and styling: ``step-k``
(and a ``step-k`` cluster per step), ``state`` (``state-h``/``state-c`` for
a state in parts), ``input``, ``output``, ``param`` (the stubs), and
``ellipsis`` for the one "… N steps …" node. Shared params never draw an edge
across the picture: each reader gets a small stub (``params="stubs"``) or
names the param in its label, with one legend (``params="labels"``).

By default every step is drawn up to T = :data:`FULL_UP_TO`; a longer net
shows its first and last :data:`DEFAULT_WINDOW` steps around the ellipsis.

>>> import tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.LSTMCell(input_size=2, hidden_size=3), steps=50)
>>> src = unrolled_drawing(net).to_digraph().source
>>> src.count('class="step-'), "… 44 steps …" in src, "state-c" in src
(6, True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import tinygraph as tg
from tinygraph.core.shapes import format_shape
from tinygraph.render import node_kind, node_label, node_values, options, title_of
from tinygraph.render.drawing import Drawing

from .spine import StepPlan, nodes_by_step, plan_step, state_parts, template

__all__ = ["unrolled_drawing", "draw_forward", "finish_rows", "gaps", "shown_steps",
           "FULL_UP_TO", "DEFAULT_WINDOW", "PARAMS"]

FULL_UP_TO = 8      # draw every step of a net this short
DEFAULT_WINDOW = 3  # else the first and last 3 steps
PARAMS = ("stubs", "labels")

_STEP_CLUSTER = {"labelloc": "b"}  # under rankdir=BT, "b" puts the label on top
_RECURRENT = {"constraint": "true"}
_STUB_EDGE = {"color": "#999999", "arrowsize": "0.5"}
_STATE_LOOK = {"penwidth": "2"}


def shown_steps(steps: int, window: int | None) -> tuple[list[int], range | None]:
    """The steps drawn and the hidden middle (None when every step is drawn)."""
    if window is None:
        window = None if steps <= FULL_UP_TO else DEFAULT_WINDOW
    if window is None or steps <= 2 * window:
        return list(range(steps)), None
    return [*range(window), *range(steps - window, steps)], range(window, steps - window)


def _check_params(params: Any) -> None:
    if params not in PARAMS:
        raise tg.RenderError(f"params must be one of {', '.join(map(repr, PARAMS))}, "
                             f"got {params!r}")


def unrolled_drawing(net: Any, window: int | None = None, params: str = "stubs",
                     strict: bool = False, **kwargs: Any) -> Drawing:
    """The drawing of ``view="unrolled"``: time left to right, straight state rows.

    ``window=k`` draws steps 0…k-1 and T-k…T-1 around one ellipsis (when
    T > 2k); ``strict=True`` puts every node on a path from the previous
    state to the new one into the state row (the self-check's second try).
    """
    _check_params(params)
    opts = options(**kwargs)
    graph, T = net.graph, net.steps  # noqa: N806
    shown, hidden = shown_steps(T, window)
    title = f"{graph.name}, {T} step{'s' * (T != 1)}"
    if hidden is not None:
        title += f" (t=0 … t={shown[len(shown) // 2 - 1]}, … , t={T - 1})"
    drawing = Drawing(title=title_of(opts, title), rankdir="BT", label_limit=opts.label_limit)
    rows = draw_forward(drawing, net, shown, opts, params, strict)
    finish_rows(drawing, rows)
    return drawing


def gaps(shown: list[int], steps: int) -> list[range]:
    """The runs of steps left out between (and after) the ``shown`` ones."""
    runs, prev = [], -1
    for t in [*shown, steps]:
        if t > prev + 1:
            runs.append(range(prev + 1, t))
        prev = t
    return runs


def draw_forward(drawing: Drawing, net: Any, shown: list[int], opts: Any, params: str,
                 strict: bool = False, cluster_of: Callable[[int], tuple[str, ...]] | None = None,
                 gap_lines: Callable[[range], tuple[str, ...]] | None = None,
                 legend: bool = True) -> dict[int, list[Any]]:
    """Add the forward nodes of the ``shown`` steps to ``drawing``; returns its rows.

    The rows map a level (see :class:`~.spine.StepPlan`) to the box keys on it;
    :func:`finish_rows` turns them into ``{rank=same}`` rows. Each run of steps
    left out becomes one ``("ellipsis", first)`` box on the first state row
    (``("ellipsis", first, p)`` links on the others); ``cluster_of(t)`` is the
    cluster path of step ``t`` (default ``("t=<t>",)``).
    """
    graph, T = net.graph, net.steps  # noqa: N806
    if cluster_of is None:
        cluster_of = _plain_cluster
    by_step = nodes_by_step(graph, T)
    plan = plan_step(net, 0, strict, by_step[0])
    drawing.graph_attrs.update(nodesep="0.25", ranksep="0.35")
    drawing.in_order = True
    values = node_values(graph, opts)
    initial = state_parts(net.initial_state)
    part_names = [n.name.rstrip("0") or n.name for n in initial]
    multi = len(initial) > 1
    outputs = {o for o in net.outputs}
    rows: dict[int, list[Any]] = {}
    shared: dict[tg.Node, None] = {}
    runs = gaps(shown, T)
    after = {run[-1] + 1: run for run in runs}  # the step right after each run

    for p, node in enumerate(initial):
        drawing.add_box(node.name, "initial", node_label(node, opts, values.get(node)),
                        attrs=_STATE_LOOK)
        rows.setdefault(plan.rows[p], []).append(node.name)

    def add_gap(run: range) -> None:  # declared between the steps it joins
        text = (f"… {len(run)} step{'s' * (len(run) != 1)} …", f"t={run[0]} … t={run[-1]}")
        drawing.add_box(("ellipsis", run[0]), "ellipsis",
                        gap_lines(run) if gap_lines is not None else text)
        rows.setdefault(plan.rows[0], []).append(("ellipsis", run[0]))
        for p in range(1, len(initial)):  # the other rows pass the gap on a plain "…"
            drawing.add_box(("ellipsis", run[0], p), "link", ("…",))
            rows.setdefault(plan.rows[p], []).append(("ellipsis", run[0], p))

    for t in shown:
        if t in after:
            add_gap(after[t])
        cluster = cluster_of(t)
        drawing.cluster_attrs[cluster] = {**_STEP_CLUSTER, "class": f"step-{t}",
                                          **drawing.cluster_attrs.get(cluster, {})}
        parts = {node: p for p, node in enumerate(state_parts(net.states[t]))}
        for node in by_step[t]:
            tpl = template(node)
            classes = [f"step-{t}"]
            kind, attrs = node_kind(node, outputs), None
            if node in parts:
                classes.append("state")
                if multi:
                    classes.append(f"state-{part_names[parts[node]]}")
                attrs = dict(_STATE_LOOK)
                if kind == "output":  # a state that is also the output: still a state
                    attrs["fillcolor"] = "#d9f2d9"
                kind = "op"
            elif node.meta.get("role") == "input" and kind != "input":
                classes.append("input")
            lines = _label(node, opts, values.get(node), plan, params)
            drawing.add_box(node.name, kind, lines, cluster=cluster, classes=" ".join(classes),
                            attrs=attrs)
            level = plan.levels.get(tpl)
            if level is not None:
                rows.setdefault(level, []).append(node.name)
    if T in after:  # steps left out at the end
        add_gap(after[T])
    drawn = drawing.boxes

    for t in shown:
        cluster = cluster_of(t)
        prev = state_parts(net.initial_state if t == 0 else net.states[t - 1])
        for node in by_step[t]:
            for src in node.inputs:
                if src.name in drawn and step_of_box(src) == t:
                    back = (template(src), template(node)) in plan.back
                    drawing.add_edge(src.name, node.name, count=False,
                                     attrs={"constraint": "false"} if back else None)
                elif src in prev:
                    p = prev.index(src)
                    source: Hashable = src.name  # or an ellipsis box's key (a tuple)
                    if t in after:
                        source = ("ellipsis", after[t][0], p) if p else ("ellipsis", after[t][0])
                    on_row = template(node) in plan.spines[p]
                    drawing.add_edge(source, node.name, "recurrent", count=False,
                                     attrs=_RECURRENT if on_row else None)
                elif src.op == "param" or step_of_box(src) is None:
                    if src.op == "param" and opts.hide_params:
                        continue
                    shared[src] = None
                    if params == "stubs" or src.op != "param":
                        stub = ("stub", src.name, node.name)
                        ref = src.name.rpartition("/")[2]
                        drawing.add_box(stub, "stub", (ref,), cluster=cluster,
                                        classes=f"param step-{t}")
                        drawing.add_edge(stub, node.name, count=False, attrs=_STUB_EDGE)
    for run in runs:  # the state before each run enters its ellipsis
        last = state_parts(net.initial_state if run[0] == 0 else net.states[run[0] - 1])
        for p, node in enumerate(last):
            drawing.add_edge(node.name, ("ellipsis", run[0], p) if p else ("ellipsis", run[0]),
                             "recurrent", count=False, attrs={"style": "dashed", **_RECURRENT})
    if params == "labels" and legend:
        named = [n for n in shared if n.op == "param"]
        if named:
            lines = ["shared by every step:",  # type: ignore[assignment]
                     *(f"{n.name}  {format_shape(n.shape)}" for n in named)]
            drawing.add_box(("legend",), "param", lines, classes="legend")
    return rows


def finish_rows(drawing: Drawing, rows: dict[int, list[Any]]) -> None:
    """Write ``rows`` as ``{rank=same}`` rows, ordered bottom to top by their level.

    Invisible anchors, one per level, chained bottom to top: they give Graphviz the
    order of the rows (rank=same alone groups nodes but does not order the groups).
    """
    levels = sorted(rows)
    for level in levels:
        drawing.add_box(("anchor", level), "anchor", ("",))
        rows[level].append(("anchor", level))
    for low, high in zip(levels, levels[1:], strict=False):
        drawing.add_edge(("anchor", low), ("anchor", high), "invisible", count=False,
                         attrs={"minlen": str(high - low)})
    drawing.ranks = [rows[level] for level in levels]


def _plain_cluster(t: int) -> tuple[str, ...]:
    return (f"t={t}",)


def step_of_box(node: tg.Node) -> int | None:
    t = node.meta.get("t")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _label(node: tg.Node, opts: Any, value: Any, plan: StepPlan, params: str) -> tuple:
    lines = node_label(node, opts, value)
    gate = plan.gates.get(template(node))
    if gate is not None:
        lines = (lines[0], f"gate {gate}", *lines[1:])
    if params == "labels":
        names = [src.name for src in node.inputs if src.op == "param"]
        if names:
            lines = (f"{lines[0]}  ({', '.join(names)})", *lines[1:])
    return lines

"""The compact unrolled picture: one box per step (Olah's picture, Goodfellow Fig. 10.3).

``view="unrolled", compact=True`` draws each step as one cell box — its
name, its step and how many ops it holds — on one straight row, joined by
the recurrent edges (one per state part, labelled ``h``, ``c``, …), each
step's input below it and its output above; the params shared by every step
are listed once in a legend::

           o t=0        o t=1                      o t=T-1
             ▲            ▲                           ▲
    s0 ─▶ [cell t=0] ─▶ [cell t=1] ─▶ «… N steps …» ─▶ [cell t=T-1]
             ▲            ▲                           ▲
           x t=0        x t=1                      x t=T-1

Each step's boxes sit in a cluster of class ``step-k``; the cell box carries
``state step-k``, the input ``input step-k``, the output ``output step-k``,
the initial state no step class, the ellipsis ``ellipsis`` — the classes of
the detailed unrolled view, so :mod:`tinygraph_rnn.svgcheck` checks both.

>>> import tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.LSTMCell(input_size=2, hidden_size=3), steps=20)
>>> src = compact_drawing(net).to_digraph().source
>>> src.count('class="cell state step-'), "… 14 steps …" in src, "read by all 20 cells" in src
(6, True, True)
"""

from __future__ import annotations

from typing import Any

import tinygraph as tg
from tinygraph.core.shapes import format_shape
from tinygraph.render import options, title_of
from tinygraph.render.drawing import Drawing

from .spine import nodes_by_step, state_parts
from .spine_view import finish_rows, gaps, shown_steps

__all__ = ["compact_drawing"]

_STEP_CLUSTER = {"labelloc": "b", "style": "rounded", "color": "#e4e4e4", "fontcolor": "#aaaaaa"}
_RECURRENT = {"constraint": "true"}


def _cell_name(net: Any) -> str:
    name = type(getattr(net, "cell", None)).__name__
    name = name.removesuffix("Cell").removesuffix("RNN") or name
    return {"Vanilla": "RNN"}.get(name, name) + " cell"


def compact_drawing(net: Any, window: int | None = None, **kwargs: Any) -> Drawing:
    """The drawing of ``view="unrolled", compact=True`` (see the module doc)."""
    opts = options(**kwargs)
    graph, T = net.graph, net.steps  # noqa: N806
    shown, hidden = shown_steps(T, window)
    by_step = nodes_by_step(graph, T)
    title = f"{graph.name}, {T} step{'s' * (T != 1)}"
    if hidden is not None:
        title += f", window={len(shown) // 2}"
    drawing = Drawing(title=title_of(opts, title), rankdir="BT", label_limit=opts.label_limit)
    drawing.graph_attrs.update(nodesep="0.35", ranksep="0.45")
    drawing.in_order = True
    initial = state_parts(net.initial_state)
    names = [n.name.rstrip("0") or n.name for n in initial]
    rows: dict[int, list[Any]] = {-1: [], 0: [], 1: []}
    for node in initial:
        drawing.add_box(node.name, "initial", (node.name, "initial state"))
        rows[0].append(node.name)
    runs = {run[-1] + 1: run for run in gaps(shown, T)}
    shared: dict[tg.Node, None]  # an ordered set
    cell, shared = _cell_name(net), {}

    prev: list[Any] = [n.name for n in initial]
    for t in shown:
        if t in runs:
            run = runs[t]
            key = ("ellipsis", run[0])
            drawing.add_box(key, "ellipsis", (f"… {len(run)} steps …",
                                              f"t={run[0]} … t={run[-1]}"))
            rows[0].append(key)
            for p, src in enumerate(dict.fromkeys(prev)):
                drawing.add_edge(src, key, "recurrent", names[p] if len(names) > 1 else None,
                                 count=False, attrs={"style": "dashed", **_RECURRENT})
            prev = [key] * len(initial)
        cluster = (f"t={t}",)
        drawing.cluster_attrs[cluster] = {**_STEP_CLUSTER, "class": f"step-{t}"}
        parts = state_parts(net.states[t])
        out = net.outputs[t]
        ops = [n for n in by_step[t] if n.kind == "op"]
        inputs = [n for n in by_step[t] if n.kind == "input" or n.meta.get("role") == "input"]
        key = ("cell", t)
        drawing.add_box(key, "cell", (cell, f"t={t}", f"{len(ops)} ops"), cluster=cluster,
                        classes=f"state step-{t}")
        rows[0].append(key)
        for p, src in enumerate(prev):  # one edge per state part (", "-joined between cells)
            label = names[p] if src in {n.name for n in initial} else ", ".join(names)
            drawing.add_edge(src, key, "recurrent", None, count=False,
                             attrs={**_RECURRENT, "xlabel": label})
        for x in inputs:
            base = x.name.rpartition("/")[2]
            drawing.add_box(x.name, "input", (f"{base} t={t}", f"input {format_shape(x.shape)}"),
                            cluster=cluster, classes=f"input step-{t}")
            rows[-1].append(x.name)
            drawing.add_edge(x.name, key, count=False)
        if out is not None and out not in parts:
            base = str(out.meta.get("template", out.name)).rpartition("/")[2]
            drawing.add_box(("out", t), "output", (f"{base} t={t}",), cluster=cluster,
                            classes=f"step-{t}")
            rows[1].append(("out", t))
            drawing.add_edge(key, ("out", t), count=False)
        for node in by_step[t]:
            for src in node.inputs:
                if src.op == "param":
                    shared[src] = None
        prev = [key] * len(initial)
    if T in runs:  # steps left out at the end
        run = runs[T]
        key = ("ellipsis", run[0])
        drawing.add_box(key, "ellipsis", (f"… {len(run)} steps …", f"t={run[0]} … t={run[-1]}"))
        rows[0].append(key)
        drawing.add_edge(prev[0], key, "recurrent", count=False,
                         attrs={"style": "dashed", **_RECURRENT})
    if shared and not opts.hide_params:
        lines = ["shared by every step", f"(read by all {T} cells):",
                 *(f"{n.name}  {format_shape(n.shape)}" for n in shared)]
        drawing.add_box(("legend",), "param", lines, classes="legend")
    finish_rows(drawing, {k: v for k, v in rows.items() if v})
    return drawing


def check_compact(compact: Any) -> bool:
    """``compact`` as a bool, else RenderError."""
    if not isinstance(compact, bool):
        raise tg.RenderError(f"compact must be True or False, got {compact!r}")
    return compact

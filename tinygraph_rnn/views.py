"""Pictures of an unrolled network: unrolled, windowed, rolled, and one cell.

Every view is derived from the graph and the per-node metadata that
:func:`tinygraph_rnn.unroll` records — ``node.meta["t"]`` (the time step) and
``node.meta["template"]`` (the node's name inside the cell) — so it works for
any cell, including custom ones::

    unrolled      [t=0] ─▶ [t=1] ─▶ … ─▶ [t=T-1]      one cluster per step
    window=k      [t=0] … [t=k-1] ─▶ «… N steps …» ─▶ [t=T-k] … [t=T-1]
    rolled        s0 ─▶ [cell] ─▶ o                    the cell once; each edge from
                         ▲  │  ×T                      step k to step k+1 becomes one
                         └──┘                          loop labelled with T
    cell          params, s0 ─▶ [t=0: every gate]     one step in detail
    bptt          [t=k: forward ─▶ … ◁┄ backward]      forward and backward nodes per step,
                                                       shaded by ‖∂L/∂s_t‖ (views_bptt.py)

>>> import tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3), steps=50)
>>> src = view_to_dot(net, "rolled").source
>>> src.count("subgraph cluster"), "×50" in src
(1, True)
>>> svg = render_view(net, view="unrolled", window=2, engine="wasm")
>>> svg.count('class="cluster step&#45;'), "… 46 steps …" in svg
(4, True)
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import graphviz

import tinygraph as tg
from tinygraph.render import (
    node_kind,
    node_label,
    node_values,
    options,
    render_source,
    scope_path,
    title_of,
)
from tinygraph.render.drawing import Drawing
from tinygraph.render.engine import DEFAULT_TIMEOUT

from .gradflow import step_of
from .spine_view import shown_steps, unrolled_drawing
from .svgcheck import problems, read_svg
from .views_bptt import bptt_drawing
from .views_compact import check_compact, compact_drawing

__all__ = ["VIEWS", "view_to_dot", "render_view", "view_drawing"]

VIEWS = ("unrolled", "rolled", "cell", "bptt")


def _flat(items: Any) -> list:
    flat: list = []
    for item in items:
        flat.extend(item if isinstance(item, tuple) else (item,))
    return flat


def _template(node: tg.Node) -> str:
    return str(node.meta.get("template", node.name))


def _check(net: Any, view: str, window: Any) -> None:
    for attr in ("graph", "steps", "states", "outputs"):
        if not hasattr(net, attr):
            raise tg.RenderError(f"expected an unrolled net (with .graph, .steps, .states and "
                                 f".outputs, as from tinygraph_rnn.unroll); it has no .{attr}")
    if view not in VIEWS:
        raise tg.RenderError(f"view must be one of {', '.join(map(repr, VIEWS))}, got {view!r}")
    if window is not None:
        if view not in ("unrolled", "bptt"):
            raise tg.RenderError(f"window= applies to the unrolled view and the bptt view, "
                                 f"not to view={view!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise tg.RenderError(f"window must be a positive int (steps kept at each end), "
                                 f"got {window!r}")


def view_drawing(net: Any, view: str = "unrolled", window: int | None = None,
                 **kwargs: Any) -> Drawing:
    """The :class:`~tinygraph.render.drawing.Drawing` of one view (see :func:`view_to_dot`)."""
    _check(net, view, window)
    if view in ("unrolled", "bptt") and kwargs.get("rankdir") is not None:
        raise tg.RenderError(f"rankdir does not apply to view={view!r}: its time axis always "
                             "runs left to right (states on one row, inputs below, outputs "
                             f"above); got rankdir={kwargs['rankdir']!r}. view='rolled' and "
                             "view='cell' take rankdir")
    if view == "bptt":
        return bptt_drawing(net, window=window, **kwargs)
    if view == "unrolled":
        if check_compact(kwargs.pop("compact", False)):
            kwargs.pop("strict", None)
            return compact_drawing(net, window, **kwargs)
        return unrolled_drawing(net, window, **kwargs)
    if "compact" in kwargs:
        raise tg.RenderError(f"compact= applies to view='unrolled', not to view={view!r}")
    outputs = _flat(net.outputs)
    step = kwargs.pop("step", 0)
    if view == "cell":
        return _cell(net, step, outputs, kwargs)
    if step != 0:
        raise tg.RenderError("step= applies to view='cell' only")
    return _rolled(net, outputs, kwargs)


def _base_drawing(net: Any, kwargs: dict[str, Any], default_title: str):
    opts = options(**kwargs)
    drawing = Drawing(title=title_of(opts, default_title), rankdir=opts.rankdir,
                      label_limit=opts.label_limit)
    return opts, node_values(net.graph, opts), drawing


def _rolled(net: Any, outputs: list, kwargs: dict[str, Any]) -> Drawing:
    graph, steps = net.graph, net.steps
    opts, values, drawing = _base_drawing(net, kwargs, f"{graph.name}, rolled")
    # The representative of a template: its copy in the earliest step that has one.
    reps: dict[str, tg.Node] = {}
    for node in graph.nodes.values():
        if step_of(node) is not None:
            reps.setdefault(_template(node), node)
    out_templates = {_template(n) for n in outputs if step_of(n) is not None}

    def key_of(node: tg.Node) -> Hashable:
        return ("t", _template(node)) if step_of(node) is not None else node.name

    cluster = f"cell × {steps} steps"
    for node in graph.nodes.values():
        if opts.hide_params and node.op == "param":
            continue
        step = step_of(node)
        if step is None:
            kind = node_kind(node, dict.fromkeys(outputs))
            drawing.add_box(node.name, kind, node_label(node, opts, values.get(node)),
                            cluster=scope_path(node))
        elif reps[_template(node)] is node:
            template = _template(node)
            kind = "output" if template in out_templates else node_kind(node)
            path = (cluster, *template.split("/")[:-1])
            label = node_label(node, opts, values.get(node), name=template.rpartition("/")[2])
            drawing.add_box(key_of(node), kind, label, cluster=path)
    for node in graph.nodes.values():
        for src in node.inputs:
            if opts.hide_params and src.op == "param":
                continue
            a, b = step_of(src), step_of(node)
            lag = 0 if a is None or b is None else b - a
            if lag == 0:
                drawing.add_edge(key_of(src), key_of(node), count=False)
            else:  # the recurrence: one loop for every copy of this edge
                label = f"×{steps}" if lag == 1 else f"t{-lag:+d}"  # type: ignore[assignment]
                drawing.add_edge(key_of(src), key_of(node), "recurrent", label, count=False)
    return drawing


def _cell(net: Any, step: Any, outputs: list, kwargs: dict[str, Any]) -> Drawing:
    graph = net.graph
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < net.steps:
        raise tg.RenderError(f"step must be an int in [0, {net.steps}), got {step!r}")
    opts, values, drawing = _base_drawing(net, kwargs, f"{graph.name}, step t={step}")
    inside = [n for n in graph.nodes.values() if step_of(n) == step]
    members = dict.fromkeys(inside)
    marked = dict.fromkeys(n for n in [*outputs, *_flat(net.states)] if n in members)
    for node in inside:
        for src in node.inputs:
            if src not in members and not (opts.hide_params and src.op == "param"):
                # Where the step's inputs come from, by full name (e.g. t=2/s).
                drawing.add_box(src.name, node_kind(src),
                                node_label(src, opts, values.get(src), name=src.name))
    for node in inside:
        drawing.add_box(node.name, node_kind(node, marked),
                        node_label(node, opts, values.get(node)), cluster=scope_path(node))
    for node in inside:
        for src in node.inputs:
            if src.name in drawing.boxes:
                drawing.add_edge(src.name, node.name)
    return drawing


def view_to_dot(net: Any, view: str = "unrolled", window: int | None = None,
                **options: Any) -> graphviz.Digraph:
    """One picture of an unrolled net as a ``graphviz.Digraph`` (pure: writes nothing).

    Parameters
    ----------
    net : tinygraph_rnn.Unrolled
        Anything with ``.graph``, ``.steps``, ``.states`` and ``.outputs``
        whose step nodes carry ``meta["t"]`` and ``meta["template"]``.
    view : {"unrolled", "rolled", "cell", "bptt"}
        ``"unrolled"``: one cluster per step (the graph's own picture);
        ``compact=True`` draws each step as one cell box instead (Olah's
        picture; :mod:`tinygraph_rnn.views_compact`). The unrolled views
        always run time left to right: ``rankdir`` is refused there.
        ``"rolled"``: the cell once, with params and initial state; every
        edge from step k to step k+1 becomes one loop labelled ``×T``.
        ``"cell"``: one step's nodes in detail, with where their inputs come
        from (``step=k`` picks the step; default 0).
        ``"bptt"``: forward and backward nodes of each step together, the
        backward ones styled as gradients with dashed reversed edges; takes
        ``loss=``, ``steps=``, ``truncate=`` and, to shade each step by
        ‖∂L/∂s_t‖, ``values=`` from a run of the nodes
        :func:`tinygraph_rnn.bptt_gradients` added (see docs/bptt.md).
    window : int, optional
        Unrolled and bptt views: keep the first and last ``window`` steps and
        draw the steps between as one ``… N steps …`` box.
    **options
        Options of :func:`tinygraph.render.to_dot` (``hide_params``,
        ``rankdir``, ``values``, ``title``, …); the rolled and cell views
        use those that apply to them.

    Raises
    ------
    RenderError
        An unknown view, a bad window or step, or an invalid option.
    """
    return view_drawing(net, view, window, **options).to_digraph()


def render_view(net: Any, path: Any = None, view: str = "unrolled", window: int | None = None,
                format: str | None = None, engine: str = "auto",  # noqa: A002
                timeout: float = DEFAULT_TIMEOUT, **options: Any) -> str:
    """Draw one view of ``net`` into ``path`` (format from the suffix); returns ``path``.

    With ``path=None`` nothing is written and the SVG text is returned. See
    :func:`view_to_dot` for the views and :func:`tinygraph.render.render` for
    ``format``, ``engine`` and ``timeout``.
    """
    if view not in ("unrolled", "bptt") or format not in (None, "svg") or (
            path is not None and not str(path).lower().endswith(".svg")):
        return render_source(view_to_dot(net, view, window, **options), path, format, engine,
                             timeout)
    svg = checked_svg(net, window, engine, timeout, view=view, **options)
    if path is None:
        return svg
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(svg)
    except OSError as exc:
        raise tg.RenderError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return str(path)


def checked_svg(net: Any, window: int | None = None, engine: str = "auto",
                timeout: float = DEFAULT_TIMEOUT, view: str = "unrolled", **options: Any) -> str:
    """The unrolled (or bptt) view as SVG, checked after layout (:mod:`tinygraph_rnn.svgcheck`).

    A picture with steps out of order, a bent state row or a cluster over
    its neighbour is laid out again with every node of the recurrent path
    in the state row (``strict=True``); the first picture that passes wins
    (the strict one when neither does). Each check costs milliseconds.
    """
    _check(net, view, window)
    ellipses = None if view == "bptt" else int(shown_steps(net.steps, window)[1] is not None)
    svg = ""
    for strict in (False, True):
        dot = view_drawing(net, view, window, strict=strict, **options).to_digraph()
        svg = render_source(dot, None, "svg", engine, timeout)
        if not problems(read_svg(svg), ellipses=ellipses):
            break
    return svg

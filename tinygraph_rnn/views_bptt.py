"""The "bptt" picture: forward and backward nodes of an unrolled net, step by step.

One cluster per time step holds the step's forward nodes and the backward
nodes of backpropagation through time that belong to it (styled as gradient
nodes, their edges dashed and drawn against the layout so the backward chain
lies beside the forward chain it mirrors). Given the arrays of a run, each
step is shaded by the size of the gradient reaching its state, so vanishing
and exploding gradients show at a glance; a truncated-BPTT window can be
marked::

    ┌ t=0  ‖∂L/∂s‖=3e-07 ┐    ┌ t=1  ‖∂L/∂s‖=1e-06 ┐      ┌ truncated BPTT window ─┐
    │  x ─▶ … ─▶ s ─▶ o  │ ─▶ │  x ─▶ … ─▶ s ─▶ o  │ ─▶ … │  [t=T-2]    [t=T-1]    │
    │  ◁┄ … ◁┄ ∂L/∂s     │ ◁┄ │  ◁┄ … ◁┄ ∂L/∂s ◁┄  │ ◁cut │   ◁┄┄┄┄┄┄┄┄┄◁ ∂L/∂o      │
    └────────────────────┘    └────────────────────┘      └────────────────────────┘
      fill: log10 ‖∂L/∂s_t‖ between the smallest (light) and the largest (dark); a legend

Drawing is pure: the backward nodes must already be in the graph —
:func:`tinygraph_rnn.bptt_gradients` adds them, in a call of its own — and
the norms come from ``values=``, the arrays of a run of those nodes. This
view adds no node, runs nothing and writes nothing. Which step a backward
node belongs to is decided by :func:`tinygraph_rnn.gradflow.backward_steps`.

What is left out, to keep the picture readable: params (``hide_params``
defaults to True here), and the dotted "reads" edges from forward values
into backward nodes except within one step.

>>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=4)
>>> loss = tg.sum(tg.stack(net.states))
>>> grads = rnn.bptt_gradients(net, loss)
>>> arrays = net.graph.run(grads, {x: np.ones((1, 2)) for x in net.inputs})
>>> src = bptt_drawing(net, loss=loss, values=dict(zip(grads, arrays))).to_digraph().source
>>> src.count("‖∂L/∂s‖="), src.count('dir="back"') > 0
(4, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import graphviz
import numpy as np

import tinygraph as tg
from tinygraph.render import node_kind, node_label, node_values, options, scope_path, title_of
from tinygraph.render.drawing import Drawing
from tinygraph.render.text import quote

from .gradflow import backward_steps, gradient_norms, state_gradients, step_of

__all__ = ["bptt_drawing", "BpttDrawing", "DEFAULT_WINDOW", "EDGE_LOOKS", "CLUSTER_LOOKS",
           "LOW", "HIGH"]

DEFAULT_WINDOW = 3  # steps kept at each end of a long net when neither window= nor steps= is given

# This view's looks, next to the renderer's table (tinygraph.render.drawing.STYLES).
# Backward edges are written head-to-tail with dir=back: they point the way the
# gradient flows, but the layout ranks them like the forward edges they mirror.
EDGE_LOOKS: dict[str, dict[str, str]] = {
    "backward": {"dir": "back", "style": "dashed", "color": "#b03030"},
    "bptt": {"dir": "back", "style": "dashed", "color": "#b03030", "penwidth": "2"},
    "cut": {"dir": "back", "style": "dotted", "color": "#888888", "fontcolor": "#d9822b",
            "penwidth": "2", "label": "cut"},
    "reads": {"style": "dotted", "color": "#aaaaaa", "arrowsize": "0.5",
              "constraint": "false"},
}
LOW, HIGH = (0xF4, 0xF8, 0xFC), (0x4A, 0x86, 0xC8)  # fills of the smallest / largest norm
NONFINITE = "#f08080"                                # a step whose gradient has nan or inf

CLUSTER_LOOKS: dict[str, dict[str, str]] = {
    "step": {"style": "rounded,filled", "color": "#999999"},
    "window": {"style": "rounded,bold", "color": "#d9822b", "fontcolor": "#d9822b",
               "penwidth": "3"},
    "legend": {"style": "rounded", "color": "#999999"},
}


@dataclass
class BpttDrawing(Drawing):
    """A :class:`~tinygraph.render.drawing.Drawing` plus this view's own looks.

    ``cluster_looks`` maps a cluster path to extra cluster attributes (the
    fill of a step, the window's border) and ``edge_looks`` maps an edge to
    a name in :data:`EDGE_LOOKS`. :meth:`to_digraph` writes the plain
    drawing, then the looked edges, then re-opens each styled cluster to
    set its attributes (in DOT a later ``subgraph cluster_N { graph [...] }``
    adds to the subgraph of that name, found through its parents).
    """

    cluster_looks: dict[tuple[str, ...], dict[str, str]] = field(default_factory=dict)
    edge_looks: dict[tuple[Hashable, Hashable], str] = field(default_factory=dict)

    def to_digraph(self) -> graphviz.Digraph:
        plain = dataclasses.replace(self, edges={pair: edge for pair, edge in self.edges.items()
                                                 if pair not in self.edge_looks})
        dot = Drawing.to_digraph(plain)
        # The ids Drawing.to_digraph gave: boxes n0, n1, … in order, clusters in order of
        # first use (tests/test_views_bptt.py checks the styled clusters are the right ones).
        ids = {key: f"n{i}" for i, key in enumerate(self.boxes)}
        clusters: dict[tuple[str, ...], str] = {}
        for box in self.boxes.values():
            for depth in range(1, len(box.cluster) + 1):
                clusters.setdefault(box.cluster[:depth], f"cluster_{len(clusters)}")
        for (src, dst), look in self.edge_looks.items():
            edge, attrs = self.edges[(src, dst)], dict(EDGE_LOOKS[look])
            text = attrs.pop("label", edge.label)
            if edge.count > 1:
                text = f"×{edge.count}" if text is None else f"{text} ×{edge.count}"
            if text is not None:
                attrs["label"] = text
            tail, head = (dst, src) if attrs.get("dir") == "back" else (src, dst)
            dot.body.append(f"\t{ids[tail]} -> {ids[head]} [{_attrs(attrs)}]\n")
        for path, attrs in self.cluster_looks.items():
            if path in clusters:
                opening = " ".join(f"subgraph {clusters[path[:d]]} {{"
                                   for d in range(1, len(path) + 1))
                dot.body.append(f"\t{opening} graph [{_attrs(attrs)}] {'}' * len(path)}\n")
        return dot


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _attrs(attrs: Mapping[str, str]) -> str:
    return " ".join(f"{key}={quote(value)}" for key, value in attrs.items())


def _fmt(n: float) -> str:
    return f"{n:.1e}" if math.isfinite(n) and n > 0 else ("0" if n == 0 else str(n))


def _fills(norms: np.ndarray) -> list[str]:
    """One fill per step: LOW..HIGH by log10 of the norm, between the smallest and largest."""
    positive = norms[np.isfinite(norms) & (norms > 0)]
    lo, hi = (math.log10(positive.min()), math.log10(positive.max())) if positive.size else (0, 0)
    fills = []
    for n in norms.tolist():
        if not math.isfinite(n):
            fills.append(NONFINITE)
            continue
        f = 0.0 if n <= 0 else (1.0 if hi == lo else (math.log10(n) - lo) / (hi - lo))
        fills.append(_hex(a + (b - a) * f for a, b in zip(LOW, HIGH, strict=True)))
    return fills


def _shown_steps(T: int, window: Any, steps: Any) -> list[int]:  # noqa: N803
    if window is not None and steps is not None:
        raise tg.RenderError("give window= or steps=, not both")
    if steps is not None:
        try:
            items = list(steps)
        except TypeError:
            raise tg.RenderError(f"steps must be a sequence of step indices, got "
                                 f"{steps!r}") from None
        for t in items:
            if isinstance(t, bool) or not isinstance(t, int | np.integer) or not -T <= t < T:
                raise tg.RenderError(f"steps must hold ints in [-{T}, {T}) (the net has {T} "
                                     f"steps), got {t!r}")
        if not items:
            raise tg.RenderError("steps is empty: name at least one step to draw")
        return sorted({int(t) % T for t in items})
    if window is None:
        window = DEFAULT_WINDOW
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise tg.RenderError(f"window must be a positive int (steps kept at each end), "
                             f"got {window!r}")
    return list(range(T)) if T <= 2 * window else [*range(window), *range(T - window, T)]


@dataclass
class _Clusters:
    """Where each step's cluster sits: its label, and inside the window's cluster or not."""

    labels: list[str]
    first: int                 # the window's first step (T when there is no window)
    window: str | None = None  # the window cluster's label

    def outer(self, t: int) -> tuple[str, ...]:
        return (self.window,) if self.window is not None and t >= self.first else ()

    def of(self, t: int) -> tuple[str, ...]:
        return (*self.outer(t), self.labels[t])


def bptt_drawing(net: Any, loss: Any = None, window: int | None = None, steps: Any = None,
                 truncate: int | None = None, **kwargs: Any) -> BpttDrawing:
    """The drawing of ``view="bptt"`` (see :func:`tinygraph_rnn.views.view_to_dot`).

    Parameters
    ----------
    net : tinygraph_rnn.Unrolled
    loss : Node or str, optional
        The loss whose backward pass is drawn; :func:`tinygraph_rnn.bptt_gradients`
        must have been called for it. Optional when the graph holds one such pass.
    window : int, optional
        Draw the first and last ``window`` steps and one ``…`` box for the
        steps between (default: 3, when the net has more than 6 steps).
    steps : sequence of int, optional
        Draw exactly these steps (negative ones count from the end); each
        run of steps left out becomes one ``…`` box.
    truncate : int, optional
        Mark the last ``truncate`` steps as the truncated-BPTT window: their
        clusters sit in one orange-bordered cluster, and the backward edges
        leaving it are dotted and labelled ``cut``.
    **kwargs
        Render options. ``values={node or name: array}`` holding the arrays
        of every ``bptt_gradients`` node shades the steps (other nodes'
        arrays are shown as statistics, as in every view); ``hide_params``
        defaults to True; ``collapse`` and ``order`` do not apply.

    Raises
    ------
    RenderError
        No backward pass for ``loss`` in the graph, a bad loss, bad
        ``window``/``steps``/``truncate``/options, ``values`` for only some
        steps, or more boxes than ``max_nodes``.
    """
    try:
        loss, grads = state_gradients(net, loss)
    except tg.GraphError as exc:
        raise tg.RenderError(f"view='bptt': {exc}") from None
    kwargs.setdefault("hide_params", True)
    opts = options(**kwargs)
    graph, T = net.graph, net.steps  # noqa: N806
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int)
                                 or not 1 <= truncate <= T):
        raise tg.RenderError(f"truncate must be an int in [1, {T}] (the window's steps), "
                             f"got {truncate!r}")
    shown = _shown_steps(T, window, steps)
    values = node_values(graph, opts)
    try:
        norms = gradient_norms(grads, values)
    except tg.GraphError as exc:
        raise tg.RenderError(f"view='bptt': {exc}") from None

    # What is drawn: the loss's ancestors, every step's forward nodes, and the backward
    # nodes the ∂loss/∂s_t nodes need (not other gradient passes of the same graph).
    pinned = {p: t for t, parts in enumerate(grads) for p in parts}
    needed = graph.schedule([loss, *pinned])
    backward = [n for n in needed if n.meta.get("grad") is True]
    forward = [n for n in needed if n.meta.get("grad") is not True and step_of(n) is None]
    forward += [n for n in graph.nodes.values() if step_of(n) is not None]
    step = {**{n: step_of(n) for n in forward}, **backward_steps(backward, pinned)}
    nodes = sorted(forward + backward, key=lambda n: n.index)
    if opts.hide_params:
        nodes = [n for n in nodes if n.op != "param"]

    labels = [f"t={t}" + (f"  ‖∂L/∂s‖={_fmt(norms[t])}" if norms is not None else "")
              for t in range(T)]
    where = _Clusters(labels, T - truncate if truncate else T)
    if truncate:
        where.window = (f"truncated BPTT window: {truncate} step{'s' * (truncate != 1)} "
                        f"(t={where.first} … t={T - 1})")
    drawing = BpttDrawing(title=title_of(opts, f"{graph.name}, backpropagation through time"),
                          rankdir=opts.rankdir, label_limit=opts.label_limit)
    _add_nodes(drawing, nodes, step, pinned, where, opts, values, [*net.outputs, loss], loss)
    _elide_steps(drawing, nodes, step, [t for t in range(T) if t not in shown], where, norms)
    if opts.max_fanout is not None:
        drawing.split_fanout(opts.max_fanout)
    if opts.max_nodes is not None and len(drawing.boxes) > opts.max_nodes:
        raise tg.RenderError(f"view='bptt' of {len(shown)} steps needs {len(drawing.boxes)} "
                             f"boxes > max_nodes={opts.max_nodes}: draw fewer steps (window=, "
                             "steps=) or pass max_nodes=None")
    _edge_looks(drawing, graph, step, where)
    if norms is not None:
        _shade(drawing, norms, shown, where)
    else:
        drawing.notes.append("no gradient values: pass values= from a run of the "
                             "bptt_gradients nodes to shade the steps by ‖∂L/∂s_t‖")
    if where.window is not None:
        drawing.cluster_looks[(where.window,)] = dict(CLUSTER_LOOKS["window"])
        drawing.notes.append(f"{where.window}: orange border; backward edges leaving it "
                             "are cut")
    return drawing


def _add_nodes(drawing: BpttDrawing, nodes: list[tg.Node], step: Mapping[tg.Node, Any],
               pinned: Mapping[tg.Node, int], where: _Clusters, opts: Any,
               values: Mapping[tg.Node, Any], outputs: list, loss: tg.Node) -> None:
    marked = dict.fromkeys(outputs)
    loss_name = loss.name.rpartition("/")[2]
    for node in nodes:
        t, is_grad = step[node], node.meta.get("grad") is True
        if node in pinned:  # its norm is in the step's label; statistics would repeat it
            state = node.graph.node(node.meta["grad_of"])
            name = f"∂{loss_name}/∂{state.meta.get('template', state.name)}"
            label = node_label(node, opts, None, name=name)
        else:
            label = node_label(node, opts, values.get(node))
        if t is None:  # outside every step: the loss, the initial state, the loss's gradient
            cluster = () if is_grad else scope_path(node)
        elif is_grad:
            cluster = where.of(t)
        else:  # a cell's own scopes (gates) nest inside the step
            cluster = (*where.of(t), *str(node.meta.get("template", "")).split("/")[:-1])
        drawing.add_box(node.name, node_kind(node, marked), label, cluster=cluster)
    for node in nodes:
        for src in node.inputs:
            if src.name in drawing.boxes:
                drawing.add_edge(src.name, node.name)


def _elide_steps(drawing: BpttDrawing, nodes: list[tg.Node], step: Mapping[tg.Node, Any],
                 hidden: list[int], where: _Clusters, norms: np.ndarray | None) -> None:
    runs: list[list[int]] = []
    for t in hidden:  # runs of left-out steps, never across the window's edge
        if runs and runs[-1][-1] == t - 1 and t != where.first:
            runs[-1].append(t)
        else:
            runs.append([t])
    for run in runs:
        lines = [f"… {len(run)} steps (t={run[0]} … t={run[-1]}) …" if len(run) > 1
                 else f"… step t={run[0]} …"]
        if norms is not None:
            part = norms[run[0]:run[-1] + 1]
            lines.append(f"‖∂L/∂s‖ {_fmt(part.min())} … {_fmt(part.max())}" if len(run) > 1
                         else f"‖∂L/∂s‖={_fmt(part[0])}")
        key = ("ellipsis", run[0])
        members = [n.name for n in nodes if step[n] in run]
        drawing.elide(members, key, lines[0], cluster=where.outer(run[0]))
        if key in drawing.boxes:  # a line each, so the label limit cuts neither
            drawing.boxes[key].lines = tuple(lines)


def _edge_looks(drawing: BpttDrawing, graph: tg.Graph, step: Mapping[tg.Node, Any],
                where: _Clusters) -> None:
    """Name the look of every edge into a backward node; drop reads from far away."""
    far = []
    for (src, dst), edge in drawing.edges.items():
        if edge.kind != "data" or not isinstance(dst, str):
            continue
        head = graph.node(dst)
        if head.meta.get("grad") is not True:
            continue
        # A stub (Drawing.split_fanout) stands for its box right beside the reader.
        stub = isinstance(src, tuple) and src[0] == "stub"
        tail = graph.node(src[1] if stub else src)  # type: ignore[index, arg-type]
        a, b = (step[head] if stub else step[tail]), step[head]
        if tail.meta.get("grad") is not True:
            # A read of a forward value: kept when it is a short line (within a step)
            # or asked for (params, when hide_params=False).
            if stub or tail.op == "param" or (a is not None and a == b):
                drawing.edge_looks[(src, dst)] = "reads"
            else:
                far.append((src, dst))
        elif a is None or b is None or a == b:
            drawing.edge_looks[(src, dst)] = "backward"
        elif a >= where.first > b:
            drawing.edge_looks[(src, dst)] = "cut"
        else:
            drawing.edge_looks[(src, dst)] = "bptt"
    for pair in far:
        del drawing.edges[pair]


def _shade(drawing: BpttDrawing, norms: np.ndarray, shown: list[int],
           where: _Clusters) -> None:
    fills = _fills(norms)
    for t in shown:
        drawing.cluster_looks[where.of(t)] = {**CLUSTER_LOOKS["step"], "fillcolor": fills[t]}
    # Two swatches, the lightest and the darkest fill, each with its norm and step
    # (plain fills: Graphviz numbers gradient fills per process, so output would vary).
    finite = [t for t, n in enumerate(norms.tolist()) if math.isfinite(n)]
    legend = ("‖∂L/∂s_t‖ (fill: log10 scale)",)
    drawing.cluster_looks[legend] = dict(CLUSTER_LOOKS["legend"])
    if not finite:
        drawing.add_box(("legend",), "ellipsis", ("no finite norm",), cluster=legend)
        return
    ends = [("smallest", min(finite, key=lambda t: norms[t]), LOW),
            ("largest", max(finite, key=lambda t: norms[t]), HIGH)]
    for name, t, rgb in ends:
        drawing.add_box(("legend", name), "ellipsis", (f"{_fmt(norms[t])} at t={t}",),
                        cluster=(*legend, name))
        drawing.cluster_looks[(*legend, name)] = {**CLUSTER_LOOKS["step"], "fillcolor": _hex(rgb)}

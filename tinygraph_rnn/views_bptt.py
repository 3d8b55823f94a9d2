"""The "bptt" picture: forward and backward nodes of an unrolled net, step by step.

Backpropagation through time is :func:`tinygraph.grad` on the unrolled graph.
This module draws that backward pass next to the forward pass it reads, one
cluster per time step, and — given the arrays of a run — shades each step by
the size of the gradient reaching its state, so vanishing and exploding
gradients show at a glance::

    ┌ t=0  ‖∂L/∂s‖=3.1e-04 ┐    ┌ t=1  ‖∂L/∂s‖=2.0e-02 ┐      ┌ truncated BPTT window ┐
    │  x ─▶ … ─▶ s ─▶ o    │ ─▶ │  x ─▶ … ─▶ s ─▶ o    │ ─▶ … │  [t=T-2]   [t=T-1]    │
    │  ◁┄ … ◁┄ ∂L/∂s ◁┄    │ ◁┄ │  ◁┄ … ◁┄ ∂L/∂s ◁┄    │ ◁┄ … │ ◁┄┄ cut               │
    └──────────────────────┘    └──────────────────────┘      └───────────────────────┘
      light fill = small ‖∂L/∂s_t‖            darker = larger (log10 scale, legend box)

Building and drawing stay apart:

1. :func:`bptt_gradients` *builds*: it adds the nodes of ``∂loss/∂s_t`` for
   every step to ``net.graph`` (one backward pass) and returns them, to be
   run like any node: ``net.graph.run(grads, feeds)``.
2. ``view="bptt"`` *draws*: a pure function of the graph and of the arrays
   passed as ``values=`` — it never adds a node, never runs the graph and
   writes nothing. Without ``values`` the steps are not shaded.

Which step a backward node belongs to is derived from the graph, in one pass
in insertion order and one in reverse (never recursively):

* a node computing ``∂loss/∂s_t`` belongs to step ``t``;
* any other backward node belongs to the latest step among what it reads —
  forward nodes by their ``meta["t"]``, backward nodes by their own step (a
  vjp of a step-``t`` op reads that op's operands, which may be older, and
  the gradient of its output, which is step ``t``);
* a backward node that reads nothing step-bound (``W.T``, a constant, a
  slice of the loss's gradient) joins its readers' step when they all agree,
  and stays outside every step otherwise.

>>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=4)
>>> loss = tg.sum(tg.stack(net.states))
>>> grads = bptt_gradients(net, loss)
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
from tinygraph.render_drawing import Drawing
from tinygraph.render_text import quote

__all__ = ["bptt_gradients", "state_gradients", "bptt_drawing", "BpttDrawing",
           "DEFAULT_WINDOW", "EDGE_LOOKS", "CLUSTER_LOOKS"]

DEFAULT_WINDOW = 3  # steps kept at each end of a long net when neither window= nor steps= is given

# The looks this view adds to the renderer's table (tinygraph.render_drawing.STYLES):
# backward edges are drawn against the layout (dir=back) so the backward chain
# lines up beside the forward chain it mirrors instead of pulling it apart.
EDGE_LOOKS: dict[str, dict[str, str]] = {
    "backward": {"dir": "back", "style": "dashed", "color": "#b03030"},
    "bptt": {"dir": "back", "style": "dashed", "color": "#b03030", "penwidth": "2"},
    "cut": {"dir": "back", "style": "dotted", "color": "#888888", "fontcolor": "#d9822b",
            "penwidth": "2"},
    "reads": {"style": "dotted", "color": "#aaaaaa", "arrowsize": "0.5",
              "constraint": "false"},
}
CLUSTER_LOOKS: dict[str, dict[str, str]] = {
    "step": {"style": "rounded,filled", "color": "#999999"},
    "window": {"style": "rounded,bold", "color": "#d9822b", "fontcolor": "#d9822b",
               "penwidth": "3"},
    "legend": {"style": "rounded,filled", "color": "#999999", "fillcolor": ""},
}
LOW, HIGH = (0xF4, 0xF8, 0xFC), (0x4A, 0x86, 0xC8)  # fill of the smallest / largest norm
NONFINITE = "#f08080"                                # a nan or inf gradient


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


CLUSTER_LOOKS["legend"]["fillcolor"] = f"{_hex(LOW)}:{_hex(HIGH)}"


# ------------------------------------------------------------------ building


def _check_loss(net: Any, loss: Any, error: type[tg.GraphError]) -> tg.Node:
    graph = net.graph
    node = graph.node(loss) if isinstance(loss, str) else loss
    if not isinstance(node, tg.Node):
        raise error(f"loss must be a scalar node of net.graph (or its name), got "
                    f"{type(loss).__name__}")
    if node.graph is not graph:
        raise error(f"loss '{node.name}' belongs to graph '{node.graph.name}', not to this "
                    f"net's graph '{graph.name}'; build the loss from net.logits or "
                    "net.outputs")
    if node.shape != () or node.dtype.kind != "f":
        shape = "(" + ", ".join("?" if d is None else str(d) for d in node.shape) + \
            ("," if len(node.shape) == 1 else "") + ")"
        raise error(f"loss '{node.name}' ({node.op}) must be a float scalar (shape ()), got "
                    f"shape {shape} {node.dtype}; reduce it first, e.g. tg.mean(...)")
    return node


def _parts(state: Any) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def state_gradients(net: Any, loss: Any = None) -> tuple[tg.Node, list[tuple[tg.Node, ...]]]:
    """The loss and, per step, the ``∂loss/∂s_t`` nodes :func:`bptt_gradients` built.

    With ``loss=None`` the graph must hold the gradients of exactly one loss.

    Raises
    ------
    RenderError
        No such gradients in the graph (call :func:`bptt_gradients` first),
        several losses to choose from, or a bad ``loss``.
    """
    graph = net.graph
    if loss is not None:
        loss = _check_loss(net, loss, tg.RenderError)
    wanted = {part.name: k for k, state in enumerate(net.states) for part in _parts(state)}
    found: dict[str, dict[str, tg.Node]] = {}
    for node in graph.nodes.values():
        of = node.meta.get("bptt_loss")
        if of is not None and node.meta.get("grad_of") in wanted:
            found.setdefault(of, {})[node.meta["grad_of"]] = node
    hint = ("call grads = tinygraph_rnn.bptt_gradients(net, loss) first: it adds the "
            "backward nodes to net.graph (a render never changes the graph)")
    if loss is None:
        if not found:
            raise tg.RenderError("view='bptt' draws the backward pass of a loss, and net.graph "
                                 f"has none yet: {hint}, then render with loss=loss")
        if len(found) > 1:
            raise tg.RenderError(f"net.graph holds the backward passes of several losses "
                                 f"({', '.join(map(repr, found))}); pick one with loss=")
        loss = graph.node(next(iter(found)))
    grads = found.get(loss.name, {})
    if len(grads) != len(wanted):
        raise tg.RenderError(f"net.graph has no ∂{loss.name}/∂s_t nodes for every step: {hint}")
    return loss, [tuple(grads[p.name] for p in _parts(state)) for state in net.states]


def bptt_gradients(net: Any, loss: Any) -> list:
    """Add the nodes of ``∂loss/∂s_t`` for every step ``t`` to ``net.graph``; return them.

    This *changes the graph* (it is :func:`tinygraph.grad` with respect to
    the states: one backward pass through time); calling it again for the
    same loss returns the nodes already built. The ``view="bptt"`` picture
    draws these nodes and the backward nodes they depend on.

    Parameters
    ----------
    net : tinygraph_rnn.Unrolled
    loss : Node or str
        A float scalar node of ``net.graph``.

    Returns
    -------
    list
        Per step, the gradient node (a tuple of nodes for a state of several
        parts, e.g. the LSTM's ``(h, c)``), shaped like the state; each has
        ``meta["grad_of"]`` (the state's name) and ``meta["bptt_loss"]``.

    Raises
    ------
    GraphError
        ``loss`` is not a float scalar node of ``net.graph``.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
    >>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=3)
    >>> loss = tg.sum(net.states[-1])
    >>> grads = bptt_gradients(net, loss)
    >>> [g.meta["grad_of"] for g in grads], grads == bptt_gradients(net, loss)
    (['t=0/s', 't=1/s', 't=2/s'], True)
    >>> last = net.graph.run(grads[-1], {x: np.zeros((1, 2)) for x in net.inputs})
    >>> last.tolist()   # d sum(s_2) / d s_2
    [[1.0, 1.0, 1.0]]
    """
    loss = _check_loss(net, loss, tg.GraphError)
    try:
        _, existing = state_gradients(net, loss)
    except tg.RenderError:
        flat = [part for state in net.states for part in _parts(state)]
        made = dict(zip((p.name for p in flat), tg.grad(loss, flat), strict=True))
        for node in made.values():
            node.meta["bptt_loss"] = loss.name
        existing = [tuple(made[p.name] for p in _parts(state)) for state in net.states]
    return [parts if isinstance(state, tuple) else parts[0]
            for state, parts in zip(net.states, existing, strict=True)]


# ------------------------------------------------------------------- drawing


@dataclass
class BpttDrawing(Drawing):
    """A :class:`~tinygraph.render_drawing.Drawing` plus this view's own looks.

    ``cluster_looks`` maps a cluster path to extra cluster attributes (the
    fill of a step, the window's border) and ``edge_looks`` maps an edge to
    a name in :data:`EDGE_LOOKS`. :meth:`to_digraph` writes the plain
    drawing, then the looked edges, then re-opens each styled cluster to set
    its attributes (in DOT, a later ``subgraph cluster_N { graph [...] }``
    adds to the cluster of that name).
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
            edge = self.edges[(src, dst)]
            text = "cut" if look == "cut" else edge.label
            if edge.count > 1:
                text = f"×{edge.count}" if text is None else f"{text} ×{edge.count}"
            attrs = _attrs({**EDGE_LOOKS[look], **({} if text is None else {"label": text})})
            tail, head = (dst, src) if EDGE_LOOKS[look].get("dir") == "back" else (src, dst)
            dot.body.append(f"\t{ids[tail]} -> {ids[head]} [{attrs}]\n")
        for path, attrs in self.cluster_looks.items():
            if path in clusters:  # a nested cluster is found only through its parents
                opening = " ".join(f"subgraph {clusters[path[:d]]} {{"
                                   for d in range(1, len(path) + 1))
                dot.body.append(f"\t{opening} graph [{_attrs(attrs)}] {'}' * len(path)}\n")
        return dot


def _attrs(attrs: Mapping[str, str]) -> str:
    return " ".join(f"{key}={quote(value)}" for key, value in attrs.items())


def _step(node: tg.Node) -> int | None:
    t = node.meta.get("t")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _backward_steps(backward: list[tg.Node], pinned: Mapping[tg.Node, int]) -> dict[tg.Node, Any]:
    """The step each backward node belongs to (None: no single step); see the module doc."""
    step: dict[tg.Node, int | None] = {}
    for node in backward:  # insertion order: a node's inputs come first
        if node in pinned:
            step[node] = pinned[node]
            continue
        seen = [step.get(src) if src in step else _step(src) for src in node.inputs]
        known = [t for t in seen if t is not None]
        step[node] = max(known) if known else None
    readers: dict[tg.Node, list[tg.Node]] = {}
    for node in backward:
        for src in node.inputs:
            if src in step:
                readers.setdefault(src, []).append(node)
    for node in reversed(backward):  # readers come later, so theirs are final here
        if step[node] is None:
            theirs = {step[r] for r in readers.get(node, ())}
            if len(theirs) == 1:
                step[node] = theirs.pop()
    return step


def _shown_steps(T: int, window: Any, steps: Any) -> list[int]:  # noqa: N803
    if window is not None and steps is not None:
        raise tg.RenderError("give window= or steps=, not both")
    if steps is not None:
        try:
            items = list(steps)
        except TypeError:
            raise tg.RenderError(f"steps must be a sequence of step indices, got "
                                 f"{steps!r}") from None
        shown = []
        for t in items:
            if isinstance(t, bool) or not isinstance(t, int | np.integer) or not -T <= t < T:
                raise tg.RenderError(f"steps must hold ints in [-{T}, {T}) (the net has {T} "
                                     f"steps), got {t!r}")
            shown.append(int(t) % T)
        if not shown:
            raise tg.RenderError("steps is empty: name at least one step to draw")
        return sorted(set(shown))
    if window is None:
        window = DEFAULT_WINDOW
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise tg.RenderError(f"window must be a positive int (steps kept at each end), "
                             f"got {window!r}")
    if T <= 2 * window:
        return list(range(T))
    return [*range(window), *range(T - window, T)]


def _norms(grads: list[tuple[tg.Node, ...]], values: Mapping[tg.Node, Any]) -> np.ndarray | None:
    have = [all(p in values for p in parts) for parts in grads]
    if not any(have):
        return None
    if not all(have):
        missing = [f"t={t}" for t, ok in enumerate(have) if not ok]
        raise tg.RenderError(f"values= holds ∂L/∂s_t for some steps but not for "
                             f"{', '.join(missing)}: fetch every node bptt_gradients returned")
    return np.array([math.sqrt(sum(float(np.sum(np.square(values[p], dtype=np.float64)))
                                   for p in parts)) for parts in grads])


def _fills(norms: np.ndarray) -> list[str]:
    """One fill per step: LOW..HIGH by log10 of the norm between the smallest and largest."""
    positive = norms[np.isfinite(norms) & (norms > 0)]
    lo, hi = (np.log10(positive.min()), np.log10(positive.max())) if positive.size else (0, 0)
    fills = []
    for n in norms.tolist():
        if not math.isfinite(n):
            fills.append(NONFINITE)
            continue
        f = 0.0 if n <= 0 else (1.0 if hi == lo else (math.log10(n) - lo) / (hi - lo))
        fills.append(_hex(a + (b - a) * f for a, b in zip(LOW, HIGH, strict=True)))
    return fills


def _fmt(n: float) -> str:
    return f"{n:.1e}" if math.isfinite(n) and n > 0 else ("0" if n == 0 else str(n))


def bptt_drawing(net: Any, loss: Any = None, window: int | None = None, steps: Any = None,
                 truncate: int | None = None, **kwargs: Any) -> BpttDrawing:
    """The drawing of ``view="bptt"`` (see :func:`tinygraph_rnn.views.view_to_dot`).

    Parameters
    ----------
    net : tinygraph_rnn.Unrolled
    loss : Node or str, optional
        The loss whose backward pass is drawn; :func:`bptt_gradients` must
        have been called for it. Optional when the graph holds one such pass.
    window : int, optional
        Draw the first and last ``window`` steps and one ``…`` box for the
        steps between (default: 3 when the net has more than 6 steps).
    steps : sequence of int, optional
        Draw exactly these steps (negative counts from the end); runs of
        steps left out become ``…`` boxes.
    truncate : int, optional
        Mark the last ``truncate`` steps as the truncated-BPTT window: their
        clusters sit in one orange-bordered cluster and the backward edges
        leaving it are drawn dotted and labelled ``cut``.
    **kwargs
        Render options; ``values={node or name: array}`` holding the arrays
        of every :func:`bptt_gradients` node shades the steps. ``collapse``
        and ``order`` do not apply here and are ignored.
    """
    loss, grads = state_gradients(net, loss)
    kwargs.setdefault("hide_params", True)
    opts = options(**kwargs)
    graph, T = net.graph, net.steps  # noqa: N806
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int)
                                 or not 1 <= truncate <= T):
        raise tg.RenderError(f"truncate must be an int in [1, {T}] (the window's steps), "
                             f"got {truncate!r}")
    shown = _shown_steps(T, window, steps)
    values = node_values(graph, opts)
    norms = _norms(grads, values)

    roots = [p for parts in grads for p in parts]
    needed = graph.schedule([loss, *roots])
    backward = [n for n in needed if n.meta.get("grad") is True]
    forward = {n: None for n in needed if n.meta.get("grad") is not True}
    forward.update((n, None) for n in graph.nodes.values() if _step(n) is not None)
    pinned = {p: t for t, parts in enumerate(grads) for p in parts}
    step = {**{n: _step(n) for n in forward}, **_backward_steps(backward, pinned)}
    nodes = sorted([*forward, *backward], key=lambda n: n.index)
    if opts.hide_params:
        nodes = [n for n in nodes if n.op != "param"]

    first = T - truncate if truncate else T
    window_label = (f"truncated BPTT window: {truncate} step{'s' * (truncate != 1)} "
                    f"(t={first} … t={T - 1})") if truncate else None
    step_label = [f"t={t}" + (f"  ‖∂L/∂s‖={_fmt(norms[t])}" if norms is not None else "")
                  for t in range(T)]

    def outer(t: int) -> tuple[str, ...]:
        return (window_label,) if truncate and t >= first else ()

    drawing = BpttDrawing(title=title_of(opts, f"{graph.name}, backpropagation through time"),
                          rankdir=opts.rankdir, label_limit=opts.label_limit)
    outputs = dict.fromkeys([*net.outputs, loss])
    loss_name = loss.name.rpartition("/")[2]
    for node in nodes:
        t = step[node]
        value = values.get(node)
        if node in pinned:  # its norm is in the step's label; statistics would repeat it
            state = graph.node(node.meta["grad_of"])
            name = f"∂{loss_name}/∂{state.meta.get('template', state.name)}"
            label = node_label(node, opts, None, name=name)
        else:
            label = node_label(node, opts, value)
        if t is None:  # outside every step: the loss, params, the loss's own gradient
            cluster = () if node.meta.get("grad") is True else scope_path(node)
        elif node.meta.get("grad") is True:
            cluster = (*outer(t), step_label[t])
        else:
            inner = str(node.meta.get("template", node.name)).split("/")[:-1]
            cluster = (*outer(t), step_label[t], *inner)
        drawing.add_box(node.name, node_kind(node, outputs), label, cluster=cluster)
    keys = dict.fromkeys(n.name for n in nodes)
    for node in nodes:
        for src in node.inputs:
            if src.name in keys:
                drawing.add_edge(src.name, node.name)

    hidden = [t for t in range(T) if t not in shown]
    runs: list[list[int]] = []
    for t in hidden:  # runs of left-out steps, never across the window's edge
        if runs and runs[-1][-1] == t - 1 and t != first:
            runs[-1].append(t)
        else:
            runs.append([t])
    for run in runs:
        members = [n.name for n in nodes if step[n] in run]
        lines = [f"… {len(run)} steps (t={run[0]} … t={run[-1]}) …" if len(run) > 1
                 else f"… step t={run[0]} …"]
        if norms is not None:
            part = norms[run[0]:run[-1] + 1]
            lines.append(f"‖∂L/∂s‖ {_fmt(part.min())} … {_fmt(part.max())}" if len(run) > 1
                         else f"‖∂L/∂s‖={_fmt(part[0])}")
        key = ("ellipsis", run[0])
        drawing.elide(members, key, lines[0], cluster=outer(run[0]))
        if key in drawing.boxes:  # one line each, so the label limit cuts neither
            drawing.boxes[key].lines = tuple(lines)
    if opts.max_fanout is not None:
        drawing.split_fanout(opts.max_fanout)
    if opts.max_nodes is not None and len(drawing.boxes) > opts.max_nodes:
        raise tg.RenderError(f"view='bptt' of {len(shown)} steps needs {len(drawing.boxes)} "
                             f"boxes > max_nodes={opts.max_nodes}: draw fewer steps (window=, "
                             "steps=) or pass max_nodes=None")

    _looks(drawing, step, graph, shown, first, truncate, norms, step_label, outer)
    if norms is not None:
        low, high = int(np.nanargmin(norms)), int(np.nanargmax(norms))
        legend = ("‖∂L/∂s_t‖ (log10 scale)",)
        drawing.add_box(("legend",), "ellipsis",
                        (f"min {_fmt(norms[low])} (t={low})  →  max {_fmt(norms[high])} "
                         f"(t={high})",), cluster=legend)
        drawing.cluster_looks[legend] = dict(CLUSTER_LOOKS["legend"])
    else:
        drawing.notes.append("no gradient values: pass values= from a run of the "
                             "bptt_gradients nodes to shade the steps by ‖∂L/∂s_t‖")
    if truncate:
        drawing.notes.append(f"{window_label}: orange border; backward edges leaving it are cut")
    return drawing


def _looks(drawing: BpttDrawing, step: Mapping[tg.Node, Any], graph: tg.Graph,
           shown: list[int], first: int, truncate: int | None, norms: np.ndarray | None,
           step_label: list[str], outer: Any) -> None:
    """Name the look of every backward edge and the fill of every step cluster."""
    far_reads = []
    for (src, dst), edge in drawing.edges.items():
        if edge.kind != "data" or not isinstance(dst, str):
            continue
        head = graph.node(dst)
        if head.meta.get("grad") is not True:
            continue
        tail = graph.node(src) if isinstance(src, str) else None
        if tail is None or tail.meta.get("grad") is not True:
            if tail is not None and step[tail] is not None and step[tail] == step[head]:
                drawing.edge_looks[(src, dst)] = "reads"
            else:
                far_reads.append((src, dst))
            continue
        a, b = step[tail], step[head]
        if a is None or b is None or a == b:
            drawing.edge_looks[(src, dst)] = "backward"
        elif truncate and a >= first > b:
            drawing.edge_looks[(src, dst)] = "cut"
        else:
            drawing.edge_looks[(src, dst)] = "bptt"
    for pair in far_reads:  # a read of a param or of another step: a long line saying little
        del drawing.edges[pair]
    fills = _fills(norms) if norms is not None else None
    for t in shown:
        path = (*outer(t), step_label[t])
        if fills is not None:
            drawing.cluster_looks[path] = {**CLUSTER_LOOKS["step"], "fillcolor": fills[t]}
    if truncate:
        drawing.cluster_looks[outer(first)] = dict(CLUSTER_LOOKS["window"])

"""The "bptt" picture: the unrolled view with the backward pass drawn under it.

The forward steps are laid out exactly as in the unrolled view (one cluster
per step, the states on one straight row, inputs below, outputs above; see
:mod:`tinygraph_rnn.spine_view`). Directly under the state row runs the
**gradient row**: each step's ``∂L/∂s_t`` and the backward nodes that carry
the gradient from ``∂L/∂s_{t+1}`` to it, its edges drawn right to left. The
rest of the backward pass (what each step's output adds, ``1 - s²``, ``Wᵀ``)
hangs below that row. Given the arrays of a run, each step is shaded by
‖∂L/∂s_t‖ (text black or white by the fill's luminance), so vanishing and
exploding gradients show at a glance; a truncated-BPTT window is framed::

                 o            o                  ┌ truncated BPTT window ────┐
    s0 ─▶ [t=0 … s] ─▶ [t=1 … s] ─▶ «… N …» ─▶ │ [t=T-2 … s] ─▶ [t=T-1 … s] │
          ∂L/∂s_0 ◀┄┄┄ ∂L/∂s_1 ◀┄┄┄┄ … ◀┄cut┄┄ │ ∂L/∂s_T-2 ◀┄┄┄ ∂L/∂s_T-1  │
                 x            x                  └──────────────────────────┘

SVG classes (as in the unrolled view, plus): ``∂L/∂s_t`` is ``grad state
step-k`` (and ``state-<part>`` for a state in parts), every other backward
node of step k ``grad step-k``.

Drawing is pure: the backward nodes must already be in the graph —
:func:`tinygraph_rnn.bptt_gradients` adds them, in a call of its own — and
the norms come from ``values=``, the arrays of a run of those nodes. This
view adds no node, runs nothing and writes nothing. Which step a backward
node belongs to is decided by :func:`tinygraph_rnn.gradflow.backward_steps`.
Params are named in their readers' labels (``hide_params`` defaults to
True); reads of forward values by backward nodes are drawn (dotted) only
within a step.

>>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=4)
>>> loss = tg.sum(tg.stack(net.states))
>>> grads = rnn.bptt_gradients(net, loss)
>>> arrays = net.graph.run(grads, {x: np.ones((1, 2)) for x in net.inputs})
>>> src = bptt_drawing(net, loss=loss, values=dict(zip(grads, arrays))).to_digraph().source
>>> src.count("‖∂L/∂s‖="), src.count('class="grad state step-'), 'dir="back"' in src
(4, 4, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.render import node_kind, node_label, node_values, options, title_of
from tinygraph.render.drawing import Drawing

from .gradflow import backward_steps, gradient_norms, state_gradients, step_of
from .spine import state_parts
from .spine_view import draw_forward, finish_rows, gaps
from .views_bptt_looks import CLUSTER_LOOKS, EDGE_LOOKS, HIGH, LOW, fmt, shade

__all__ = ["bptt_drawing", "DEFAULT_WINDOW", "EDGE_LOOKS", "CLUSTER_LOOKS", "LOW", "HIGH"]

DEFAULT_WINDOW = 3  # steps kept at each end of a long net when neither window= nor steps= is given


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


def bptt_drawing(net: Any, loss: Any = None, window: int | None = None, steps: Any = None,
                 truncate: int | None = None, strict: bool = False, **kwargs: Any) -> Drawing:
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
        Frame the last ``truncate`` steps as the truncated-BPTT window: their
        clusters sit in one orange-bordered cluster, and the gradient edge
        leaving it is dotted and labelled ``cut``.
    strict : bool
        Every node on a path between two states in the state row (the
        self-check's second try, as in the unrolled view).
    **kwargs
        Render options. ``values={node or name: array}`` holding the arrays
        of every ``bptt_gradients`` node shades the steps (other nodes'
        arrays are shown as statistics, as in every view); ``hide_params``
        defaults to True; ``params="labels"`` (the default then) or ``"stubs"``;
        ``collapse``, ``order`` and ``rankdir`` do not apply.

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
    params = kwargs.pop("params", "labels" if kwargs["hide_params"] else "stubs")
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

    first = T - truncate if truncate else T  # the window's first step
    frame = None
    if truncate:
        frame = (f"truncated BPTT window: {truncate} step{'s' * (truncate != 1)} "
                 f"(t={first} … t={T - 1})")
    labels = [f"t={t}" + (f"  ‖∂L/∂s‖={fmt(norms[t])}" if norms is not None else "")
              for t in range(T)]

    def outer(t: int) -> tuple[str, ...]:
        return (frame,) if frame is not None and t >= first else ()

    def cluster_of(t: int) -> tuple[str, ...]:
        return (*outer(t), labels[t])

    def gap_lines(run: range) -> tuple[str, ...]:
        lines: tuple[str, ...] = (f"… {len(run)} step{'s' * (len(run) != 1)} …",
                                  f"t={run[0]} … t={run[-1]}")
        if norms is not None:
            part = norms[run[0]:run[-1] + 1]
            lines += (f"‖∂L/∂s‖ {fmt(part.min())} … {fmt(part.max())}",)
        return lines

    title = f"{graph.name}, {T} step{'s' * (T != 1)}, backpropagation through time"
    drawing = Drawing(title=title_of(opts, title), rankdir="BT", label_limit=opts.label_limit)
    rows = draw_forward(drawing, net, shown, opts, params, strict, cluster_of, gap_lines,
                        legend=False)
    initial = {n.name for n in state_parts(net.initial_state)}
    row = min(level for level, keys in rows.items() if initial & set(keys)) - 1
    _draw_backward(drawing, net, loss, grads, shown, rows, row, cluster_of, outer, first, opts,
                   values)
    if opts.max_fanout is not None:
        # The loss's gradient, read once per step, keeps its edges (drawn without
        # constraint): split into stubs it left steps out of order from 10 steps on.
        drawing.split_fanout(opts.max_fanout, keep=[n.name for n in graph.nodes.values()
                                                     if n.meta.get("grad") is True])
    boxes = sum(1 for key in drawing.boxes
                if not (isinstance(key, tuple) and key[:1] == ("anchor",)))
    if opts.max_nodes is not None and boxes > opts.max_nodes:
        raise tg.RenderError(f"view='bptt' of {len(shown)} steps needs {boxes} boxes > "
                             f"max_nodes={opts.max_nodes}: draw fewer steps (window=, steps=) "
                             "or pass max_nodes=None")
    finish_rows(drawing, rows)
    if norms is not None:
        shade(drawing, norms, shown, cluster_of)
    else:
        drawing.notes.append("no gradient values: pass values= from a run of the "
                             "bptt_gradients nodes to shade the steps by ‖∂L/∂s_t‖")
    if frame is not None:
        drawing.cluster_attrs[(frame,)] = {**CLUSTER_LOOKS["window"], "labelloc": "b"}
        drawing.notes.append(f"{frame}: orange frame; the gradient leaving it is cut")
    return drawing


def _draw_backward(drawing: Drawing, net: Any, loss: tg.Node, grads: list, shown: list[int],
                   rows: dict[int, list[Any]], row: int, cluster_of: Any, outer: Any,
                   first: int, opts: Any, values: Mapping[tg.Node, Any]) -> None:
    """Add the loss, what it reads outside the steps, and the backward pass of ``shown``."""
    graph, T = net.graph, net.steps  # noqa: N806
    pinned = {p: t for t, parts in enumerate(grads) for p in parts}
    part_of = {p: i for parts in grads for i, p in enumerate(parts)}
    names = [n.name.rstrip("0") or n.name for n in state_parts(net.initial_state)]
    needed = graph.schedule([loss, *pinned])
    backward = [n for n in needed if n.meta.get("grad") is True]
    step = backward_steps(backward, pinned)
    visible = set(shown)
    marked = dict.fromkeys([*net.outputs, loss])
    loss_name = loss.name.rpartition("/")[2]

    # The gradient row: every ∂L/∂s_t and every backward node downstream of one (the path
    # from ∂L/∂s_{t+1} to ∂L/∂s_t); one pass in insertion order.
    on_row = set(pinned)
    for node in backward:
        if any(src in on_row for src in node.inputs):
            on_row.add(node)
    # Forward nodes outside the steps that the loss reads (the loss itself among them).
    for node in needed:
        if (node.meta.get("grad") is True or step_of(node) is not None or node.op == "param"
                or node.name in drawing.boxes):
            continue
        drawing.add_box(node.name, node_kind(node, marked),
                        node_label(node, opts, values.get(node)))
        # Above what it reads (the stack of outputs, the loss): over the step outputs.
        top = [lvl for lvl, keys in rows.items() if any(src.name in keys for src in node.inputs)]
        if top:
            rows.setdefault(max(top) + 1, []).append(node.name)
        for src in node.inputs:  # from many steps: no pull on the steps' order
            if src.name in drawing.boxes:
                drawing.add_edge(src.name, node.name, count=False,
                                 attrs={"constraint": "false"} if top else None)
    drawn: dict[tg.Node, int | None] = {}
    for node in backward:
        t = step[node]
        if t is not None and t not in visible:
            continue
        drawn[node] = t
        classes = "" if t is None else f"step-{t}"
        if node in pinned:  # its norm is in the step's label; statistics would repeat it
            state = graph.node(node.meta["grad_of"])
            name = f"∂{loss_name}/∂{state.meta.get('template', state.name)}"
            label = node_label(node, opts, None, name=name)
            classes = f"state step-{t}"
            if len(names) > 1:
                classes += f" state-{names[part_of[node]]}"
        else:
            label = node_label(node, opts, values.get(node))
        drawing.add_box(node.name, "grad", label, cluster=() if t is None else cluster_of(t),
                        classes=classes)

    # Levels: the gradient row just under the states; the rest below it, by longest
    # path back from their readers (reverse insertion order; consts stay free).
    level: dict[tg.Node, int | None] = {}
    readers: dict[tg.Node, list[tg.Node]] = {}
    for node in drawn:
        for src in node.inputs:
            readers.setdefault(src, []).append(node)
    for node in reversed(list(drawn)):
        if node in on_row:
            level[node] = row
        elif node.op == "const":
            level[node] = None
        else:
            below = [lr for r in readers.get(node, ()) if (lr := level.get(r)) is not None]
            level[node] = min(below) - 1 if below else None
        if (at := level[node]) is not None:
            rows.setdefault(at, []).append(node.name)

    # A "…" on the gradient row for each run of hidden steps: the gradient passes it.
    links: dict[int | None, tuple[str, int]] = {}  # looked up by step (None: outside them)
    for run in gaps(shown, T):
        key = ("gradient gap", run[0])
        drawing.add_box(key, "link", ("…",), cluster=outer(run[0]))
        rows[row].append(key)
        links.update(dict.fromkeys(run, key))

    for node in drawn:
        for src in node.inputs:
            if src.meta.get("grad") is not True:
                a = step_of(src)
                if src.op == "param" and not opts.hide_params:
                    stub = ("stub", src.name, node.name)
                    drawing.add_box(stub, "stub", (src.name,), cluster=drawing.boxes[
                        node.name].cluster, classes="param")
                    drawing.add_edge(stub, node.name, count=False, attrs=EDGE_LOOKS["reads"])
                elif src.name in drawing.boxes and a == drawn[node]:
                    drawing.add_edge(src.name, node.name, count=False, attrs=EDGE_LOOKS["reads"])
                continue
            tail = src.name if src in drawn else links.get(step.get(src))
            if tail is None or (src not in drawn and src not in on_row):
                continue
            a, b = step.get(src), drawn[node]
            if node in on_row and (src in on_row):
                look = "bptt" if a != b else "backward"
                if a is not None and b is not None and a >= first > b:
                    look = "cut"
                attrs = dict(EDGE_LOOKS[look])
                if look == "cut":
                    attrs["xlabel"] = "cut"
                drawing.add_edge(tail, node.name, count=False, attrs=attrs, reverse=True)
            else:
                attrs = dict(EDGE_LOOKS["backward"])
                la, lb = level.get(src), level.get(node)
                # From outside every step (the loss's gradient) to many steps: no pull on
                # the steps' order; nor an edge the levels point downward.
                if src not in drawn or a is None or (la is not None and lb is not None
                                                     and la >= lb):
                    attrs["constraint"] = "false"
                drawing.add_edge(tail, node.name, count=False, attrs=attrs)
    for node in on_row:  # the gradient entering a run of hidden steps enters its "…"
        if node in drawn or step.get(node) not in links:
            continue
        t = step[node]
        assert t is not None  # links are keyed by the hidden steps
        for src in node.inputs:
            if src in drawn and src in on_row:
                look = "cut" if (s := step[src]) is not None and s >= first > t else "bptt"
                attrs = {**EDGE_LOOKS[look], **({"xlabel": "cut"} if look == "cut" else {})}
                drawing.add_edge(src.name, links[step[node]], count=False, attrs=attrs,
                                 reverse=True)

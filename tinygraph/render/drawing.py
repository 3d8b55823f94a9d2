"""A drawing: the boxes, clusters and edges of one picture, before DOT.

Views (the plain graph, the collapsed graph, the rolled and windowed RNN
views) all build a :class:`Drawing` — boxes keyed by whatever the view likes
(a node name, a scope path), each with a kind and a cluster path, and edges
between keys — and :meth:`Drawing.to_digraph` turns it into DOT in one place.
That is where DOT ids are made opaque (``n0``, ``n1``, … and ``cluster_0``,
…), where styles come from the one :data:`STYLES` table, and where cluster
nesting is assembled without recursion.

>>> d = Drawing(title="demo")
>>> d.add_box("x", "input", ("x", "input (?, 3)"))
>>> d.add_box("t=0/tanh", "op", ("tanh",), cluster=("t=0",))
>>> d.add_edge("x", "t=0/tanh")
>>> print(d.to_digraph().source.rstrip())  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
digraph {
    graph [label="demo" rankdir="TB" newrank="true" fontname="Helvetica" labelloc="t"]
    node [fontname="Helvetica" fontsize="12"]
    edge [fontname="Helvetica" fontsize="10" color="#444444"]
    n0 [label="x\\ninput (?, 3)" shape="box" ... class="input"]
    subgraph cluster_0 {
        graph [label="t=0" style="rounded,dashed" color="#999999" fontcolor="#333333"]
        n1 [label="tanh" shape="ellipse" ... class="op"]
    }
    n0 -> n1
}
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .digraph import Digraph
from .text import escape, quote

__all__ = ["STYLES", "EDGE_STYLES", "SCAN_CLUSTER_STYLE", "RANKDIRS", "Box", "Drawing"]

# One table of looks, keyed by what a box stands for.
STYLES: dict[str, dict[str, str]] = {
    "input": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dcebfb",
              "color": "#1f5fa8"},
    "param": {"shape": "box", "style": "filled", "fillcolor": "#fdf0c8", "color": "#a8741f"},
    "const": {"shape": "box", "style": "filled,dashed", "fillcolor": "#f2f2f2",
              "color": "#888888"},
    "op": {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#333333"},
    "output": {"shape": "doubleoctagon", "style": "filled", "fillcolor": "#d9f2d9",
               "color": "#2d7a2d"},
    "grad": {"shape": "ellipse", "style": "filled", "fillcolor": "#fbe0e0", "color": "#b03030"},
    "scope": {"shape": "box3d", "style": "filled", "fillcolor": "#ececf8", "color": "#4a4a8a"},
    "initial": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dcebfb",
                "color": "#1f5fa8"},
    "cell": {"shape": "box", "style": "rounded,filled", "fillcolor": "#ececf8",
             "color": "#4a4a8a"},
    "ellipsis": {"shape": "plaintext", "fontcolor": "#555555"},
    "link": {"shape": "plaintext", "fontcolor": "#555555"},
    "anchor": {"shape": "point", "style": "invis", "width": "0", "height": "0"},
    "stub": {"shape": "box", "style": "rounded,dashed", "fontsize": "10", "color": "#888888",
             "fontcolor": "#555555", "margin": "0.05,0.02", "height": "0.2"},
}
EDGE_STYLES: dict[str, dict[str, str]] = {
    "data": {},
    "recurrent": {"color": "#b03030", "fontcolor": "#b03030", "penwidth": "2",
                  "constraint": "false"},
    "elided": {"style": "dashed", "color": "#888888"},
    "invisible": {"style": "invis"},
}
CLUSTER_STYLE = {"style": "rounded,dashed", "color": "#999999", "fontcolor": "#333333"}
# A scan's body (tinygraph.render.scans): a solid frame, so it reads as one loop, not a scope.
SCAN_CLUSTER_STYLE = {"style": "rounded,filled", "color": "#4a4a8a", "fillcolor": "#f7f7fc",
                      "fontcolor": "#4a4a8a", "penwidth": "1.5"}
GRAPH_STYLE = {"node": {"fontname": "Helvetica", "fontsize": "12"},
               "edge": {"fontname": "Helvetica", "fontsize": "10", "color": "#444444"}}
RANKDIRS = ("TB", "LR", "BT", "RL")


def _label(lines: Iterable[str], limit: int | None) -> str:
    # Each line is escaped on its own (and cut to `limit`); DOT's \n joins them.
    return '"' + "\\n".join(escape(line, limit) for line in lines) + '"'


def _attr_list(label: str | None, attrs: dict[str, str]) -> str:
    items = [f"label={label}"] if label is not None else []
    items += [f"{key}={quote(value)}" for key, value in attrs.items()]
    return " ".join(items)


@dataclass
class Box:
    """One drawn box: its style kind, its label lines (raw text) and its cluster path."""

    kind: str
    lines: tuple[str, ...]
    cluster: tuple[Hashable, ...] = ()  # scope names, or any hashable with a cluster_labels entry
    ref: str | None = None  # the short name a stub of this box shows (default: first line)
    classes: str = ""  # extra SVG classes after the kind (e.g. "state step-3")
    attrs: dict[str, str] | None = None  # extra DOT attributes over the kind's style


@dataclass
class _Edge:
    kind: str
    label: str | None
    count: int = 1
    attrs: dict[str, str] | None = None  # extra DOT attributes over the kind's style
    reverse: bool = False  # written head -> tail with dir=back (laid out against the flow)


@dataclass
class Drawing:
    """Boxes and edges of one picture; keys are any hashable the view chooses.

    ``notes`` are shown under the title (e.g. why a view was collapsed).
    An edge added twice is drawn once, labelled with its multiplicity.
    ``label_limit`` cuts long label lines in the middle. ``ranks`` lists
    groups of box keys drawn on one row (``{rank=same}``), ``cluster_attrs``
    extra attributes per cluster path (a ``class`` among them is copied into
    the SVG), ``cluster_labels`` the label lines of a cluster (default: the
    last element of its path), ``graph_attrs`` extra graph attributes.
    """

    title: str | None = None
    rankdir: str = "TB"
    label_limit: int | None = 40
    notes: list[str] = field(default_factory=list)
    boxes: dict[Hashable, Box] = field(default_factory=dict)
    edges: dict[tuple[Hashable, Hashable], _Edge] = field(default_factory=dict)
    ranks: list[list[Hashable]] = field(default_factory=list)
    cluster_attrs: dict[tuple[Hashable, ...], dict[str, str]] = field(default_factory=dict)
    cluster_labels: dict[tuple[Hashable, ...], tuple[str, ...]] = field(default_factory=dict)
    graph_attrs: dict[str, str] = field(default_factory=dict)
    in_order: bool = False  # top-level boxes and clusters written in the order added

    def add_box(self, key: Hashable, kind: str, lines: Iterable[str],
                cluster: Iterable[Hashable] = (), ref: str | None = None, classes: str = "",
                attrs: dict[str, str] | None = None) -> None:
        """Add a box with label ``lines`` (user text, escaped later); a key is added once."""
        if kind not in STYLES:
            raise ValueError(f"unknown box kind {kind!r}")
        self.boxes.setdefault(key, Box(kind, tuple(lines), tuple(cluster), ref, classes, attrs))

    def add_edge(self, src: Hashable, dst: Hashable, kind: str = "data",
                 label: str | None = None, count: bool = True,
                 attrs: dict[str, str] | None = None, reverse: bool = False) -> None:
        """Add an edge between two box keys; a repeat raises its count (if ``count``).

        ``reverse=True`` writes it ``dst -> src [dir=back]``: drawn pointing from
        ``src`` to ``dst`` but laid out as if it ran the other way (a flat edge of
        a row then puts ``dst`` left of ``src``: gradients flowing right to left).
        """
        edge = self.edges.get((src, dst))
        if edge is None:
            self.edges[(src, dst)] = _Edge(kind, label, 1, attrs, reverse)
        elif count:
            edge.count += 1

    def elide(self, hidden: Iterable[Hashable], key: Hashable, text: str,
              cluster: Iterable[str] = ()) -> None:
        """Replace the ``hidden`` boxes by one ellipsis box ``key`` reading ``text``.

        Edges between two hidden boxes go; an edge between a hidden and a
        shown box is joined to the ellipsis instead (once per shown box).
        """
        gone = {k for k in hidden if k in self.boxes}
        if not gone:
            return
        self.boxes = {k: b for k, b in self.boxes.items() if k not in gone}
        self.boxes[key] = Box("ellipsis", (text,), tuple(cluster))
        joined: dict[tuple[Hashable, Hashable], _Edge] = {}
        for (src, dst), edge in self.edges.items():
            if src in gone and dst in gone:
                continue
            if src in gone or dst in gone:
                pair = (key if src in gone else src, key if dst in gone else dst)
                joined.setdefault(pair, _Edge("elided", None))
            else:
                joined[(src, dst)] = edge
        self.edges = joined

    def split_fanout(self, max_fanout: int, keep: Iterable[Hashable] = ()) -> list[Hashable]:
        """Give each reader of a box read by more than ``max_fanout`` boxes its own stub.

        A param shared by 200 time steps would otherwise send 200 edges
        across the whole picture: unreadable, and quadratic work for the
        layout (every long edge is routed through every rank it crosses).
        The shared box stays, drawn once; each reader gets a small dashed
        box with its name, in the reader's cluster. Returns the split keys.
        Boxes in ``keep`` keep their edges.
        """
        keep = set(keep)
        readers: dict[Hashable, int] = {}
        for src, _ in self.edges:
            readers[src] = readers.get(src, 0) + 1
        shared = [k for k, n in readers.items()
                  if n > max_fanout and self.boxes[k].kind not in ("ellipsis", "stub")
                  and k not in keep]
        if not shared:
            return []
        split = dict.fromkeys(shared)
        edges: dict[tuple[Hashable, Hashable], _Edge] = {}
        for (src, dst), edge in self.edges.items():
            if src in split:
                box = self.boxes[src]
                stub = ("stub", src, dst)
                ref = box.ref if box.ref is not None else box.lines[0]
                self.boxes[stub] = Box("stub", (ref,), self.boxes[dst].cluster)
                src = stub
            edges[(src, dst)] = edge
        self.edges = edges
        return shared

    def to_digraph(self) -> Digraph:
        """The DOT of this drawing: opaque ids, styled by kind, clusters nested.

        The DOT text is written here line by line, so every user string goes
        through :func:`~tinygraph.render.text.escape` and nothing else.
        """
        if self.rankdir not in RANKDIRS:
            raise ValueError(f"rankdir must be one of {RANKDIRS}")
        # newrank: rank the whole graph at once, so an edge into a cluster
        # always points down (per-cluster ranking breaks this for unrolls).
        graph_attrs = {"rankdir": self.rankdir, "newrank": "true", "fontname": "Helvetica",
                       **self.graph_attrs}
        title = [self.title] if self.title is not None else []
        label = None
        if title or self.notes:
            label = _label([*title, *self.notes], 100)
            graph_attrs["labelloc"] = "t"
        body = [f"\tgraph [{_attr_list(label, graph_attrs)}]\n"]
        body += [f"\t{kind} [{_attr_list(None, attrs)}]\n" for kind, attrs in GRAPH_STYLE.items()]

        # Clusters: ids in order of first use; each keeps its node lines and children.
        cluster_ids: dict[tuple[Hashable, ...], str] = {}
        members: dict[tuple[Hashable, ...], list[str]] = {(): []}
        children: dict[tuple[Hashable, ...], list[tuple[Hashable, ...]]] = {(): []}
        ids: dict[Hashable, str] = {}
        for key, box in self.boxes.items():
            for depth in range(1, len(box.cluster) + 1):
                path = box.cluster[:depth]
                if path not in cluster_ids:
                    cluster_ids[path] = f"cluster_{len(cluster_ids)}"
                    members[path], children[path] = [], []
                    children[path[:-1]].append(path)
            ids[key] = f"n{len(ids)}"
            # class= tags each SVG node group with its kind: <g class="node param">.
            classes = f"{box.kind} {box.classes}".strip()
            attrs = _attr_list(_label(box.lines, self.label_limit),
                               {**STYLES[box.kind], **(box.attrs or {}), "class": classes})
            members[box.cluster].append(f"{ids[key]} [{attrs}]")

        # With in_order, top-level boxes and clusters in the order they were added:
        # Graphviz's first left-to-right order follows it (an ellipsis between two
        # steps stays there); else the top-level boxes first.
        top: list[tuple[str, Any]] = []
        seen_top: set[tuple[Hashable, ...]] = set()
        root_lines = iter(members[()])
        for box in self.boxes.values():
            if not box.cluster and not self.in_order:
                continue
            if not box.cluster:
                top.append(("line", next(root_lines)))
            elif box.cluster[:1] not in seen_top:
                seen_top.add(box.cluster[:1])
                top.append(("open", box.cluster[:1]))
        if not self.in_order:
            body += [f"\t{line}\n" for line in members[()]]
        stack = list(reversed(top))
        while stack:  # depth-first, iteratively
            action, path = stack.pop()
            if action == "line":
                body.append(f"\t{path}\n")
                continue
            indent = "\t" * len(path)
            if action == "close":
                body.append(f"{indent}}}\n")
                continue
            attrs = _attr_list(_label(self.cluster_labels.get(path, (path[-1],)), 60),
                               {**CLUSTER_STYLE, **self.cluster_attrs.get(path, {})})
            body.append(f"{indent}subgraph {cluster_ids[path]} {{\n")
            body.append(f"{indent}\tgraph [{attrs}]\n")
            body += [f"{indent}\t{line}\n" for line in members[path]]
            stack.append(("close", path))
            stack += [("open", child) for child in reversed(children[path])]

        for (src, dst), edge in self.edges.items():
            text = edge.label
            if edge.count > 1:
                text = f"×{edge.count}" if text is None else f"{text} ×{edge.count}"
            looks = {**EDGE_STYLES[edge.kind], **(edge.attrs or {})}
            if edge.reverse:
                src, dst, looks["dir"] = dst, src, "back"
            attrs = _attr_list(None if text is None else _label([text], 40), looks)
            body.append(f"\t{ids[src]} -> {ids[dst]}" + (f" [{attrs}]" if attrs else "") + "\n")
        for group in self.ranks:
            row = " ".join(ids[key] for key in group if key in ids)
            if row:
                body.append(f"\t{{rank=same; {row}}}\n")
        return Digraph(body=body)

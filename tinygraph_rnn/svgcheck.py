"""Reading an unrolled picture back: where Graphviz put each step, and is it right.

The unrolled views tag every SVG group with classes (``step-k``, ``state``,
``state-h``, ``input``, ``output``, ``ellipsis``, …; see
:mod:`tinygraph_rnn.spine_view`). :func:`read_svg` collects those groups with
their centres and boxes; :func:`problems` lists what is wrong with a
picture: steps out of x order, a state row that is not straight, a step's
cluster overlapping the next, inputs not below the states or outputs not
above, more or fewer than one ellipsis, a side over 32,767 px. The views run
it after every layout and lay out again with stricter constraints when it
finds something; the tests use the same reader.

>>> svg = '''<svg width="80pt" height="20pt" xmlns="http://www.w3.org/2000/svg">
... <g class="node state step-0"><ellipse cx="10" cy="-5" rx="4" ry="4"/></g>
... <g class="node state step-1"><ellipse cx="30" cy="-5" rx="4" ry="4"/></g></svg>'''
>>> problems(read_svg(svg))
[]
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["Shape", "Picture", "read_svg", "problems", "MAX_PX", "PX_PER_PT"]

MAX_PX = 32767        # the largest side most image tools accept
PX_PER_PT = 96 / 72
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


@dataclass
class Shape:
    """One SVG group: its classes, centre and bounding box (points, y down)."""

    classes: frozenset[str]
    x: float
    y: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    def step(self) -> int | None:
        for c in self.classes:
            if c.startswith("step-") and c[5:].isdigit():
                return int(c[5:])
        return None


@dataclass
class Picture:
    width_pt: float
    height_pt: float
    nodes: list[Shape] = field(default_factory=list)
    clusters: list[Shape] = field(default_factory=list)

    def having(self, *classes: str) -> list[Shape]:
        """The nodes that carry all of ``classes``."""
        return [n for n in self.nodes if set(classes) <= n.classes]


def _points(elem: ET.Element) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for item in elem.iter():
        tag = item.tag.rpartition("}")[2]
        if tag == "ellipse":
            cx, cy = float(item.get("cx", 0)), float(item.get("cy", 0))
            rx, ry = float(item.get("rx", 0)), float(item.get("ry", 0))
            pts += [(cx - rx, cy - ry), (cx + rx, cy + ry)]
        elif tag in ("polygon", "polyline"):
            nums = [float(v) for v in _NUMBER.findall(item.get("points", ""))]
            pts += list(zip(nums[::2], nums[1::2], strict=False))
        elif tag == "path":
            nums = [float(v) for v in _NUMBER.findall(item.get("d", ""))]
            pts += list(zip(nums[::2], nums[1::2], strict=False))
        elif tag == "text":
            pts.append((float(item.get("x", 0)), float(item.get("y", 0))))
    return pts


def read_svg(svg: str) -> Picture:
    """The classed node and cluster groups of an SVG from Graphviz."""
    root = ET.fromstring(svg)

    def size(name: str) -> float:
        value = root.get(name, "0")
        num = _NUMBER.match(value)
        scale = PX_PER_PT ** -1 if value.endswith("px") else 1.0
        return float(num.group()) * scale if num else 0.0

    picture = Picture(size("width"), size("height"))
    for g in root.iter():
        if g.tag.rpartition("}")[2] != "g":
            continue
        classes = frozenset((g.get("class") or "").split())
        if not classes & {"node", "cluster"}:
            continue
        # A cluster's own outline is its first path/polygon; its nodes are separate groups.
        own = [c for c in g if c.tag.rpartition("}")[2] in ("path", "polygon", "ellipse")]
        pts = _points(own[0]) if "cluster" in classes and own else _points(g)
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = (min(xs), min(ys), max(xs), max(ys))
        shape = Shape(classes, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box)
        (picture.clusters if "cluster" in classes else picture.nodes).append(shape)
    return picture


def _by_step(shapes: list[Shape]) -> list[Shape]:
    """The shapes of some step, in step order (stable)."""
    stepped = [(step, i, s) for i, s in enumerate(shapes) if (step := s.step()) is not None]
    return [s for _, _, s in sorted(stepped)]


def problems(pic: Picture, ellipses: int | None = None, tol: float = 1.0) -> list[str]:
    """What is wrong with an unrolled picture (an empty list: nothing).

    ``ellipses`` is how many "… N steps …" nodes there must be (None: any).
    """
    found: list[str] = []
    for side, pt in (("width", pic.width_pt), ("height", pic.height_pt)):
        if pt * PX_PER_PT > MAX_PX:
            found.append(f"{side} {pt * PX_PER_PT:.0f} px > {MAX_PX} px")
    states = [n for n in pic.having("state") if "grad" not in n.classes]
    parts: list[str | None] = [  # one row per state part; [None]: one row of any part
        *sorted({c for n in states for c in n.classes if c.startswith("state-")})] or [None]
    state_y = [n.y for n in states]
    grads = pic.having("grad", "state")  # the BPTT view's row of ∂L/∂s_t
    for kind, nodes in (("state", states), ("gradient", grads)):
        for part in parts:
            row = [n for n in nodes if part is None or part in n.classes]
            row = _by_step(row)
            if not row:
                continue
            ys = [n.y for n in row]
            if max(ys) - min(ys) > tol:
                found.append(f"{kind} row {part or 'state'} spreads {max(ys) - min(ys):.1f} pt")
            for a, b in zip(row, row[1:], strict=False):
                if not b.x > a.x:
                    found.append(f"{kind} of step {b.step()} is not right of step {a.step()}")
    if grads and states and not min(n.y for n in grads) > max(state_y):
        found.append("the gradient row is not under the states")
    clusters = _by_step(pic.clusters)
    for a, b in zip(clusters, clusters[1:], strict=False):
        same_row = a.box[1] < b.box[3] and b.box[1] < a.box[3]
        if same_row and not a.box[2] <= b.box[0] + tol:
            found.append(f"cluster of step {a.step()} overlaps step {b.step()}")
    if state_y:
        low, high = min(state_y), max(state_y)
        for n in pic.having("input"):
            if "state" not in n.classes and not n.y > high:
                found.append(f"an input of step {n.step()} is not below the states")
        for n in pic.having("output"):
            if "state" not in n.classes and not n.y < low:
                found.append(f"an output of step {n.step()} is not above the states")
    marks = pic.having("ellipsis")
    if ellipses is not None and len(marks) != ellipses:
        found.append(f"{len(marks)} ellipsis nodes, expected {ellipses}")
    steps: list[int] = sorted({n.step() for n in states if n.step() is not None})  # type: ignore[misc]  # no None
    gaps = [(a, b) for a, b in zip(steps, steps[1:], strict=False) if b > a + 1]
    if len(marks) == 1 and len(gaps) == 1:
        a, b = gaps[0]  # type: ignore[assignment]  # ints; the names held boxes above
        left = max(n.x for n in states if n.step() == a)
        right = min(n.x for n in states if n.step() == b)
        if not left < marks[0].x < right:
            found.append(f"the ellipsis is not between steps {a} and {b}")
    return found

"""How the "bptt" picture looks: edge styles, step fills by ‖∂L/∂s_t‖, readable text.

Each step's cluster is filled on a log scale between :data:`LOW` (the
smallest norm) and :data:`HIGH` (the largest); the text drawn on a fill is
black or white, whichever contrasts more with it (WCAG relative luminance),
so labels on the darkest steps stay readable.

>>> text_color("#ffffff"), text_color(_hex(HIGH))
('#000000', '#ffffff')
>>> round(contrast("#000000", "#ffffff"), 1)
21.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygraph.render.drawing import Drawing

__all__ = ["EDGE_LOOKS", "CLUSTER_LOOKS", "LOW", "HIGH", "NONFINITE", "fills", "fmt",
           "text_color", "contrast", "shade"]

# Backward edges point the way the gradient flows; those along the gradient row are
# laid out against the flow (Drawing.add_edge(reverse=True)), so they run right to left.
EDGE_LOOKS: dict[str, dict[str, str]] = {
    "backward": {"style": "dashed", "color": "#b03030"},
    "bptt": {"style": "dashed", "color": "#b03030", "penwidth": "2"},
    "cut": {"style": "dotted", "color": "#888888", "fontcolor": "#d9822b", "penwidth": "2"},
    "reads": {"style": "dotted", "color": "#aaaaaa", "arrowsize": "0.5",
              "constraint": "false"},
}
LOW, HIGH = (0xF4, 0xF8, 0xFC), (0x1F, 0x4E, 0x8C)  # fills of the smallest / largest norm
NONFINITE = "#f08080"                                # a step whose gradient has nan or inf

CLUSTER_LOOKS: dict[str, dict[str, str]] = {
    "step": {"style": "rounded,filled", "color": "#999999"},
    "window": {"style": "rounded,bold", "color": "#d9822b", "fontcolor": "#d9822b",
               "penwidth": "3"},
    "legend": {"style": "rounded", "color": "#999999"},
}


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    channels = []
    for i in (1, 3, 5):
        c = int(color[i:i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)))
    return (lb + 0.05) / (la + 0.05)


def text_color(fill: str) -> str:
    """Black or white, whichever contrasts more with ``fill`` (at least 4.58:1)."""
    return "#000000" if contrast(fill, "#000000") >= contrast(fill, "#ffffff") else "#ffffff"


def fmt(n: float) -> str:
    """A norm with two significant digits (``0``, ``nan``, ``inf`` as such)."""
    return f"{n:.1e}" if math.isfinite(n) and n > 0 else ("0" if n == 0 else str(n))


def fills(norms: np.ndarray) -> list[str]:
    """One fill per step: LOW..HIGH by log10 of the norm, between the smallest and largest."""
    positive = norms[np.isfinite(norms) & (norms > 0)]
    lo, hi = (math.log10(positive.min()), math.log10(positive.max())) if positive.size else (0, 0)
    out = []
    for n in norms.tolist():
        if not math.isfinite(n):
            out.append(NONFINITE)
            continue
        f = 0.0 if n <= 0 else (1.0 if hi == lo else (math.log10(n) - lo) / (hi - lo))
        out.append(_hex(a + (b - a) * f for a, b in zip(LOW, HIGH, strict=True)))
    return out


def shade(drawing: Drawing, norms: np.ndarray, shown: list[int], cluster_of: Any) -> None:
    """Fill each shown step's cluster by its norm (text colour to match); add the legend."""
    step_fills = fills(norms)
    for t in shown:
        path = cluster_of(t)
        drawing.cluster_attrs[path] = {**drawing.cluster_attrs.get(path, {}),
                                       **CLUSTER_LOOKS["step"], "fillcolor": step_fills[t],
                                       "fontcolor": text_color(step_fills[t])}
    # Two swatches, the lightest and the darkest fill, each with its norm and step
    # (plain fills: Graphviz numbers gradient fills per process, so output would vary).
    finite = [t for t, n in enumerate(norms.tolist()) if math.isfinite(n)]
    legend = ("‖∂L/∂s_t‖ (fill: log10 scale)",)
    drawing.cluster_attrs[legend] = dict(CLUSTER_LOOKS["legend"])
    if not finite:
        drawing.add_box(("legend",), "link", ("no finite norm",), cluster=legend,
                        classes="legend")
        return
    ends = [("smallest", min(finite, key=lambda t: norms[t]), LOW),
            ("largest", max(finite, key=lambda t: norms[t]), HIGH)]
    for name, t, rgb in ends:
        color = _hex(rgb)
        drawing.add_box(("legend", name), "link", (f"{fmt(norms[t])} at t={t}",),
                        cluster=(*legend, name), classes="legend",
                        attrs={"fontcolor": text_color(color)})
        drawing.cluster_attrs[(*legend, name)] = {**CLUSTER_LOOKS["step"], "fillcolor": color,
                                                  "fontcolor": text_color(color)}

"""Drawing graphs: DOT text (pure), layout engines, files.

- :mod:`.dot`: :func:`to_dot` (a ``graphviz.Digraph``, writes nothing), :func:`render`.
- :mod:`.nodes`: what a node shows (kind, label, values) and the drawing options.
- :mod:`.drawing`: :class:`Drawing`, boxes, clusters and edges before they become DOT;
  one style table keyed by node kind.
- :mod:`.text`: the one escaping function every piece of user text goes through.
- :mod:`.engine`: the system ``dot`` or the in-process WebAssembly Graphviz, under a time limit.
"""

from .dot import (
    Options,
    draw,
    flatten_nodes,
    mimebundle,
    node_kind,
    node_label,
    node_values,
    options,
    render,
    render_source,
    render_svg,
    scope_path,
    title_of,
    to_dot,
)
from .drawing import Drawing

__all__ = ["to_dot", "render", "render_svg", "render_source", "draw", "options", "Options",
           "scope_path", "node_label", "node_kind", "node_values", "title_of", "flatten_nodes",
           "mimebundle", "Drawing"]

"""What a picture says about each node: the options, the kinds, the label lines.

:func:`options` validates the keywords every drawing function takes (one
:class:`Options` record); :func:`node_label` and :func:`node_kind` turn a node
into label lines (raw user text; escaping happens when the DOT is written)
and a style kind. :mod:`tinygraph.render` and the ``tinygraph_rnn`` views
build their pictures from these.

>>> import tinygraph as tg
>>> g = tg.Graph()
>>> with g.scope("t=0"):
...     h = tg.tanh(g.input("x", shape=(None, 3)), name="h")
>>> scope_path(h), node_label(h, options()), node_kind(h)
(('t=0',), ('tanh', 'h', '(?, 3)'), 'op')
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Container, Mapping
from typing import Any

import numpy as np

from ..core.graph import SCOPE_SEP, Graph
from ..core.node import Node
from ..core.shapes import format_shape
from ..errors import RenderError
from .drawing import RANKDIRS
from .text import array_summary, value_preview

__all__ = ["Options", "options", "scope_path", "base_name", "node_kind", "node_label",
           "flatten_nodes", "node_values", "title_of"]

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


def base_name(node: Node) -> str:
    """The node's name without its scopes (the whole name if that would be empty)."""
    return node.name.rpartition(SCOPE_SEP)[2] or node.name


def node_kind(node: Node, outputs: Container[Node] | None = None) -> str:
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
    base = base_name(node) if name is None else name
    shape = format_shape(node.shape)
    dtype = "" if node.dtype == np.float64 else f" {node.dtype}"
    if node.op == "const" and node.value.size <= 4:
        lines: tuple[str, ...] = (value_preview(node.value), f"const {shape}{dtype}")
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
        nodes = flatten_nodes(graph, key)
        if len(nodes) != 1:  # a tuple key names several nodes: which one gets the array?
            raise RenderError(f"values= keys name one node each (a node or a name); got {key!r}, "
                              f"which names {len(nodes)}")
        node = nodes[0]
        try:
            found[node] = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise RenderError(f"values[{node.name!r}] is not an array: {exc}") from None
    return found


def title_of(opts: Options, default: str) -> str | None:
    """The picture's title: ``opts.title`` if one was given, else ``default``."""
    return default if opts.title is _GRAPH_NAME else opts.title

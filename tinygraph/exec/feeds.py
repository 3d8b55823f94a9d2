"""Feeds: the arrays a caller passes for a graph's inputs, checked before anything runs.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(None, 2))
>>> check_feed(x, [[1, 2]]).dtype
dtype('float64')
>>> check_feed(x, np.zeros(3))
Traceback (most recent call last):
...
tinygraph.errors.FeedError: input 'x' wants shape (?, 2) float64; got shape (3,)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.arrays import cast_exact
from ..core.node import Node
from ..core.shapes import format_shape
from ..errors import FeedError

if TYPE_CHECKING:
    from ..core.graph import Graph

__all__ = ["check_feed", "resolve_feeds", "missing_feed"]


def check_feed(node: Node, value: Any) -> np.ndarray:
    """``value`` as an array of ``node``'s dtype; FeedError if it does not fit."""
    # Fast path (the common case, checked per input on every run): a numpy
    # array of the right dtype whose sizes match the declared ones.
    if type(value) is np.ndarray and value.dtype == node.dtype:
        shape, want = value.shape, node.shape
        if shape == want or (len(shape) == len(want) and (
                shape[1:] == want[1:] and want[0] is None  # the usual (batch, …) input
                or all(d is None or d == s for d, s in zip(want, shape, strict=True)))):
            return value
    want = f"shape {format_shape(node.shape)} {node.dtype}"  # type: ignore[assignment]  # now the message
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FeedError(f"input '{node.name}' wants {want}; the fed value is not an array "
                        f"({exc})") from None
    if arr.dtype != node.dtype:
        if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, node.dtype, "same_kind"):
            raise FeedError(f"input '{node.name}' wants {want}; got dtype {arr.dtype}, which "
                            f"does not convert safely (cast it with .astype({node.dtype.name!r}))")
        cast = cast_exact(arr, node.dtype)
        if isinstance(cast, str):  # 257 fed to int8 would silently become 1
            raise FeedError(f"input '{node.name}' wants {want}; got dtype {arr.dtype} whose "
                            f"{cast}")
        arr = cast
    if arr.ndim != len(node.shape) or any(
        d is not None and d != s for d, s in zip(node.shape, arr.shape, strict=True)
    ):
        raise FeedError(f"input '{node.name}' wants {want}; got shape {format_shape(arr.shape)}")
    return arr


def resolve_feeds(graph: Graph, feeds: Mapping[Any, Any]) -> dict[str, np.ndarray]:
    """``feeds`` keyed by input node or name -> {input name: checked array}."""
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be a dict of input -> array, got {type(feeds).__name__}")
    resolved: dict[str, np.ndarray] = {}
    for key, value in feeds.items():
        if isinstance(key, Node):
            if key.graph is not graph:
                raise FeedError(f"fed node '{key.name}' belongs to graph '{key.graph.name}', "
                                f"not '{graph.name}'")
            node = key
        elif isinstance(key, str) and key in graph._nodes:
            node = graph._nodes[key]
        else:
            inputs = list(graph.inputs)
            close = difflib.get_close_matches(str(key), inputs, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise FeedError(f"feed {key!r} names no input of graph '{graph.name}'; {hint}"
                            f"inputs: {', '.join(map(repr, inputs)) or 'none'}")
        if node.op != "input":
            raise FeedError(f"feed {node.name!r} is a {node.op} node; only inputs "
                            f"(g.input) can be fed")
        resolved[node.name] = check_feed(node, value)
    return resolved


def missing_feed(node: Node, fetched: Sequence[Node]) -> FeedError:
    """The error for an input that ``fetched`` need but nobody fed."""
    names = ", ".join(f"'{n.name}'" for n in fetched[:3])
    return FeedError(f"input '{node.name}' (shape {format_shape(node.shape)} {node.dtype}) "
                     f"is needed to compute {names} but was not fed; pass feeds={{'{node.name}': "
                     "array}")

"""Writing a graph file: structure as JSON, arrays as ``.npy`` members (see :mod:`tinygraph.io`)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from ..core.graph import Graph
from ..core.node import Node
from ..errors import GraphError
from .archive import DTYPES, write_archive
from .values import ValueEncoder

__all__ = ["save", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "tinygraph"
# 2: attrs may hold graphs (a scan node's body); written only when one does.
FORMAT_VERSION = 2



def save(graph: Graph, path: Any) -> Any:
    """Write ``graph`` (structure and every array) to ``path``; returns ``path``.

    ``path`` is a file name (written atomically: to a temporary file, then
    renamed) or a binary file object. The same graph gives the same bytes.

    Raises
    ------
    GraphError
        An attr or meta value of a type the format cannot hold (e.g. a
        function), or the file cannot be written.

    Examples
    --------
    >>> import io, tinygraph as tg
    >>> g = tg.Graph()
    >>> _ = tg.exp(g.input("x", shape=(3,)))
    >>> buf = tg.save(g, io.BytesIO())
    >>> [n.op for n in tg.load(buf).nodes.values()]
    ['input', 'exp']
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"save() takes a tinygraph.Graph, got {type(graph).__name__}")
    encoder = ValueEncoder(graph, encode_graph=_encode_graph)
    body = _encode_graph(graph, encoder)
    # Files without nested graphs stay version 1, readable by every tinygraph.
    version = FORMAT_VERSION if encoder.holds_graphs else 1
    doc = {"format": FORMAT_NAME, "version": version, **body}
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if hasattr(path, "write"):
        write_archive(path, text, encoder.arrays)
        return path
    try:
        target = os.fspath(path)
    except TypeError:
        raise GraphError(f"save() takes a file name or a binary file object, got "
                         f"{type(path).__name__}") from None
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write_archive(f, text, encoder.arrays)
        os.replace(tmp, target)  # a reader never sees a half-written file
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise GraphError(f"cannot write graph '{graph.name}' to {target!r}: {exc}") from None
    return path


def _encode_graph(graph: Graph, encoder: ValueEncoder) -> dict[str, Any]:
    """A graph's name and nodes (a scan's body is one of these, inside an attr)."""
    return {"name": graph.name, "nodes": [_encode_node(n, encoder) for n in graph.nodes.values()]}


def _encode_node(node: Node, encoder: ValueEncoder) -> dict[str, Any]:
    where = f"node '{node.name}'"
    if node.dtype.name not in DTYPES:
        raise GraphError(f"{where}: dtype {node.dtype} cannot be saved; "
                         f"supported: {', '.join(DTYPES)}")
    entry: dict[str, Any] = {"name": node.name, "op": node.op,
                             "inputs": [src.name for src in node.inputs],
                             "shape": list(node.shape), "dtype": node.dtype.name}
    for field, values in (("attrs", node.attrs), ("meta", node.meta)):
        entry[field] = {}
        for key, value in values.items():
            if not isinstance(key, str):
                raise GraphError(f"{where}, {field} key {key!r}: keys must be strings")
            label = f"{where}, {'attr' if field == 'attrs' else 'meta'} {key!r}"
            entry[field][key] = encoder.encode(value, label, nodes=field == "meta")
    if node.op == "param":
        entry["value"] = {"array": encoder.array(node.value, f"{where}, value")}
    return entry

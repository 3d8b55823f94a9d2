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
        function, a string with a lone surrogate), or the file or stream
        cannot be written (closed, read-only, a missing folder). A failed
        save to a file name leaves no temporary file behind.

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
    try:
        text.encode("utf-8")  # before any file is touched: nothing half-written to clean up
    except UnicodeEncodeError as exc:
        bad = text[max(exc.start - 30, 0):exc.end + 10]
        raise GraphError(f"cannot save graph '{graph.name}': a name, attr or meta string holds "
                         f"a lone surrogate, which UTF-8 cannot store (near {bad!r})") from None
    if hasattr(path, "write"):
        _check_stream(path, graph)
        try:
            write_archive(path, text, encoder.arrays)
        except (OSError, ValueError) as exc:  # io.UnsupportedOperation is both
            raise GraphError(f"cannot write graph '{graph.name}' to the stream "
                             f"{type(path).__name__}: {exc}") from None
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
    except BaseException as exc:
        # Whatever stops the write (a full disk, Ctrl-C, an exception in the middle of
        # an array), the temporary file goes: nothing is left behind but the old target.
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise GraphError(f"cannot write graph '{graph.name}' to {target!r}: "
                             f"{exc}") from None
        raise
    return path


def _check_stream(stream: Any, graph: Graph) -> None:
    """A GraphError unless ``stream`` is open and writable (say which it is not)."""
    where = f"cannot write graph '{graph.name}' to the stream {type(stream).__name__}"
    if getattr(stream, "closed", False):
        raise GraphError(f"{where}: it is closed")
    writable = getattr(stream, "writable", None)
    try:
        ok = writable() if callable(writable) else True
    except (OSError, ValueError) as exc:
        raise GraphError(f"{where}: {exc}") from None
    if not ok:
        raise GraphError(f"{where}: it is not writable (open it with mode 'wb')")


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

"""Reading a graph file, trusting nothing in it (see :mod:`tinygraph.io`)."""

from __future__ import annotations

import json
import os
from typing import Any

import networkx as nx
import numpy as np

from ..core.graph import Graph
from ..core.op import LEAF_OPS, OPS, attr_names
from ..errors import CycleError, FormatError, GraphError
from .archive import DTYPES, GRAPH_MEMBER, MAX_RANK, Archive
from .values import MAX_INT, ValueDecoder, show
from .writer import FORMAT_NAME, FORMAT_VERSION

__all__ = ["load", "MAX_BYTES", "MAX_JSON_BYTES", "MAX_MEMBERS"]


# Limits against hostile files; load() reads them at call time, so tests may patch them.
MAX_BYTES = 2 * 1024**3          # archive size, and total uncompressed size of its members
MAX_JSON_BYTES = 256 * 1024**2   # graph.json, uncompressed
MAX_MEMBERS = 1_000_000
MAX_GRAPH_NESTING = 8  # scans inside scans

_TOP_KEYS = ("format", "version", "name", "nodes")
_NODE_KEYS = ("name", "op", "inputs", "shape", "dtype", "attrs", "meta")




def load(path: Any, *, max_bytes: int | None = None, graph_type: type[Graph] = Graph) -> Graph:
    """Read a graph written by :func:`save` (or ``Graph.save``).

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    max_bytes : int, optional
        Refuse archives (and total uncompressed contents) larger than this;
        default ``MAX_BYTES`` (2 GiB).
    graph_type : type, optional
        The class of the graph returned (``tg.load`` passes ``tinygraph.Graph``,
        whose methods run and draw it).

    Returns
    -------
    Graph
        Equal to the saved one: node names, order, ops, attrs, shapes, dtypes,
        meta and arrays, so its outputs are identical bit for bit.

    Raises
    ------
    FormatError
        The file is missing, truncated, corrupted, tampered with, too large,
        of a newer format version, or names an op this tinygraph lacks.
    CycleError
        The file's nodes form a cycle (the message shows ``a -> b -> a``).

    Examples
    --------
    >>> import io, tinygraph as tg
    >>> tg.load(io.BytesIO(b"not a graph"))
    Traceback (most recent call last):
    ...
    tinygraph.errors.FormatError: <file object>: not a tinygraph file (not a zip archive)
    """
    limit = MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise GraphError(f"load(): max_bytes must be a size in bytes (an int >= 0), "
                         f"got {max_bytes!r}")
    try:
        source = "<file object>" if hasattr(path, "read") else repr(os.fspath(path))
    except TypeError:
        raise FormatError(f"load() takes a file name or a binary file object, got "
                          f"{type(path).__name__}") from None
    try:
        with Archive(path, source, limit, MAX_JSON_BYTES, MAX_MEMBERS) as archive:
            return _Loader(archive, source, graph_type).build()
    except GraphError:
        raise
    except Exception as exc:  # anything else means a damaged file: never let it escape bare
        raise FormatError(f"{source}: damaged file ({type(exc).__name__}: {exc})") from exc


class _BadJSON(ValueError):
    """Raised by the JSON hooks below; reported as a FormatError."""


def _reject_constant(name: str) -> None:
    raise _BadJSON(f"it holds {name}, which is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _BadJSON(f"it repeats the key {dup!r} in one object")
    return out


class _Loader:
    """Validates graph.json field by field, then rebuilds the graph through the builder."""

    def __init__(self, archive: Archive, source: str, graph_type: type[Graph]):
        self.archive = archive
        self.graph_type = graph_type
        self.source = source
        self.used: set[int] = set()
        self.values = ValueDecoder(self.read_array, self.fail, self.nested_graph)
        self.version = FORMAT_VERSION
        self.op_attrs: dict[str, tuple | None] = {}

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.source}: {message}")

    def build(self) -> Graph:
        data = self.archive.read(GRAPH_MEMBER)
        try:
            doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant,
                             object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise self.fail(f"graph.json is not valid JSON: {exc}") from None
        nodes = self.header(doc)
        graph = self.graph_from(doc["name"], nodes)
        unused = [k for k in self.archive.array_indices() if k not in self.used]
        if unused:
            raise self.fail(f"no node refers to the member 'arrays/{unused[0]}.npy'; the "
                            "file was tampered with")
        return graph

    def graph_from(self, name: str, nodes: list) -> Graph:
        """A graph rebuilt from its checked node entries, through the normal builder."""
        entries = [self.entry(i, raw) for i, raw in enumerate(nodes)]
        self.check_order(entries)
        graph = self.graph_type(name)
        for entry in entries:
            self.add(graph, entry)
        for entry in entries:  # meta last: it may refer to any node, earlier or later
            where = f"node '{entry['name']}', meta"
            meta = {k: self.values.decode(v, f"{where} {k!r}", graph)
                    for k, v in entry["meta"].items()}
            graph.node(entry["name"]).meta.update(meta)
        return graph

    def nested_graph(self, body: Any, where: str, depth: int) -> Graph:
        """A graph held in an attr (a scan's body): ``{"name": …, "nodes": […]}``."""
        if self.version < 2:
            raise self.fail(f"{where}: graphs inside attrs need format version 2")
        if depth > MAX_GRAPH_NESTING:
            raise self.fail(f"{where}: graphs nested more than {MAX_GRAPH_NESTING} deep")
        if not isinstance(body, dict):
            raise self.fail(f"{where}: a graph must be an object with name and nodes, got "
                            f"{show(body)}")
        self.keys(body, ("name", "nodes"), (), where)
        if not isinstance(body["name"], str) or not isinstance(body["nodes"], list):
            raise self.fail(f"{where}: a graph needs a string name and a list of nodes")
        return self.graph_from(body["name"], body["nodes"])

    def header(self, doc: Any) -> list:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise self.fail(f"graph.json is not a tinygraph graph (no \"format\": "
                            f"\"{FORMAT_NAME}\")")
        version = doc.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise self.fail(f"format version {version} is newer than this tinygraph reads "
                            f"({FORMAT_VERSION}); upgrade tinygraph")
        if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
            raise self.fail(f"unsupported format version {version!r}; expected {FORMAT_VERSION}")
        self.version = version
        self.keys(doc, _TOP_KEYS, (), "graph.json")
        if not isinstance(doc["name"], str):
            raise self.fail(f"field 'name' must be a string, got {show(doc['name'])}")
        if not isinstance(doc["nodes"], list):
            raise self.fail(f"field 'nodes' must be a list, got {show(doc['nodes'])}")
        return doc["nodes"]

    def keys(self, obj: dict, required: tuple, optional: tuple, where: str) -> None:
        missing = [k for k in required if k not in obj]
        extra = [k for k in obj if k not in required and k not in optional]
        if missing or extra:
            raise self.fail(f"{where}: " + "; ".join(
                ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(map(repr, extra))}"] if extra else [])))

    def entry(self, i: int, raw: Any) -> dict[str, Any]:
        where = f"node #{i}"
        if not isinstance(raw, dict):
            raise self.fail(f"{where}: expected an object, got {show(raw)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{where}: field 'name' must be a non-empty string, got {show(name)}")
        where = f"node #{i} '{name}'"
        op = raw.get("op")
        is_param = op == "param"
        self.keys(raw, _NODE_KEYS + (("value",) if is_param else ()), (), where)
        if not isinstance(op, str) or (op not in OPS and op not in LEAF_OPS):
            known = ", ".join([*LEAF_OPS, *OPS])
            raise self.fail(f"{where}: unknown op {show(op)}; this tinygraph knows {known}")
        inputs = raw["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            raise self.fail(f"{where}: field 'inputs' must be a list of node names, "
                            f"got {show(inputs)}")
        if op in LEAF_OPS and inputs:
            raise self.fail(f"{where}: a {op} node takes no inputs, got {len(inputs)}")
        for field in ("attrs", "meta"):
            if not isinstance(raw[field], dict):
                raise self.fail(f"{where}: field '{field}' must be an object, "
                                f"got {show(raw[field])}")
        dtype = raw["dtype"]
        if dtype not in DTYPES:
            raise self.fail(f"{where}: field 'dtype' must be one of {', '.join(DTYPES)}, "
                            f"got {show(dtype)}")
        return {**raw, "shape": self.shape(raw["shape"], where), "dtype": np.dtype(dtype)}

    def shape(self, shape: Any, where: str) -> tuple:
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(d is None or (type(d) is int and 0 <= d <= MAX_INT) for d in shape)):
            raise self.fail(f"{where}: field 'shape' must be a list of at most {MAX_RANK} sizes "
                            f"(ints >= 0, or null for unknown), got {show(shape)}")
        return tuple(shape)

    def check_order(self, entries: list[dict]) -> None:
        position: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry["name"] in position:
                raise self.fail(f"node #{i}: the name {entry['name']!r} is used twice")
            position[entry["name"]] = i
        late = None
        for i, entry in enumerate(entries):
            for src in entry["inputs"]:
                if src not in position:
                    raise self.fail(f"node '{entry['name']}' reads {src!r}, which the file "
                                    "does not define")
                if position[src] >= i and late is None:
                    late = (entry["name"], src)
        if late is None:
            return
        edges = nx.DiGraph()
        edges.add_nodes_from(position)
        edges.add_edges_from((src, e["name"]) for e in entries for src in e["inputs"])
        try:
            cycle = nx.find_cycle(edges)
        except nx.NetworkXNoCycle:
            raise self.fail(f"node '{late[0]}' reads '{late[1]}', which the file lists after "
                            "it; nodes must come after their inputs") from None
        raise CycleError([u for u, _ in cycle], context=self.source)

    def add(self, graph: Graph, entry: dict) -> None:
        name, op, shape, dtype = entry["name"], entry["op"], entry["shape"], entry["dtype"]
        where = f"node '{name}' ({op})"
        attrs = {k: self.values.decode(v, f"{where}, attr {k!r}")
                 for k, v in entry["attrs"].items()}
        try:
            if op == "input":
                self.attr_names(attrs, ("default",), where)
                default = attrs.get("default")
                if default is not None:
                    self.leaf_array(default, dtype, None, f"{where}, attr 'default'")
                node = graph.input(name, shape=shape, dtype=dtype, default=default)
            elif op == "param":
                self.attr_names(attrs, (), where)
                value = self.values.decode(entry["value"], f"{where}, value")
                self.leaf_array(value, dtype, shape, f"{where}, value")
                node = graph.param(name, value, dtype=dtype)
            elif op == "const":
                self.attr_names(attrs, ("value",), where)
                self.leaf_array(attrs.get("value"), dtype, shape, f"{where}, attr 'value'")
                node = graph.const(attrs["value"], name=name, dtype=dtype)
            else:
                if op not in self.op_attrs:
                    self.op_attrs[op] = attr_names(op)
                allowed = self.op_attrs[op]
                if allowed is not None:
                    self.attr_names(attrs, allowed, where)
                node = graph.add_node(op, [graph.node(s) for s in entry["inputs"]], attrs,
                                      name=name)
        except GraphError as exc:
            if isinstance(exc, FormatError):
                raise
            raise self.fail(f"{where} does not build: {exc}") from None
        if node.shape != shape or node.dtype != dtype:
            raise self.fail(f"{where}: the file records shape {list(shape)} {dtype} but its "
                            f"inputs give {list(node.shape)} {node.dtype}")

    def attr_names(self, attrs: dict, allowed: tuple, where: str) -> None:
        extra = [k for k in attrs if k not in allowed]
        if extra:
            raise self.fail(f"{where}: unknown attr(s) {', '.join(map(repr, extra))}; this op "
                            f"takes {', '.join(map(repr, allowed)) or 'none'}")

    def leaf_array(self, arr: Any, dtype: np.dtype, shape: tuple | None, where: str) -> None:
        if not isinstance(arr, np.ndarray):
            raise self.fail(f"{where}: expected an array, got {show(arr)}")
        if arr.dtype != dtype or (shape is not None and arr.shape != shape):
            raise self.fail(f"{where}: the array is {list(arr.shape)} {arr.dtype}, the node "
                            f"records {list(shape) if shape is not None else ''} {dtype}")

    def read_array(self, k: Any, where: str) -> np.ndarray:
        member = f"arrays/{k}.npy"
        if type(k) is not int or member not in self.archive.members:
            raise self.fail(f"{where}: refers to array {show(k)}, which the archive lacks")
        if k in self.used:  # one member per use: a small file cannot fan out into many copies
            raise self.fail(f"{where}: array {k} is used twice")
        self.used.add(k)
        return self.archive.read_array(member, f"{self.source}: {where}, {member}")

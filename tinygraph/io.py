"""Save and load graphs: one zip archive of JSON structure and ``.npy`` arrays.

A ``.tgraph`` file is a zip archive with two kinds of member:

``graph.json``
    ``{"format": "tinygraph", "version": 1, "name": ..., "nodes": [...]}``;
    one object per node, in insertion order: ``name``, ``op``, ``inputs``
    (names), ``shape`` (sizes, ``null`` for unknown), ``dtype``, ``attrs``,
    ``meta`` and, for params, ``value``.
``arrays/<k>.npy``
    param values, const values, input defaults and any array in attrs or
    meta, written by ``np.save`` and read with ``allow_pickle=False``.

Values in attrs and meta are plain JSON except for tagged one-key objects:
``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}``, ``{"array": k}``,
``{"scalar": k}`` (a numpy scalar), ``{"float": "nan"}``, ``{"dtype": "int64"}``
and, in meta only, ``{"node": name}``.

Loading trusts nothing in the file. Nothing is evaluated, unpickled or
imported: ops are looked up in :data:`tinygraph.ops.OPS`, values are decoded
from JSON types only, and the graph is rebuilt through the normal builder so
every shape rule re-checks the file's claims. Sizes, member counts, nesting
and dtypes are limited; anything wrong raises :class:`~tinygraph.FormatError`
(or :class:`~tinygraph.CycleError` for a cycle), never a bare exception.

>>> import os, tempfile, numpy as np, tinygraph as tg
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 2))
>>> y = tg.tanh(x @ g.param("W", np.eye(2)), name="y")
>>> path = os.path.join(tempfile.mkdtemp(), "affine.tgraph")
>>> _ = g.save(path)
>>> h = tg.load(path)
>>> list(h.nodes), h.run("y", feeds={"x": np.zeros((1, 2))})
(['x', 'W', 'matmul', 'y'], array([[0., 0.]]))
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import os
import re
import zipfile
from typing import Any

import networkx as nx
import numpy as np

from .errors import CycleError, FormatError, GraphError
from .graph import Graph, Node
from .ops import LEAF_OPS, OPS

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION", "DTYPES"]

FORMAT_NAME = "tinygraph"
FORMAT_VERSION = 1
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")

# Limits against hostile files; load() reads them at call time, so tests may patch them.
MAX_BYTES = 2 * 1024**3          # archive size, and total uncompressed size of its members
MAX_JSON_BYTES = 256 * 1024**2   # graph.json, uncompressed
MAX_MEMBERS = 1_000_000
MAX_DEPTH = 32                   # nesting of lists/tuples/dicts in attrs and meta
MAX_RANK = 64                    # numpy's own limit on dimensions
MAX_INT = 2**63 - 1

_GRAPH_MEMBER = "graph.json"
_ARRAY_MEMBER = re.compile(r"arrays/(0|[1-9][0-9]{0,8})\.npy")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same graph always gives the same bytes
_TOP_KEYS = ("format", "version", "name", "nodes")
_NODE_KEYS = ("name", "op", "inputs", "shape", "dtype", "attrs", "meta")
_NON_FINITE = ("nan", "inf", "-inf")


# -------------------------------------------------------------------- save


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
    >>> buf = io.BytesIO()
    >>> _ = tg.io.save(g, buf)
    >>> [n.op for n in tg.load(io.BytesIO(buf.getvalue())).nodes.values()]
    ['input', 'exp']
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"save() takes a tinygraph.Graph, got {type(graph).__name__}")
    writer = _Writer(graph)
    nodes = [writer.node(node) for node in graph.nodes.values()]
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "name": graph.name, "nodes": nodes}
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if hasattr(path, "write"):
        _write_zip(path, text, writer.arrays)
        return path
    try:
        target = os.fspath(path)
    except TypeError:
        raise GraphError(f"save() takes a file name or a binary file object, got "
                         f"{type(path).__name__}") from None
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            _write_zip(f, text, writer.arrays)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise GraphError(f"cannot write graph '{graph.name}' to {target!r}: {exc}") from None
    return path


def _write_zip(f: Any, text: str, arrays: list[np.ndarray]) -> None:
    with zipfile.ZipFile(f, "w") as zf:
        _write_member(zf, _GRAPH_MEMBER, zipfile.ZIP_DEFLATED, text.encode("utf-8"))
        for k, arr in enumerate(arrays):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            _write_member(zf, f"arrays/{k}.npy", zipfile.ZIP_STORED, buf.getvalue())


def _write_member(zf: zipfile.ZipFile, name: str, method: int, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


class _Writer:
    """Encodes nodes to JSON objects, collecting arrays into numbered members."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.arrays: list[np.ndarray] = []

    def node(self, node: Node) -> dict[str, Any]:
        where = f"node '{node.name}'"
        if node.dtype.name not in DTYPES:
            raise GraphError(f"{where}: dtype {node.dtype} cannot be saved; "
                             f"supported: {', '.join(DTYPES)}")
        entry = {
            "name": node.name, "op": node.op, "inputs": [src.name for src in node.inputs],
            "shape": list(node.shape), "dtype": node.dtype.name,
            "attrs": self.mapping(node.attrs, f"{where}, attr", nodes=False),
            "meta": self.mapping(node.meta, f"{where}, meta", nodes=True),
        }
        if node.op == "param":
            entry["value"] = {"array": self.array(node.value, f"{where}, value")}
        return entry

    def mapping(self, values: dict, where: str, nodes: bool) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            if not isinstance(key, str):
                raise GraphError(f"{where} key {key!r}: keys must be strings to be saved")
            out[key] = self.value(value, f"{where} {key!r}", nodes, 0)
        return out

    def array(self, arr: np.ndarray, where: str) -> int:
        if arr.dtype.name not in DTYPES or arr.dtype.fields is not None:
            raise GraphError(f"{where}: arrays of dtype {arr.dtype} cannot be saved; "
                             f"supported: {', '.join(DTYPES)}")
        self.arrays.append(arr)
        return len(self.arrays) - 1

    def value(self, v: Any, where: str, nodes: bool, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise GraphError(f"{where}: nested more than {MAX_DEPTH} levels deep (a cycle?)")
        if isinstance(v, np.generic):  # before float: np.float64 is a float subclass
            return {"scalar": self.array(np.asarray(v), where)}
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, int):
            if abs(v) > MAX_INT:
                raise GraphError(f"{where}: the int {v} does not fit in 64 bits")
            return int(v)
        if isinstance(v, float):
            return float(v) if math.isfinite(v) else {"float": repr(float(v))}
        if isinstance(v, np.ndarray):
            return {"array": self.array(v, where)}
        if isinstance(v, np.dtype) and v.name in DTYPES:
            return {"dtype": v.name}
        if isinstance(v, Node) and nodes and v.graph is self.graph:
            return {"node": v.name}
        if isinstance(v, list):
            return [self.value(x, where, nodes, depth + 1) for x in v]
        if isinstance(v, tuple):
            return {"tuple": [self.value(x, where, nodes, depth + 1) for x in v]}
        if isinstance(v, dict):
            return {"dict": [[self.value(k, where, nodes, depth + 1),
                              self.value(x, where, nodes, depth + 1)] for k, x in v.items()]}
        raise GraphError(
            f"{where}: cannot save a {type(v).__name__} ({v!r:.60}); attrs and meta may hold "
            "None, bool, int, float, str, lists, tuples, dicts, numpy arrays, scalars and "
            "dtypes, and (in meta) nodes of the same graph"
        )


# -------------------------------------------------------------------- load


def load(path: Any, *, max_bytes: int | None = None) -> Graph:
    """Read a graph written by :func:`save` (or ``Graph.save``).

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    max_bytes : int, optional
        Refuse archives (and total uncompressed contents) larger than this;
        default :data:`MAX_BYTES` (2 GiB).

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
    try:
        source = "<file object>" if hasattr(path, "read") else repr(os.fspath(path))
    except TypeError:
        raise FormatError(f"load() takes a file name or a binary file object, got "
                          f"{type(path).__name__}") from None
    try:
        with _open_archive(path, source, limit) as archive:
            return _Loader(archive, source).build()
    except GraphError:
        raise
    except Exception as exc:  # anything else is a damaged file; never let it escape bare
        raise FormatError(f"{source}: damaged file ({type(exc).__name__}: {exc})") from exc


class _open_archive:  # noqa: N801 - used as a context manager like open()
    """The validated zip archive: member names, counts, sizes and methods checked."""

    def __init__(self, path: Any, source: str, limit: int):
        self.source = source
        self.limit = limit
        self.file = path if hasattr(path, "read") else None
        if self.file is None:
            try:
                size = os.path.getsize(path)
                self.file = open(path, "rb")  # noqa: SIM115 - closed in __exit__
            except OSError as exc:
                raise FormatError(f"{source}: cannot open: {exc.strerror or exc}") from None
            self.owned = True
        else:
            self.file.seek(0, os.SEEK_END)
            size = self.file.tell()
            self.file.seek(0)
            self.owned = False
        if size > limit:
            self.close()
            raise FormatError(f"{source}: the file has {size} bytes, more than the limit of "
                              f"{limit}; pass max_bytes= to allow it")

    def __enter__(self) -> _open_archive:
        try:
            self.zip = zipfile.ZipFile(self.file)
        except zipfile.BadZipFile:
            self.close()
            raise FormatError(f"{self.source}: not a tinygraph file (not a zip archive)") from None
        except BaseException:
            self.close()
            raise
        self.members: dict[str, zipfile.ZipInfo] = {}
        try:
            self._check_members()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check_members(self) -> None:
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise FormatError(f"{self.source}: {len(infos)} members, more than the limit of "
                              f"{MAX_MEMBERS}")
        total = 0
        for info in infos:
            name = info.filename
            if name in self.members:
                raise FormatError(f"{self.source}: the member {name!r} appears twice")
            if name != _GRAPH_MEMBER and not _ARRAY_MEMBER.fullmatch(name):
                raise FormatError(f"{self.source}: unexpected member {name!r}; a tinygraph "
                                  "file holds graph.json and arrays/<k>.npy only")
            if info.flag_bits & 0x1:
                raise FormatError(f"{self.source}: member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise FormatError(f"{self.source}: member {name!r} uses an unsupported "
                                  f"compression method {info.compress_type}")
            total += info.file_size
            if total > self.limit:
                raise FormatError(f"{self.source}: the members unpack to more than the limit "
                                  f"of {self.limit} bytes (a zip bomb?); pass max_bytes= "
                                  "to allow it")
            self.members[name] = info
        info = self.members.get(_GRAPH_MEMBER)
        if info is None:
            raise FormatError(f"{self.source}: not a tinygraph file (no graph.json member)")
        if info.file_size > MAX_JSON_BYTES:
            raise FormatError(f"{self.source}: graph.json has {info.file_size} bytes, more "
                              f"than the limit of {MAX_JSON_BYTES}")

    def read(self, name: str) -> bytes:
        """A member's bytes; never more than its declared (and checked) size."""
        info = self.members[name]
        with self.zip.open(info) as f:
            data = f.read(info.file_size)
            # Reading on to the end makes zipfile verify the CRC.
            if len(data) != info.file_size or f.read(1):
                raise FormatError(f"{self.source}: member {name!r} is truncated or too long")
        return data

    def close(self) -> None:
        if self.owned and self.file is not None:
            self.file.close()

    def __exit__(self, *exc_info: Any) -> None:
        self.zip.close()
        self.close()


class _BadJSON(ValueError):
    """Raised by the JSON hooks below; load() reports it as a FormatError."""


def _reject_constant(name: str) -> None:
    raise _BadJSON(f"it holds {name}, which is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _BadJSON(f"it repeats the key {dup!r} in one object")
    return out


class _Loader:
    """Validates graph.json field by field, then rebuilds the graph through the builder."""

    def __init__(self, archive: _open_archive, source: str):
        self.archive = archive
        self.source = source
        self.used: set[int] = set()

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.source}: {message}")

    def build(self) -> Graph:
        data = self.archive.read(_GRAPH_MEMBER)
        try:
            doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant,
                             object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise self.fail(f"graph.json is not valid JSON: {exc}") from None
        nodes = self.header(doc)
        entries = [self.entry(i, raw) for i, raw in enumerate(nodes)]
        self.check_order(entries)
        graph = Graph(doc["name"])
        for entry in entries:
            self.add(graph, entry)
        for entry in entries:  # meta last: it may refer to any node, earlier or later
            where = f"node '{entry['name']}', meta"
            meta = {k: self.value(v, f"{where} {k!r}", graph, 0) for k, v in entry["meta"].items()}
            graph.node(entry["name"]).meta.update(meta)
        unused = [m for m in self.archive.members
                  if m != _GRAPH_MEMBER and int(m[7:-4]) not in self.used]
        if unused:
            raise self.fail(f"no node refers to the member {unused[0]!r}; the file was "
                            "tampered with")
        return graph

    def header(self, doc: Any) -> list:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise self.fail(f"graph.json is not a tinygraph graph (no \"format\": "
                            f"\"{FORMAT_NAME}\")")
        version = doc.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise self.fail(f"format version {version} is newer than this tinygraph reads "
                            f"({FORMAT_VERSION}); upgrade tinygraph")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise self.fail(f"unsupported format version {version!r}; expected {FORMAT_VERSION}")
        self.keys(doc, _TOP_KEYS, (), "graph.json")
        if not isinstance(doc["name"], str):
            raise self.fail(f"field 'name' must be a string, got {_show(doc['name'])}")
        if not isinstance(doc["nodes"], list):
            raise self.fail(f"field 'nodes' must be a list, got {_show(doc['nodes'])}")
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
            raise self.fail(f"{where}: expected an object, got {_show(raw)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{where}: field 'name' must be a non-empty string, got {_show(name)}")
        where = f"node #{i} '{name}'"
        op = raw.get("op")
        is_param = op == "param"
        self.keys(raw, _NODE_KEYS + (("value",) if is_param else ()), (), where)
        if not isinstance(op, str) or (op not in OPS and op not in LEAF_OPS):
            known = ", ".join([*LEAF_OPS, *OPS])
            raise self.fail(f"{where}: unknown op {_show(op)}; this tinygraph knows {known}")
        inputs = raw["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            raise self.fail(f"{where}: field 'inputs' must be a list of node names, "
                            f"got {_show(inputs)}")
        if op in LEAF_OPS and inputs:
            raise self.fail(f"{where}: a {op} node takes no inputs, got {len(inputs)}")
        for field in ("attrs", "meta"):
            if not isinstance(raw[field], dict):
                raise self.fail(f"{where}: field '{field}' must be an object, "
                                f"got {_show(raw[field])}")
        dtype = raw["dtype"]
        if dtype not in DTYPES:
            raise self.fail(f"{where}: field 'dtype' must be one of {', '.join(DTYPES)}, "
                            f"got {_show(dtype)}")
        return {**raw, "shape": self.shape(raw["shape"], where), "dtype": np.dtype(dtype)}

    def shape(self, shape: Any, where: str) -> tuple:
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(d is None or (type(d) is int and 0 <= d <= MAX_INT) for d in shape)):
            raise self.fail(f"{where}: field 'shape' must be a list of at most {MAX_RANK} sizes "
                            f"(ints >= 0, or null for unknown), got {_show(shape)}")
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
        attrs = {k: self.value(v, f"{where}, attr {k!r}", None, 0)
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
                value = self.value(entry["value"], f"{where}, value", None, 0)
                self.leaf_array(value, dtype, shape, f"{where}, value")
                node = graph.param(name, value, dtype=dtype)
            elif op == "const":
                self.attr_names(attrs, ("value",), where)
                self.leaf_array(attrs.get("value"), dtype, shape, f"{where}, attr 'value'")
                node = graph.const(attrs["value"], name=name, dtype=dtype)
            else:
                allowed = _attr_names(op)
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
            raise self.fail(f"{where}: expected an array, got {_show(arr)}")
        if arr.dtype != dtype or (shape is not None and arr.shape != shape):
            raise self.fail(f"{where}: the array is {list(arr.shape)} {arr.dtype}, the node "
                            f"records {list(shape) if shape is not None else ''} {dtype}")

    def value(self, v: Any, where: str, graph: Graph | None, depth: int) -> Any:
        """Decode one tagged JSON value; ``graph`` resolves ``{"node": name}`` (meta only)."""
        if depth > MAX_DEPTH:
            raise self.fail(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, int):
            if abs(v) > MAX_INT:
                raise self.fail(f"{where}: the int {v} does not fit in 64 bits")
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise self.fail(f"{where}: the number {v} is out of range")
            return v
        if isinstance(v, list):
            return [self.value(x, where, graph, depth + 1) for x in v]
        if len(v) != 1:
            raise self.fail(f"{where}: expected a tagged value such as {{\"tuple\": [...]}}, "
                            f"got an object with keys {sorted(v)}")
        ((tag, body),) = v.items()
        if tag in ("tuple", "dict") and not isinstance(body, list):
            raise self.fail(f"{where}: {tag} must hold a list, got {_show(body)}")
        if tag == "tuple":
            return tuple(self.value(x, where, graph, depth + 1) for x in body)
        if tag == "dict":
            return self.decode_dict(body, where, graph, depth)
        if tag in ("array", "scalar"):
            arr = self.array(body, where)
            if tag == "scalar":
                if arr.ndim:
                    raise self.fail(f"{where}: a scalar member must be 0-d, got {arr.shape}")
                return arr[()]
            return arr
        if tag == "float" and body in _NON_FINITE:
            return float(body)
        if tag == "dtype" and body in DTYPES:
            return np.dtype(body)
        if tag == "node" and graph is not None and isinstance(body, str) and body in graph:
            return graph.node(body)
        raise self.fail(f"{where}: invalid tagged value {{{tag!r}: {_show(body)}}}")

    def decode_dict(self, body: list, where: str, graph: Graph | None, depth: int) -> dict:
        out = {}
        for pair in body:
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(f"{where}: dict entries must be [key, value] pairs, "
                                f"got {_show(pair)}")
            key = self.value(pair[0], where, graph, depth + 1)
            try:
                if key in out:
                    raise self.fail(f"{where}: the dict key {key!r} appears twice")
            except TypeError:
                raise self.fail(f"{where}: the dict key {_show(key)} is not hashable") from None
            out[key] = self.value(pair[1], where, graph, depth + 1)
        return out

    def array(self, k: Any, where: str) -> np.ndarray:
        member = f"arrays/{k}.npy"
        if type(k) is not int or member not in self.archive.members:
            raise self.fail(f"{where}: refers to array {_show(k)}, which the archive lacks")
        if k in self.used:  # one member per use: a small file cannot fan out into many copies
            raise self.fail(f"{where}: array {k} is used twice")
        self.used.add(k)
        return _read_npy(self.archive.read(member), f"{self.source}: {where}, {member}")


def _read_npy(data: bytes, where: str) -> np.ndarray:
    """An ``.npy`` array whose header is checked before any memory is allocated for it."""
    fmt = np.lib.format
    f = io.BytesIO(data)
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise FormatError(f"{where}: not a valid .npy array ({exc})") from None
    if dtype.name not in DTYPES or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: arrays of dtype {dtype} are refused; allowed: "
                          f"{', '.join(DTYPES)}")
    if len(shape) > MAX_RANK or math.prod(shape) * dtype.itemsize != len(data) - f.tell():
        raise FormatError(f"{where}: the header claims shape {shape} {dtype} but the member "
                          f"holds {len(data) - f.tell()} bytes of data")
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _attr_names(op: str) -> tuple | None:
    """The attribute names an op's forward accepts by keyword; None if it cannot be told."""
    forward = OPS[op].forward
    if isinstance(forward, np.ufunc):
        return ()  # ufunc keywords (out=, where=, dtype=) are never graph attrs
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    arity = OPS[op].arity
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    if arity is None:  # forward(*xs, axis=0): only keyword-only parameters are attrs
        return tuple(keyword)
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    return tuple(positional[arity:] + keyword)


def _show(value: Any) -> str:
    """A short description of a JSON value for messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."



"""Attribute and meta values as tagged JSON, for :mod:`tinygraph.io`.

JSON has no tuples, arrays, numpy scalars or NaN, so those become one-key
objects whose key is a tag. Every JSON object inside an encoded value is such
a tag, so decoding never guesses, and it builds only the types listed here —
nothing is evaluated, imported or unpickled:

=============================  =============================================
``{"tuple": [...]}``           a tuple
``{"dict": [[key, v], ...]}``  a dict (any hashable keys, order kept)
``{"array": k}``               the array in member ``arrays/<k>.npy``
``{"scalar": k}``              a numpy scalar, stored as a 0-d array member
``{"float": "nan"}``           ``nan``, ``inf`` or ``-inf``
``{"dtype": "int64"}``         a numpy dtype named in :data:`DTYPES`
``{"node": name}``             a node of the same graph (meta only)
=============================  =============================================

>>> import math
>>> encoder = ValueEncoder(graph=None)
>>> encoded = encoder.encode((1, [2.5, None], math.inf), "attr 'x'")
>>> encoded
{'tuple': [1, [2.5, None], {'float': 'inf'}]}
>>> ValueDecoder(read_array=None, fail=ValueError).decode(encoded, "attr 'x'")
(1, [2.5, None], inf)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.graph import Graph
from ..core.node import Node
from ..errors import GraphError
from .archive import DTYPES

__all__ = ["ValueEncoder", "ValueDecoder", "MAX_DEPTH", "MAX_INT", "show"]

MAX_DEPTH = 32  # nesting of lists, tuples and dicts; also stops self-containing lists
MAX_INT = 2**63 - 1
_NON_FINITE = ("nan", "inf", "-inf")


def show(value: Any) -> str:
    """A short JSON rendering of a value for messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


class ValueEncoder:
    """Encodes values to tagged JSON, collecting arrays in :attr:`arrays` (member k = index)."""

    def __init__(self, graph: Graph | None, arrays: list[np.ndarray] | None = None,
                 encode_graph: Callable[[Graph, ValueEncoder], Any] | None = None):
        self.graph = graph
        self.arrays: list[np.ndarray] = [] if arrays is None else arrays
        # A graph held in an attr (a scan's body): encoded by the writer, arrays shared.
        self.encode_graph = encode_graph
        self.holds_graphs = False  # did a value hold a graph (the file then needs version 2)?

    def array(self, arr: np.ndarray, where: str) -> int:
        """Queue ``arr`` as the next member; returns its number."""
        if arr.dtype.name not in DTYPES or arr.dtype.fields is not None:
            raise GraphError(f"{where}: arrays of dtype {arr.dtype} cannot be saved; "
                             f"supported: {', '.join(DTYPES)}")
        self.arrays.append(arr)
        return len(self.arrays) - 1

    def encode(self, v: Any, where: str, nodes: bool = False, depth: int = 0) -> Any:
        """The JSON form of ``v``; ``nodes=True`` allows nodes of the graph (meta)."""
        if depth > MAX_DEPTH:
            raise GraphError(f"{where}: nested more than {MAX_DEPTH} levels deep (a cycle?)")
        if isinstance(v, np.generic):  # first: np.float64 is also a float
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
        if isinstance(v, Graph) and self.encode_graph is not None and not nodes:
            inner = ValueEncoder(v, self.arrays, self.encode_graph)
            self.holds_graphs = True
            return {"graph": self.encode_graph(v, inner)}
        if isinstance(v, list | tuple):
            items = [self.encode(x, where, nodes, depth + 1) for x in v]
            return items if isinstance(v, list) else {"tuple": items}
        if isinstance(v, dict):
            return {"dict": [[self.encode(k, where, nodes, depth + 1),
                              self.encode(x, where, nodes, depth + 1)] for k, x in v.items()]}
        raise GraphError(
            f"{where}: cannot save a {type(v).__name__} ({v!r:.60}); attrs and meta may hold "
            "None, bool, int, float, str, lists, tuples, dicts, numpy arrays, scalars and "
            "dtypes, and (in meta) nodes of the same graph"
        )


class ValueDecoder:
    """Decodes tagged JSON back to values, validating every part.

    ``read_array(k, where)`` returns member ``k``'s array; ``fail(message)``
    returns the exception to raise (a FormatError naming the file).
    """

    def __init__(self, read_array: Callable[[Any, str], np.ndarray],
                 fail: Callable[[str], Exception],
                 decode_graph: Callable[[Any, str, int], Graph] | None = None):
        self.read_array = read_array
        self.fail = fail
        self.decode_graph = decode_graph  # a graph in an attr (a scan's body), by the reader

    def decode(self, v: Any, where: str, graph: Graph | None = None, depth: int = 0) -> Any:
        """The value ``v`` encodes; ``graph`` resolves ``{"node": name}`` (meta only)."""
        if depth > MAX_DEPTH:
            raise self.fail(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, int):
            if abs(v) > MAX_INT:
                raise self.fail(f"{where}: the int {v} does not fit in 64 bits")
            return v
        if isinstance(v, float):
            if not math.isfinite(v):  # json reads 1e400 as inf
                raise self.fail(f"{where}: the number {v} is out of range")
            return v
        if isinstance(v, list):
            return [self.decode(x, where, graph, depth + 1) for x in v]
        if not isinstance(v, dict) or len(v) != 1:
            raise self.fail(f"{where}: expected a tagged value such as {{\"tuple\": [...]}}, "
                            f"got {show(v)}")
        ((tag, body),) = v.items()
        if tag in ("tuple", "dict") and not isinstance(body, list):
            raise self.fail(f"{where}: {tag} must hold a list, got {show(body)}")
        if tag == "tuple":
            return tuple(self.decode(x, where, graph, depth + 1) for x in body)
        if tag == "dict":
            return self._dict(body, where, graph, depth)
        if tag == "array":
            return self.read_array(body, where)
        if tag == "scalar":
            arr = self.read_array(body, where)
            if arr.ndim:
                raise self.fail(f"{where}: a scalar member must be 0-d, got shape {arr.shape}")
            return arr[()]
        if tag == "float" and body in _NON_FINITE:
            return float(body)
        if tag == "dtype" and body in DTYPES:
            return np.dtype(body)
        if tag == "node" and graph is not None and isinstance(body, str) and body in graph:
            return graph.node(body)
        if tag == "graph" and self.decode_graph is not None and graph is None:
            return self.decode_graph(body, where, depth + 1)
        raise self.fail(f"{where}: invalid tagged value {show(v)}")

    def _dict(self, body: list, where: str, graph: Graph | None, depth: int) -> dict:
        out: dict = {}
        for pair in body:
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(f"{where}: dict entries must be [key, value] pairs, "
                                f"got {show(pair)}")
            key = self.decode(pair[0], where, graph, depth + 1)
            try:
                seen = key in out
            except TypeError:
                raise self.fail(f"{where}: the dict key {show(key)} is not hashable") from None
            if seen:
                raise self.fail(f"{where}: the dict key {key!r} appears twice")
            out[key] = self.decode(pair[1], where, graph, depth + 1)
        return out

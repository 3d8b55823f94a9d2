"""The graph as data: nodes, held in a ``networkx.DiGraph``.

A :class:`Graph` owns its :class:`Node` handles. A node records its op name,
its input nodes, its attributes and its inferred shape and dtype — it never
computes anything (only :mod:`tinygraph.exec` runs numpy). Nodes are
added in dependency order, so insertion order is a topological order and
every name is stable: the same script builds the same graph.

This class is data plus building, validation and scheduling; running,
drawing and saving are methods of :class:`tinygraph.Graph`, a subclass
defined above the layers they call.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 3))
>>> W = g.param("W", np.ones((3, 2)))
>>> y = tg.tanh(x @ W + 1.0)
>>> y.name, y.shape
('tanh', (None, 2))
>>> list(g.nodes)
['x', 'W', 'matmul', 'const', 'add', 'tanh']
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Mapping
from typing import Any

import networkx as nx
import numpy as np

from ..errors import GraphError, NodeNameError, ShapeError
from .arrays import aligned_copy, check_dtype, check_size, to_array
from .node import Node
from .nxview import add_to_nx, make_nx
from .op import OPS, attr_names, infer
from .shapes import format_shape
from .traverse import schedule
from .validate import validate

__all__ = ["Graph", "SCOPE_SEP"]

SCOPE_SEP = "/"


def _check_shape_spec(name: str, shape: Any) -> tuple:
    if shape is None:
        raise ShapeError(f"input '{name}': shape= is required, e.g. shape=(None, 3)")
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"input '{name}': shape must be a tuple, got {shape!r}") from None
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0):
            raise ShapeError(
                f"input '{name}': shape entries must be sizes >= 0 or None, got {shape!r}"
            )
    dims = tuple(None if d is None else int(d) for d in dims)
    check_size(tuple(d for d in dims if d is not None), name)
    return dims


def _surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _plain(value: Any) -> Any:
    """numpy scalars (``np.int64(1)`` from ``arr.ndim`` and the like) as Python numbers."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if type(value) in (tuple, list) and any(isinstance(v, np.generic) for v in value):
        return type(value)(_plain(v) for v in value)
    return value


def _checked_attrs(op: str, name: str, attrs: Any) -> dict[str, Any]:
    """``attrs`` as a dict of names ``op``'s forward takes (a typo fails now, not at run time)."""
    if attrs is None or (type(attrs) is dict and not attrs):
        return {}
    if not isinstance(attrs, Mapping):
        raise GraphError(f"node '{name}' ({op}): attrs must be a dict of name -> value, got "
                         f"{type(attrs).__name__}")
    allowed = attr_names(op)
    unknown = [k for k in attrs if allowed is not None and k not in allowed]
    if unknown:
        raise GraphError(f"node '{name}' ({op}): unknown attribute(s) "
                         f"{', '.join(map(repr, unknown))}; this op takes "
                         f"{', '.join(map(repr, allowed)) or 'none'}")  # type: ignore[arg-type]
    return {k: _plain(v) for k, v in attrs.items()}


class Graph:
    """A dataflow graph of primitive nodes.

    Parameters
    ----------
    name : str
        Shown in messages and as the title of a rendered graph.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> x = g.input("x", shape=(2,))
    >>> g.run(x * 2, feeds={"x": np.array([1.0, 2.0])})
    array([2., 4.])
    """

    def __init__(self, name: str = "graph"):
        self.name = str(name)
        self._nx: nx.DiGraph | None = None  # made on first use of g.nx, then kept in sync
        self._nodes: dict[str, Node] = {}
        self._scopes: list[str] = []
        self._scope_prefix = ""  # "a/b/" inside scope("a"), scope("b")
        self._name_counters: dict[str, int] = {}
        self._journal: list[tuple[str, int | None]] | None = None  # counter undo log, see _atomic
        self._plans: dict[Any, Any] = {}
        # For graphs built by a pass: param name -> the original param node whose
        # live value a compiled plan reads (so assignments to it take effect).
        self._param_sources: dict[str, Node] = {}
        self.version = 0  # bumped on every change: a cheap "has the graph changed?" test
        # While a scan traces its step into this graph: the graph it is nested in.
        # Nodes of that graph (or of graphs around it) used by the step become
        # inputs of this one (see capture).
        self.outer: Graph | None = None
        self.captures: dict[Node, Node] = {}  # outer node -> the input standing for it

    # ------------------------------------------------------------ mappings
    @property
    def nodes(self) -> Mapping[str, Node]:
        """name -> Node for every node, in insertion (= topological) order."""
        return types.MappingProxyType(self._nodes)

    @property
    def params(self) -> dict[str, Node]:
        """name -> Node of the trainable params, in insertion order."""
        return {k: n for k, n in self._nodes.items() if n.op == "param"}

    @property
    def inputs(self) -> dict[str, Node]:
        """name -> Node of the inputs (fed at run time), in insertion order."""
        return {k: n for k, n in self._nodes.items() if n.op == "input"}

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Node):
            return item.graph is self
        return item in self._nodes

    def __getitem__(self, name: str) -> Node:
        return self.node(name)

    def node(self, name: str) -> Node:
        """The node called ``name``; NodeNameError with close matches if none."""
        try:
            return self._nodes[name]
        except (KeyError, TypeError):
            pass
        import difflib

        close = difflib.get_close_matches(str(name), list(self._nodes), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise NodeNameError(f"graph '{self.name}' has no node named {name!r}{hint}")

    def __repr__(self) -> str:
        return f"<Graph '{self.name}': {len(self._nodes)} nodes>"

    def param_source(self, node: Node) -> Node:
        """The param whose live array ``node`` reads at run time.

        ``node`` itself, except in a graph built by a pass, where a param
        stands for the original graph's param (so assignments to it, and
        in-place updates, take effect in compiled plans).
        """
        return self._param_sources.get(node.name, node)

    # --------------------------------------------------------------- nesting
    def encloses(self, other: Graph) -> bool:
        """Is ``other`` a graph this one is being traced inside (a scan body's outer graph)?"""
        graph = self.outer
        while graph is not None:
            if graph is other:
                return True
            graph = graph.outer
        return False

    def capture(self, node: Node) -> Node:
        """``node`` if it is this graph's; an input of this graph standing for it if it
        belongs to an enclosing graph (made once per node, in order of first use)."""
        if node.graph is self:
            return node
        chain = [self]  # the graphs from this one out to the node's, innermost first
        while chain[-1].outer is not None and chain[-1].outer is not node.graph:
            chain.append(chain[-1].outer)
        if chain[-1].outer is not node.graph:
            raise GraphError(f"node '{node.name}' belongs to graph '{node.graph.name}', which "
                             f"does not enclose graph '{self.name}'")
        for graph in reversed(chain):  # outermost first: each level captures the one around it
            found = graph.captures.get(node)
            if found is None:
                base = node.name.replace(SCOPE_SEP, ".")
                found = graph._insert(graph._unique_name(base), "input", (), {}, node.shape,
                                      node.dtype, {"captures": node.name})
                graph.captures[node] = found
            node = found
        return node

    # --------------------------------------------------------------- scopes
    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[str]:
        """Prefix the names of nodes built inside with ``name/``; scopes nest.

        >>> import tinygraph as tg
        >>> g = tg.Graph()
        >>> with g.scope("t=0"):
        ...     x = g.input("x", shape=())
        >>> x.name
        't=0/x'
        """
        name = str(name)
        if not name:
            raise NodeNameError("a scope name must be a non-empty string")
        self._scopes.append(name)
        self._scope_prefix = "".join(s + SCOPE_SEP for s in self._scopes)
        try:
            yield self._scope_prefix
        finally:
            self._scopes.pop()
            self._scope_prefix = "".join(s + SCOPE_SEP for s in self._scopes)

    def _prefix(self) -> str:
        return self._scope_prefix

    def _unique_name(self, base: str) -> str:
        # Pure: the counter only advances in _insert, so a failed build leaves no gap.
        candidate = self._prefix() + base
        if candidate not in self._nodes:
            return candidate
        count = self._name_counters.get(candidate, 0)
        while True:
            count += 1
            name = f"{candidate}_{count}"
            if name not in self._nodes:
                return name

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """Build several nodes as one step: if the block raises, the nodes it added go.

        ``x + np.ones(4)`` makes a const before the add's shape rule can fail;
        without this the const would stay behind and shift later auto names.
        """
        size, outer = len(self._nodes), self._journal
        journal: list[tuple[str, int | None]] = []
        self._journal = journal
        try:
            yield
        except BaseException:
            while len(self._nodes) > size:
                name, _ = self._nodes.popitem()  # dicts pop newest first
                if self._nx is not None:
                    self._nx.remove_node(name)
            for stem, old in reversed(journal):
                if old is None:
                    self._name_counters.pop(stem, None)
                else:
                    self._name_counters[stem] = old
            self.version += 1
            raise
        else:
            if outer is not None:
                outer.extend(journal)
        finally:
            self._journal = outer

    def _explicit_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise NodeNameError(f"a node name must be a non-empty string, got {name!r}")
        if _surrogate(name):
            # A lone surrogate has no UTF-8 form: the graph could never be saved.
            raise NodeNameError(f"a node name must be valid Unicode text (no lone "
                                f"surrogates), got {name!r}")
        full = self._prefix() + name
        if full in self._nodes:
            raise NodeNameError(f"graph '{self.name}' already has a node named {full!r}; "
                                "pick another name or leave name= out for an automatic one")
        return full

    # --------------------------------------------------------------- leaves
    def input(self, name: str, shape: Any = None, dtype: Any = "float64",
              default: Any = None) -> Node:
        """A value fed at run time. ``None`` in ``shape`` is a size of any length.

        ``default`` (optional) is used when the input is not fed; it must fit
        the shape (broadcastable zeros such as an initial state are typical).
        """
        full = self._explicit_name(name)
        dims = _check_shape_spec(full, shape)
        dt = check_dtype(dtype, full)
        attrs: dict[str, Any] = {}
        if default is not None:
            arr = to_array(default, dt, full)
            if arr.ndim != len(dims) or any(d is not None and d != s
                                            for d, s in zip(dims, arr.shape, strict=True)):
                raise ShapeError(f"input '{full}': default has shape {format_shape(arr.shape)}, "
                                 f"the input wants {format_shape(dims)}")
            arr.setflags(write=False)
            attrs["default"] = arr
        return self._insert(full, "input", (), attrs, dims, dt)

    def param(self, name: str, value: Any, dtype: Any = None) -> Node:
        """A trainable value held by the graph (``node.value``, updated in place)."""
        full = self._explicit_name(name)
        arr = aligned_copy(to_array(value, dtype, full))  # fast matrix-vector products
        node = self._insert(full, "param", (), {}, arr.shape, arr.dtype)
        node._value = arr
        return node

    def const(self, value: Any, name: str | None = None, dtype: Any = None) -> Node:
        """A fixed value baked into the graph (read-only)."""
        full = self._unique_name("const") if name is None else self._explicit_name(name)
        arr = to_array(value, dtype, full)
        arr.setflags(write=False)
        return self._insert(full, "const", (), {"value": arr}, arr.shape, arr.dtype)

    # ------------------------------------------------------------------ ops
    def add_node(self, op: str, inputs: list[Node] | tuple[Node, ...],
                 attrs: dict[str, Any] | None = None, name: str | None = None,
                 meta: dict[str, Any] | None = None) -> Node:
        """Add an op node; its shape and dtype are inferred (ShapeError if they disagree)."""
        if op not in OPS:
            raise GraphError(f"unknown op {op!r}; known ops: {', '.join(OPS)}")
        record = OPS[op]
        inputs = tuple(inputs)
        outer = False  # any input of a graph around this one (a scan body being traced)
        for node in inputs:
            if not isinstance(node, Node):
                raise GraphError(f"op {op}: inputs must be nodes, got {type(node).__name__}")
            if node.graph is not self and not (outer := self.encloses(node.graph)):
                raise GraphError(f"node '{node.name}' belongs to graph '{node.graph.name}', not "
                                 f"to graph '{self.name}'; nodes of two graphs cannot be mixed")
        if outer:
            inputs = tuple(self.capture(node) for node in inputs)
        if record.arity is not None and len(inputs) != record.arity:
            raise GraphError(f"op {op} takes {record.arity} inputs, got {len(inputs)}")
        if record.arity is None and not inputs:
            raise GraphError(f"op {op} needs at least one input")
        full = self._unique_name(op) if name is None else self._explicit_name(name)
        attrs = _checked_attrs(op, full, attrs)
        shape, dtype = infer(op, full, [(n.shape, n.dtype) for n in inputs], attrs)
        return self._insert(full, op, inputs, attrs, shape, dtype, meta)

    def _insert(self, name: str, op: str, inputs: tuple[Node, ...], attrs: dict,
                shape: tuple, dtype: np.dtype, meta: dict | None = None) -> Node:
        node = Node(self, name, op, inputs, attrs, tuple(shape), np.dtype(dtype),
                    len(self._nodes), meta)
        self._nodes[name] = node
        stem, _, count = name.rpartition("_")
        if count.isdigit() and stem in self._nodes:
            if self._journal is not None:
                self._journal.append((stem, self._name_counters.get(stem)))
            self._name_counters[stem] = max(self._name_counters.get(stem, 0), int(count))
        if self._nx is not None:
            add_to_nx(self._nx, [node])
        self.version += 1
        return node

    @property
    def nx(self) -> nx.DiGraph:
        """The ``networkx.DiGraph`` of the graph: key = node name, attributes ``op``, ``kind``,
        ``shape``, ``dtype`` (``t``, ``template``), an edge from each input to its user.

        Made on first access (building stays cheap for graphs nobody inspects
        this way) and kept in sync with every node added afterwards.
        """
        if self._nx is None:
            self._nx = make_nx(self.name, self._nodes.values())  # attributes: core/nxview.py
        return self._nx

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Lint the graph; raise a GraphError subclass naming the first problem.

        See :func:`tinygraph.core.validate.validate` for what is checked.
        """
        validate(self)

    # ----------------------------------------------------- scheduling
    def schedule(self, fetches: Any) -> list[Node]:
        """Exactly the ancestors of ``fetches`` (and themselves), in run order."""
        return schedule(self, fetches)

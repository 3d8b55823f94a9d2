"""Node handles: what a graph node records, and the operators that build new ones.

A :class:`Node` is a handle into its :class:`~tinygraph.core.graph.Graph`: its op
name, input nodes, attributes, inferred shape and dtype, and free-form
``meta``. It never computes anything. Arithmetic on nodes (``+ - * / @ **``,
unary ``-``, ``.T``, ``x[:, :3]``) adds nodes to the same graph; numbers and
arrays on either side become consts.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(None, 3))
>>> (2 * x).op, (x.T).shape, x[:, 1:].shape
('mul', (3, None), (None, 2))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GraphError, ShapeError
from .arrays import aligned_copy, to_array
from .op import LEAF_OPS
from .shapes import format_shape

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["Node", "as_node", "graph_of", "build", "index_attr", "index_parts"]


class Node:
    """A handle to one node of a :class:`Graph`.

    Attributes: ``name``, ``op`` (op name), ``inputs`` (tuple of Nodes),
    ``shape`` (tuple; ``None`` for sizes known only at run time), ``dtype``,
    ``graph``, ``attrs`` (op attributes), ``meta`` (free annotations: scope
    origin, time step, gradient marks; not used by the op). Params also have
    ``value``, the live array read at every run.

    Arithmetic operators build new nodes: ``+ - * / @ **``, unary ``-``,
    ``abs()``, ``< <= > >=`` (bool nodes), ``.T`` and numpy indexing
    (``x[:, :3]``, ``x[None, ..., 0]``, ``x[ids]``); numbers on either side
    become consts. ``==`` stays identity, so nodes work as dict keys.
    """

    __slots__ = ("name", "op", "inputs", "shape", "dtype", "graph", "attrs", "meta", "index",
                 "_value")
    # Makes numpy defer to Node's reflected operators: ``arr @ node`` builds a node.
    __array_ufunc__ = None

    def __init__(self, graph: Graph, name: str, op: str, inputs: tuple[Node, ...],
                 attrs: dict[str, Any], shape: tuple, dtype: np.dtype, index: int,
                 meta: dict[str, Any] | None = None):
        self.graph = graph
        self.name = name
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.shape = shape
        self.dtype = dtype
        self.index = index
        self.meta = dict(meta or {})
        self._value: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """``'input'``, ``'param'``, ``'const'`` or ``'op'``."""
        return self.op if self.op in LEAF_OPS else "op"

    @property
    def value(self) -> np.ndarray:
        """The live array of a param (or a const's array)."""
        if self.op == "param":
            return self._value  # type: ignore[return-value]  # a param always holds one
        if self.op == "const":
            return self.attrs["value"]
        raise GraphError(f"node '{self.name}' is a {self.op} node; only params and consts "
                         "hold a value (use graph.run to evaluate it)")

    @value.setter
    def value(self, new: Any) -> None:
        if self.op != "param":
            raise GraphError(f"node '{self.name}' is a {self.op} node; only params can be assigned")
        if new is self._value:
            return  # `p.value += d` already updated the array in place; keep its identity
        arr = aligned_copy(to_array(new, self.dtype, self.name))
        if arr.shape != self.shape:
            raise ShapeError(f"param '{self.name}': new value has shape {format_shape(arr.shape)}, "
                             f"the param has shape {format_shape(self.shape)}")
        self._value = arr

    @property
    def T(self) -> Node:  # noqa: N802 - numpy's spelling
        return build("transpose", self, axes=None)

    def __getitem__(self, index: Any) -> Node:
        attr, arrays = index_parts(index)
        if arrays:
            return build("advanced_getitem", self, *arrays, index=attr)
        return build("getitem", self, index=attr)

    def __repr__(self) -> str:
        return f"<Node '{self.name}' {self.op} {format_shape(self.shape)} {self.dtype}>"

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise ShapeError(f"node '{self.name}' has shape {format_shape(self.shape)}; "
                             "len() needs a known first size")
        return self.shape[0]

    def __bool__(self) -> bool:
        # Without this, `if node:` would silently be True; graph building never branches on values.
        raise GraphError(f"the truth value of node '{self.name}' is only known at run time; "
                         "compare with `is None` or evaluate the graph first")

    def __hash__(self) -> int:
        return id(self)

    # Operators (reflected ones put the number first).
    def __add__(self, o): return build("add", self, o)
    def __radd__(self, o): return build("add", o, self)
    def __sub__(self, o): return build("sub", self, o)
    def __rsub__(self, o): return build("sub", o, self)
    def __mul__(self, o): return build("mul", self, o)
    def __rmul__(self, o): return build("mul", o, self)
    def __truediv__(self, o): return build("div", self, o)
    def __rtruediv__(self, o): return build("div", o, self)
    def __matmul__(self, o): return build("matmul", self, o)
    def __rmatmul__(self, o): return build("matmul", o, self)
    def __pow__(self, o): return build("pow", self, o)
    def __rpow__(self, o): return build("pow", o, self)
    def __neg__(self): return build("neg", self)
    def __abs__(self): return build("abs", self)
    # Comparisons build bool nodes; == and != stay identity, so nodes remain dict keys
    # (use tg.equal / tg.not_equal for the elementwise test).
    def __lt__(self, o): return build("less", self, o)
    def __le__(self, o): return build("less_equal", self, o)
    def __gt__(self, o): return build("greater", self, o)
    def __ge__(self, o): return build("greater_equal", self, o)


def build(op: str, *args: Any, name: str | None = None, **attrs: Any) -> Node:
    """A new ``op`` node reading ``args``; numbers and arrays among them become consts.

    A python number takes the dtype of the first node among ``args`` (see
    :func:`as_node`). If the op's shape rule fails, the consts made for it go
    too: a failed build leaves the graph as it was.
    """
    for a in args:
        if type(a) is not Node:
            break
    else:  # fast path: only nodes of one graph, so no consts to build (or undo)
        graph = args[0].graph
        if all(a.graph is graph for a in args):
            return graph.add_node(op, args, attrs, name=name)
    graph = graph_of(*args)
    peer = next((a for a in args if isinstance(a, Node)), None)
    with graph._atomic():
        return graph.add_node(op, [as_node(graph, a, peer=peer) for a in args], attrs, name=name)


def index_attr(index: Any) -> tuple:
    """``x[index]``'s index as the ``getitem`` attr: slices become (start, stop, step)."""
    attr, arrays = index_parts(index)
    if arrays:
        raise GraphError(f"index {index!r} holds integer arrays; build it with x[...] "
                         "(an advanced_getitem node), not a getitem attr")
    return attr


def index_parts(index: Any) -> tuple[tuple, list]:
    """``x[index]`` as a stored attr and its integer arrays (numpy arrays, lists or nodes).

    Slices become (start, stop, step), ``...`` becomes ``'...'`` and each
    integer array ``'[]'`` (JSON has neither Ellipsis nor arrays).
    """
    items = index if isinstance(index, tuple) else (index,)
    out: list[Any] = []
    arrays: list[Any] = []
    for item in items:
        if isinstance(item, slice):
            out.append((_int_or_none(item.start), _int_or_none(item.stop),
                        _int_or_none(item.step)))
        elif isinstance(item, int | np.integer) and not isinstance(item, bool | np.bool_):
            out.append(int(item))
        elif item is None:
            out.append(None)
        elif item is Ellipsis:
            out.append("...")
        else:
            array = item if isinstance(item, Node) else np.asarray(item) if isinstance(
                item, list | np.ndarray) else None
            if array is None or array.dtype.kind not in "iu":
                what = "a bool mask" if array is not None and array.dtype.kind == "b" else repr(
                    item)
                raise GraphError(f"indexing a node takes ints, slices, None, ... and integer "
                                 f"arrays, got {what}; for a mask use tg.where(mask, x, 0)")
            out.append("[]")
            arrays.append(array)
    return tuple(out), arrays


def _int_or_none(value: Any) -> Any:
    return int(value) if isinstance(value, np.integer) else value


def graph_of(*values: Any) -> Graph:
    """The one graph the nodes among ``values`` belong to.

    Inside a scan's step, nodes of the scan body and of the graphs around it
    mix: the body (the innermost graph) is the one.
    """
    graph = None
    for value in values:
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, Node):
                if graph is None or item.graph is graph or graph.encloses(item.graph):
                    graph = graph or item.graph
                    continue
                if item.graph.encloses(graph):
                    graph = item.graph
                    continue
                raise GraphError(
                    f"node '{item.name}' belongs to graph '{item.graph.name}', not to graph "
                    f"'{graph.name}'; nodes of two graphs cannot be mixed"
                )
    if graph is None:
        raise GraphError("an op needs at least one Node argument to know its graph; "
                         "create values with g.input/g.param/g.const first")
    return graph


def as_node(graph: Graph, value: Any, peer: Any = None) -> Node:
    """``value`` if it is a node of ``graph``, else a new const holding it.

    A python number takes the dtype of the node beside it, so ``2 * x``
    stays float32 when ``x`` is float32 and ``ids + 1`` stays integer.
    """
    if isinstance(value, Node):
        if value.graph is not graph and not graph.encloses(value.graph):
            raise GraphError(f"node '{value.name}' belongs to graph '{value.graph.name}', "
                             f"not to graph '{graph.name}'; nodes of two graphs cannot be mixed")
        return graph.capture(value)
    dtype = None
    if isinstance(peer, Node) and isinstance(value, int | float) and not isinstance(value, bool):
        if peer.dtype.kind == "f" or (peer.dtype.kind in "iu" and isinstance(value, int)):
            dtype = peer.dtype
    return graph.const(value, dtype=dtype)

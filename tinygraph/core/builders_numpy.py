"""The numpy-named primitives users call: ``tg.maximum``, ``tg.where``, ``tg.max``, ``tg.split``, ….

Names, signatures and semantics follow numpy (``split`` as ``np.split``,
``pad`` with ``pad_width``, ``gather`` as ``np.take_along_axis``,
``var``/``std`` with ``ddof=0``); the activations follow PyTorch
(``leaky_relu(x, negative_slope=0.01)``, ``gelu(x, approximate="none")``).
Comparisons return bool nodes, for ``tg.where`` or as 0/1 in arithmetic.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2, 3))
>>> tg.max(x, axis=1).shape, (x > 0).dtype, [p.shape for p in tg.split(x, 3, axis=1)]
((2,), dtype('bool'), [(2, 1), (2, 1), (2, 1)])
>>> g.run(tg.where(x > 0, x, 0.0), feeds={"x": np.array([[1.0, -2, 3], [-4, 5, -6]])})
array([[1., 0., 3.],
       [0., 5., 0.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from .node import Node, as_node, build, graph_of

__all__ = [
    "maximum", "minimum", "where", "abs", "sign", "sqrt", "rsqrt", "clip", "max", "min",
    "argmax", "argmin", "logsumexp", "var", "std", "gather", "split", "pad", "broadcast_to",
    "expand_dims", "squeeze", "cumsum", "sin", "cos", "erf", "softplus", "logsigmoid",
    "leaky_relu", "silu", "gelu", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "logical_and", "logical_or", "logical_not", "stop_gradient",
]


def _axis(axis: Any) -> Any:
    if isinstance(axis, Sequence) and not isinstance(axis, str):
        return tuple(int(a) if isinstance(a, np.integer) else a for a in axis)
    return int(axis) if isinstance(axis, np.integer) else axis


def _unary(op: str, doc: str):
    def builder(x, name=None) -> Node:
        return build(op, x, name=name)
    builder.__name__ = builder.__qualname__ = op
    builder.__doc__ = doc
    return builder


def _binary(op: str, doc: str):
    def builder(a, b, name=None) -> Node:
        return build(op, a, b, name=name)
    builder.__name__ = builder.__qualname__ = op
    builder.__doc__ = doc
    return builder


maximum = _binary("maximum", "Elementwise larger of ``a`` and ``b`` (``np.maximum``).")
minimum = _binary("minimum", "Elementwise smaller of ``a`` and ``b`` (``np.minimum``).")
equal = _binary("equal", "``a == b`` elementwise, a bool node (``np.equal``).")
not_equal = _binary("not_equal", "``a != b`` elementwise, a bool node.")
less = _binary("less", "``a < b`` elementwise, a bool node (also ``a < b`` on nodes).")
less_equal = _binary("less_equal", "``a <= b`` elementwise, a bool node.")
greater = _binary("greater", "``a > b`` elementwise, a bool node.")
greater_equal = _binary("greater_equal", "``a >= b`` elementwise, a bool node.")
logical_and = _binary("logical_and", "``a and b`` elementwise on bool nodes.")
logical_or = _binary("logical_or", "``a or b`` elementwise on bool nodes.")
logical_not = _unary("logical_not", "``not a`` elementwise on a bool node.")
abs = _unary("abs", "``|x|`` (also ``abs(x)``); its gradient is 0 at 0.")  # noqa: A001
sign = _unary("sign", "-1, 0 or 1 by the sign of ``x``; no gradient flows through it.")
sqrt = _unary("sqrt", "Square root.")
rsqrt = _unary("rsqrt", "``1 / sqrt(x)``.")
sin = _unary("sin", "Sine.")
cos = _unary("cos", "Cosine.")
erf = _unary("erf", "The error function.")
softplus = _unary("softplus", "``log(1 + exp(x))``, without overflow or cancellation.")
logsigmoid = _unary("logsigmoid", "``log(sigmoid(x))``, finite down to -1e300.")
silu = _unary("silu", "``x * sigmoid(x)`` (swish).")
stop_gradient = _unary("stop_gradient",
                       "``x`` itself, but ``tg.grad`` sends nothing back through it.")


def where(condition, x, y, name=None) -> Node:
    """``x`` where the bool ``condition`` holds, else ``y``, broadcasting (``np.where``).

    A number takes the dtype of the node on the other side.
    """
    graph = graph_of(condition, x, y)
    peer = x if isinstance(x, Node) else y if isinstance(y, Node) else None
    with graph._atomic():
        return graph.add_node("where", [as_node(graph, condition),
                                        as_node(graph, x, peer=peer),
                                        as_node(graph, y, peer=peer)], name=name)


def clip(x, a_min, a_max, name=None) -> Node:
    """``x`` limited to ``[a_min, a_max]`` (``np.clip``); ``None`` leaves that side open."""
    if a_min is None and a_max is None:
        raise GraphError("clip needs a_min or a_max (one may be None, not both)")
    lo = -np.inf if a_min is None else a_min
    hi = np.inf if a_max is None else a_max
    return build("clip", x, lo, hi, name=name)


def max(x, axis=None, keepdims: bool = False, name=None) -> Node:  # noqa: A001
    """Largest entry over ``axis`` (``None``: all); tied maxima share the gradient."""
    return build("max", x, axis=_axis(axis), keepdims=keepdims, name=name)


def min(x, axis=None, keepdims: bool = False, name=None) -> Node:  # noqa: A001
    """Smallest entry over ``axis`` (``None``: all); tied minima share the gradient."""
    return build("min", x, axis=_axis(axis), keepdims=keepdims, name=name)


def argmax(x, axis=None, keepdims: bool = False, name=None) -> Node:
    """Index of the largest entry along ``axis`` (``None``: of the flattened array); no gradient."""
    return build("argmax", x, axis=_axis(axis), keepdims=keepdims, name=name)


def argmin(x, axis=None, keepdims: bool = False, name=None) -> Node:
    """Index of the smallest entry along ``axis`` (``None``: flattened); no gradient."""
    return build("argmin", x, axis=_axis(axis), keepdims=keepdims, name=name)


def logsumexp(x, axis=None, keepdims: bool = False, name=None) -> Node:
    """``log(sum(exp(x)))`` over ``axis``, stable for large entries."""
    return build("logsumexp", x, axis=_axis(axis), keepdims=keepdims, name=name)


def var(x, axis=None, ddof: int = 0, keepdims: bool = False, name=None) -> Node:
    """Variance over ``axis`` (``np.var``: ``ddof=0``; PyTorch's default is ``ddof=1``)."""
    return build("var", x, axis=_axis(axis), ddof=ddof, keepdims=keepdims, name=name)


def std(x, axis=None, ddof: int = 0, keepdims: bool = False, name=None) -> Node:
    """Standard deviation over ``axis`` (``np.std``: ``ddof=0``)."""
    return build("std", x, axis=_axis(axis), ddof=ddof, keepdims=keepdims, name=name)


def cumsum(x, axis=None, name=None) -> Node:
    """Running sum along ``axis`` (``None``: of the flattened array), as ``np.cumsum``."""
    return build("cumsum", x, axis=_axis(axis), name=name)


def gather(x, indices, axis: int = -1, name=None) -> Node:
    """Entries of ``x`` picked along ``axis`` by same-rank ``indices`` (``np.take_along_axis``)."""
    graph = graph_of(x, indices)
    with graph._atomic():
        ids = indices if isinstance(indices, Node) else graph.const(np.asarray(indices))
        return graph.add_node("gather", [as_node(graph, x), ids], {"axis": _axis(axis)},
                              name=name)


def split(x, indices_or_sections, axis: int = 0) -> list[Node]:
    """``x`` cut along ``axis`` into a list of nodes, as ``np.split``.

    An int N cuts into N equal parts (the size along ``axis`` must be known
    and divisible by N); a list of indices cuts before each index.
    """
    node = x if isinstance(x, Node) else None
    if node is None:
        raise GraphError(f"split takes a node, got {type(x).__name__}")
    ndim = len(node.shape)
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or not -ndim <= axis < ndim:
        raise ShapeError(f"split of node '{node.name}': axis={axis!r} is out of range for "
                         f"rank {ndim}")
    axis = int(axis) % ndim
    size = node.shape[axis]
    if isinstance(indices_or_sections, int | np.integer):
        parts = int(indices_or_sections)
        if size is None or parts < 1 or size % parts:
            raise ShapeError(f"split of node '{node.name}' ({_shape(node)}) into {parts} equal "
                             f"parts along axis {axis}: the size {size} is unknown or does not "
                             "divide; pass the indices to cut at instead")
        cuts = [size // parts * k for k in range(1, parts)]
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = [None, *cuts, None]
    whole = (slice(None),) * axis
    return [node[(*whole, slice(a, b))] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _shape(node: Node) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in node.shape) + ")"


def pad(x, pad_width, mode: str = "constant", constant_values: float = 0, name=None) -> Node:
    """``x`` padded with ``constant_values`` (``np.pad``'s ``pad_width``: an int, a pair, or one
    ``(before, after)`` pair per axis); only ``mode="constant"``."""
    if mode != "constant":
        raise GraphError(f"pad supports mode='constant' only, got {mode!r}")
    ndim = len(x.shape) if isinstance(x, Node) else 0
    try:
        width = np.broadcast_to(np.asarray(pad_width), (ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width={pad_width!r} does not give (before, after) for each "
                         f"of the {ndim} axes") from None
    if width.dtype.kind not in "iu":
        raise ShapeError(f"pad: pad_width must hold ints, got {pad_width!r}")
    attr = tuple((int(a), int(b)) for a, b in width)
    return build("pad", x, pad_width=attr, constant_values=constant_values, name=name)


def broadcast_to(x, shape, name=None) -> Node:
    """``x`` repeated to ``shape`` (``np.broadcast_to``)."""
    shape = (shape,) if isinstance(shape, int | np.integer) else shape
    return build("broadcast_to_shape", x, shape=tuple(int(d) if isinstance(d, np.integer) else d
                                                      for d in shape), name=name)


def expand_dims(x, axis, name=None) -> Node:
    """``x`` with size-1 axes inserted at ``axis`` (an int or a tuple, ``np.expand_dims``)."""
    return build("expand_dims", x, axis=_axis(axis), name=name)


def squeeze(x, axis=None, name=None) -> Node:
    """``x`` without its size-1 axes (``np.squeeze``); unknown sizes need ``axis=``."""
    return build("squeeze", x, axis=_axis(axis), name=name)


def leaky_relu(x, negative_slope: float = 0.01, name=None) -> Node:
    """``x`` if ``x > 0`` else ``negative_slope * x`` (PyTorch's default slope)."""
    return build("leaky_relu", x, negative_slope=negative_slope, name=name)


def gelu(x, approximate: str = "none", name=None) -> Node:
    """``x * Phi(x)`` with Phi the normal CDF; ``approximate="tanh"`` as in PyTorch."""
    return build("gelu", x, approximate=approximate, name=name)


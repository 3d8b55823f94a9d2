"""The primitive functions users call: ``tg.tanh(x)``, ``tg.concat([a, b])``, ….

Each builds one node through :meth:`Graph.add_node`; numbers and arrays
mixed with nodes become consts. Semantics follow numpy (broadcasting,
``np.matmul`` rules, ``axis=`` keywords). ``name=`` picks the node's name.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2, 3))
>>> tg.sum(x, axis=1).shape
(2,)
>>> tg.concat([x, x], axis=0).shape
(4, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GraphError
from .node import Node, as_node, build, graph_of, index_parts

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul",
    "tanh", "sigmoid", "relu", "exp", "log", "softmax", "log_softmax",
    "sum", "mean", "transpose", "reshape", "concat", "stack", "take", "one_hot",
    "cross_entropy", "getitem",
]


def add(a, b, name=None) -> Node:
    """``a + b`` with broadcasting."""
    return build("add", a, b, name=name)


def sub(a, b, name=None) -> Node:
    """``a - b`` with broadcasting."""
    return build("sub", a, b, name=name)


def mul(a, b, name=None) -> Node:
    """``a * b`` with broadcasting."""
    return build("mul", a, b, name=name)


def div(a, b, name=None) -> Node:
    """``a / b`` with broadcasting (true division)."""
    return build("div", a, b, name=name)


def pow(a, b, name=None) -> Node:  # noqa: A001 - numpy's name
    """``a ** b`` with broadcasting."""
    return build("pow", a, b, name=name)


def neg(a, name=None) -> Node:
    """``-a``."""
    return build("neg", a, name=name)


def matmul(a, b, name=None) -> Node:
    """``a @ b`` with ``np.matmul`` rules (1-D operands promoted, batch dims broadcast)."""
    return build("matmul", a, b, name=name)


def tanh(x, name=None) -> Node:
    """Hyperbolic tangent."""
    return build("tanh", x, name=name)


def sigmoid(x, name=None) -> Node:
    """Logistic function ``1 / (1 + exp(-x))``, computed without overflow."""
    return build("sigmoid", x, name=name)


def relu(x, name=None) -> Node:
    """``max(x, 0)``."""
    return build("relu", x, name=name)


def exp(x, name=None) -> Node:
    """``e ** x``."""
    return build("exp", x, name=name)


def log(x, name=None) -> Node:
    """Natural logarithm."""
    return build("log", x, name=name)


def softmax(x, axis: int = -1, name=None) -> Node:
    """Softmax along ``axis``, stable for large inputs (the max is subtracted first)."""
    return build("softmax", x, axis=axis, name=name)


def log_softmax(x, axis: int = -1, name=None) -> Node:
    """``log(softmax(x))`` computed as ``x - logsumexp(x)``: finite for |x| up to 1e4."""
    return build("log_softmax", x, axis=axis, name=name)


def _axis_attr(axis: Any) -> Any:
    if isinstance(axis, Sequence) and not isinstance(axis, str):
        return tuple(axis)
    return axis


def sum(x, axis=None, keepdims: bool = False, name=None) -> Node:  # noqa: A001
    """Sum over ``axis`` (``None``: all axes)."""
    return build("sum", x, axis=_axis_attr(axis), keepdims=keepdims, name=name)


def mean(x, axis=None, keepdims: bool = False, name=None) -> Node:
    """Mean over ``axis`` (``None``: all axes)."""
    return build("mean", x, axis=_axis_attr(axis), keepdims=keepdims, name=name)


def transpose(x, axes: Sequence[int] | None = None, name=None) -> Node:
    """Permute axes; the default reverses them (``x.T``)."""
    return build("transpose", x, axes=None if axes is None else _int_tuple(axes), name=name)


def _int_tuple(values: Any) -> Any:
    # numpy ints become ints; a non-sequence passes through so the shape rule names the node.
    if not isinstance(values, Sequence):
        return values
    return tuple(int(v) if isinstance(v, np.integer) else v for v in values)


def reshape(x, shape: Sequence[int], name=None) -> Node:
    """Reshape to ``shape``; one entry may be -1."""
    if isinstance(shape, int | np.integer):
        shape = (shape,)  # type: ignore[assignment]  # an int means a one-tuple
    return build("reshape", x, shape=_int_tuple(shape), name=name)


def _sequence(values: Any, op: str) -> list:
    if isinstance(values, Node) or not isinstance(values, Sequence) or not values:
        raise GraphError(f"{op} takes a non-empty list of nodes, e.g. tg.{op}([a, b])")
    return list(values)


def concat(values: Sequence[Any], axis: int = 0, name=None) -> Node:
    """Join along an existing axis (``np.concatenate``)."""
    return build("concat", *_sequence(values, "concat"), axis=axis, name=name)


def stack(values: Sequence[Any], axis: int = 0, name=None) -> Node:
    """Join along a new axis (``np.stack``)."""
    return build("stack", *_sequence(values, "stack"), axis=axis, name=name)


def take(a, indices, axis: int = 0, name=None) -> Node:
    """Entries of ``a`` along ``axis`` picked by integer ``indices``.

    Unlike ``np.take`` the default axis is 0, so ``take(E, ids)`` is an
    embedding lookup: one row of ``E`` per id.
    """
    graph = graph_of(a, indices)
    with graph._atomic():
        ids = indices if isinstance(indices, Node) else graph.const(np.asarray(indices))
        return graph.add_node("take", [as_node(graph, a), ids], {"axis": axis}, name=name)


def one_hot(ids, depth: int, dtype: Any = "float64", name=None) -> Node:
    """Integer ids -> one-hot vectors of length ``depth`` (shape ``ids.shape + (depth,)``)."""
    try:
        dtype = np.dtype(dtype).name
    except (TypeError, ValueError, SyntaxError):  # numpy parses strings such as "0@"
        pass  # the shape rule rejects it with a GraphError naming the node
    return build("one_hot", ids, depth=depth, dtype=dtype, name=name)


def cross_entropy(logits, targets, ignore_index: int | None = None,
                  label_smoothing: float = 0.0, batch_axes: int = 0, name=None) -> Node:
    """Mean negative log-likelihood of int ``targets`` under ``softmax(logits)``; a scalar.

    ``targets`` has shape ``logits.shape[:-1]``. Computed through
    log-softmax, so it stays finite for logits up to 1e4 in size. As in
    PyTorch, targets equal to ``ignore_index`` add nothing and the mean is
    over the others; ``label_smoothing=eps`` mixes the target with the
    uniform distribution: ``(1 - eps) * NLL + eps * mean over classes of
    -log p``. ``batch_axes=k``: one mean per index of the first k axes (shape
    ``logits.shape[:k]``), e.g. a loss per step of stacked ``(T, B, C)`` logits.

    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> z = g.const(np.zeros((2, 3, 4)))
    >>> g.run(tg.cross_entropy(z, np.zeros((2, 3), dtype=np.int64), batch_axes=1)).round(4)
    array([1.3863, 1.3863])
    """
    graph = graph_of(logits, targets)
    attrs: dict = {}
    if ignore_index is not None:
        attrs["ignore_index"] = int(ignore_index) if isinstance(
            ignore_index, np.integer) else ignore_index
    if label_smoothing:
        attrs["label_smoothing"] = float(label_smoothing) if isinstance(
            label_smoothing, np.floating) else label_smoothing
    if batch_axes:
        attrs["batch_axes"] = int(batch_axes) if isinstance(batch_axes, np.integer) \
            else batch_axes
    with graph._atomic():
        t = targets if isinstance(targets, Node) else graph.const(np.asarray(targets))
        return graph.add_node("cross_entropy", [as_node(graph, logits), t], attrs, name=name)


def getitem(x, index, name=None) -> Node:
    """numpy indexing: ints, slices, ``None``, ``...`` and integer arrays (``x[:, ids]``)."""
    attr, arrays = index_parts(index)
    if arrays:
        return build("advanced_getitem", x, *arrays, index=attr, name=name)
    return build("getitem", x, index=attr, name=name)

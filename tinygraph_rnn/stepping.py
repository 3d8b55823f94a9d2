"""Calling a cell's ``step`` while building a graph: the checks both unroll and scan need.

A cell's ``step(x, state, params)`` is user code. :func:`call_step` calls it
and turns whatever goes wrong into a :class:`tinygraph.GraphError` saying
which cell and which step; :class:`ParamTable` answers a read of an
undeclared param with the list of declared ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.arrays import cast_exact
from tinygraph.core.shapes import format_shape

from .cells import Cell

__all__ = ["ParamTable", "call_step", "check_output", "check_state", "flat", "structured",
           "fed_array"]


def fed_array(value: Any, dtype: np.dtype, want: str) -> np.ndarray:
    """``value`` as an array of the cell's ``dtype``, refused as ``g.run`` refuses a feed.

    ``want`` starts the message (what the net wants). numpy would cast
    silently: a complex value loses its imaginary part, 1e300 becomes inf in
    float32. Those are FeedErrors here, as they are for ``g.run``.

    >>> fed_array([1, 2], np.dtype("float32"), "xs").dtype
    dtype('float32')
    >>> fed_array([1 + 2j], np.dtype("float64"), "x")
    Traceback (most recent call last):
    ...
    tinygraph.errors.FeedError: x; got dtype complex128: not a numeric array for float64
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise tg.FeedError(f"{want}; the value is not a numeric array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise tg.FeedError(f"{want}; got dtype {arr.dtype}: not a numeric array for {dtype}")
    out = cast_exact(arr, dtype)
    if isinstance(out, str):
        raise tg.FeedError(f"{want}; got dtype {arr.dtype} whose {out}")
    return out


class ParamTable(dict):
    """name -> param node; a missing name is a GraphError listing the declared ones."""

    cell_name = ""

    def __missing__(self, key: Any) -> tg.Node:
        raise tg.GraphError(f"{self.cell_name}.step reads params[{key!r}], which the cell does "
                            f"not declare; declared: {', '.join(self)}")


def flat(state: Any) -> tuple:
    """A state as a tuple of its parts (one node -> a 1-tuple)."""
    return state if isinstance(state, tuple) else (state,)


def structured(parts: tuple, single: bool) -> Any:
    """The inverse of :func:`flat`: one node when the cell's state is one node."""
    return parts[0] if single else tuple(parts)

def call_step(cell: Cell, x: tg.Node, state: Any, params: Mapping[str, tg.Node],
              where: str) -> tuple[Any, Any]:
    """``cell.step(x, state, params)``; errors say ``where`` (e.g. ``'GRU.step at t=3'``)."""
    try:
        result = cell.step(x, state, params)
    except tg.CycleError:
        raise
    except tg.GraphError as exc:
        # A primitive's error names its node ('t=0/matmul'); add which cell built it.
        if str(exc).startswith(cell.name):
            raise
        raise type(exc)(f"{where}: {exc}") from None
    except Exception as exc:
        # A bug in user cell code (e.g. np.tanh on a node): say where it happened.
        raise tg.GraphError(f"{where} failed: {type(exc).__name__}: {exc}; "
                            "build steps from tinygraph primitives (tg.tanh, @, + …)") from exc
    if not isinstance(result, tuple) or len(result) != 2:
        raise tg.GraphError(f"{where} must return (new_state, output), "
                            f"got {type(result).__name__}")
    return result


def check_state(cell: Cell, new_state: Any, where: str) -> tuple:
    """The state a step returned, as a tuple of parts, each (batch, size); errors say ``where``."""
    names = cell.state_names
    single = len(names) == 1
    want = "a node" if single else f"a tuple of {len(names)} nodes {names}"
    parts = (new_state,) if single else new_state
    if not isinstance(parts, tuple) or len(parts) != len(names) or not all(
        isinstance(p, tg.Node) for p in parts
    ):
        raise tg.GraphError(f"{where} returned a state of type "
                            f"{type(new_state).__name__}; the state must be {want}")
    for part_name, node in zip(names, parts, strict=True):
        size = cell.state_sizes[part_name]
        if len(node.shape) != 2 or node.shape[1] != size or node.shape[0] not in (None, 1):
            raise tg.ShapeError(
                f"{where} returned state '{part_name}' = '{node.name}' "
                f"of shape {format_shape(node.shape)}; it must have shape (?, {size}) "
                "(batch, hidden_size) to feed the next step"
            )
    return tuple(parts)


def check_output(cell: Cell, output: Any, where: str) -> tg.Node:
    """The output a step returned: a (batch, size) node; errors say ``where``."""
    if not isinstance(output, tg.Node):
        raise tg.GraphError(f"{where} returned an output of type "
                            f"{type(output).__name__}; it must be a node")
    if len(output.shape) != 2:
        raise tg.ShapeError(f"{where} returned output '{output.name}' of "
                            f"shape {format_shape(output.shape)}; it must be (batch, size)")
    return output

"""``check_finite=True``: evaluate node by node and stop at the first NaN or inf.

A NaN in a compiled plan shows up, at best, as a numpy warning pointing into
generated code. With ``g.run(..., check_finite=True)`` (or
``g.compile(..., check_finite=True)``) the graph as built runs in the
reference :class:`~tinygraph.exec.Interpreter`, every result is checked, and
the first node whose value holds a NaN or an infinity while its inputs were
finite raises :class:`~tinygraph.EvaluationError` naming it, its op, its
inputs' shapes and where the first bad value sits. It costs an ``isfinite``
per node and the interpreter's speed: a tool for finding the node, not for
every step.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(3,))
>>> y = tg.sum(tg.log(x) * 2.0)
>>> g.run(y, feeds={"x": np.array([1.0, 0.0, 2.0])}, check_finite=True)  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
tinygraph.errors.EvaluationError: node 'log' (log) produced -inf at index (1,) from inputs ...
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.node import Node
from ..core.shapes import format_shape
from ..errors import EvaluationError
from .interpreter import Interpreter

__all__ = ["FiniteInterpreter", "first_non_finite"]


def first_non_finite(value: Any) -> tuple[tuple[int, ...], Any] | None:
    """The index and value of the first NaN or inf in ``value`` (any nesting); None if none."""
    parts = value if isinstance(value, tuple | list) else (value,)
    for part in parts:
        arr = np.asarray(part)
        if arr.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
            return index, arr[index] if arr.ndim else arr[()]
    return None


class FiniteInterpreter(Interpreter):
    """The reference interpreter, raising at the first node that makes a NaN or inf."""

    def run_node(self, node: Node, args: list[np.ndarray]) -> Any:
        with np.errstate(all="ignore"):  # the check below says more than numpy's warning
            value = super().run_node(node, args)
        found = first_non_finite(value)
        if found is not None:
            for src, arg in zip(node.inputs, args, strict=False):
                leaf = first_non_finite(arg)
                if leaf is not None:  # op nodes were checked already: it came in from a leaf
                    raise EvaluationError(
                        f"{src.kind} '{src.name}' holds {leaf[1]} at index {leaf[0]}, read by "
                        f"node '{node.name}' ({node.op}); feed and params must be finite")
            index, bad = found
            shapes = ", ".join(format_shape(np.shape(a)) for a in args)
            where = f" at index {index}" if index else ""
            raise EvaluationError(
                f"node '{node.name}' ({node.op}) produced {bad}{where} from inputs of shape "
                f"[{shapes}] (first non-finite value in the run; inputs finite)")
        return value

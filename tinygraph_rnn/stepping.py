"""Calling a cell's ``step`` while building a graph: the checks both unroll and scan need.

A cell's ``step(x, state, params)`` is user code. :func:`call_step` calls it
and turns whatever goes wrong into a :class:`tinygraph.GraphError` saying
which cell and which step; :class:`ParamTable` answers a read of an
undeclared param with the list of declared ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tinygraph as tg

from .cells import Cell

__all__ = ["ParamTable", "call_step", "flat", "structured"]


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

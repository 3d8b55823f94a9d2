"""One exception hierarchy for every user mistake.

Everything tinygraph raises because of what a user wrote or fed derives from
:class:`GraphError`, so ``except tg.GraphError`` catches all of it and no bare
numpy, networkx or ``KeyError`` escapes. Messages name the node, the op, what
was expected and what came, and suggest a fix.

>>> import tinygraph as tg
>>> issubclass(tg.ShapeError, tg.GraphError)
True
"""

from __future__ import annotations

__all__ = [
    "GraphError",
    "CycleError",
    "ShapeError",
    "FeedError",
    "DtypeError",
    "NodeNameError",
    "EvaluationError",
    "FormatError",
    "RenderError",
]


class GraphError(Exception):
    """Base class of every error tinygraph raises for a user mistake."""


class CycleError(GraphError):
    """The graph has a cycle; the message shows it as ``a -> b -> a``."""

    def __init__(self, cycle: list[str], context: str = ""):
        self.cycle = list(cycle)
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}the graph has a cycle: {path}")


class ShapeError(GraphError):
    """Shapes (or attributes that decide shapes) do not agree for an op."""


class DtypeError(GraphError):
    """An op got an input of a dtype it cannot take (e.g. float indices)."""


class FeedError(GraphError):
    """A feed is missing, unknown, or of the wrong shape or dtype."""


class NodeNameError(GraphError):
    """A node name is empty, taken, or refers to no node."""


class EvaluationError(GraphError):
    """numpy failed while evaluating a node (e.g. an index out of range)."""


class FormatError(GraphError):
    """A saved graph file is truncated, corrupted, tampered with or too large."""


class RenderError(GraphError):
    """Rendering failed: no engine available, a time limit hit, or a bad option."""

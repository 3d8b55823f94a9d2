"""``tg.Graph``: the graph as data, plus running, drawing and saving it.

:class:`tinygraph.core.graph.Graph` holds the nodes and builds them; this
subclass, defined above the layers its methods call, adds the convenience
methods users reach for: ``run``, ``compile``, ``to_dot``, ``render``,
``save`` and the notebook display. Passes build graphs of the same class as
their input, so rewritten graphs have these methods too.

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> g.run(x * 2, feeds={"x": np.array([1.0, 2.0])})
array([2., 4.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import compiler, io, render
from .core import graph as core_graph
from .core.node import Node

__all__ = ["Graph", "Node", "load"]


class Graph(core_graph.Graph):
    """A dataflow graph of primitive nodes (see :class:`tinygraph.core.graph.Graph`).

    Parameters
    ----------
    name : str
        Shown in messages and as the title of a rendered graph.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph("affine")
    >>> x = g.input("x", shape=(None, 3))
    >>> y = tg.tanh(x @ g.param("W", np.ones((3, 2))))
    >>> g.run(y, feeds={"x": np.zeros((1, 3))})
    array([[0., 0.]])
    """

    # ----------------------------------------------------------- running
    def run(self, fetches: Any, feeds: Mapping[Any, Any] | None = None,
            optimize: bool = True, check_finite: bool = False) -> Any:
        """Evaluate ``fetches`` (a node, a name, or a list/tuple/dict of those).

        ``feeds`` maps input nodes or their names to arrays. Returns the fetch
        structure with arrays in place of nodes. Plans are cached per
        (fetches, fed names); ``optimize=False`` runs the plain interpreter.
        ``check_finite=True`` runs node by node and raises ``EvaluationError``
        naming the first node that made a NaN or inf (:mod:`tinygraph.exec.finite`).
        """
        return compiler.run(self, fetches, feeds or {}, optimize=optimize,
                            check_finite=check_finite)

    def compile(self, fetches: Any, inputs: list[Any] | None = None, optimize: bool = True,
                check_finite: bool = False):
        """A reusable callable evaluating ``fetches``: ``fn(x=arr)`` or ``fn(arr)``.

        ``optimize=False`` skips the rewrite passes (the plan then runs the
        graph exactly as built); ``check_finite=True`` checks every node's
        value on each call, as ``run(..., check_finite=True)``.
        """
        return compiler.compile_plan(self, fetches, inputs, optimize=optimize,
                                     check_finite=check_finite)

    # ----------------------------------------------------------- drawing
    def to_dot(self, fetches: Any = None, **options: Any):
        """The graph as a ``graphviz.Digraph`` (pure); see :func:`tinygraph.render.to_dot`."""
        return render.to_dot(self, fetches, **options)

    def render(self, path: Any, format: str | None = None, **options: Any) -> str:  # noqa: A002
        """Draw into ``path`` (svg, png, pdf, dot); see :func:`tinygraph.render.render`."""
        return render.render(self, path, format, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return render.mimebundle(self)

    def _repr_svg_(self) -> str | None:
        return self._repr_mimebundle_().get("image/svg+xml")

    # ----------------------------------------------------------- files
    def save(self, path: Any) -> Any:
        """Write the graph and its arrays to ``path`` (a zip); see :func:`tinygraph.io.save`."""
        return io.save(self, path)


def load(path: Any, *, max_bytes: int | None = None) -> Graph:
    """Read a graph written by ``save``; see :func:`tinygraph.io.load`.

    >>> import io as _io, tinygraph as tg
    >>> g = tg.Graph("g")
    >>> _ = tg.exp(g.input("x", shape=(3,)))
    >>> h = tg.load(tg.save(g, _io.BytesIO()))
    >>> type(h).__name__, list(h.nodes)
    ('Graph', ['x', 'exp'])
    """
    return io.load(path, max_bytes=max_bytes, graph_type=Graph)  # type: ignore[return-value]  # of graph_type

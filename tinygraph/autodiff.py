"""Reverse-mode automatic differentiation as a graph-to-graph transform.

:func:`grad` does not compute gradients: it adds the nodes that compute them
to the same graph, as Theano and TensorFlow 1 did (unlike a tape). The
scheduler then runs forward and backward nodes alike, passes can optimise
them and the renderer draws them. On an unrolled RNN this *is*
backpropagation through time, for any cell, with no hand-written BPTT.

How it works (:mod:`tinygraph.core.backprop`): the reverse pass walks the
ancestors of ``y`` in reverse insertion (= reverse topological) order — a
plain loop, never recursion, so a 10,000-step unroll differentiates fine.
Each node's incoming gradient contributions are summed with ``add`` nodes in
a fixed order, then handed to the vjp rule of its op
(``tinygraph.core.primitives``), which builds one gradient node per input.
Only nodes on a path from some ``wrt`` node to ``y`` are visited.

::

    forward:   x ──▶ mul ──▶ tanh ──▶ sum = y
                     ▲
               W ────┘
    backward:  seed(1) ─▶ broadcast_to ─▶ g*(1-t*t) ─▶ g*x ─▶ sum_to ─▶ dy/dW
                          (every node in scope "grad/", meta["grad"] = True)

Choices
-------
- A ``wrt`` node that ``y`` does not depend on gets a ``zeros_like`` node
  (zeros of its runtime shape), not an error: a parameter unused by one loss
  simply has a zero gradient. ``zeros_like`` reads the node's value, so an
  unused ``input`` must still be fed when its gradient is fetched.
- No gradient flows into integer (or bool) nodes, such as ids and targets;
  asking for a gradient *with respect to* one is a :class:`DtypeError`.
- A ``wrt`` node that ``y`` depends on *only* through an op whose output
  is not float (``argmax``, a comparison, …) is a :class:`GraphError`
  naming that node and op: ``y`` is piecewise constant in it, so the zeros
  would be an answer to a question the graph cannot pose (PyTorch raises
  too). One differentiable path is enough: ``where(x > 0, x, 0)`` w.r.t.
  ``x`` is fine, the comparison only picks. ``stop_gradient`` (float
  output) is a cut asked for, and gives zeros.
- ``y`` must be a float scalar (shape ``()``); reduce it first, e.g. with
  ``tg.sum`` or ``tg.mean``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .core.backprop import backprop
from .core.gcpause import gc_paused
from .core.node import Node
from .core.shapes import format_shape
from .core.traverse import ancestors
from .errors import DtypeError, GraphError, ShapeError

__all__ = ["grad", "GRAD_SCOPE"]

GRAD_SCOPE = "grad"


def _as_wrt(y: Node, item: Any) -> Node:
    node = y.graph.node(item) if isinstance(item, str) else item
    if not isinstance(node, Node):
        raise GraphError(f"grad(y, wrt): wrt takes nodes or node names, got "
                         f"{type(item).__name__}")
    if node.graph is not y.graph:
        raise GraphError(f"grad: node '{node.name}' belongs to graph '{node.graph.name}', but y "
                         f"'{y.name}' belongs to graph '{y.graph.name}'")
    if node.dtype.kind != "f":
        raise DtypeError(f"grad: node '{node.name}' has dtype {node.dtype}; gradients exist only "
                         "for float nodes (integer ids and targets get none)")
    return node


def _check_y(y: Any) -> Node:
    if not isinstance(y, Node):
        raise GraphError(f"grad(y, wrt): y must be a node, got {type(y).__name__}")
    if y.shape != ():
        raise ShapeError(f"grad: y '{y.name}' ({y.op}) must be a scalar, got shape "
                         f"{format_shape(y.shape)}; reduce it first, e.g. tg.sum(y) or "
                         "tg.mean(y)")
    if y.dtype.kind != "f":
        raise DtypeError(f"grad: y '{y.name}' has dtype {y.dtype}; it must be a float scalar")
    return y


@gc_paused()
def grad(y: Node, wrt: Sequence[Any] | Node | str) -> list[Node] | Node:
    """Add the nodes computing ``dy/dw`` for each ``w`` in ``wrt`` to y's graph.

    Parameters
    ----------
    y : Node
        A float scalar (shape ``()``), typically a loss.
    wrt : sequence of Node or str, or one Node or name
        The nodes to differentiate with respect to (params, inputs or any
        intermediate float node), by node or by name.

    Returns
    -------
    list of Node, or Node
        One gradient node per ``wrt`` entry, with that entry's shape; a
        single node when ``wrt`` is a single node or name. The nodes live in
        the scope ``grad`` and carry ``meta["grad"] = True``; evaluate them
        with ``g.run``. A ``wrt`` node ``y`` does not depend on gets zeros.

    Raises
    ------
    ShapeError
        ``y`` is not a scalar.
    DtypeError
        ``y`` or a ``wrt`` node is not a float node.
    GraphError
        A node on the way has an op without a vjp rule (the message names
        the op and the node), ``y`` depends on a ``wrt`` node only through
        ops whose outputs are not float (argmax, comparisons: the message
        names the first), or the arguments are not nodes of one graph.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> x = g.input("x", shape=(3,))
    >>> W = g.param("W", np.array([1.0, 2.0, 3.0]))
    >>> loss = tg.sum(tg.tanh(x * W))
    >>> gW, gx = tg.grad(loss, [W, x])
    >>> gW.name.startswith("grad/"), gW.shape, gW.meta["grad"]
    (True, (3,), True)
    >>> xs = np.array([0.5, 0.0, -1.0])
    >>> np.allclose(g.run(gW, feeds={x: xs}), xs * (1 - np.tanh(xs * W.value) ** 2))
    True
    """
    single = isinstance(wrt, Node | str)
    y = _check_y(y)
    if not single and not isinstance(wrt, Sequence):
        raise GraphError(f"grad(y, wrt): wrt takes a node, a name, or a list of those, got "
                         f"{type(wrt).__name__}")
    targets = [_as_wrt(y, w) for w in ([wrt] if single else list(wrt))]  # type: ignore[arg-type]  # a Sequence here: checked above
    if not targets:
        return []  # nothing asked, nothing built
    graph = y.graph
    # A vjp rule missing halfway must not leave half a backward pass in the graph.
    with graph._atomic():
        return _build_grads(y, targets, single)


def _build_grads(y: Node, targets: list[Node], single: bool) -> list[Node] | Node:
    graph = y.graph
    first_new = len(graph)
    with graph.scope(GRAD_SCOPE):
        found = backprop(graph, [(y, graph.const(1.0, dtype=y.dtype))], targets)
        for node, total in zip(targets, found, strict=True):
            cut = None if total is not None else _cut_between(y, node)
            if cut is not None:
                raise GraphError(
                    f"grad: y '{y.name}' depends on '{node.name}' only through node "
                    f"'{cut.name}' (op '{cut.op}', {cut.dtype} output), which has no gradient: y "
                    f"is piecewise constant in '{node.name}'. Drop it from wrt, or cut on "
                    "purpose with tg.stop_gradient to get zeros")
        results = [total if total is not None else graph.add_node("zeros_like", [node])
                   for node, total in zip(targets, found, strict=True)]
    for node in list(graph.nodes.values())[first_new:]:
        node.meta["grad"] = True
    for node, result in zip(targets, results, strict=True):
        result.meta.setdefault("grad_of", node.name)
        # The optimizer may rebuild this gradient on a rewritten forward graph (passes.regrad).
        result.meta.setdefault("grad_y", y.name)
    return results[0] if single else results



def _cut_between(y: Node, target: Node) -> Node | None:
    """The first non-float node on a path from ``target`` to ``y`` (fed by a float node
    on such a path), when ``y`` depends on ``target`` at all; else ``None``.

    Called only for a target no gradient reached, so every path from it to
    ``y`` is cut somewhere; a cut by a non-float output (argmax, comparisons)
    is what makes the request meaningless, a float ``stop_gradient`` is not.
    """
    order = ancestors(y.graph, [y])
    reach = bytearray(len(y.graph))
    reach[target.index] = 1
    cut = None
    for node in order:  # topological: a forward mark of target's descendants
        if reach[node.index] or not any(reach[src.index] for src in node.inputs):
            continue
        reach[node.index] = 1
        if cut is None and node.dtype.kind != "f" and any(
            reach[src.index] and src.dtype.kind == "f" for src in node.inputs
        ):
            cut = node
    return cut if reach[y.index] else None

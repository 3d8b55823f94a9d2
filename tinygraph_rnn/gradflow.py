"""Where the gradient flows in an unrolled net: ∂loss/∂s_t nodes, their steps, their sizes.

Backpropagation through time is :func:`tinygraph.grad` on the unrolled graph.
This module adds what the ``view="bptt"`` picture (and anyone studying
vanishing or exploding gradients) needs on top of it:

* :func:`bptt_gradients` *builds* the nodes of ``∂loss/∂s_t`` for every step
  (one backward pass, with respect to the states) and marks them, so they
  can be found again (:func:`state_gradients`);
* :func:`backward_steps` says which time step each backward node belongs to;
* :func:`gradient_norms` turns the arrays of a run into ‖∂loss/∂s_t‖.

Which step a backward node belongs to is derived from the graph, in one pass
in insertion order and one in reverse (never recursively)::

    forward  t=1:  s_0 ─▶ mulw ─▶ add ─▶ … ─▶ s_1 ─▶ mulv ─▶ logits
    backward t=1:  ∂/∂s_0 ◀─ (·)W^T ◀─ … ◀─ (·)(1-s_1²) ◀─ ∂L/∂s_1 ◀─ (·)V^T ◀─ ∂L/∂logits
                   └ step 0 (a ∂L/∂s_t node is step t)   every other node: step 1

* a node computing ``∂loss/∂s_t`` belongs to step ``t``;
* any other backward node belongs to the latest step among what it reads —
  forward nodes by their ``meta["t"]``, backward nodes by their own step: a
  vjp of a step-``t`` op reads that op's operands, which may be older (the
  ``(·)W^T`` node reads the shape of ``s_0``), and the gradient of its
  output, which is step ``t``;
* a backward node that reads nothing step-bound (``W^T``, a constant, a
  slice of the loss's gradient) joins its readers' step when they all
  agree, and belongs to no step otherwise.

>>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=4)
>>> loss = tg.sum(net.states[-1] * net.states[-1])
>>> grads = bptt_gradients(net, loss)
>>> arrays = net.graph.run(grads, {x: np.ones((1, 2)) for x in net.inputs})
>>> norms = gradient_norms([(g,) for g in grads], dict(zip(grads, arrays)))
>>> bool(np.all(np.diff(norms) > 0))     # a weak recurrence: the gradient shrinks going back
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.shapes import format_shape

__all__ = ["bptt_gradients", "state_gradients", "backward_steps", "gradient_norms", "step_of",
           "check_loss"]


def step_of(node: tg.Node) -> int | None:
    """The time step an unrolled node was built in (``meta["t"]``), or None."""
    t = node.meta.get("t")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _parts(state: Any) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def check_loss(net: Any, loss: Any) -> tg.Node:
    """``loss`` (a node or a name) as a float scalar node of ``net.graph``, else GraphError."""
    graph = net.graph
    node = graph.node(loss) if isinstance(loss, str) else loss
    if not isinstance(node, tg.Node):
        raise tg.GraphError(f"loss must be a scalar node of net.graph (or its name), got "
                            f"{type(loss).__name__}")
    if node.graph is not graph:
        raise tg.GraphError(f"loss '{node.name}' belongs to graph '{node.graph.name}', not to "
                            f"this net's graph '{graph.name}'; build the loss from net.logits "
                            "or net.outputs")
    if node.shape != () or node.dtype.kind != "f":
        raise tg.GraphError(f"loss '{node.name}' ({node.op}) must be a float scalar (shape ()), "
                            f"got shape {format_shape(node.shape)} {node.dtype}; reduce it "
                            "first, e.g. with tg.mean or tg.cross_entropy")
    return node


def state_gradients(net: Any, loss: Any = None) -> tuple[tg.Node, list[tuple[tg.Node, ...]]]:
    """The loss and, per step, the ``∂loss/∂s_t`` nodes :func:`bptt_gradients` built.

    Per step a tuple: one node per state part (two for the LSTM's ``(h, c)``).
    With ``loss=None`` the graph must hold the gradients of exactly one loss.

    Raises
    ------
    GraphError
        No such gradients in the graph yet (call :func:`bptt_gradients`
        first), several losses to choose from, or a bad ``loss``.
    """
    graph = net.graph
    if loss is not None:
        loss = check_loss(net, loss)
    wanted = {part.name for state in net.states for part in _parts(state)}
    found: dict[str, dict[str, tg.Node]] = {}
    for node in graph.nodes.values():
        of = node.meta.get("bptt_loss")
        if of is not None and node.meta.get("grad_of") in wanted:
            found.setdefault(of, {})[node.meta["grad_of"]] = node
    hint = ("call grads = tinygraph_rnn.bptt_gradients(net, loss) first: it adds them to "
            "net.graph (drawing never changes a graph)")
    if loss is None:
        if not found:
            raise tg.GraphError(f"net.graph holds no ∂loss/∂s_t nodes yet: {hint}, then pass "
                                "loss=loss")
        if len(found) > 1:
            raise tg.GraphError(f"net.graph holds the ∂loss/∂s_t nodes of several losses "
                                f"({', '.join(map(repr, found))}); pick one with loss=")
        loss = graph.node(next(iter(found)))
    grads = found.get(loss.name, {})
    if len(grads) != len(wanted):
        raise tg.GraphError(f"net.graph holds no ∂{loss.name}/∂s_t nodes: {hint}")
    return loss, [tuple(grads[p.name] for p in _parts(state)) for state in net.states]


def bptt_gradients(net: Any, loss: Any) -> list:
    """Add the nodes of ``∂loss/∂s_t`` for every step ``t`` to ``net.graph``; return them.

    This *changes the graph*: it is :func:`tinygraph.grad` with respect to
    the states, one backward pass through time. Calling it again for the
    same loss returns the nodes already built. ``view="bptt"`` draws these
    nodes and the backward nodes they depend on.

    Parameters
    ----------
    net : tinygraph_rnn.Unrolled
    loss : Node or str
        A float scalar node of ``net.graph``.

    Returns
    -------
    list
        Per step, the gradient node shaped like the state (a tuple of nodes
        for a state of several parts, e.g. the LSTM's ``(h, c)``); each has
        ``meta["grad_of"]`` (the state's name) and ``meta["bptt_loss"]``.

    Raises
    ------
    GraphError
        ``loss`` is not a float scalar node of ``net.graph``.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
    >>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=3)
    >>> loss = tg.sum(net.states[-1])
    >>> grads = bptt_gradients(net, loss)
    >>> [g.meta["grad_of"] for g in grads], grads == bptt_gradients(net, loss)
    (['t=0/s', 't=1/s', 't=2/s'], True)
    >>> net.graph.run(grads[-1], {x: np.zeros((1, 2)) for x in net.inputs}).tolist()
    [[1.0, 1.0, 1.0]]
    """
    loss = check_loss(net, loss)
    try:
        _, per_step = state_gradients(net, loss)
    except tg.GraphError:
        flat = [part for state in net.states for part in _parts(state)]
        made = dict(zip((p.name for p in flat), tg.grad(loss, flat), strict=True))  # type: ignore[arg-type]  # a list for a list
        for node in made.values():
            node.meta["bptt_loss"] = loss.name
        per_step = [tuple(made[p.name] for p in _parts(state)) for state in net.states]
    return [parts if isinstance(state, tuple) else parts[0]
            for state, parts in zip(net.states, per_step, strict=True)]


def backward_steps(backward: Sequence[tg.Node],
                   pinned: Mapping[tg.Node, int]) -> dict[tg.Node, int | None]:
    """The step of each backward node (None: no single step), by the rules of the module doc.

    ``backward`` lists the nodes in insertion order; ``pinned`` maps each
    ``∂loss/∂s_t`` node to ``t``.
    """
    step: dict[tg.Node, int | None] = {}
    for node in backward:  # insertion order: a node's inputs come first
        if node in pinned:
            step[node] = pinned[node]
            continue
        known = [t for t in (step[src] if src in step else step_of(src) for src in node.inputs)
                 if t is not None]
        step[node] = max(known) if known else None
    readers: dict[tg.Node, list[tg.Node]] = {}
    for node in backward:
        for src in node.inputs:
            if src in step:
                readers.setdefault(src, []).append(node)
    for node in reversed(backward):  # readers come later, so their steps are final here
        if step[node] is None:
            theirs = {step[r] for r in readers.get(node, ())}
            if len(theirs) == 1:
                step[node] = theirs.pop()
    return step


def _norm(flat: np.ndarray) -> float:
    """The 2-norm of a flat array, scaled first so that squares cannot overflow."""
    if np.isnan(flat).any():
        return math.nan
    if np.isinf(flat).any():
        return math.inf
    scale = float(np.abs(flat).max()) if flat.size else 0.0
    return 0.0 if scale == 0 else scale * math.sqrt(float(np.sum(np.square(flat / scale))))


def gradient_norms(grads: Sequence[tuple[tg.Node, ...]],
                   values: Mapping[tg.Node, Any]) -> np.ndarray | None:
    """‖∂loss/∂s_t‖ per step from the arrays of a run; None if ``values`` holds none of them.

    The norm is the Frobenius norm over the batch and the hidden units, and
    over every part of a state of several parts (``sqrt(‖∂h‖² + ‖∂c‖²)``).

    Raises
    ------
    GraphError
        ``values`` holds the gradients of some steps but not of all.
    """
    have = [all(p in values for p in parts) for parts in grads]
    if not any(have):
        return None
    if not all(have):
        missing = [f"t={t}" for t, ok in enumerate(have) if not ok]
        raise tg.GraphError(f"values= holds ∂L/∂s_t for some steps but not for "
                            f"{', '.join(missing)}: fetch every node bptt_gradients returned")
    return np.array([_norm(np.concatenate([np.asarray(values[p], dtype=np.float64).ravel()
                                           for p in parts])) for parts in grads])

"""Unrolling a cell over time into one graph, and running it.

:func:`unroll` calls the cell's ``step`` once per time step, each time in
the graph scope ``t=<k>``, so the T copies of the cell become clusters of
one :class:`tinygraph.Graph`. The parameters are created once, outside every
scope, and shared by all steps; the state flows from one step to the next::

              U W b V c   (params: one node each, read by every step)
                  │
    s0 ──▶ [ t=0 ] ──s──▶ [ t=1 ] ──s──▶ … ──▶ [ t=T-1 ] ──▶ s
             ▲  │           ▲  │                 ▲  │
          t=0/x  o       t=1/x  o             t=T-1/x  o

Every node built in step ``k`` carries ``node.meta["t"] = k`` and
``node.meta["template"]``, its name without the ``t=k/`` prefix; copies of
one cell node share a template name, so tools can map between the cell and
its copies (the rolled and cell pictures are drawn from this).

Batch axis: the graph is always batched. Step inputs have shape
``(None, D)`` and states ``(None, H)`` (``None``: any batch size), and the
initial state is an input whose default is zeros of shape ``(1, H)``, which
broadcasts to any batch. :meth:`Unrolled.run` takes ``(T, D)`` or
``(T, B, D)``: an unbatched sequence runs as a batch of one and comes back
without the batch axis. Feeding ``net.graph`` directly takes ``(B, D)``
arrays per step.

>>> import numpy as np, tinygraph_rnn as rnn
>>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3, seed=0), steps=4)
>>> [n.name for n in net.inputs]
['t=0/x', 't=1/x', 't=2/x', 't=3/x']
>>> net.states[2].name, net.states[2].meta["t"], net.states[2].meta["template"]
('t=2/s', 2, 's')
>>> net.run(np.zeros((4, 5, 2)))["states"].shape
(4, 5, 3)
"""

from __future__ import annotations

import itertools
from typing import Any, overload

import numpy as np

import tinygraph as tg
from tinygraph.core.gcpause import gc_paused
from tinygraph.core.options import check_number
from tinygraph.core.shapes import format_shape

from .bidirectional import Bidirectional, BidirectionalNet
from .cells import Cell
from .lengths import check_lengths, hold_after
from .sequence_checks import check_ids, check_xs
from .stepping import ParamTable, call_step, check_output, check_state, fed_array, flat, structured

__all__ = ["unroll", "Unrolled", "MAX_STEPS"]

# Each step copies the cell (about ten nodes, ~1 kB each): a million steps is
# gigabytes of graph, so more is refused before anything is built.
MAX_STEPS = 1_000_000


@overload
def unroll(cell: Cell, steps: int, name: str | None = None, ids: bool = False,
           sequence: bool = False) -> Unrolled: ...
@overload
def unroll(cell: Bidirectional, steps: int, name: str | None = None, ids: bool = False,
           sequence: bool = False) -> BidirectionalNet: ...
def unroll(cell: Cell | Bidirectional, steps: int, name: str | None = None, ids: bool = False,
           sequence: bool = False) -> Unrolled | BidirectionalNet:
    """Build ``steps`` copies of ``cell``'s step into one graph.

    Parameters
    ----------
    cell : Cell
        Its current ``params`` are copied into the graph's param nodes.
    steps : int
        Number of time steps T (>= 1).
    name : str, optional
        The graph's name (default: the cell's class name).
    ids : bool
        Feed integer ids instead of vectors: each step's input is
        ``t=k/ids`` (shape ``(None,)``, int64) and the cell sees
        ``x = one_hot(ids, input_size)``. The optimizer then turns
        ``x @ U`` into a row lookup, ``take(U, ids)``, batched over time.
    sequence : bool
        One input for the whole sequence instead of one per step: ``xs``
        of shape ``(T, None, D)`` (with ``ids``: ``ids`` of shape
        ``(T, None)``), and each step reads its slice ``t=k/x = xs[k]``.
        Feeding one array skips checking and stacking T of them, which is
        most of a run's overhead for long sequences of small steps.

    Returns
    -------
    Unrolled
        (a :class:`~tinygraph_rnn.BidirectionalNet` for a
        :class:`~tinygraph_rnn.Bidirectional` model: ``cell.unroll(steps, name)``)

    Raises
    ------
    tinygraph.GraphError
        ``cell`` is not a Cell, ``steps`` is not a positive int, or the
        cell's step fails or returns a state of the wrong structure or shape
        (the message names the cell and the time step).

    Examples
    --------
    >>> import tinygraph_rnn as rnn
    >>> net = rnn.unroll(rnn.GRUCell(input_size=2, hidden_size=3), steps=3)
    >>> sorted(net.graph.params)
    ['W_hh', 'W_ih', 'b_hh', 'b_ih']
    >>> [n.name for n in net.outputs]
    ['t=0/h', 't=1/h', 't=2/h']
    """
    if isinstance(cell, Bidirectional) and not (ids or sequence):
        return cell.unroll(steps, name)
    if not isinstance(cell, Cell):
        raise tg.GraphError(f"unroll takes a tinygraph_rnn.Cell, got {type(cell).__name__}")
    steps = check_number("unroll: steps", steps, 1, MAX_STEPS, integer=True,
                         hint=" (each step is a copy of the cell in the graph; for longer "
                         "sequences use rnn.scan(cell), one node for any length)")
    return Unrolled(cell, steps, name, ids=bool(ids), sequence=bool(sequence))


class Unrolled:
    """A cell unrolled over ``steps`` time steps: one graph plus handles into it.

    Attributes
    ----------
    graph : tinygraph.Graph
    cell : Cell
    steps : int
        T.
    params : dict of str to Node
        The shared param nodes (``net.params["W"].value`` is the live array).
    inputs : list of Node
        ``t=k/x``, shape ``(None, D)`` (``t=k/ids`` with ``ids=True``): the
        step inputs, or with ``sequence=True`` the slices of ``sequence``.
    sequence : Node or None
        With ``sequence=True``: the one input holding every step's input.
    initial_state : Node or tuple of Node
        Inputs named ``<state>0`` (``s0``; ``(h0, c0)`` for LSTM), zeros unless fed.
    states : list
        Per step, the new state (a node, or a tuple for several state parts).
    outputs : list of Node
        Per step, the cell's output.
    logits : list of Node
        Per step, the pre-softmax values: the input of the output's softmax,
        or the output itself when the output is not a softmax.
    """

    def __init__(self, cell: Cell, steps: int, name: str | None = None, ids: bool = False,
                 sequence: bool = False):
        self.cell = cell
        self.steps = steps
        self.ids = ids
        self.graph = tg.Graph(cell.name if name is None else name)
        g = self.graph
        self.sequence = None
        if sequence:
            self.sequence = (g.input("ids", shape=(steps, None), dtype="int64") if ids else
                             g.input("xs", shape=(steps, None, cell.input_size), dtype=cell.dtype))
            self.sequence.meta["role"] = "input"
        values = cell.checked_params()
        self.params = ParamTable((n, g.param(n, v)) for n, v in values.items())
        self.params.cell_name = cell.name
        self._single = len(cell.state_names) == 1
        sizes = cell.state_sizes
        self._initial = tuple(
            g.input(f"{part}0", shape=(None, sizes[part]), dtype=cell.dtype,
                    default=np.zeros((1, sizes[part]), dtype=cell.dtype))
            for part in cell.state_names
        )
        for node in self._initial:
            node.meta["role"] = "initial_state"
        self.initial_state = structured(self._initial, self._single)
        self._sequence_view: tuple | None = None  # what run() evaluates, made on first use
        self._runners: dict[tuple, Any] = {}  # that view compiled, per set of fed names
        self.inputs: list[tg.Node] = []
        self.states: list[Any] = []
        self.outputs: list[tg.Node] = []
        self.logits: list[tg.Node] = []
        state = self.initial_state
        with gc_paused():  # many small objects, none garbage yet: see tinygraph.core.gcpause
            for k in range(steps):
                state = self._build_step(k, state)

    # ----------------------------------------------------------------- build
    def _build_step(self, k: int, state: Any) -> Any:
        g, cell = self.graph, self.cell
        start = len(g)
        prefix = f"t={k}"
        with g.scope(prefix):
            name, shape, dtype = ("ids", (None,), "int64") if self.ids else (
                "x", (None, cell.input_size), cell.dtype)
            if self.sequence is not None:
                fed = tg.getitem(self.sequence, k, name=name)
            else:
                fed = g.input(name, shape=shape, dtype=dtype)
            x = (tg.one_hot(fed, cell.input_size, dtype=cell.dtype, name="x") if self.ids
                 else fed)
            new_state, output = call_step(cell, x, state, self.params, f"{cell.name}.step at t={k}")
        where = f"{cell.name}.step at t={k}"
        parts = check_state(cell, new_state, where)
        output = check_output(cell, output, where)
        # Record on every node of this step which cell node it copies and when.
        cut = len(prefix) + 1
        for node in itertools.islice(reversed(g.nodes.values()), len(g) - start):  # type: ignore[call-overload]  # views reverse
            node.meta["t"] = k
            node.meta["template"] = node.name[cut:]
        fed.meta["role"] = "input"
        for part in parts:
            part.meta.setdefault("role", "state")
        output.meta.setdefault("role", "output")
        self.inputs.append(fed)
        self.states.append(structured(parts, self._single))
        self.outputs.append(output)
        self.logits.append(output.inputs[0] if output.op == "softmax" else output)
        return self.states[-1]

    # ------------------------------------------------------------------- run
    def run(self, xs: Any, initial_state: Any = None, lengths: Any = None) -> dict[str, Any]:
        """Forward propagation over the whole sequence.

        Parameters
        ----------
        xs : array, shape (T, D) or (T, B, D)
            With ``unroll(..., ids=True)``: integer ids of shape (T,) or (T, B).
        initial_state : array or tuple of arrays, optional
            Shape ``(H,)`` or ``(B, H)`` per state part; zeros when omitted.
        lengths : int or array of int, shape (B,), optional
            A padded batch: sequence b's real steps are ``0 .. lengths[b]-1``
            (1 <= lengths[b] <= T). After them its outputs are zero and its
            state stays as after its last real step (PyTorch's packed
            sequences), so ``states[-1]`` is each sequence's final state; see
            :mod:`tinygraph_rnn.lengths`.

        Returns
        -------
        dict
            ``"outputs"``: ``(T, [B,] O)``; ``"states"``: ``(T, [B,] H)``, or
            a tuple of those for several state parts (LSTM: ``(h, c)``).

        Raises
        ------
        tinygraph.FeedError
            ``xs``, the initial state or ``lengths`` has the wrong shape (the
            message names the step inputs and the shape they want).

        Examples
        --------
        >>> import numpy as np, tinygraph_rnn as rnn
        >>> net = rnn.unroll(rnn.GRUCell(input_size=2, hidden_size=3, seed=0), steps=4)
        >>> xs = np.random.default_rng(0).normal(size=(4, 2, 2))
        >>> out = net.run(xs, lengths=[4, 2])
        >>> alone = rnn.unroll(net.cell, steps=2).run(xs[:2, 1])
        >>> bool(np.allclose(out["states"][-1, 1], alone["states"][-1]))
        True
        >>> bool(np.all(out["outputs"][2:, 1] == 0))
        True
        """
        arr, batched = self._check_xs(xs)
        lens = (None if lengths is None else
                check_lengths(lengths, self.steps, arr.shape[1] if batched else None))
        view, seq_name, stacked = self._view()
        feeds: dict[Any, np.ndarray] = {seq_name: arr if batched else arr[:, None]}
        if initial_state is not None:
            initial = self._initial_feeds(initial_state, arr.shape[1] if batched else None)
            feeds.update({node.name: value for node, value in initial.items()})
        elif batched:
            # Zeros of the batch's size, not the (1, H) default: equal sizes at every step
            # keep the optimized plan on its batched-over-time path.
            feeds.update({node.name: np.zeros((arr.shape[1], node.shape[1]), dtype=node.dtype)
                          for node in self._initial})
        if initial_state is None:  # every feed made or checked above: skip run()'s checks
            outputs, *states = self._compiled(view, stacked, feeds).call_checked(feeds)
        else:
            outputs, *states = view.run(stacked, feeds)
        states = tuple(states)
        if lens is not None:  # arrays are (T, B, ·) here, B = 1 for one sequence
            outputs, states = hold_after(outputs, states, lens)
        if not batched:
            outputs, states = outputs[:, 0], tuple(s[:, 0] for s in states)
        return {"outputs": outputs, "states": structured(states, self._single)}

    def _view(self) -> tuple[tg.Graph, str, list[tg.Node]]:
        """The graph fed one sequence and fetching stacked outputs and states (made once).

        ``run`` hands the whole sequence to the plan instead of splitting it into T
        feeds and stacking T results again (:func:`tinygraph.passes.sequence_view`).
        """
        if self._sequence_view is None:
            parts = len(self._initial)
            groups = [self.outputs] + [[flat(s)[i] for s in self.states] for i in range(parts)]
            inputs = None if self.sequence is not None else self.inputs
            view, name, nodes = tg.passes.sequence_view(self.graph, inputs, groups)
            if name is None:  # inputs=None: the view keeps the graph's own sequence input
                assert self.sequence is not None
                name = self.sequence.name
            self._sequence_view = (view, name, nodes)
        return self._sequence_view

    def _compiled(self, view: tg.Graph, stacked: list[tg.Node], feeds: dict) -> Any:
        """The view compiled for these feeds' names (made once per set of names)."""
        names = tuple(feeds)
        fn = self._runners.get(names)
        if fn is None:
            fn = self._runners[names] = view.compile(stacked, inputs=list(names))
        return fn

    def _check_xs(self, xs: Any) -> tuple[np.ndarray, bool]:
        names = (self.inputs[0].name, self.inputs[-1].name)
        if self.ids:
            return check_ids(xs, self.steps, self.cell.input_size, names)
        return check_xs(xs, self.steps, self.cell.input_size, self.cell.dtype, names)

    def _initial_feeds(self, initial_state: Any, batch: int | None) -> dict[tg.Node, np.ndarray]:
        values = flat(initial_state)
        if len(values) != len(self._initial):
            names = tuple(n.name for n in self._initial)
            raise tg.FeedError(f"initial_state must be {'an array' if self._single else names} "
                               f"for the state {names}; got {len(values)} value(s)")
        feeds = {}
        for node, value in zip(self._initial, values, strict=True):
            size = node.shape[1]
            shapes = f"({size},) or (B={batch}, {size})" if batch is not None else f"({size},)"
            arr = fed_array(value, self.cell.dtype,
                            f"initial state '{node.name}' wants shape {shapes}")
            ok = arr.shape == (size,) or (batch is not None and arr.shape == (batch, size))
            if not ok:
                raise tg.FeedError(f"initial state '{node.name}' wants shape {shapes}; got "
                                   f"shape {format_shape(arr.shape)}")
            feeds[node] = arr.reshape(1, size) if arr.ndim == 1 else arr
        return feeds

    # ----------------------------------------------------------- navigation
    def copies(self, template: str) -> list[tg.Node]:
        """The T copies of the cell node called ``template`` (one per step, in order).

        >>> import tinygraph_rnn as rnn
        >>> net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=3), steps=2)
        >>> [n.name for n in net.copies("s")]
        ['t=0/s', 't=1/s']
        """
        found = [self.graph.nodes.get(f"t={k}/{template}") for k in range(self.steps)]
        if any(node is None for node in found):
            names = [n.meta["template"] for n in self.graph.nodes.values() if n.meta.get("t") == 0]
            raise tg.NodeNameError(f"the cell has no node {template!r}; its nodes: "
                                   f"{', '.join(names)}")
        return found  # type: ignore[return-value]  # no None: checked above

    # --------------------------------------------------------------- drawing
    def to_dot(self, view: str = "unrolled", window: int | None = None, **options: Any):
        """A ``graphviz.Digraph`` of this net (pure: writes nothing); see :meth:`render`."""
        from .views import view_to_dot

        return view_to_dot(self, view=view, window=window, **options)

    def render(self, path: Any = None, view: str = "unrolled", window: int | None = None,
               **options: Any):
        """Draw the net to ``path`` (format from the suffix); returns the path.

        ``view``: ``"unrolled"`` (one cluster per step; ``window=k`` shows the
        first k steps, an ellipsis, and the last k), ``"rolled"`` (the cell
        once, its state edge looping back, labelled with the step count),
        ``"cell"`` (one step's gates in detail) or ``"bptt"`` (forward and
        backward nodes of a few steps, shaded by ‖∂L/∂s_t‖ after a run:
        ``loss=``, ``values=`` from :func:`tinygraph_rnn.bptt_gradients`; see
        docs/bptt.md).
        """
        from .views import render_view

        return render_view(self, path, view=view, window=window, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter shows the unrolled picture (no system Graphviz needed)."""
        from .views import render_view

        try:
            return {"image/svg+xml": render_view(self), "text/plain": repr(self)}
        except tg.GraphError as exc:
            return {"text/plain": f"{self!r} (not drawn: {exc})"}

    def _repr_svg_(self) -> str | None:
        return self._repr_mimebundle_().get("image/svg+xml")

    def __repr__(self) -> str:
        return (f"<Unrolled {self.cell.name} over {self.steps} steps: "
                f"{len(self.graph)} nodes, {len(self.params)} shared params>")


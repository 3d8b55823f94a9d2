"""A cell rolled: one ``scan`` node runs its step over any number of time steps.

:func:`scan` is :func:`~tinygraph_rnn.unroll` without the copies: the cell's
step is traced once into the body of a :func:`tinygraph.scan` node, so the
graph has the same few nodes whatever the sequence length, and one graph
runs T = 1 or T = 10^6 (decided by the fed array)::

    xs (T, B, D) ──▶ ┌ scan ──────────────────────┐ ──▶ outputs (T, B, O)
    s0 (B, H)    ──▶ │  s ─▶ [cell.step] ─▶ s'    │ ──▶ states  (T, B, H)
    U W b V c    ──▶ └────────────────────────────┘ ──▶ final_state (B, H)

Use :func:`~tinygraph_rnn.unroll` to see and draw every step; use this for
long or variable-length sequences (and training on them).

>>> import numpy as np, tinygraph_rnn as rnn
>>> cell = rnn.VanillaRNNCell(input_size=2, hidden_size=3, output_size=2, seed=0)
>>> net = rnn.scan(cell)
>>> out = net.run(np.zeros((5, 2)))
>>> out["outputs"].shape, out["states"].shape
((5, 2), (5, 3))
>>> np.allclose(out["states"], rnn.unroll(cell, 5).run(np.zeros((5, 2)))["states"])
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.shapes import format_shape

from .bidirectional import Bidirectional, BidirectionalNet
from .cells import Cell
from .lengths import check_lengths, hold_after
from .stepping import ParamTable, call_step, check_output, check_state, fed_array, flat, structured

__all__ = ["scan", "Scanned"]


def scan(cell: Cell | Bidirectional, name: str | None = None,
         ids: bool = False) -> Scanned | BidirectionalNet:
    """``cell`` rolled into one scan node; see :class:`Scanned`.

    Parameters
    ----------
    cell : Cell
        Its current ``params`` are copied into the graph's param nodes.
    name : str, optional
        The graph's name (default: the cell's class name).
    ids : bool
        Feed integer ids of shape ``(T, B)`` instead of vectors; the cell sees
        ``one_hot(ids, input_size)``.

    Returns
    -------
    Scanned
        (a :class:`~tinygraph_rnn.BidirectionalNet` for a
        :class:`~tinygraph_rnn.Bidirectional` model: ``cell.scan(name)``)

    Raises
    ------
    tinygraph.GraphError
        ``cell`` is not a Cell, or its step fails or returns a state or an
        output of the wrong structure or shape.
    """
    if isinstance(cell, Bidirectional) and not ids:
        return cell.scan(name)
    if not isinstance(cell, Cell):
        raise tg.GraphError(f"rnn.scan takes a tinygraph_rnn.Cell, got {type(cell).__name__}")
    return Scanned(cell, name, ids=bool(ids))


class Scanned:
    """A cell rolled over time as one scan node, with the handles of :class:`Unrolled`.

    Attributes
    ----------
    graph : tinygraph.Graph
    cell : Cell
    params : dict of str to Node
        Named as ``cell.params``; ``net.params["W"].value`` is the live array.
    inputs : Node
        The sequence input ``xs``, shape ``(T, B, D)`` (``ids``, ``(T, B)`` int64).
    initial_state : Node or tuple of Node
        Inputs named ``<state>0`` (``s0``; ``(h0, c0)`` for LSTM), zeros unless fed.
    outputs, logits : Node
        ``(T, B, O)``: the cell's output at every step, and its pre-softmax values.
    states : Node or tuple of Node
        ``(T, B, H)`` per state part: the state after every step.
    final_state : Node or tuple of Node
        ``(B, H)`` per state part: the state after the last step.
    scan_node : Node
        The scan node itself (its body: ``scan_node.attrs["body"]``).
    """

    def __init__(self, cell: Cell, name: str | None = None, ids: bool = False):
        self.cell = cell
        self.ids = ids
        self.graph = g = tg.Graph(cell.name if name is None else name)
        self.inputs = (g.input("ids", shape=(None, None), dtype="int64") if ids else
                       g.input("xs", shape=(None, None, cell.input_size), dtype=cell.dtype))
        self.params = ParamTable((n, g.param(n, v)) for n, v in cell.checked_params().items())
        self.params.cell_name = cell.name
        self._single = len(cell.state_names) == 1
        self._initial = tuple(
            g.input(f"{part}0", shape=(None, cell.state_sizes[part]), dtype=cell.dtype,
                    default=np.zeros((1, cell.state_sizes[part]), dtype=cell.dtype))
            for part in cell.state_names)
        self.initial_state = structured(self._initial, self._single)
        has_logits: list[bool] = []
        where = f"{cell.name}.step (in rnn.scan)"

        def step(state: Any, x: tg.Node) -> tuple[Any, tuple]:
            if ids:
                x = tg.one_hot(x, cell.input_size, dtype=cell.dtype, name="x")
            new_state, output = call_step(cell, x, state, self.params, where)
            parts = check_state(cell, new_state, where)
            output = check_output(cell, output, where)
            logits = output.inputs[0] if output.op == "softmax" else output
            has_logits.append(logits is not output)
            per_step = (output, *parts) + ((logits,) if logits is not output else ())
            return structured(parts, self._single), per_step

        final, ys = tg.scan(step, self.initial_state, self.inputs, name="scan")
        self.final_state = final
        self.outputs = ys[0]
        n = len(cell.state_names)
        self.states = structured(tuple(ys[1:1 + n]), self._single)
        self.logits = ys[1 + n] if has_logits[0] else self.outputs
        self.scan_node = self.outputs.inputs[0]
        self._runner: Any = None  # run()'s compiled graph, made on first use

    def run(self, xs: Any, initial_state: Any = None, lengths: Any = None) -> dict[str, Any]:
        """Forward propagation over a sequence of any length T.

        Parameters
        ----------
        xs : array, shape (T, D) or (T, B, D)
            With ``ids=True``: integer ids of shape (T,) or (T, B).
        initial_state : array or tuple of arrays, optional
            Shape ``(H,)`` or ``(B, H)`` per state part; zeros when omitted.
        lengths : int or array of int, shape (B,), optional
            A padded batch: sequence b's real steps are ``0 .. lengths[b]-1``;
            after them its outputs are zero and its state is held (PyTorch's
            packed sequences); see :meth:`tinygraph_rnn.Unrolled.run`.

        Returns
        -------
        dict
            ``"outputs"``: ``(T, [B,] O)``; ``"states"``: ``(T, [B,] H)``, or
            a tuple of those for several state parts (LSTM: ``(h, c)``).
        """
        arr, batched = self._check_xs(xs)
        batch = arr.shape[1] if batched else 1
        lens = (None if lengths is None else
                check_lengths(lengths, arr.shape[0], batch if batched else None))
        seq = arr if batched else arr[:, None]
        feeds: dict[Any, np.ndarray] = {self.inputs: seq}
        values = (flat(initial_state) if initial_state is not None else
                  [np.zeros((batch, n.shape[1]), n.dtype) for n in self._initial])
        if len(values) != len(self._initial):
            raise tg.FeedError(f"initial_state must have {len(self._initial)} part(s) "
                               f"{tuple(n.name for n in self._initial)}; got {len(values)}")
        for node, value in zip(self._initial, values, strict=True):
            v = fed_array(value, self.cell.dtype, f"initial state '{node.name}' wants shape "
                          f"({node.shape[1]},) or (B={batch}, {node.shape[1]})")
            if v.shape not in ((node.shape[1],), (batch, node.shape[1])):
                raise tg.FeedError(f"initial state '{node.name}' wants shape "
                                   f"({node.shape[1]},) or (B={batch}, {node.shape[1]}); got "
                                   f"{format_shape(v.shape)}")
            feeds[node] = np.broadcast_to(v, (batch, node.shape[1]))
        # Every feed checked above: the compiled graph runs without g.run's checks.
        result = self._compiled().call_checked({node.name: v for node, v in feeds.items()})
        outputs, states = result["outputs"], tuple(result["states"])
        if lens is not None:  # arrays are (T, B, ·) here, B = 1 for one sequence
            outputs, states = hold_after(outputs, states, lens)
        if not batched:
            outputs, states = outputs[:, 0], tuple(s[:, 0] for s in states)
        return {"outputs": outputs, "states": structured(states, self._single)}

    def _compiled(self) -> Any:
        """The outputs and state parts compiled for the sequence and initial states (once)."""
        if self._runner is None:
            fetches = {"outputs": self.outputs, "states": list(flat(self.states))}
            self._runner = self.graph.compile(fetches, inputs=[self.inputs, *self._initial])
        return self._runner

    def _check_xs(self, xs: Any) -> tuple[np.ndarray, bool]:
        D = self.cell.input_size  # noqa: N806
        if self.ids:
            arr = np.asarray(xs)
            if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2):
                raise tg.FeedError(f"'{self.inputs.name}' wants integer ids in [0, {D}) of "
                                   f"shape (T,) or (T, B); got {arr.dtype} "
                                   f"{format_shape(arr.shape)}")
            if arr.size and (arr.min() < 0 or arr.max() >= D):
                raise tg.FeedError(f"'{self.inputs.name}' wants ids in [0, {D}); got ids from "
                                   f"{arr.min()} to {arr.max()}")
            return arr.astype(np.int64, copy=False), arr.ndim == 2
        arr = fed_array(xs, self.cell.dtype, f"'{self.inputs.name}' wants xs of shape "
                        f"(T, D={D}) or (T, B, D={D}) {self.cell.dtype}")
        if arr.ndim not in (2, 3) or arr.shape[-1] != D:
            raise tg.FeedError(f"'{self.inputs.name}' wants xs of shape (T, D={D}) or "
                               f"(T, B, D={D}); got shape {format_shape(arr.shape)}")
        return arr, arr.ndim == 3

    def to_dot(self, **options: Any):
        """The rolled picture (pure: writes nothing): the cell once, its state looping back.

        The scan node is a cluster of class ``scan`` labelled ``scan × T
        steps`` holding the cell's body; each state part is fed by its
        initial value and by a back edge (class ``recurrent``) from its new
        value; the params are drawn outside, feeding the body. See
        :mod:`tinygraph.render.scans`; ``options`` as for
        :func:`tinygraph.render.to_dot`. Displays in Jupyter with no system
        Graphviz (as does the net itself).

        >>> import tinygraph_rnn as rnn
        >>> net = rnn.scan(rnn.GRUCell(input_size=2, hidden_size=3, seed=0))
        >>> src = net.to_dot().source
        >>> 'class="scan"' in src, src.count('class="recurrent"')
        (True, 1)
        """
        return self.graph.to_dot(**options)

    def render(self, path: Any, **options: Any) -> str:
        """Draw the rolled picture (:meth:`to_dot`) to ``path``; returns the path.

        The format comes from the suffix (svg, png, pdf, dot); ``options`` as
        for :func:`tinygraph.render.render` (``engine=``, ``timeout=`` too).
        """
        return self.graph.render(path, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.graph._repr_mimebundle_(include, exclude)

    def __repr__(self) -> str:
        return (f"<Scanned {self.cell.name}: one scan node, {len(self.graph)} nodes, "
                f"{len(self.params)} params>")

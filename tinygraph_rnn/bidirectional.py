"""Bidirectional layers: a cell forward and a copy backward, as PyTorch's ``bidirectional=True``.

A bidirectional layer is not a per-step cell: its backward copy starts at
the *end* of the sequence, so it is a whole-sequence model.
:class:`Bidirectional` holds the layers' cells, and builds nets with
:meth:`Bidirectional.unroll` (T copies of each direction's step, scopes
``l<k>/t=<t>`` and ``l<k>_reverse/t=<t>``) or :meth:`Bidirectional.scan`
(one scan node per layer and direction, any T); ``rnn.unroll(bi, T)`` and
``rnn.scan(bi)`` call them. Layer k+1 reads layer k's two outputs
concatenated along the feature axis, as PyTorch's ``num_layers > 1``::

    xs ─┬─▶ l0:          ─▶ ─▶ ─▶ ─o─┐
        └─▶ l0_reverse:  ◀─ ◀─ ◀─ ─o─┴─ concat ─┬─▶ l1 …          ─┐
                                                └─▶ l1_reverse …  ─┴─ concat ─▶ outputs

The graph's ``mask`` input ``(T, B, 1)`` (fed by ``run``: ones, or from
``lengths``) holds each state after its sequence's end and zeros the
outputs there, so padded batches equal PyTorch's packed sequences.

>>> import numpy as np, tinygraph_rnn as rnn
>>> bi = rnn.Bidirectional([rnn.GRUCell(2, 3, seed=0), rnn.GRUCell(6, 3, seed=1)])
>>> out = rnn.scan(bi).run(np.ones((4, 5, 2)), lengths=np.array([4, 3, 2, 1, 4]))
>>> out["outputs"].shape, len(out["final_state"]), out["final_state"][0].shape
((4, 5, 6), 4, (5, 3))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.shapes import format_shape

from .cells import Cell, _TorchLayout
from .lengths import check_lengths, mask_of
from .stacked import _check_cells, torch_layer_arrays
from .stepping import ParamTable, call_step, check_output, check_state, flat, structured

__all__ = ["Bidirectional", "BidirectionalNet"]


class Bidirectional:
    """Bidirectional recurrent layers: per layer, the cell forward and a copy backward.

    Parameters
    ----------
    cells : Cell or sequence of Cell
        The forward cell of each layer, bottom to top. Layer k+1's
        ``input_size`` is twice layer k's output size (both directions).
    backward : Cell or sequence of Cell, optional
        The backward cells; default: copies of ``cells`` (same initial
        values; assign their ``params`` to differ).

    Attributes
    ----------
    forward_cells, backward_cells : list of Cell
    directions : list of (str, Cell)
        ``(prefix, cell)`` in PyTorch's order: ``l0``, ``l0_reverse``, ``l1`` …
        The net's params are the cells' params named ``<prefix>_<name>``
        and its initial states ``<prefix>_<part>0``.
    """

    def __init__(self, cells: Cell | Sequence[Cell], backward: Any = None):
        self.forward_cells = _check_cells("Bidirectional", cells)
        if backward is None:
            self.backward_cells = [copy.deepcopy(cell) for cell in self.forward_cells]
        else:
            self.backward_cells = _check_cells("Bidirectional(backward=)", backward)
        if len(self.backward_cells) != len(self.forward_cells):
            raise tg.GraphError(f"Bidirectional: {len(self.forward_cells)} forward cells but "
                                f"{len(self.backward_cells)} backward cells; give one per layer")
        for k, (fwd, bwd) in enumerate(zip(self.forward_cells, self.backward_cells, strict=True)):
            if (fwd.input_size, fwd.dtype) != (bwd.input_size, bwd.dtype):
                raise tg.GraphError(f"Bidirectional: layer {k}'s cells differ in input_size or "
                                    f"dtype: {fwd!r} ({fwd.dtype}), {bwd!r} ({bwd.dtype})")
        self.directions = [(f"l{k}{suffix}", cell) for k in range(len(self.forward_cells))
                           for suffix, cell in (("", self.forward_cells[k]),
                                                ("_reverse", self.backward_cells[k]))]
        self.input_size = self.forward_cells[0].input_size
        self.dtype = self.forward_cells[0].dtype
        self.name = "Bidirectional"

    def unroll(self, steps: int, name: str | None = None) -> BidirectionalNet:
        """A net of ``steps`` copies of each direction's step (see :class:`BidirectionalNet`)."""
        from tinygraph.core.options import check_number

        steps = check_number("Bidirectional.unroll: steps", steps, 1, 1_000_000, integer=True)
        return BidirectionalNet(self, steps, name)

    def scan(self, name: str | None = None) -> BidirectionalNet:
        """A net of one scan node per layer and direction, for any T."""
        return BidirectionalNet(self, None, name)

    @classmethod
    def from_torch(cls, cell_type: type[_TorchLayout], arrays: Mapping[str, Any],
                   **kwargs: Any) -> Bidirectional:
        """The layers of ``torch.nn.RNN/GRU/LSTM(num_layers=k, bidirectional=True)``.

        Parameters
        ----------
        cell_type : type
            :class:`~tinygraph_rnn.GRUCell`, :class:`~tinygraph_rnn.LSTMCell`
            or :class:`~tinygraph_rnn.VanillaRNNCell`.
        arrays : mapping
            PyTorch's names to numpy arrays (``weight_ih_l0``,
            ``weight_ih_l0_reverse``, …), e.g.
            ``{n: p.detach().double().numpy() for n, p in module.named_parameters()}``.
        **kwargs
            Passed to each cell's constructor.

        Examples
        --------
        >>> import numpy as np, tinygraph_rnn as rnn
        >>> rng = np.random.default_rng(0)
        >>> arrays = {f"{w}_l0{s}": rng.normal(size=(6, 3 if w == "weight_ih" else 2))
        ...           for s in ("", "_reverse") for w in ("weight_ih", "weight_hh")}
        >>> bi = rnn.Bidirectional.from_torch(rnn.GRUCell, arrays)
        >>> [prefix for prefix, _ in bi.directions]
        ['l0', 'l0_reverse']
        """
        fwd, bwd = torch_layer_arrays(cls.__name__, arrays, ("", "_reverse"))
        return cls([cell_type.from_torch(*layer, **kwargs) for layer in fwd],
                   [cell_type.from_torch(*layer, **kwargs) for layer in bwd])

    def __repr__(self) -> str:
        return f"Bidirectional([{', '.join(repr(c) for c in self.forward_cells)}])"


class BidirectionalNet:
    """A :class:`Bidirectional` model built into one graph, unrolled or scanned.

    Attributes
    ----------
    graph : tinygraph.Graph
    model : Bidirectional
    steps : int or None
        T of an unrolled net; ``None`` for a scanned one (any T).
    inputs : Node
        ``xs``, shape ``(T, B, D)``.
    mask : Node
        ``mask``, shape ``(T, B, 1)``: 1 on a sequence's steps, 0 after its
        end; ``run`` feeds it (feed it yourself when running ``graph``).
    params : dict of str to Node
        ``<prefix>_<name>`` for each direction's ``(prefix, cell)``.
    initial_state : tuple
        Per direction (PyTorch's order), the cell's state structure of input
        nodes ``<prefix>_<part>0``, zeros unless fed.
    outputs : Node or list of Node
        Scanned: ``(T, B, O_fwd + O_bwd)``; unrolled: the T per-step nodes.
    final_state : tuple
        Per direction, its state after its last step (the forward one's at
        t = T-1, the backward one's at t = 0): PyTorch's ``h_n`` (and ``c_n``).
    """

    def __init__(self, model: Bidirectional, steps: int | None, name: str | None = None):
        self.model, self.steps = model, steps
        self.graph = g = tg.Graph(model.name if name is None else name)
        dtype = model.dtype
        self.inputs = g.input("xs", shape=(steps, None, model.input_size), dtype=dtype)
        self.mask = g.input("mask", shape=(steps, None, 1), dtype=dtype)
        self.params: dict[str, tg.Node] = {}
        self._initial: list[tg.Node] = []
        initial, final = [], []
        seq: tg.Node | list[tg.Node]  # one node (a scan per direction) or one per step
        masks: tg.Node | list[tg.Node]
        if steps is None:
            seq, masks = self.inputs, self.mask
        else:
            seq, masks = [], []
            for t in range(steps):
                with g.scope(f"t={t}"):
                    seq.append(tg.getitem(self.inputs, t, name="x"))
                    masks.append(tg.getitem(self.mask, t, name="m"))
        for k in range(len(model.forward_cells)):
            outs = []
            for prefix, cell in model.directions[2 * k:2 * k + 2]:
                width = seq.shape[-1] if isinstance(seq, tg.Node) else seq[0].shape[-1]
                if width != cell.input_size:
                    raise tg.ShapeError(f"Bidirectional: layer {k} ({cell.name}) has input_size="
                                        f"{cell.input_size} but reads {width} features (both "
                                        f"directions of layer {k - 1}); make it {width}")
                init = self._declare(prefix, cell)
                out, last = self._direction(prefix, cell, init, seq, masks,
                                            reverse=prefix.endswith("_reverse"))
                initial.append(init)
                final.append(last)
                outs.append(out)
            with g.scope(f"l{k}"):
                seq = (tg.concat(outs, axis=-1, name="out") if steps is None else
                       [tg.concat([f, b], axis=-1, name=f"out_t={t}")
                        for t, (f, b) in enumerate(zip(*outs, strict=True))])
        self.outputs = seq
        self.initial_state, self.final_state = tuple(initial), tuple(final)

    def _declare(self, prefix: str, cell: Cell) -> Any:
        g = self.graph
        for pname, value in cell.checked_params().items():
            self.params[f"{prefix}_{pname}"] = g.param(f"{prefix}_{pname}", value)
        parts = tuple(g.input(f"{prefix}_{part}0", shape=(None, size), dtype=cell.dtype,
                              default=np.zeros((1, size), dtype=cell.dtype))
                      for part, size in cell.state_sizes.items())
        self._initial.extend(parts)
        return structured(parts, len(parts) == 1)

    def _direction(self, prefix: str, cell: Cell, init: Any, seq: Any, masks: Any,
                   reverse: bool) -> tuple[Any, Any]:
        """One direction of one layer: its outputs in time order, and its final state."""
        g = self.graph
        table = ParamTable((n, self.params[f"{prefix}_{n}"]) for n in cell.params)
        table.cell_name = cell.name
        single = len(cell.state_names) == 1
        where = f"{cell.name}.step ({prefix})"

        def masked_step(state: Any, x: tg.Node, m: tg.Node) -> tuple[Any, tg.Node]:
            new_state, out = call_step(cell, x, state, table, where)
            parts = check_state(cell, new_state, where)
            out = check_output(cell, out, where)
            keep = tg.sub(1.0, m, name="keep")  # 1 after the sequence's end: hold the state
            held = tuple(tg.add(m * new, keep * old, name=f"{part}_held")
                         for part, new, old in zip(cell.state_names, parts, flat(state),
                                                   strict=True))
            return structured(held, single), tg.mul(m, out, name="out")

        if self.steps is None:
            xs, ms = (seq[::-1], masks[::-1]) if reverse else (seq, masks)
            final, ys = tg.scan(lambda s, xm: masked_step(s, *xm), init, (xs, ms),
                                name=f"{prefix}_scan")
            return (ys[::-1] if reverse else ys), final
        outs: list[Any] = [None] * self.steps
        state = init
        order = range(self.steps - 1, -1, -1) if reverse else range(self.steps)
        with g.scope(prefix):
            for t in order:
                with g.scope(f"t={t}"):
                    state, outs[t] = masked_step(state, seq[t], masks[t])
        return outs, state

    def run(self, xs: Any, initial_state: Any = None, lengths: Any = None) -> dict[str, Any]:
        """Forward propagation; ``lengths`` for a padded batch of shorter sequences.

        Parameters
        ----------
        xs : array, shape (T, D) or (T, B, D)
        initial_state : tuple, optional
            Per direction (PyTorch's order ``l0``, ``l0_reverse``, ``l1`` …), the
            cell's state: an array ``(H,)`` or ``(B, H)`` (a tuple of them
            for the LSTM's ``(h, c)``); zeros when omitted.
        lengths : int or array of int, shape (B,), optional
            Each sequence's real steps (1..T): its outputs after them are
            zero and its state stops changing, as ``pack_padded_sequence``.

        Returns
        -------
        dict
            ``"outputs"``: ``(T, [B,] O_fwd + O_bwd)`` of the top layer;
            ``"final_state"``: per direction, its final state (``h_n``).
        """
        D, T = self.model.input_size, self.steps  # noqa: N806
        want = (f"'xs' wants shape ({'T' if T is None else f'T={T}'}, D={D}) or "
                f"({'T' if T is None else f'T={T}'}, B, D={D})")
        try:
            arr = np.asarray(xs, dtype=self.model.dtype)
        except (TypeError, ValueError) as exc:
            raise tg.FeedError(f"{want}; xs is not a numeric array ({exc})") from None
        if arr.ndim not in (2, 3) or arr.shape[-1] != D or (T is not None and arr.shape[0] != T):
            raise tg.FeedError(f"{want}; got shape {format_shape(arr.shape)}")
        batched = arr.ndim == 3
        seq = arr if batched else arr[:, None]
        steps, batch = seq.shape[:2]
        full = np.full(batch, steps, dtype=np.int64)
        lens = full if lengths is None else check_lengths(lengths, steps,
                                                          batch if batched else None)
        feeds: dict[Any, np.ndarray] = {self.inputs: seq,
                                        self.mask: mask_of(lens, steps, self.model.dtype)}
        feeds.update(self._initial_feeds(initial_state, batch))
        fetch = {"outputs": self.outputs,
                 "final": [p for state in self.final_state for p in flat(state)]}
        result = self.graph.run(fetch, feeds)
        outputs = result["outputs"]
        if self.steps is not None:
            outputs = tg.OPS["stack"].forward(*outputs)
        parts = result["final"] if batched else [p[0] for p in result["final"]]
        if not batched:
            outputs = outputs[:, 0]
        final, i = [], 0
        for _, cell in self.model.directions:
            n = len(cell.state_names)
            final.append(structured(tuple(parts[i:i + n]), n == 1))
            i += n
        return {"outputs": outputs, "final_state": tuple(final)}

    def _initial_feeds(self, initial_state: Any, batch: int) -> dict[tg.Node, np.ndarray]:
        if initial_state is None:
            return {node: np.zeros((batch, node.shape[1]), node.dtype) for node in self._initial}
        names = [prefix for prefix, _ in self.model.directions]
        if not isinstance(initial_state, tuple | list) or len(initial_state) != len(names):
            raise tg.FeedError(f"initial_state wants one state per direction {names}; got "
                               f"{type(initial_state).__name__}")
        values = [v for state in initial_state for v in flat(tuple(state) if isinstance(
            state, list) else state)]
        if len(values) != len(self._initial):
            raise tg.FeedError(f"initial_state has {len(values)} arrays; the directions' states "
                               f"are {[n.name for n in self._initial]}")
        feeds = {}
        for node, value in zip(self._initial, values, strict=True):
            size = node.shape[1]
            try:
                v = np.asarray(value, dtype=node.dtype)
            except (TypeError, ValueError) as exc:
                raise tg.FeedError(f"initial state '{node.name}' is not numeric ({exc})") from None
            if v.shape not in ((size,), (batch, size)):
                raise tg.FeedError(f"initial state '{node.name}' wants shape ({size},) or "
                                   f"(B={batch}, {size}); got {format_shape(v.shape)}")
            feeds[node] = np.broadcast_to(v, (batch, size))
        return feeds

    def to_dot(self, **options: Any):
        """The graph's picture (pure: writes nothing)."""
        return self.graph.to_dot(**options)

    def render(self, path: Any, **options: Any) -> str:
        """Draw the graph to ``path``; returns the path."""
        return self.graph.render(path, **options)

    def __repr__(self) -> str:
        kind = "scanned" if self.steps is None else f"unrolled over {self.steps} steps"
        return (f"<BidirectionalNet {kind}: {len(self.model.forward_cells)} layer(s), "
                f"{len(self.graph)} nodes, {len(self.params)} params>")

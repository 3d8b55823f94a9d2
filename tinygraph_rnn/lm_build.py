"""The training graph of :class:`~tinygraph_rnn.CharLM`, for any cell.

A cell with an output layer of the vocabulary's size (the vanilla cell's
``V, c``) gives the logits itself; for any other cell (GRU, LSTM, a custom
:class:`~tinygraph_rnn.Cell`) the graph adds one readout, ``logits_t =
h_t @ V_out + c_out``, shared by every step. States may have several parts
(the LSTM's ``(h, c)``): the handles keep them as lists of nodes.

>>> cell = make_cell("lstm", vocab_size=5, hidden_size=3, seed=0)
>>> type(cell).__name__, cell.input_size
('LSTMCell', 5)
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygraph as tg

from .cells import Cell, VanillaRNNCell
from .gated_cells import GRUCell, LSTMCell
from .unroll import unroll

__all__ = ["CELLS", "make_cell", "build_graph"]

CELLS = {"vanilla": VanillaRNNCell, "gru": GRUCell, "lstm": LSTMCell}


def make_cell(cell: Any, vocab_size: int, hidden_size: int, seed: int) -> Cell:
    """The cell CharLM unrolls: a name in :data:`CELLS`, a Cell subclass or a Cell instance."""
    if isinstance(cell, Cell):
        if cell.input_size != vocab_size:
            raise tg.GraphError(f"CharLM: the {cell.name} has input_size={cell.input_size}, but "
                                f"the text has {vocab_size} distinct characters (one-hot inputs)")
        return cell
    if isinstance(cell, str) and cell in CELLS:
        cls = CELLS[cell]
    elif isinstance(cell, type) and issubclass(cell, Cell):
        cls = cell
    else:
        raise tg.GraphError(f"CharLM: cell must be one of {', '.join(map(repr, CELLS))}, a Cell "
                            f"subclass or a Cell instance, got {cell!r}")
    if cls is VanillaRNNCell:
        return cls(input_size=vocab_size, hidden_size=hidden_size, output_size=vocab_size,
                   seed=seed)
    return cls(input_size=vocab_size, hidden_size=hidden_size, seed=seed)


def _parts(state: Any) -> list:
    return list(state) if isinstance(state, tuple | list) else [state]


def build_graph(cell: Cell, vocab_size: int, seq_len: int, seed: int) -> tuple[tg.Graph, dict]:
    """The unrolled net, its loss and gradients; the handles CharLM keeps into the graph."""
    # Ids, not one-hot rows: the optimizer turns one_hot(ids) @ U into a row lookup and
    # its gradient into a scatter-add (two (T*B, V) x (V, H) products fewer per step).
    net = unroll(cell, steps=seq_len, name="char_lm", ids=True)
    g = net.graph
    logits = net.logits
    # A readout unless the cell has its own output layer (logits before a softmax) of width V.
    own = all(lg is not out for lg, out in zip(logits, net.outputs, strict=True))
    if not own or logits[0].shape[-1] != vocab_size:
        rng = np.random.default_rng(seed + 1)
        width = logits[0].shape[-1]
        readout = g.param("V_out", rng.uniform(-1, 1, (width, vocab_size)) / np.sqrt(width))
        bias = g.param("c_out", np.zeros(vocab_size))
        with g.scope("readout"):
            logits = [tg.add(h @ readout, bias, name=f"logits_{t}")
                      for t, h in enumerate(net.outputs)]
    targets = g.input("targets", shape=(seq_len, None), dtype="int64")
    loss = tg.cross_entropy(tg.stack(logits, name="logits"), targets, name="loss")
    params = list(g.params.values())
    return g, {"inputs": net.inputs, "initial_state": _parts(net.initial_state),
               "targets": targets, "loss": loss, "final_state": _parts(net.states[-1]),
               "first_logits": logits[0], "first_state": _parts(net.states[0]),
               "params": params, "grads": tg.grad(loss, params)}

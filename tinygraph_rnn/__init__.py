"""tinygraph_rnn: recurrent cells built from tinygraph primitives, unrolled over time.

A cell declares its parameters and writes one time step with tinygraph
primitives (:mod:`tinygraph_rnn.cells`); :func:`unroll` copies that step T
times into one graph whose parameters every step shares
(:mod:`tinygraph_rnn.unroll`). The graph runs on tinygraph's scheduler and
draws as unrolled, rolled or single-cell pictures.

>>> import numpy as np, tinygraph_rnn as rnn
>>> cell = rnn.VanillaRNNCell(input_size=4, hidden_size=8, output_size=4, seed=0)
>>> net = rnn.unroll(cell, steps=3)
>>> net.run(np.eye(4)[[0, 1, 2]])["outputs"].shape
(3, 4)
"""

from .bidirectional import Bidirectional, BidirectionalNet
from .cells import Cell, ParamSpec, VanillaRNNCell
from .gated_cells import GRUCell, LSTMCell
from .gradflow import bptt_gradients
from .lm import CharLM
from .lm_data import CharData
from .scanned import Scanned, scan
from .stacked import Stacked
from .unroll import Unrolled, unroll

__all__ = ["Cell", "ParamSpec", "VanillaRNNCell", "GRUCell", "LSTMCell", "unroll", "Unrolled",
           "scan", "Scanned", "Stacked", "Bidirectional", "BidirectionalNet",
           "CharLM", "CharData", "bptt_gradients"]

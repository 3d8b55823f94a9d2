"""GRU and LSTM cells, with PyTorch's equations, built from primitives.

Both keep all gates' weights in one matrix per side (PyTorch's layout,
transposed) and slice out each gate in a loop over a gate table, so the
gate code is written once. ``from_torch`` takes PyTorch's arrays as they
are; results equal ``torch.nn.GRU`` / ``torch.nn.LSTM`` with the same weights.

>>> import numpy as np, tinygraph_rnn as rnn
>>> lstm = rnn.LSTMCell(input_size=2, hidden_size=3, seed=0)
>>> sorted(lstm.params), lstm.params["W_ih"].shape
(['W_hh', 'W_ih', 'b_hh', 'b_ih'], (2, 12))
"""

from __future__ import annotations

from collections.abc import Callable

import tinygraph as tg

from .cells import Cell, ParamSpec, _TorchLayout

__all__ = ["GRUCell", "LSTMCell"]


class _FusedGateCell(_TorchLayout, Cell):
    """Shared by GRU and LSTM: all gates' weights in one matrix, sliced per gate.

    Parameters ``W_ih (D, G*H)``, ``W_hh (H, G*H)``, ``b_ih (G*H,)``,
    ``b_hh (G*H,)`` are PyTorch's transposed, so one matmul per side computes
    every gate's pre-activation and gate ``k`` is columns ``k*H:(k+1)*H``.
    """

    #: gate name -> activation, in PyTorch's block order.
    gates: dict[str, Callable[..., tg.Node]] = {}

    def declare(self) -> dict[str, ParamSpec]:
        D, H, G = self.input_size, self.hidden_size, len(self.gates)  # noqa: N806
        return {"W_ih": ParamSpec((D, G * H)), "W_hh": ParamSpec((H, G * H)),
                "b_ih": ParamSpec((G * H,), init="zeros"),
                "b_hh": ParamSpec((G * H,), init="zeros")}

    def _pre_activations(self, x, h, params) -> dict[str, tuple[tg.Node, tg.Node]]:
        """gate -> (input part, hidden part) of its pre-activation, biases included."""
        H = self.hidden_size  # noqa: N806
        gx = tg.add(x @ params["W_ih"], params["b_ih"], name="gx")
        gh = tg.add(h @ params["W_hh"], params["b_hh"], name="gh")
        return {gate: (gx[:, k * H:(k + 1) * H], gh[:, k * H:(k + 1) * H])
                for k, gate in enumerate(self.gates)}

    def _params_from_torch(self, w_ih, w_hh, b_ih, b_hh):
        return {"W_ih": w_ih.T, "W_hh": w_hh.T, "b_ih": b_ih, "b_hh": b_hh}


class GRUCell(_FusedGateCell):
    """PyTorch's GRU, built from primitives.

    ::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
        z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h

    Examples
    --------
    >>> import numpy as np, tinygraph_rnn as rnn
    >>> net = rnn.unroll(rnn.GRUCell(input_size=2, hidden_size=3, seed=0), steps=5)
    >>> net.run(np.ones((5, 4, 2)))["states"].shape
    (5, 4, 3)
    """

    gates = {"r": tg.sigmoid, "z": tg.sigmoid, "n": tg.tanh}
    torch_gates = tuple(gates)

    def step(self, x, h, params):
        values: dict[str, tg.Node] = {}
        for gate, (from_x, from_h) in self._pre_activations(x, h, params).items():
            if gate == "n":
                # PyTorch gates the hidden part *with* its bias: r * (h W_hn + b_hn).
                from_h = values["r"] * from_h
            values[gate] = self.gates[gate](from_x + from_h, name=gate)
        z = values["z"]
        h_new = tg.add((1.0 - z) * values["n"], z * h, name="h")
        return h_new, h_new


class LSTMCell(_FusedGateCell):
    """PyTorch's LSTM, built from primitives; the state is ``(h, c)``.

    ::

        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (x W_i* + b_i* + h W_h* + b_h*)
        c' = f * c + i * g
        h' = o * tanh(c')

    Examples
    --------
    >>> import numpy as np, tinygraph_rnn as rnn
    >>> net = rnn.unroll(rnn.LSTMCell(input_size=2, hidden_size=3, seed=0), steps=5)
    >>> [node.name for node in net.initial_state]
    ['h0', 'c0']
    >>> hs, cs = net.run(np.ones((5, 2)))["states"]
    >>> hs.shape, cs.shape
    ((5, 3), (5, 3))
    """

    state_names = ("h", "c")
    gates = {"i": tg.sigmoid, "f": tg.sigmoid, "g": tg.tanh, "o": tg.sigmoid}
    torch_gates = tuple(gates)

    def step(self, x, state, params):
        h, c = state
        gate = {name: self.gates[name](from_x + from_h, name=name)
                for name, (from_x, from_h) in self._pre_activations(x, h, params).items()}
        c_new = tg.add(gate["f"] * c, gate["i"] * gate["g"], name="c")
        h_new = tg.mul(gate["o"], tg.tanh(c_new), name="h")
        return (h_new, c_new), h_new

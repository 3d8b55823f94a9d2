"""Several cells stacked into one cell: layer k+1 reads layer k's output.

:class:`Stacked` is itself a :class:`~tinygraph_rnn.Cell`, so everything
that takes a cell takes a stack unchanged: :func:`~tinygraph_rnn.unroll`,
:func:`~tinygraph_rnn.scan`, ``run(xs, lengths=...)``, :class:`CharLM`, the
pictures. One step runs every layer once, bottom to top, each in the graph
scope ``l<k>``::

    x_t ──▶ [l0: cell 0] ──o──▶ [l1: cell 1] ──o──▶ … ──▶ output_t
              ▲      │            ▲      │
    l0_h(t-1) ┘      └▶ l0_h(t)   l1_h(t-1) └▶ l1_h(t)

The state is the tuple of every layer's state parts, named ``l<k>_<part>``
(``('l0_h', 'l0_c', 'l1_h', 'l1_c')`` for two LSTM layers); the parameters
are the layers' parameters named ``l<k>_<name>``. Computing layer by layer
over the whole sequence (as ``torch.nn.GRU(num_layers=2)`` does) or step by
step through all layers (as here) gives the same numbers: a layer's step t
reads only its own state and the layer below's output at t.

>>> import numpy as np, tinygraph_rnn as rnn
>>> stack = rnn.Stacked([rnn.GRUCell(2, 4, seed=0), rnn.GRUCell(4, 3, seed=1)])
>>> stack.state_names, stack.input_size, stack.hidden_size
(('l0_h', 'l1_h'), 2, 3)
>>> out = rnn.scan(stack).run(np.ones((5, 2)))
>>> out["outputs"].shape, [s.shape for s in out["states"]]
((5, 3), [(5, 4), (5, 3)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import tinygraph as tg

from .cells import Cell, ParamSpec, _TorchLayout
from .stepping import ParamTable, check_output, flat

__all__ = ["Stacked", "torch_layer_arrays"]


class Stacked(Cell):
    """Cells stacked in layers; a Cell whose step runs every layer once.

    Parameters
    ----------
    cells : sequence of Cell
        Bottom to top. Layer k+1's ``input_size`` must equal the size of
        layer k's output (its hidden size for GRU/LSTM and a vanilla cell
        without an output layer).

    Attributes
    ----------
    cells : list of Cell
        The layers. Their ``params`` are the stack's initial values (read
        when the stack's ``params`` are first used).

    Raises
    ------
    tinygraph.GraphError
        ``cells`` is empty or holds something that is not a Cell (a
        :class:`~tinygraph_rnn.Bidirectional` is a whole-sequence model: pass
        the layers' cells to ``Bidirectional([...])`` instead), or the cells'
        dtypes differ.

    Examples
    --------
    Two LSTM layers, with PyTorch's weights of ``nn.LSTM(num_layers=2)``:

    >>> import numpy as np, tinygraph_rnn as rnn
    >>> rng = np.random.default_rng(0)
    >>> arrays = {f"{w}_l{k}": rng.normal(size=(16, 3 if (w, k) == ("weight_ih", 0) else 4))
    ...           for k in range(2) for w in ("weight_ih", "weight_hh")}
    >>> stack = rnn.Stacked.from_torch(rnn.LSTMCell, arrays)
    >>> [type(c).__name__ for c in stack.cells], stack.state_names
    (['LSTMCell', 'LSTMCell'], ('l0_h', 'l0_c', 'l1_h', 'l1_c'))
    """

    def __init__(self, cells: Sequence[Cell]):
        cells = _check_cells("Stacked", cells)
        self.cells = cells
        super().__init__(cells[0].input_size, cells[-1].hidden_size, seed=cells[0].seed,
                         dtype=cells[0].dtype)
        self.state_names = tuple(f"l{k}_{part}" for k, cell in enumerate(cells)
                                 for part in cell.state_names)

    @property
    def state_sizes(self) -> dict[str, int]:
        return {f"l{k}_{part}": size for k, cell in enumerate(self.cells)
                for part, size in cell.state_sizes.items()}

    def declare(self) -> dict[str, ParamSpec]:
        return {f"l{k}_{name}": spec for k, cell in enumerate(self.cells)
                for name, spec in cell._declared().items()}

    @property
    def params(self) -> dict[str, np.ndarray]:
        if self._params is None:
            self._params = {f"l{k}_{name}": value for k, cell in enumerate(self.cells)
                            for name, value in cell.params.items()}
        return self._params

    @params.setter
    def params(self, values: Mapping[str, Any]) -> None:
        self._params = dict(values)
        self.checked_params()

    def step(self, x, state, params):
        parts = flat(state)
        new_parts: list[tg.Node] = []
        start = 0
        for k, cell in enumerate(self.cells):
            n = len(cell.state_names)
            mine = parts[start:start + n]
            start += n
            table = ParamTable((name, params[f"l{k}_{name}"]) for name in cell._declared())
            table.cell_name = cell.name
            with x.graph.scope(f"l{k}"):
                new_state, x = cell.step(x, mine[0] if n == 1 else tuple(mine), table)
            x = check_output(cell, x, f"{self.name} layer {k} ({cell.name}.step)")
            if k + 1 < len(self.cells) and x.shape[1] != self.cells[k + 1].input_size:
                raise tg.ShapeError(
                    f"{self.name}: layer {k} ({cell.name}) outputs '{x.name}' of size "
                    f"{x.shape[1]}, but layer {k + 1} ({self.cells[k + 1].name}) has "
                    f"input_size={self.cells[k + 1].input_size}; layer k+1 reads layer k's output")
            new_parts.extend(flat(new_state))
        return (new_parts[0] if len(new_parts) == 1 else tuple(new_parts)), x

    @classmethod
    def from_torch(cls, cell_type: type[_TorchLayout], arrays: Mapping[str, Any],
                   **kwargs: Any) -> Stacked:
        """The stack of ``torch.nn.RNN/GRU/LSTM(num_layers=k)`` with its weights.

        Parameters
        ----------
        cell_type : type
            :class:`~tinygraph_rnn.GRUCell`, :class:`~tinygraph_rnn.LSTMCell`
            or :class:`~tinygraph_rnn.VanillaRNNCell`.
        arrays : mapping
            PyTorch's parameter names to numpy arrays, as
            ``{n: p.detach().numpy() for n, p in module.named_parameters()}``:
            ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
            ``weight_ih_l1`` … (biases may be absent: ``bias=False``).
        **kwargs
            Passed to each cell's constructor (``dtype=`` …).
        """
        (layers,) = torch_layer_arrays(cls.__name__, arrays)
        return cls([cell_type.from_torch(*layer, **kwargs) for layer in layers])

    def __repr__(self) -> str:
        return f"Stacked([{', '.join(repr(c) for c in self.cells)}])"


def _check_cells(what: str, cells: Any) -> list[Cell]:
    if isinstance(cells, Cell):
        cells = [cells]
    if not isinstance(cells, Sequence) or not cells:
        raise tg.GraphError(f"{what} takes a non-empty list of cells, got {cells!r}")
    for k, cell in enumerate(cells):
        if not isinstance(cell, Cell):
            hint = (" (a Bidirectional layer sees the whole sequence, so it cannot be a "
                    "step of a stack: write rnn.Bidirectional([cell0, cell1, …]) for "
                    "bidirectional layers)" if type(cell).__name__ == "Bidirectional" else "")
            raise tg.GraphError(f"{what}: layer {k} is a {type(cell).__name__}, not a "
                                f"tinygraph_rnn.Cell{hint}")
    dtypes = {str(cell.dtype) for cell in cells}
    if len(dtypes) > 1:
        raise tg.GraphError(f"{what}: the cells have different dtypes {sorted(dtypes)}; "
                            "give them one dtype")
    return list(cells)


def torch_layer_arrays(owner: str, arrays: Mapping[str, Any],
                       directions: Sequence[str] = ("",)) -> list[list[tuple]]:
    """Per direction suffix (``""``, ``"_reverse"``), per layer, PyTorch's four arrays.

    Each layer is ``(weight_ih, weight_hh, bias_ih, bias_hh)`` (a bias is
    ``None`` when absent: ``bias=False``). A name that no layer of the asked
    directions uses is refused, so a typo or a bidirectional module's
    ``_reverse`` arrays do not pass silently.
    """
    if not isinstance(arrays, Mapping):
        raise tg.GraphError(f"{owner}.from_torch takes a dict of PyTorch's parameter names to "
                            f"arrays, got {type(arrays).__name__}")
    used: set[str] = set()
    found = []
    for suffix in directions:
        layers: list[tuple[Any, ...]] = []
        while f"weight_ih_l{len(layers)}{suffix}" in arrays:
            k = len(layers)
            names = [f"{w}_l{k}{suffix}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if names[1] not in arrays:
                raise tg.GraphError(f"{owner}.from_torch: '{names[0]}' is given but "
                                    f"'{names[1]}' is missing")
            used.update(names)
            layers.append(tuple(arrays.get(n) for n in names))
        if not layers:
            raise tg.GraphError(f"{owner}.from_torch: no 'weight_ih_l0{suffix}' among the "
                                f"arrays {sorted(map(str, arrays))}; pass "
                                "module.named_parameters() as numpy arrays")
        found.append(layers)
    if len({len(layers) for layers in found}) > 1:
        raise tg.GraphError(f"{owner}.from_torch: the directions have different numbers of "
                            f"layers {[len(layers) for layers in found]}")
    unknown = [str(n) for n in arrays if n not in used]
    if unknown:
        hint = (" (a bidirectional module: use rnn.Bidirectional.from_torch)"
                if any(n.endswith("_reverse") for n in unknown) and directions == ("",) else "")
        raise tg.GraphError(f"{owner}.from_torch: unknown or unused arrays {unknown}{hint}")
    return found

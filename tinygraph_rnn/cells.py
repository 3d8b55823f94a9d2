"""Recurrent cells: one time step written with tinygraph primitives.

A cell is two things: a table of parameters (name -> :class:`ParamSpec`,
i.e. a shape and an initializer) and a :meth:`Cell.step` that builds one
time step's nodes from the step's input ``x``, the previous state and the
parameter nodes. :func:`tinygraph_rnn.unroll` calls ``step`` once per time
step, inside that step's scope, with the same parameter nodes every time.

::

    x_t ──▶┌──────── step ────────┐──▶ output_t
           │  gates: @ + tanh …   │
    s_t-1 ─▶└─────────────────────┘──▶ s_t ──▶ (next step)

Conventions: row vectors (``x @ U``, shapes ``(batch, size)``); the batch
axis is always present inside a step (its size is unknown, ``None``). A
state is one node, or a tuple of nodes for cells with several state parts
(:class:`LSTMCell`: ``(h, c)``). Parameters are drawn as the seed text does,
uniform in ``±1/sqrt(fan_in)`` from ``np.random.default_rng(seed)``; biases
start at zero.

>>> import tinygraph_rnn as rnn
>>> cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=2, seed=0)
>>> {name: value.shape for name, value in cell.params.items()}
{'U': (3, 4), 'W': (4, 4), 'b': (4,), 'V': (4, 2), 'c': (2,)}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import tinygraph as tg

__all__ = ["Cell", "ParamSpec", "VanillaRNNCell"]

Initializer = Callable[[np.random.Generator, tuple[int, ...]], Any]


@dataclass(frozen=True)
class ParamSpec:
    """The declaration of one cell parameter.

    Parameters
    ----------
    shape : tuple of int
        The parameter's shape.
    init : {"uniform", "zeros", "ones"} or callable
        ``"uniform"`` draws from uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as
        the seed text does; ``"zeros"`` gives zeros and ``"ones"`` ones (a
        layer norm's gain, say); a callable ``init(rng, shape)`` returns the
        array.
    fan_in : int, optional
        The bound's fan-in; defaults to ``shape[0]`` (the input size of a
        row-vector weight ``x @ W``).

    Examples
    --------
    >>> import numpy as np
    >>> spec = ParamSpec((4, 2))
    >>> value = spec.initialize(np.random.default_rng(0), np.dtype("float64"))
    >>> value.shape, bool(np.all(np.abs(value) <= 0.5))
    ((4, 2), True)
    """

    shape: tuple[int, ...]
    init: str | Initializer = "uniform"
    fan_in: int | None = None

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        """A fresh value drawn from ``rng``."""
        shape = tuple(int(d) for d in self.shape)
        if callable(self.init):
            value = np.asarray(self.init(rng, shape), dtype=dtype)
        elif self.init == "zeros":
            value = np.zeros(shape, dtype=dtype)
        elif self.init == "ones":
            value = np.ones(shape, dtype=dtype)
        elif self.init == "uniform":
            fan_in = self.fan_in or (shape[0] if shape else 1)
            bound = 1.0 / np.sqrt(fan_in)
            value = rng.uniform(-bound, bound, size=shape).astype(dtype)
        else:
            raise tg.GraphError(f"unknown initializer {self.init!r}; use 'uniform', 'zeros', "
                                "'ones' or a callable init(rng, shape)")
        if value.shape != shape:
            raise tg.ShapeError(f"initializer gave shape {value.shape}, the spec wants {shape}")
        return value


def _positive_size(cell_name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise tg.ShapeError(f"{cell_name}: {what} must be a positive int, got {value!r}")
    return int(value)


class Cell:
    """Base class of recurrent cells: declare parameters, write one step.

    A subclass overrides :meth:`declare` (name -> :class:`ParamSpec`) and
    :meth:`step`, using tinygraph primitives only. Cells with more than one
    state part list their names in ``state_names`` (the first part is the
    hidden state the sizes refer to).

    Parameters
    ----------
    input_size, hidden_size : int
        Sizes of ``x_t`` and of each state part.
    seed : int
        Seed of ``np.random.default_rng`` for the initial parameters.
    dtype : str or numpy dtype
        Of parameters, inputs and states (float64 unless asked otherwise).

    Attributes
    ----------
    params : dict of str to ndarray
        The initial parameter values, created from :meth:`declare` on first
        use. Assign entries (or the whole dict) before :func:`unroll`; the
        unrolled graph copies them into its param nodes.

    Examples
    --------
    An Elman cell with a ReLU:

    >>> import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
    >>> class ReluCell(rnn.Cell):
    ...     def declare(self):
    ...         D, H = self.input_size, self.hidden_size
    ...         return {"U": rnn.ParamSpec((D, H)), "W": rnn.ParamSpec((H, H)),
    ...                 "b": rnn.ParamSpec((H,), init="zeros")}
    ...     def step(self, x, h, p):
    ...         h_new = tg.relu(x @ p["U"] + h @ p["W"] + p["b"], name="h")
    ...         return h_new, h_new
    >>> net = rnn.unroll(ReluCell(input_size=2, hidden_size=3, seed=1), steps=4)
    >>> net.run(np.ones((4, 2)))["outputs"].shape
    (4, 3)
    """

    #: Names of the state parts; more than one makes the state a tuple.
    state_names: tuple[str, ...] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, seed: int = 0,
                 dtype: Any = "float64"):
        self.input_size = _positive_size(self.name, "input_size", input_size)
        self.hidden_size = _positive_size(self.name, "hidden_size", hidden_size)
        self.seed = seed
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise tg.GraphError(f"{self.name}: {dtype!r} is not a numpy dtype") from None
        if self.dtype.kind != "f":
            raise tg.GraphError(f"{self.name}: dtype must be a float type, got {self.dtype}")
        self._params: dict[str, np.ndarray] | None = None

    @property
    def name(self) -> str:
        """The class name, used in messages."""
        return type(self).__name__

    # ------------------------------------------------------------ to override
    def declare(self) -> dict[str, ParamSpec]:
        """name -> :class:`ParamSpec` of every parameter, in a fixed order."""
        raise tg.GraphError(f"{self.name} must define declare() -> {{name: ParamSpec}}")

    def step(self, x: tg.Node, state: Any, params: Mapping[str, tg.Node]) -> tuple[Any, tg.Node]:
        """Build one time step; return ``(new_state, output)``.

        ``x`` has shape ``(None, input_size)``; ``state`` is a node of shape
        ``(None, hidden_size)`` (a tuple of them if ``state_names`` has
        several names); ``params`` maps names to the shared param nodes.
        """
        raise tg.GraphError(f"{self.name} must define step(x, state, params) -> "
                            "(new_state, output)")

    # ------------------------------------------------------------ parameters
    @property
    def state_sizes(self) -> dict[str, int]:
        """state part name -> size (every part has ``hidden_size`` by default)."""
        return {name: self.hidden_size for name in self.state_names}

    @property
    def params(self) -> dict[str, np.ndarray]:
        if self._params is None:
            rng = np.random.default_rng(self.seed)
            self._params = {name: spec.initialize(rng, self.dtype)
                            for name, spec in self._declared().items()}
        return self._params

    @params.setter
    def params(self, values: Mapping[str, Any]) -> None:
        self._params = dict(values)
        self.checked_params()

    def _declared(self) -> dict[str, ParamSpec]:
        try:
            specs = self.declare()
        except tg.GraphError:
            raise
        except Exception as exc:
            raise tg.GraphError(f"{self.name}.declare() failed: "
                                f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(specs, Mapping) or not all(
            isinstance(s, ParamSpec) for s in specs.values()
        ):
            raise tg.GraphError(f"{self.name}.declare() must return a dict name -> ParamSpec, "
                                f"got {specs!r}")
        return dict(specs)

    def checked_params(self) -> dict[str, np.ndarray]:
        """The parameter values as arrays of the cell's dtype, checked against :meth:`declare`.

        Raises
        ------
        tinygraph.ShapeError
            A value's shape differs from its declaration.
        tinygraph.GraphError
            A declared parameter is missing or an unknown one is present.
        """
        specs = self._declared()
        values = self.params
        missing = [n for n in specs if n not in values]
        unknown = [n for n in values if n not in specs]
        if missing or unknown:
            raise tg.GraphError(f"{self.name}.params: missing {missing}, unknown {unknown}; "
                                f"the cell declares {list(specs)}")
        checked = {}
        for name, spec in specs.items():
            try:
                arr = np.array(values[name], dtype=self.dtype)
            except (TypeError, ValueError) as exc:
                raise tg.GraphError(f"{self.name}.params[{name!r}]: not an array ({exc})") from None
            if arr.shape != tuple(spec.shape):
                raise tg.ShapeError(f"{self.name}.params[{name!r}] has shape {arr.shape}, "
                                    f"the cell declares {tuple(spec.shape)}")
            checked[name] = arr
        return checked

    def __repr__(self) -> str:
        return f"{self.name}(input_size={self.input_size}, hidden_size={self.hidden_size})"


# --------------------------------------------------------------- PyTorch layout


class _TorchLayout:
    """``from_torch`` for cells whose gates are stacked blocks in PyTorch's order."""

    #: The gate order of PyTorch's row blocks in weight_ih / weight_hh.
    torch_gates: tuple[str, ...] = ()

    @classmethod
    def from_torch(cls, weight_ih, weight_hh, bias_ih=None, bias_hh=None, **kwargs):
        """A cell with PyTorch's weights (numpy arrays in ``torch.nn`` layout).

        Parameters
        ----------
        weight_ih : array, shape (G*H, D)
        weight_hh : array, shape (G*H, H)
        bias_ih, bias_hh : array, shape (G*H,), optional
            ``None`` (a module built with ``bias=False``) means zeros.
        **kwargs
            Passed to the constructor (``dtype=`` …).

        ``G`` is the number of gates (1, 3 for GRU in order r, z, n, 4 for
        LSTM in order i, f, g, o). The cell then computes what
        ``torch.nn.RNN/GRU/LSTM`` computes with those weights.
        """
        gates = len(cls.torch_gates)
        w_ih = _torch_array(cls, "weight_ih", weight_ih, 2)
        w_hh = _torch_array(cls, "weight_hh", weight_hh, 2)
        rows, hidden = w_hh.shape
        if rows != gates * hidden:
            raise tg.ShapeError(f"{cls.__name__}.from_torch: weight_hh has shape {w_hh.shape}; "
                                f"it must be ({gates}*H, H) for {gates} gate block(s)")
        if w_ih.shape[0] != rows:
            raise tg.ShapeError(f"{cls.__name__}.from_torch: weight_ih has shape {w_ih.shape}, "
                                f"it must be ({rows}, D) to match weight_hh {w_hh.shape}")
        biases = []
        for what, bias in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
            b = np.zeros(rows) if bias is None else _torch_array(cls, what, bias, 1)
            if b.shape != (rows,):
                raise tg.ShapeError(f"{cls.__name__}.from_torch: {what} has shape {b.shape}, "
                                    f"it must be ({rows},)")
            biases.append(b)
        cell = cls(input_size=w_ih.shape[1], hidden_size=hidden, **kwargs)  # type: ignore[call-arg]  # a Cell mixin
        cell.params = cell._params_from_torch(w_ih, w_hh, *biases)  # type: ignore[attr-defined]
        return cell


def _torch_array(cls: type, what: str, value: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise tg.GraphError(f"{cls.__name__}.from_torch: {what} is not an array ({exc}); "
                            "pass numpy arrays, e.g. module.weight_ih_l0.detach().numpy()"
                            ) from None
    if arr.ndim != ndim:
        raise tg.ShapeError(f"{cls.__name__}.from_torch: {what} has shape {arr.shape}, "
                            f"expected a {ndim}-D array")
    return arr


# ---------------------------------------------------------------------- cells


class VanillaRNNCell(_TorchLayout, Cell):
    """The seed's vanilla RNN, with an optional softmax output layer.

    ::

        s_t = tanh(x_t @ U + s_{t-1} @ W + b)
        o_t = softmax(s_t @ V + c)

    Parameters: ``U (D, H)``, ``W (H, H)``, ``b (H,)`` and, unless
    ``output_size`` is None (then the outputs are the states), ``V (H, O)``,
    ``c (O,)``. The step is the seed's gates: two multiply gates, an add
    gate, tanh, and the output layer's multiply, add and softmax.

    Examples
    --------
    >>> import numpy as np, tinygraph_rnn as rnn
    >>> cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3, seed=0)
    >>> out = rnn.unroll(cell, steps=2).run(np.eye(3)[[0, 1]])
    >>> out["outputs"].shape, out["states"].shape
    ((2, 3), (2, 4))
    >>> bool(np.allclose(out["outputs"].sum(axis=-1), 1.0))
    True
    """

    state_names = ("s",)
    torch_gates = ("h",)

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 seed: int = 0, dtype: Any = "float64"):
        super().__init__(input_size, hidden_size, seed=seed, dtype=dtype)
        self.output_size = (None if output_size is None
                            else _positive_size(self.name, "output_size", output_size))

    def declare(self) -> dict[str, ParamSpec]:
        D, H, O = self.input_size, self.hidden_size, self.output_size  # noqa: N806, E741
        specs = {"U": ParamSpec((D, H)), "W": ParamSpec((H, H)),
                 "b": ParamSpec((H,), init="zeros")}
        if O is not None:
            specs.update(V=ParamSpec((H, O)), c=ParamSpec((O,), init="zeros"))
        return specs

    def step(self, x, state, params):
        # Node names follow the seed's gate objects (mulu, mulw, add, s, mulv).
        mulu = tg.matmul(x, params["U"], name="mulu")
        mulw = tg.matmul(state, params["W"], name="mulw")
        add = tg.add(mulu, mulw, name="add")
        s = tg.tanh(tg.add(add, params["b"], name="add_b"), name="s")
        if self.output_size is None:
            return s, s
        mulv = tg.matmul(s, params["V"], name="mulv")
        logits = tg.add(mulv, params["c"], name="logits")
        return s, tg.softmax(logits, axis=-1, name="o")

    def _params_from_torch(self, w_ih, w_hh, b_ih, b_hh):
        # torch adds two biases where the seed has one; their sum is the same affine map.
        return {"U": w_ih.T, "W": w_hh.T, "b": b_ih + b_hh}


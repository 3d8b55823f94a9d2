"""Optimizers that update a graph's params in place, and gradient clipping.

The gradients come from running the nodes :func:`tinygraph.grad` built:
``grads = g.run(grad_nodes, feeds)`` gives one array per param, in the same
order, and ``opt.step(grads)`` updates each param's live array in place (so
compiled plans see the new values on their next run). The update formulas
are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``,
``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``), so settings
carry over; :class:`Adagrad` is min-char-rnn's (eps inside the square root).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> w = g.param("w", np.array([3.0]))
>>> loss = tg.sum(w * w)
>>> dw = tg.grad(loss, [w])
>>> opt = tg.optim.SGD([w], lr=0.25)
>>> for _ in range(3):
...     opt.step(g.run(dw))
>>> w.value                       # each step halves w: w -= 0.25 * 2w
array([0.375])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .core.node import Node
from .core.options import check_number
from .core.shapes import format_shape
from .errors import EvaluationError, GraphError, ShapeError

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "clip_grad_norm", "clip_grad_value",
]


def _check_hyper(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    return check_number(name, value, low, high, high_open=True)


def _gradient_array(grad: Any, param: Node | None = None) -> np.ndarray:
    """A gradient as a float array (of ``param``'s dtype); GraphError for anything else."""
    where = f"gradient for param '{param.name}'" if param is not None else "gradient"
    arr = np.asarray(grad) if isinstance(grad, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(grad)
        except (TypeError, ValueError) as exc:
            raise GraphError(f"{where}: not an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise GraphError(f"{where}: wants a float array, got dtype {arr.dtype}")
    return arr if param is None else arr.astype(param.dtype, copy=False)


class Optimizer:
    """Base class: holds the params and checks the gradients given to :meth:`step`.

    Parameters
    ----------
    params : iterable of Node
        Param nodes (``g.param``) of float dtype; their arrays are updated in
        place. Subclasses implement :meth:`_update` for one param.
    """

    def __init__(self, params: Iterable[Node]):
        if isinstance(params, Node):
            params = [params]
        self.params: list[Node] = list(params)
        if not self.params:
            raise GraphError("an optimizer needs at least one param, e.g. list(g.params.values())")
        for p in self.params:
            if not isinstance(p, Node) or p.op != "param":
                what = f"the {p.op} node '{p.name}'" if isinstance(p, Node) else repr(p)
                raise GraphError(f"optimizers update params (g.param nodes); got {what}")
            if p.dtype.kind != "f":
                raise GraphError(f"param '{p.name}' has dtype {p.dtype}; only float params train")
        self.steps = 0  # number of step() calls so far

    def step(self, grads: Sequence[Any]) -> None:
        """Apply one update. ``grads``: one array per param, in the order of ``params``."""
        if not isinstance(grads, Sequence) or len(grads) != len(self.params):
            count = (f"{len(grads)} gradients" if isinstance(grads, Sequence)
                     else type(grads).__name__)
            raise GraphError(f"step() wants a list of {len(self.params)} gradients (one per "
                             f"param: {', '.join(p.name for p in self.params)}), got {count}")
        arrays = []
        for p, grad in zip(self.params, grads, strict=True):
            arr = _gradient_array(grad, p)
            if arr.shape != p.shape:
                raise ShapeError(f"gradient for param '{p.name}' has shape "
                                 f"{format_shape(arr.shape)}, the param has shape "
                                 f"{format_shape(p.shape)}")
            arrays.append(arr)
        self.steps += 1
        for i, (p, arr) in enumerate(zip(self.params, arrays, strict=True)):
            self._update(i, p.value, arr)

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum and weight decay.

    ``d = grad + weight_decay * p``; with momentum ``buf = momentum * buf + d``
    (``buf = d`` on the first step) and ``d = buf``; then ``p -= lr * d``.

    Parameters
    ----------
    params : iterable of Node
        The param nodes to update.
    lr : float
        Learning rate.
    momentum : float, optional
        Momentum factor in [0, 1); 0 (the default) is plain SGD.
    weight_decay : float, optional
        L2 penalty coefficient.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.array([1.0]))
    >>> opt = tg.optim.SGD([w], lr=0.1, momentum=0.5)
    >>> opt.step([np.array([1.0])]); opt.step([np.array([1.0])])
    >>> w.value                       # 1 - 0.1 * 1 - 0.1 * (0.5 * 1 + 1)
    array([0.75])
    """

    def __init__(self, params: Iterable[Node], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = _check_hyper("lr", lr)
        self.momentum = _check_hyper("momentum", momentum, high=1.0)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        d = grad + self.weight_decay * value if self.weight_decay else grad
        if self.momentum:
            buf = self.buffers[i]
            if buf is None:
                buf = self.buffers[i] = np.array(d, dtype=value.dtype)
            else:
                buf *= self.momentum
                buf += d
            d = buf
        value -= self.lr * d


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as ``torch.optim.Adam``.

    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``, then
    ``p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)`` at step t.

    Parameters
    ----------
    params : iterable of Node
        The param nodes to update.
    lr : float, optional
        Learning rate (default 1e-3).
    betas : (float, float), optional
        Decay rates of the first and second moment estimates.
    eps : float, optional
        Added to the denominator for numerical stability.
    weight_decay : float, optional
        L2 penalty coefficient added to the gradient.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.array([1.0, 1.0]))
    >>> opt = tg.optim.Adam([w], lr=0.1)
    >>> opt.step([np.array([2.0, -0.5])])
    >>> w.value.round(6)              # the first step moves each entry by about lr
    array([0.9, 1.1])
    """

    def __init__(self, params: Iterable[Node], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = _check_hyper("lr", lr)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise GraphError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_hyper("beta1", betas[0], high=1.0),
                      _check_hyper("beta2", betas[1], high=1.0))
        self.eps = _check_hyper("eps", eps)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.m = [np.zeros_like(p.value) for p in self.params]
        self.v = [np.zeros_like(p.value) for p in self.params]

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        b1, b2 = self.betas
        d = grad + self.weight_decay * value if self.weight_decay else grad
        m, v = self.m[i], self.v[i]
        m *= b1
        m += (1 - b1) * d
        v *= b2
        v += (1 - b2) * d * d
        m_hat = m / (1 - b1 ** self.steps)
        v_hat = v / (1 - b2 ** self.steps)
        value -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def clip_grad_norm(grads: list[Any], max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale ``grads`` so their global L2 norm is at most ``max_norm``; return the norm before.

    The global norm is ``sqrt(sum of every squared entry of every array)``.
    When it exceeds ``max_norm``, every gradient is multiplied by
    ``max_norm / (norm + 1e-6)`` (PyTorch's rule). Clipping happens in place
    in the list: each entry is replaced by its scaled array, because arrays
    fetched by ``g.run`` may be read-only consts or may appear twice (two
    params with the same gradient node), and scaling those in place would
    fail or scale twice.

    Parameters
    ----------
    grads : list of ndarray
        Gradients, e.g. as returned by ``g.run(grad_nodes, feeds)``.
    max_norm : float
        The largest allowed global norm (> 0).
    error_if_nonfinite : bool, optional
        Raise :class:`~tinygraph.EvaluationError` if the norm is nan or inf.
        By default a non-finite norm is just returned (check it and skip
        the step); in both cases the gradients are left untouched, since no
        scale makes them finite.

    Returns
    -------
    float
        The global norm before clipping.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> grads = [np.array([3.0]), np.array([4.0])]
    >>> tg.optim.clip_grad_norm(grads, max_norm=1.0)
    5.0
    >>> np.round(grads, 6).tolist()
    [[0.6], [0.8]]
    """
    if not isinstance(grads, list):
        raise GraphError(f"clip_grad_norm clips a list in place; got {type(grads).__name__} "
                         "(pass list(grads) and keep that list)")
    max_norm = _check_hyper("max_norm", max_norm)
    if max_norm == 0:
        raise GraphError("max_norm must be > 0")
    if not isinstance(grads, list):
        raise GraphError(f"clip_grad_norm takes a list of gradient arrays (clipped in place), "
                         f"got {type(grads).__name__}")
    arrays = [_gradient_array(a) for a in grads]
    norm = math.sqrt(sum(float(np.vdot(a, a).real) for a in arrays))
    if error_if_nonfinite and not math.isfinite(norm):
        raise EvaluationError(f"the global gradient norm is {norm}; a gradient holds nan or "
                              "inf (check the loss and the learning rate)")
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0 and math.isfinite(norm):
        grads[:] = [(a * scale).astype(a.dtype, copy=False) for a in arrays]
    return norm


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    ``p *= 1 - lr * weight_decay`` first, then the Adam step on the plain
    gradient (no L2 term in it).

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.array([1.0]))
    >>> tg.optim.AdamW([w], lr=0.1, weight_decay=0.5).step([np.array([0.0])])
    >>> w.value                       # decay only: 1 * (1 - 0.1 * 0.5)
    array([0.95])
    """

    def __init__(self, params: Iterable[Node], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.decoupled_decay = _check_hyper("weight_decay", weight_decay)

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        if self.decoupled_decay:
            value *= 1 - self.lr * self.decoupled_decay
        super()._update(i, value, grad)


class Adagrad(Optimizer):
    """Adagrad in min-char-rnn's form: ``acc += g*g; p -= lr * g / sqrt(acc + eps)``.

    (``torch.optim.Adagrad`` puts eps outside the root, ``sqrt(acc) + eps``;
    the two agree when eps is 0.)

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.array([1.0]))
    >>> opt = tg.optim.Adagrad([w], lr=0.1, eps=0.0)
    >>> opt.step([np.array([3.0])]); w.value            # 1 - 0.1 * 3 / 3
    array([0.9])
    """

    def __init__(self, params: Iterable[Node], lr: float = 1e-1, eps: float = 1e-8):
        super().__init__(params)
        self.lr = _check_hyper("lr", lr)
        self.eps = _check_hyper("eps", eps)
        self.acc = [np.zeros_like(p.value) for p in self.params]

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        acc = self.acc[i]
        acc += grad * grad
        value -= self.lr * grad / np.sqrt(acc + self.eps)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop``: ``v = alpha*v + (1-alpha)*g*g``, then
    ``p -= lr * g / (sqrt(v) + eps)``.

    ``centered`` divides by ``sqrt(v - mean(g)**2)`` instead; ``momentum``
    keeps ``buf = momentum*buf + g/(sqrt(v)+eps)`` and steps ``p -= lr*buf``;
    ``weight_decay`` adds ``weight_decay * p`` to the gradient.

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.array([1.0]))
    >>> tg.optim.RMSprop([w], lr=0.01, alpha=0.75, eps=0.0).step([np.array([2.0])])
    >>> w.value                       # v = 0.25 * 4 = 1: one step of lr * 2 / 1
    array([0.98])
    """

    def __init__(self, params: Iterable[Node], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False):
        super().__init__(params)
        self.lr = _check_hyper("lr", lr)
        self.alpha = _check_hyper("alpha", alpha, high=1.0)
        self.eps = _check_hyper("eps", eps)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.momentum = _check_hyper("momentum", momentum, high=1.0)
        self.centered = bool(centered)
        self.v = [np.zeros_like(p.value) for p in self.params]
        self.mean = [np.zeros_like(p.value) for p in self.params] if centered else None
        self.buf = [np.zeros_like(p.value) for p in self.params] if momentum else None

    def _update(self, i: int, value: np.ndarray, grad: np.ndarray) -> None:
        a = self.alpha
        d = grad + self.weight_decay * value if self.weight_decay else grad
        v = self.v[i]
        v *= a
        v += (1 - a) * d * d
        if self.mean is not None:
            mean = self.mean[i]
            mean *= a
            mean += (1 - a) * d
            denom = np.sqrt(v - mean * mean) + self.eps
        else:
            denom = np.sqrt(v) + self.eps
        if self.buf is not None:
            buf = self.buf[i]
            buf *= self.momentum
            buf += d / denom
            value -= self.lr * buf
        else:
            value -= self.lr * d / denom


def clip_grad_value(grads: list[Any], clip_value: float) -> None:
    """Clamp every entry of ``grads`` to ``[-clip_value, clip_value]`` (``clip_grad_value_``).

    Like :func:`clip_grad_norm`, the list's entries are replaced by the
    clipped arrays (fetched arrays may be read-only or shared).

    Examples
    --------
    >>> import numpy as np, tinygraph as tg
    >>> grads = [np.array([-3.0, 0.5]), np.array([7.0])]
    >>> tg.optim.clip_grad_value(grads, 1.0)
    >>> [a.tolist() for a in grads]
    [[-1.0, 0.5], [1.0]]
    """
    if not isinstance(grads, list):
        raise GraphError(f"clip_grad_value clips a list in place; got {type(grads).__name__} "
                         "(pass list(grads) and keep that list)")
    clip_value = _check_hyper("clip_value", clip_value)
    grads[:] = [np.clip(a, -clip_value, clip_value).astype(np.asarray(a).dtype, copy=False)
                for a in map(np.asarray, grads)]

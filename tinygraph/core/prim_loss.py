"""Cross-entropy: the loss and its fused gradient, with PyTorch's ignore_index and label_smoothing.

>>> from tinygraph.core.ops import OPS
>>> float(OPS["cross_entropy"].forward(np.zeros((2, 4)), np.array([1, 3])))  # log 4
1.3862943611198906
>>> float(OPS["cross_entropy"].forward(np.zeros((2, 4)), np.array([1, -1]), ignore_index=-1))
1.3862943611198906
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import shape_rules_numpy as nrules
from .forwards import exp_shifted
from .node import build
from .op import Op, new_node, select, wanted_grads
from .primitives import check_ids, softmax_forward

__all__ = ["LOSS"]


def _cross_entropy_rows(logits: np.ndarray, targets: np.ndarray, ignore_index: int | None
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """The targets with ignored ones replaced by 0 (checked), and the float mask of kept rows."""
    if ignore_index is None:
        check_ids(targets, logits.shape[-1], "target")
        return targets, None
    keep = targets != ignore_index
    safe = np.where(keep, targets, 0)
    check_ids(safe, logits.shape[-1], "target")
    return safe, keep.astype(logits.dtype if logits.dtype.kind == "f" else np.float64)


def _kept(mask: np.ndarray | None, targets: np.ndarray, batch_axes: int) -> Any:
    """How many rows each mean is over: all (a number) or, with ``batch_axes``, per
    leading index (an array of that prefix shape). PyTorch's mean over kept rows;
    every row ignored gives nan (0 / 0), as there."""
    axes = tuple(range(batch_axes, targets.ndim))
    if mask is None:
        return int(np.prod([targets.shape[a] for a in axes], dtype=np.int64))
    return mask.sum(axis=axes)


def _per_prefix(value: Any, rank: int) -> Any:
    """A per-leading-index array with trailing size-1 axes, to scale rows of ``rank``."""
    value = np.asarray(value)
    return value.reshape(value.shape + (1,) * (rank - value.ndim))


def _target_positions(x: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """Where each row's target sits in ``x`` flattened (C-ordered ``x`` only, else None):
    one index array serves both the pick and the put, where ``take_along_axis`` and
    ``put_along_axis`` build fancy indices in Python on every call (20 µs each for
    50 rows, more than the rest of a small loss)."""
    if not x.flags.c_contiguous or targets.shape != x.shape[:-1]:
        return None
    classes = x.shape[-1]
    return np.arange(0, targets.size * classes, classes) + targets.reshape(-1)


def _pick(x: np.ndarray, targets: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    """``x`` at each row's target: shape ``targets.shape``."""
    if where is None:
        return np.take_along_axis(x, targets[..., None], axis=-1)[..., 0]
    return x.reshape(-1).take(where).reshape(targets.shape)


def _shifted_exp(logits: np.ndarray, targets: np.ndarray, label_smoothing: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``exp(z)`` with ``z = logits - max`` (one new array), each row's sum of it (kept
    axis), ``z`` at the targets and, with smoothing, the mean of ``z`` over classes."""
    z, sums, shift = exp_shifted(logits)
    picked = _pick(logits, targets, _target_positions(logits, targets)) - _flat(shift)
    mean_z = logits.mean(axis=-1) - _flat(shift) if label_smoothing else None
    return z, sums, picked, mean_z


def _flat(shift: Any) -> Any:
    """A shift per row (kept last axis) as one value per row; a scalar as it is."""
    return shift[..., 0] if np.ndim(shift) else shift


def _loss(sums: np.ndarray, picked: np.ndarray, mean_z: np.ndarray | None,
          mask: np.ndarray | None, targets: np.ndarray, label_smoothing: float,
          batch_axes: int, dtype: np.dtype) -> np.ndarray:
    """The mean NLL from the row sums of exp(z): a row's NLL is lse - z[target]."""
    lse = np.log(sums[..., 0])
    rows = lse - picked
    if mean_z is not None:
        # PyTorch's form: (1 - eps) * NLL + eps * the mean NLL over all classes.
        rows = (1 - label_smoothing) * rows - label_smoothing * (mean_z - lse)
    if mask is not None:
        rows = rows * mask
    with np.errstate(invalid="ignore"):
        total = rows.sum(axis=tuple(range(batch_axes, rows.ndim)))
        return np.asarray(total / _kept(mask, targets, batch_axes), dtype=dtype)


def _gradient(g: np.ndarray, p: np.ndarray, targets: np.ndarray, mask: np.ndarray | None,
              label_smoothing: float, batch_axes: int) -> np.ndarray:
    """``g`` times the loss's gradient from the softmax ``p`` (overwritten when it can be)."""
    if label_smoothing:
        p -= label_smoothing / p.shape[-1]
    where = _target_positions(p, targets)
    if where is None:
        picked = np.take_along_axis(p, targets[..., None], axis=-1)
        np.put_along_axis(p, targets[..., None], picked - (1.0 - label_smoothing), axis=-1)
    else:
        flat = p.reshape(-1)  # a view: p is C-ordered
        flat[where] -= 1.0 - label_smoothing  # one target a row: no index repeats
    if mask is not None:
        p *= mask[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = g / _kept(mask, targets, batch_axes)
        if batch_axes:  # one mean per leading index: its g over its own row count
            scale = _per_prefix(scale, p.ndim)
        if (np.result_type(p, scale) == p.dtype
                and np.broadcast_shapes(np.shape(scale), p.shape) == p.shape):
            p *= scale  # in place (p is this call's own array): scale never widens it
            return p
        return p * scale


def _cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                           ignore_index: int | None = None,
                           label_smoothing: float = 0.0, batch_axes: int = 0) -> np.ndarray:
    # The (N, C) log-probabilities are never formed; exp runs in place on z.
    targets, mask = _cross_entropy_rows(logits, targets, ignore_index)
    z, sums, picked, mean_z = _shifted_exp(logits, targets, label_smoothing)
    return _loss(sums, picked, mean_z, mask, targets, label_smoothing, batch_axes, z.dtype)


def _cross_entropy_grad_forward(g: np.ndarray, logits: np.ndarray, targets: np.ndarray,
                                ignore_index: int | None = None,
                                label_smoothing: float = 0.0, batch_axes: int = 0
                                ) -> np.ndarray:
    # Fused softmax(logits) - one_hot(targets): stable, and no (N, C) one-hot array.
    targets, mask = _cross_entropy_rows(logits, targets, ignore_index)
    return _gradient(g, softmax_forward(logits, axis=-1), targets, mask, label_smoothing,
                     batch_axes)


def _cross_entropy_and_grad_forward(g: np.ndarray, logits: np.ndarray, targets: np.ndarray,
                                    ignore_index: int | None = None,
                                    label_smoothing: float = 0.0, batch_axes: int = 0
                                    ) -> Any:  # a multi-output op's forward: a tuple
    """The loss and ``cross_entropy_grad(g, ...)`` from one softmax: the exp and the row
    sums are computed once (:func:`tinygraph.passes.fuse_cross_entropy` puts it in place
    of a loss and its gradient). Each result equals its op's, operation for operation."""
    targets, mask = _cross_entropy_rows(logits, targets, ignore_index)
    z, sums, picked, mean_z = _shifted_exp(logits, targets, label_smoothing)
    loss = _loss(sums, picked, mean_z, mask, targets, label_smoothing, batch_axes, z.dtype)
    z /= sums  # softmax_forward's last step: z is now the softmax
    return loss, _gradient(g, z, targets, mask, label_smoothing, batch_axes)


def _cross_entropy_and_grad_infer(specs: list, attrs: dict) -> tuple[tuple, np.dtype]:
    # The same checks as the two ops it replaces; a multi-output node has no shape of its
    # own (unpack nodes read its outputs), its dtype is the gradient's.
    return (), nrules.cross_entropy_grad(specs, attrs)[1]


def _cross_entropy_and_grad_vjp(node, cotangents, needs=None):
    """The two ops' rules: the loss's cotangent reaches the logits through its gradient
    op, the gradient's cotangent through :func:`_cross_entropy_grad_vjp`."""
    d_loss, d_grad = cotangents
    _, logits, targets = node.inputs
    parts = list(_cross_entropy_grad_vjp(node, d_grad, needs)) if d_grad is not None else [
        None, None, None]
    if d_loss is not None and (needs is None or needs[1]):
        via_loss = new_node("cross_entropy_grad", d_loss, logits, targets, **node.attrs)
        parts[1] = via_loss if parts[1] is None else parts[1] + via_loss
    return tuple(parts)


def _cross_entropy_grad_vjp(node, gg, needs=None):
    g, logits, targets = node.inputs
    attrs = node.attrs

    k = attrs.get("batch_axes", 0)
    rank = len(logits.shape)

    def grad_g():  # the output is linear in g: d/dg = <gg, output at g = 1>
        unit = new_node("cross_entropy_grad", g.graph.const(1.0, dtype=g.dtype), logits, targets,
                        **attrs)
        if len(g.shape) == 0:
            return new_node("sum", gg * unit)
        return new_node("sum_to", new_node("sum", gg * unit, axis=tuple(range(k, rank))), g)

    def grad_logits():  # g/N times the softmax Jacobian applied to gg (smoothing is linear)
        p = new_node("softmax", logits, axis=-1)
        inner = gg - new_node("sum", gg * p, axis=-1, keepdims=True)
        if attrs.get("ignore_index") is None and not k:
            return p * inner * (g / new_node("size", targets, dtype=node.dtype.name))
        one = g.graph.const(1.0, dtype=node.dtype)
        keep = select(build("not_equal", targets, attrs["ignore_index"])
                      if attrs.get("ignore_index") is not None
                      else build("equal", targets, targets), one, 0.0)
        rows = tuple(range(k, rank - 1))  # the axes one mean runs over
        count = new_node("sum", keep, axis=rows, keepdims=True)
        per_mean = g if len(g.shape) == 0 else new_node("expand_dims", g, axis=rows)
        share = new_node("expand_dims", keep * (per_mean / count), axis=-1)
        return p * inner * share

    return wanted_grads(needs, grad_g, grad_logits, None)


LOSS = [
    Op("cross_entropy", 2, _cross_entropy_forward, nrules.cross_entropy,
       lambda node, g, needs=None: wanted_grads(
           needs, lambda: new_node("cross_entropy_grad", g, *node.inputs, **node.attrs), None),
       doc="mean negative log-likelihood of int targets under softmax(logits) (one mean "
           "per index of the first batch_axes axes)", fresh=True),
    Op("cross_entropy_grad", 3, _cross_entropy_grad_forward, nrules.cross_entropy_grad,
       _cross_entropy_grad_vjp, doc="g * (softmax(logits) - one_hot(targets)) / targets.size",
           fresh=True),
    Op("cross_entropy_and_grad", 3, _cross_entropy_and_grad_forward,
       _cross_entropy_and_grad_infer, _cross_entropy_and_grad_vjp,
       doc="(cross_entropy(logits, targets), cross_entropy_grad(g, logits, targets)) from one "
           "softmax; made by the optimizer, read through unpack nodes", fresh=True,
       outputs=lambda node: 2),
]

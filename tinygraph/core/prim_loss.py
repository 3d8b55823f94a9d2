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


def _cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                           ignore_index: int | None = None,
                           label_smoothing: float = 0.0, batch_axes: int = 0) -> np.ndarray:
    targets, mask = _cross_entropy_rows(logits, targets, ignore_index)
    # log p = z - lse with z = logits - max: the NLL of a row is lse - z[target], so the
    # (N, C) log-probabilities are never formed; exp runs in place on z (one temporary).
    z = logits - logits.max(axis=-1, keepdims=True)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    mean_z = z.mean(axis=-1) if label_smoothing else None
    np.exp(z, out=z)
    lse = np.log(z.sum(axis=-1))
    rows = lse - picked
    if mean_z is not None:
        # PyTorch's form: (1 - eps) * NLL + eps * the mean NLL over all classes.
        rows = (1 - label_smoothing) * rows - label_smoothing * (mean_z - lse)
    if mask is not None:
        rows = rows * mask
    with np.errstate(invalid="ignore"):
        total = rows.sum(axis=tuple(range(batch_axes, rows.ndim)))
        return np.asarray(total / _kept(mask, targets, batch_axes), dtype=z.dtype)


def _cross_entropy_grad_forward(g: np.ndarray, logits: np.ndarray, targets: np.ndarray,
                                ignore_index: int | None = None,
                                label_smoothing: float = 0.0, batch_axes: int = 0
                                ) -> np.ndarray:
    # Fused softmax(logits) - one_hot(targets): stable, and no (N, C) one-hot array.
    targets, mask = _cross_entropy_rows(logits, targets, ignore_index)
    p = softmax_forward(logits, axis=-1)
    if label_smoothing:
        p -= label_smoothing / logits.shape[-1]
    picked = np.take_along_axis(p, targets[..., None], axis=-1)
    np.put_along_axis(p, targets[..., None], picked - (1.0 - label_smoothing), axis=-1)
    if mask is not None:
        p *= mask[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = g / _kept(mask, targets, batch_axes)
        if batch_axes:  # one mean per leading index: its g over its own row count
            scale = _per_prefix(scale, p.ndim)
        if np.ndim(scale) == 0 and np.result_type(p, scale) == p.dtype:
            p *= scale  # in place: p is this call's own array
            return p
        return p * scale


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
]

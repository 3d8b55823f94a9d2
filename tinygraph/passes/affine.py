"""A product and the bias added to its rows, ``x @ w + b``, as one ``affine`` node.

Outside loops the optimizer leaves whole-sequence products: a loop's hoisted
input projection ``X @ W_ih + b_ih`` over (T, B, D) inputs, an output head
``S @ V + c`` over the stacked states. Their results outgrow the caches, and
adding the bias afterwards costs one more pass over memory;
:func:`~tinygraph.core.prim_affine.affine_forward` folds the bias into the
product where that is cheaper (see there). Only top-level records are
rewritten: inside a loop body a step's rows stay in cache and the add is cheap.

A match is ``add(matmul(x, w), b)`` in either operand order, where the product
is read by that add alone (or else only for its shape, as the like of
reverse mode's ``sum_to``: those read the ``affine`` node instead, which has
the product's shape) and is not fetched, ``x`` has two or more axes, ``w``
is a matrix, ``b`` broadcasts along the rows without widening the result, and
all three share one float dtype.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph.passes.draft import Draft
>>> g = tg.Graph()
>>> x, w = g.input("x", shape=(None, 3)), g.param("w", np.ones((3, 4)))
>>> y = x @ w + g.param("b", np.zeros(4))
>>> draft = Draft(g, [y])
>>> affine_pass(draft)
>>> [r.op for r in draft.live() if r.op not in ("input", "param")]
['affine']
"""

from __future__ import annotations

import numpy as np

from ..core.op import OPS
from .draft import Draft, Rec

__all__ = ["affine_pass"]

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def affine_pass(draft: Draft) -> None:
    """Rewrite every top-level ``x @ w + b`` of ``draft`` (see the module) to ``affine``."""
    for rec in draft.live():
        if rec.op != "add" or rec.dtype not in _FLOATS:
            continue
        for p, b in (rec.inputs, rec.inputs[::-1]):
            product, bias = draft.recs[p], draft.recs[b]
            if _matches(draft, rec, product, bias):
                x, w = product.inputs
                new = draft.add("affine", [x, w, b], name=rec.name, meta=rec.meta)
                for like in _other_readers(draft, product, rec):
                    draft.rewire(like.id, product.id, new)
                draft.replace(rec.id, new)
                break


def _other_readers(draft: Draft, product: Rec, add: Rec) -> list[Rec]:
    """The readers of ``product`` other than ``add`` (a match needs each to read it as a
    like only: :func:`_reads_shape_only`)."""
    return [r for r in draft.readers(product.id) if r.id != add.id]


def _reads_shape_only(reader: Rec, product: Rec) -> bool:
    return (reader.op in OPS and OPS[reader.op].identity_when_shapes_agree
            and reader.inputs[0] != product.id and product.id in reader.inputs[1:])


def _matches(draft: Draft, rec: Rec, product: Rec, bias: Rec) -> bool:
    if product.op != "matmul" or product.id in draft.root_set or product.id == bias.id:
        return False
    x, w = (draft.recs[i] for i in product.inputs)
    return (len(x.shape) >= 2 and len(w.shape) == 2 and product.shape == rec.shape
            and x.dtype == w.dtype == bias.dtype == rec.dtype
            and len(bias.shape) <= len(rec.shape) and bias.shape[-1:] == rec.shape[-1:]
            and all(d == 1 for d in bias.shape[:-1])
            and rec.id in [r.id for r in draft.readers(product.id)]
            and all(_reads_shape_only(r, product) for r in _other_readers(draft, product, rec)))

"""Split products of joined operands in loop bodies: ``[x | h] @ W`` -> ``x @ W_x + h @ W_h``.

(And the backward's ``(g @ Wᵀ)[:, s]`` -> ``g @ Wᵀ[:, s]``.)

Cells are often written with one weight over the input and the state joined
(``tg.concat([x, h], axis=-1) @ W``, as in many textbooks). In a scan body
the join mixes a per-step input with the carry, so nothing can leave the
loop, and every step copies both into a new array. Split by rows of ``W``,
each part multiplies its own block; :mod:`tinygraph.passes.sink`'s
reassociation and :mod:`tinygraph.passes.hoist` then take ``x @ W_x`` (and
the bias) out of the loop as one product over all steps, and what is left is
``h @ W_h + a_t`` — the shape the fused recurrence kernel runs. The sums are
the same products added in another order (a few ulp).

>>> import numpy as np, tinygraph as tg
>>> from tinygraph import passes
>>> g = tg.Graph()
>>> xs, h0 = g.input("xs", shape=(None, None, 2)), g.input("h0", shape=(None, 3))
>>> W = g.param("W", np.full((5, 3), 0.1))
>>> def step(h, x):
...     new = tg.tanh(tg.concat([x, h], axis=-1) @ W)
...     return new, new
>>> _, states = tg.scan(step, h0, xs)
>>> optimized = passes.optimize(g, [states])
>>> [n.op for n in optimized.nodes.values() if n.op in ("recurrence", "scan", "concat")]
['recurrence']
"""

from __future__ import annotations

from typing import Any

from .bodies import copy_body, use_body
from .draft import Draft, Rec, per_scan
from .sink import _carry_dependent

__all__ = ["split_joined_products_pass"]


def _splittable(node: Any) -> list[int] | None:
    """The widths of the joined parts when ``node`` is ``concat(parts, last axis) @ W``."""
    if node.op != "matmul":
        return None
    joined, weight = node.inputs
    if joined.op != "concat" or len(weight.shape) != 2 or len(joined.shape) < 2:
        return None
    if joined.attrs.get("axis", 0) not in (-1, len(joined.shape) - 1):
        return None
    widths = _last_sizes(joined.inputs, len(joined.shape))
    if widths is None or weight.shape[0] != sum(widths) or len(widths) < 2:
        return None
    return widths


def _last_sizes(parts: Any, ndim: int) -> list[int] | None:
    """The parts' static sizes along their last axis (None if one is unknown)."""
    sizes = []
    for part in parts:
        if len(part.shape) != ndim or part.shape[-1] is None:
            return None
        sizes.append(int(part.shape[-1]))
    return sizes


def _column_block(node: Any) -> tuple[int, int] | None:
    """The columns ``(start, stop)`` when ``node`` is a part of a product ``(A @ B)[:, s]``.

    Reverse mode splits the gradient of a joined operand this way
    (``concat_part(g @ Wᵀ, likes)``); ``A @ B[:, s]`` computes only that part.
    """
    if node.op != "concat_part" or node.inputs[0].op != "matmul":
        return None
    product, likes = node.inputs[0], node.inputs[1:]
    weight = product.inputs[1]
    if len(weight.shape) != 2 or node.attrs.get("axis", 0) not in (-1, len(product.shape) - 1):
        return None
    widths = _last_sizes(likes, len(product.shape))
    if widths is None or sum(widths) != weight.shape[1]:
        return None
    start = sum(widths[:node.attrs["index"]])
    return start, start + widths[node.attrs["index"]]


def _split(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body = a["body"]
    # Only joins of carry-free parts (x_t) with carried ones: those parts can then leave
    # the loop. Joined carried parts (a GRU's gate adjoints) stay one product.
    dependent = _carry_dependent(body, a["num_carry"], a["inputs"])
    plans: dict[Any, Any] = {
        node: widths for node in body.nodes.values()
        if (widths := _splittable(node)) is not None
        and len({part in dependent for part in node.inputs[0].inputs}) == 2}
    plans.update({node: block for node in body.nodes.values()
                  if (block := _column_block(node)) is not None})
    if not plans:
        return
    new, mapping = copy_body(body, lambda node, new, mapping: _rewritten(node, plans, new,
                                                                         mapping))
    # Broadcasting between the parts would change a result's shape: then leave it be.
    if any(mapping[node].shape != node.shape for node in plans):
        return
    outputs = tuple(mapping[body.node(n)].name for n in a["outputs"])
    if len(set(outputs)) != len(set(a["outputs"])):
        return
    use_body(draft, rec, new, mapping)


def _rewritten(node: Any, plans: dict, new: Any, mapping: dict) -> Any:
    """The split product or the column block for ``node`` (None: copied as is)."""
    if node not in plans:
        return None
    if node.op == "concat_part":
        product = node.inputs[0]
        start, stop = plans[node]
        block = new.add_node("getitem", [mapping[product.inputs[1]]],
                             {"index": ((None, None, None), (start, stop, None))})
        return new.add_node("matmul", [mapping[product.inputs[0]], block])
    joined, weight = node.inputs
    terms, start = [], 0
    for part, width in zip(joined.inputs, plans[node], strict=True):
        block = new.add_node("getitem", [mapping[weight]],
                             {"index": ((start, start + width, None),)})
        terms.append(new.add_node("matmul", [mapping[part], block]))
        start += width
    total = terms[0]
    for term in terms[1:]:
        total = new.add_node("add", [total, term])
    return total


split_joined_products_pass = per_scan(
    _split,
    "Split the products of joined operands in every scan body (see the module doc).")

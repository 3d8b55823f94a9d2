"""Accumulators out of loops: ``acc' = acc + term_t`` -> ``acc + Σ_t term_t`` after the loop.

The vjp of a scan sums every captured value's gradient over the steps in a
carry (``dW' = dW + s_{t-1}ᵀ dz_t``). Nothing else in the body reads such a
carry, so the loop does not need it: the pass hands ``term_t`` out as a
per-step output and adds the sum over steps to the initial value afterwards.
The term then no longer feeds a carry, so :mod:`tinygraph.passes.sink` moves
it after the loop too, batched; and :func:`contract_pass` turns
``Σ_t A_tᵀ B_t`` over stacked ``A``, ``B`` into ONE matmul of the flattened
stacks. The sums are the same numbers added in another order.
"""

from __future__ import annotations

from typing import Any

from .bodies import read_counts
from .draft import Draft, Rec, per_scan

__all__ = ["accumulate_pass", "contract_pass"]


def _accumulate(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, ny = a["body"], a["num_carry"], a["num_ys"]
    inputs = [body.node(n) for n in a["inputs"]]
    outs = [body.node(n) for n in a["outputs"]]
    readers = read_counts(body)
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users):
        return
    read = {u.attrs["index"] for u in users}
    terms: dict[int, Any] = {}
    for i in range(k):
        cin, cout = inputs[i], outs[i]
        if cout.op != "add" or readers.get(cin, 0) != 1 or cin not in cout.inputs:
            continue
        if cin in outs[:k + ny]:  # the carry also leaves the step (another carry, an output)
            continue
        term = cout.inputs[1] if cout.inputs[0] is cin else cout.inputs[0]
        if term is cin or k + ny + i in read or term.shape != cin.shape:
            continue
        if outs.count(cout) != 1:
            continue
        terms[i] = term
    if not terms:
        return
    new_carry_outs = [inputs[i] if i in terms else outs[i] for i in range(k)]
    # A term that already is a per-step input (hoisted, computed for all steps outside)
    # is summed outside directly; the others become per-step outputs of the loop.
    position = {node: j for j, node in enumerate(inputs)}
    m = a["num_xs"]
    outside = {i: rec.inputs[position[t]] for i, t in terms.items()
               if t in position and k <= position[t] < k + m}
    looped = {i: t for i, t in terms.items() if i not in outside}
    ys = outs[k:k + ny] + [looped[i] for i in looped]
    attrs = {**a, "num_ys": len(ys),
             "outputs": tuple(n.name for n in [*new_carry_outs, *ys, *inputs[:k]])}
    scan = draft.add("scan", list(rec.inputs), attrs, name=rec.name)
    steps = a["length"]
    extra = {i: k + ny + j for j, i in enumerate(looped)}
    for u in users:
        index = u.attrs["index"]
        if index < k and index in terms:
            stacked = outside[index] if index in outside else draft.add(
                "unpack", [scan], {"index": extra[index], "shape": (steps, *terms[index].shape),
                                   "dtype": terms[index].dtype.name})
            total = draft.add("sum", [stacked], {"axis": 0, "keepdims": False},
                              name=f"{rec.name}/accumulated")
            draft.replace(u.id, draft.add("add", [rec.inputs[index], total], name=u.name))
        else:
            new_index = index if index < k + ny else index + len(looped)
            draft.replace(u.id, draft.add("unpack", [scan], {**u.attrs, "index": new_index},
                                          name=u.name))


def contract_pass(draft: Draft) -> None:
    """``sum(matmul(transpose(A), B), axis=0)`` over stacked A, B -> one flat matmul.

    Also through ``sum_to(…, like)`` onto a matrix: a linear head's weight
    gradient over all steps, ``Σ_t s_tᵀ g_t``.
    """
    for rec in draft.live():
        if rec.op == "sum_to":  # reverse mode's sum back to a matrix param: over axis 0
            like = draft.recs[rec.inputs[1]]
            if len(like.shape) != 2 or None in like.shape or like.shape != rec.shape:
                continue
        elif (rec.op != "sum" or rec.attrs.get("axis") not in (0, (0,))
              or rec.attrs.get("keepdims")):
            continue
        mm = draft.recs[rec.inputs[0]]
        if mm.op != "matmul" or len(mm.shape) != 3 or mm.shape[1:] != rec.shape:
            continue
        left, right = (draft.recs[i] for i in mm.inputs)
        if left.op != "transpose" or left.attrs.get("axes") != (0, 2, 1):
            continue
        a = draft.recs[left.inputs[0]]
        if len(a.shape) != 3 or len(right.shape) != 3 or None in (a.shape[2], right.shape[2]):
            continue
        flat_a = draft.add("reshape", [a.id], {"shape": (-1, a.shape[2])}, name="opt/flat")
        flat_b = draft.add("reshape", [right.id], {"shape": (-1, right.shape[2])},
                           name="opt/flat")
        at = draft.add("transpose", [flat_a], {"axes": None}, name="opt/flat_t")
        draft.replace(rec.id, draft.add("matmul", [at, flat_b], name=rec.name))


accumulate_pass = per_scan(
    _accumulate,
    "Gradient sums out of every scan's loop (see the module doc).")

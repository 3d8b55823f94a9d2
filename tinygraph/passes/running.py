"""Running sums leave their loop: ``acc' = acc + e_t`` becomes ``acc_T = acc_0 + Σ_t e_t``.

A loss accumulated in a scan's carry (JAX style: ``(h, acc + ce(h @ V, y_t))``)
is a carry to the loop, so nothing that feeds it can leave the loop: not the
output head, not the loss, and in training not their gradients. When the
carry is read by nothing but its own update (an add or a subtraction of a
value that does not read it) and nobody reads its per-step saved copies,
it is no recurrence: the update's other term ``e_t`` becomes a per-step
output, and the final value is ``acc_0 + sum(e, axis=0)`` after the loop (``-``
for ``acc - e_t``). ``e_t`` then sinks and vectorizes like any per-step output,
and its backward leaves the backward loop through the batch rules.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph import passes
>>> g = tg.Graph()
>>> xs = g.input("xs", shape=(5, 3))
>>> W = g.param("W", np.eye(3) * 0.5)
>>> def step(carry, x):
...     h, total = carry
...     h = tg.tanh(x + h @ W)
...     return (h, total + tg.sum(h * h)), None
>>> (h, total), _ = tg.scan(step, (g.const(np.zeros(3)), g.const(0.0)), xs)
>>> rolled = passes.rewrite(g, [total], [running_sums_pass])[0]
>>> scan = next(n for n in rolled.nodes.values() if n.op == "scan")
>>> scan.attrs["num_carry"], scan.attrs["num_ys"]
(1, 1)
"""

from __future__ import annotations

from .bodies import copy_body, read_counts
from .draft import Draft, Rec, per_scan

__all__ = ["running_sums_pass"]


def _running_sums(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, ny = a["body"], a["num_carry"], a["num_ys"]
    inputs = [body.node(n) for n in a["inputs"]]
    outs = [body.node(n) for n in a["outputs"]]
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users):
        return
    read = {u.attrs["index"] for u in users}
    readers = read_counts(body)
    sums: dict[int, tuple] = {}  # carry index -> (its other term, sign)
    for i in range(k):
        term = _accumulated(inputs[i], outs[i])
        if term is None or k + ny + i in read or readers.get(inputs[i], 0) != 1 \
                or readers.get(outs[i], 0) or outs.count(outs[i]) != 1 \
                or outs[:k + ny].count(inputs[i]) or term[0] in inputs[:k] \
                or term[0].shape != inputs[i].shape or term[0].dtype != inputs[i].dtype:
            continue  # read elsewhere, handed out, or summing another carry: a recurrence
        sums[i] = term
    kept = [i for i in range(k) if i not in sums]
    if not sums or not kept:
        return  # all carries sums: a reduction vectorizing handles, not a loop
    gone = {inputs[i] for i in sums} | {outs[i] for i in sums}
    new_body, made = copy_body(body, skip=lambda node: node in gone)
    new_outs = ([made[outs[i]] for i in kept] + [made[o] for o in outs[k:k + ny]]
                + [made[sums[i][0]] for i in sums] + [made[outs[k + ny + i]] for i in kept])
    keep_in = kept + list(range(k, len(inputs)))
    attrs = {**a, "body": new_body, "num_carry": len(kept), "num_ys": ny + len(sums),
             "inputs": tuple(made[inputs[i]].name for i in keep_in),
             "outputs": tuple(n.name for n in new_outs)}
    scan = draft.add("scan", [rec.inputs[i] for i in keep_in], attrs, name=rec.name)
    new_k = len(kept)
    carry_at = {i: j for j, i in enumerate(kept)}
    sum_at = {i: new_k + ny + j for j, i in enumerate(sums)}
    for u in users:
        index = u.attrs["index"]
        if index in sums:  # the final value: the initial one plus every step's term
            term, sign = sums[index]
            ys = draft.add("unpack", [scan], {"index": sum_at[index],
                                              "shape": (a["length"], *term.shape),
                                              "dtype": term.dtype.name},
                           name=f"{rec.name}.terms{index}")
            total = draft.add("sum", [ys], {"axis": 0, "keepdims": False},
                              name=f"{u.name}/terms")
            draft.replace(u.id, draft.add("add" if sign > 0 else "sub",
                                          [rec.inputs[index], total], name=u.name))
            continue
        if index < k:
            target = carry_at[index]
        elif index < k + ny:
            target = new_k + (index - k)
        else:
            target = new_k + ny + len(sums) + carry_at[index - k - ny]
        draft.replace(u.id, draft.add("unpack", [scan], {**u.attrs, "index": target},
                                      name=u.name))


def _accumulated(carry, new) -> tuple | None:
    """``(e, sign)`` when ``new`` is ``carry + e``, ``e + carry`` or ``carry - e``."""
    if new.op == "add" and len(new.inputs) == 2:
        a, b = new.inputs
        if a is carry and b is not carry:
            return b, 1
        if b is carry and a is not carry:
            return a, 1
    if new.op == "sub" and new.inputs[0] is carry and new.inputs[1] is not carry:
        return new.inputs[1], -1
    return None


running_sums_pass = per_scan(
    _running_sums, "Carries that only accumulate leave every scan (see the module doc).")

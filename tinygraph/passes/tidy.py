"""Tidying scans: per-step outputs nobody reads, inputs nobody reads, carries that never change.

Hoisting, sinking and accumulating leave scans with body inputs no body node
reads (their values moved out of the loop) and carries whose new value is
the old one (a sum moved after the loop). Both cost a slice or a copy per
step for nothing; :func:`tidy_pass` drops them: an unread input leaves the
scan, and a carry that never changes leaves it too, its final value being
its initial one.

:func:`unread_outputs_pass` runs first: training stores every body value as a
per-step output (:func:`tinygraph.passes.regrad`), and the backward reads only
some of them. The others leave the scan, so the body's sums can be regrouped
and hoisted (a stored value is a fixed point of the body those passes keep).
:func:`saved_carries_pass` then rebuilds saved carries (the backward's
``s_{t-1}``) after the loop from the stacked states, instead of a copy per step.
"""

from __future__ import annotations

from .bodies import copy_body, prune, read_counts
from .draft import Draft, Rec, per_scan

__all__ = ["carries_before_steps", "tidy_pass", "unread_outputs_pass", "saved_carries_pass"]


def _saved_from_outputs(draft: Draft, rec: Rec) -> None:
    """Saved carries rebuilt from the stacked new carries: ``[init, c_0, …, c_{T-2}]``.

    When a carry's new value is also a per-step output (a cell's state), the
    loop need not copy the old carry every step: the saved carries are the
    initial one followed by all stacked new ones but the last. One copy after
    the loop instead of one per step, and a loop that stores nothing extra.
    """
    a = rec.attrs
    k, ny = a["num_carry"], a["num_ys"]
    outs = a["outputs"]
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users):
        return
    stacked_by_index = {u.attrs["index"]: u for u in users}
    for u in users:
        i = u.attrs["index"] - k - ny
        if i < 0 or outs[i] not in outs[k:k + ny]:
            continue
        j = k + outs[k:k + ny].index(outs[i])
        stacked = stacked_by_index.get(j)
        if stacked is None:
            stacked = draft.recs[draft.add("unpack", [rec.id], {
                "index": j, "shape": u.shape, "dtype": u.dtype.name}, name=f"{rec.name}.out{j}")]
            stacked_by_index[j] = stacked
        draft.replace(u.id, carries_before_steps(draft, rec.inputs[i], stacked.id, u.name))


def carries_before_steps(draft: Draft, init: int, states: int, name: str) -> int:
    """The carries each step started from, ``[init, s_0, …, s_{T-2}]``, as a join of the
    initial carry (broadcast to a state's shape) and all stacked new carries but the last."""
    first = draft.add("getitem", [states], {"index": (0,)}, name=f"{name}/first")
    start = draft.add("broadcast_to", [init, first], name=f"{name}/init")
    head = draft.add("expand_dims", [start], {"axis": 0}, name=f"{name}/head")
    rest = draft.add("getitem", [states], {"index": ((None, -1, None),)}, name=f"{name}/rest")
    return draft.add("concat", [head, rest], {"axis": 0}, name=name)


def _drop_unread_outputs(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    k, ny = a["num_carry"], a["num_ys"]
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users):
        return
    names = a["outputs"]
    # A body value handed out twice per step (a cell's output is its state) is stored
    # once: readers of the copy read the first.
    first: dict[str, int] = {}
    for j in range(k, k + ny):
        first.setdefault(names[j], j)
    for u in users:
        index = u.attrs["index"]
        if k <= index < k + ny and first[names[index]] != index:
            draft.replace(u.id, draft.add("unpack", [rec.id],
                                          {**u.attrs, "index": first[names[index]]},
                                          name=u.name))
    users = draft.readers(rec.id)
    read = {u.attrs["index"] for u in users}
    kept = [j for j in range(ny) if k + j in read]
    if len(kept) == ny:
        return
    names = a["outputs"]
    outputs = (*names[:k], *[names[k + j] for j in kept], *names[k + ny:])
    attrs = {**a, "num_ys": len(kept), "outputs": outputs, "body": prune(a["body"], outputs)}
    scan = draft.add("scan", list(rec.inputs), attrs, name=rec.name)
    new_y = {k + j: k + i for i, j in enumerate(kept)}
    for u in users:
        index = u.attrs["index"]
        target = index if index < k else new_y.get(index, index - (ny - len(kept)))
        draft.replace(u.id, draft.add("unpack", [scan], {**u.attrs, "index": target},
                                      name=u.name))


def _tidy(draft: Draft, rec: Rec) -> None:
    a = rec.attrs
    body, k, m, ny = a["body"], a["num_carry"], a["num_xs"], a["num_ys"]
    inputs = [body.node(n) for n in a["inputs"]]
    outs = [body.node(n) for n in a["outputs"]]
    users = draft.readers(rec.id)
    if any(u.op != "unpack" for u in users):
        return
    read_outputs = {u.attrs["index"] for u in users}
    readers = read_counts(body)
    # Carries that never change (and whose saved copies nobody reads) leave the loop.
    fixed = [i for i in range(k) if outs[i] is inputs[i] and k + ny + i not in read_outputs
             and readers.get(inputs[i], 0) == 0 and inputs[i] not in outs[k:k + ny]
             and inputs[i] not in [outs[j] for j in range(k) if j != i]]
    kept_carries = [i for i in range(k) if i not in fixed]
    used_outputs = set(outs[:k]) | set(outs[k:k + ny])
    dropped = [j for j in range(k, len(inputs))
               if readers.get(inputs[j], 0) == 0 and inputs[j] not in used_outputs]
    if a["length"] is None and m and all(j in dropped for j in range(k, k + m)):
        dropped.remove(k)  # the first sequence stays: it tells the loop how many steps
    if not fixed and not dropped:
        return
    if not kept_carries:
        return  # nothing would be carried: leave such a scan to the other passes
    keep_in = [i for i in range(len(inputs)) if i not in fixed and i not in dropped]
    new_k = len(kept_carries)
    new_m = sum(1 for i in keep_in if k <= i < k + m)
    outputs = ([outs[i] for i in kept_carries] + outs[k:k + ny]
               + [outs[k + ny + i] for i in kept_carries])
    gone = {inputs[i] for i in [*fixed, *dropped]}  # inputs nothing reads
    new_body = copy_body(body, skip=lambda node: node in gone)[0]
    attrs = {**a, "body": new_body, "num_carry": new_k, "num_xs": new_m,
             "inputs": tuple(inputs[i].name for i in keep_in),
             "outputs": tuple(n.name for n in outputs)}
    scan = draft.add("scan", [rec.inputs[i] for i in keep_in], attrs, name=rec.name)
    new_index = {i: j for j, i in enumerate(kept_carries)}
    for u in users:
        index = u.attrs["index"]
        if index < k:
            if index in fixed:
                draft.replace(u.id, rec.inputs[index])  # it never changed
                continue
            target = new_index[index]
        elif index < k + ny:
            target = new_k + (index - k)
        else:
            target = new_k + ny + new_index[index - k - ny]
        draft.replace(u.id, draft.add("unpack", [scan], {**u.attrs, "index": target},
                                      name=u.name))


saved_carries_pass = per_scan(
    _saved_from_outputs,
    "Saved carries of every scan rebuilt from its stacked new carries (see the module doc).")
unread_outputs_pass = per_scan(
    _drop_unread_outputs,
    "Drop the per-step outputs of every scan that nothing reads.")
tidy_pass = per_scan(_tidy, "Drop unread inputs and unchanging carries of every scan.")

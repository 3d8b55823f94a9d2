"""Sums over time in reverse mode, done as one op: the parameter gradients.

A parameter used at every step of an unrolled graph gets one gradient term
per step, summed by a tree of ``add`` nodes. Terms of the same form are
batched into one op over all steps (the sum does not depend on the order)::

    Σ_t transpose(a_t) @ g_t          ->  transpose(stack(a)) @ stack(g)
    Σ_t transpose(one_hot(ids_t)) @ g_t ->  take_grad(stack(g), stack(ids))  (a scatter-add)
    Σ_t sum_to(g_t, like)             ->  sum_to(stack(g), like)

The parts are stacked in forward time order, so a stack equal to one the
forward pass built is merged with it by CSE, and when ``a`` is the forward's
stack of states shifted by one step (``s_{t-1}``) it is read through slices.
Called by :func:`tinygraph.passes.batching.batch_pass`.
"""

from __future__ import annotations

import numpy as np

from .draft import Draft, Rec

__all__ = ["batch_sums"]

MIN_GROUP = 2


def rows(draft: Draft, stacked: int, width: int | None, name: str) -> int:
    """A stack of (…, width) operands as one (rows, width) matrix."""
    return draft.add("reshape", [stacked], {"shape": (-1, width)}, name=name + "/rows",
                     meta={"batched": True})


def _add_tree_leaves(draft: Draft, root: Rec) -> list[int]:
    """The terms of the add tree rooted at ``root`` (inner adds read only by the tree)."""
    leaves, stack = [], list(reversed(root.inputs))
    while stack:
        i = stack.pop()
        rec = draft.recs[i]
        if rec.op == "add" and len(draft.users[i]) == 1 and i not in draft.root_set:
            stack.extend(reversed(rec.inputs))
        else:
            leaves.append(i)
    return leaves


def _term_key(draft: Draft, leaf: int) -> tuple | None:
    """How a term of a sum can be batched with others, if at all."""
    rec = draft.recs[leaf]
    if len(draft.users[leaf]) != 1:
        return None
    if rec.op == "matmul":
        a, g = (draft.recs[i] for i in rec.inputs)
        if (a.op == "transpose" and len(a.shape) == 2 and len(g.shape) == 2
                and a.attrs.get("axes") in (None, (1, 0)) and a.shape.count(None) <= 1
                and g.shape.count(None) <= 1):
            source = draft.recs[a.inputs[0]]
            if source.op == "one_hot" and len(source.shape) == 2:
                ids = draft.recs[source.inputs[0]]
                return ("one_hot.T @ g", source.attrs["depth"], ids.shape, g.shape, rec.dtype)
            return ("a.T @ g", source.shape, g.shape, rec.dtype)
    if rec.op == "sum_to":
        g, like = rec.inputs  # type: ignore[assignment]  # ids here, records above
        return ("sum_to", like, draft.recs[g].shape, rec.dtype)  # type: ignore[index]
    return None


def _batched_term(draft: Draft, key: tuple, terms: list[Rec]) -> int:
    meta = {"batched": len(terms)}
    name = terms[0].name
    if key[0] == "sum_to":
        g_stack = draft.add("stack", [t.inputs[0] for t in terms], {"axis": 0},
                            name=name + "/stack", meta=meta)
        return draft.add("sum_to", [g_stack, terms[0].inputs[1]], name=name + "/batched",
                         meta=meta)
    a_parts = [draft.recs[t.inputs[0]].inputs[0] for t in terms]
    g_parts = [t.inputs[1] for t in terms]
    if key[0] == "one_hot.T @ g":
        # Σ_t one_hot(ids_t)ᵀ g_t adds row g_t[i] into row ids_t[i]: a scatter-add
        # (take's adjoint) of all steps at once, with no one-hot matrix built.
        ids = draft.add("stack", [draft.recs[a].inputs[0] for a in a_parts], {"axis": 0},
                        name=name + "/stack_ids", meta=meta)
        g_stack = draft.add("stack", g_parts, {"axis": 0}, name=name + "/stack_g", meta=meta)
        width = draft.recs[terms[0].id].shape[-1]
        like = draft.add_const(np.zeros((key[1], width), dtype=key[-1]), name=name + "/like")
        return draft.add("take_grad", [g_stack, ids, like], {"axis": 0},
                         name=name + "/batched", meta=meta)
    g_stack = draft.add("stack", g_parts, {"axis": 0}, name=name + "/stack_g", meta=meta)
    shifted = _stack_shifted_by_one(draft, a_parts)
    if shifted is not None:
        # a = (a_0, S[0], …, S[T-2]) for an existing stack S (the states, shifted by the
        # initial one): Σ_t a_tᵀ g_t = a_0ᵀ g_0 + S[:-1]ᵀ G[1:], views instead of a copy.
        count = len(a_parts)
        head = draft.add("matmul", [
            draft.add("transpose", [a_parts[0]], {"axes": (1, 0)}, name=name + "/a0.T"),
            draft.add("getitem", [g_stack], {"index": (0,)}, name=name + "/g0")],
            name=name + "/head", meta=meta)
        a_rest = draft.add("getitem", [shifted], {"index": ((0, count - 1, None),)},
                           name=name + "/a_rest", meta=meta)
        g_rest = draft.add("getitem", [g_stack], {"index": ((1, None, None),)},
                           name=name + "/g_rest", meta=meta)
        width_a, width_g = draft.recs[a_parts[0]].shape[-1], draft.recs[g_parts[0]].shape[-1]
        tail = _transposed_product(draft, rows(draft, a_rest, width_a, name + "/a"),
                                   rows(draft, g_rest, width_g, name + "/g"), name, meta)
        return draft.add("add", [head, tail], name=name + "/batched", meta=meta)
    a_rows = rows(draft, draft.add("stack", a_parts, {"axis": 0}, name=name + "/stack_a",
                                    meta=meta), draft.recs[a_parts[0]].shape[-1], name + "/a")
    g_rows = rows(draft, g_stack, draft.recs[g_parts[0]].shape[-1], name + "/g")
    return _transposed_product(draft, a_rows, g_rows, name, meta)


def _transposed_product(draft: Draft, a_rows: int, g_rows: int, name: str, meta: dict) -> int:
    a_cols = draft.add("transpose", [a_rows], {"axes": (1, 0)}, name=name + "/a.T", meta=meta)
    return draft.add("matmul", [a_cols, g_rows], name=name + "/product", meta=meta)


def _stack_shifted_by_one(draft: Draft, parts: list[int]) -> int | None:
    """An existing ``stack(parts[1:] + [x])``: parts are its first T-1 parts, one step late."""
    if len(parts) < 3 or len(draft.recs[parts[0]].shape) != 2:
        return None
    for user in draft.users_of(parts[1]):
        if (user.op == "stack" and user.attrs.get("axis", 0) == 0
                and len(user.inputs) == len(parts) and user.inputs[:-1] == parts[1:]
                and draft.recs[parts[0]].shape == draft.recs[parts[1]].shape):
            return user.id
    return None


def _forward_order(draft: Draft, key: tuple, terms: list[Rec]) -> list[Rec]:
    """The terms in forward time order (the sum does not care; stacks built in that order
    equal stacks the forward pass built, so CSE merges them, and slices ``B[t]`` in index
    order stack back into ``B``)."""
    g_parts = [draft.recs[t.inputs[1] if key[0] == "a.T @ g" else t.inputs[0]] for t in terms]
    if all(g.op == "getitem" and len(g.attrs["index"]) == 1 for g in g_parts) and len(
            {g.inputs[0] for g in g_parts}) == 1:
        order = [g.attrs["index"][0] for g in g_parts]
    elif key[0] == "a.T @ g":
        order = [draft.recs[draft.recs[t.inputs[0]].inputs[0]].key for t in terms]
    else:  # reverse mode builds the last step's gradient first
        order = [tuple(-k for k in g.key) for g in g_parts]
    return [t for _, t in sorted(zip(order, terms, strict=True), key=lambda pair: pair[0])]


def batch_sums(draft: Draft) -> None:
    """Σ over time of per-step terms (parameter gradients) -> one batched term."""
    for root in draft.live():
        if root.op != "add" or (len(draft.users[root.id]) == 1 and root.id not in draft.root_set
                                and draft.recs[next(iter(draft.users[root.id]))].op == "add"):
            continue
        leaves = _add_tree_leaves(draft, root)
        if len(leaves) <= MIN_GROUP:
            continue
        groups: dict[tuple, list[Rec]] = {}
        rest = []
        for leaf in leaves:
            key = _term_key(draft, leaf)
            if key is None:
                rest.append(leaf)
            else:
                groups.setdefault(key, []).append(draft.recs[leaf])
        if not any(len(g) > MIN_GROUP for g in groups.values()):
            continue
        terms = list(rest)
        for key, members in groups.items():
            if len(members) > MIN_GROUP:
                # Stack in forward (build) order, whatever order the backward pass summed
                # in: the stacks then equal ones the forward pass built, and CSE merges them.
                terms.append(_batched_term(draft, key, _forward_order(draft, key, members)))
            else:
                terms.extend(m.id for m in members)
        total = terms[0]
        for term in terms[1:]:
            total = draft.add("add", [total, term], name=root.name + "/sum",
                              meta={"batched": True})
        if draft.recs[total].shape == root.shape:
            draft.replace(root.id, total)

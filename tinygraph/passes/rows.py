"""Rows of one array: a stack of ``X[0], …, X[T-1]`` is ``X`` itself.

Rerolling hands out each step's value as row t of a stacked scan output
(``ys[t]``), and :mod:`tinygraph.passes.vectorize` leaves row t of one op on
the stacks in place of each per-step node. A fetch or a loss that stacks
those rows again (``tg.stack(net.outputs)``, a loss on ``stack(logits)``)
would copy T rows back into the array they came from — a getitem per step and
a stack in every run. :func:`unstack_rows` reads the array instead; rows or
ranges read from a stack are read from its parts first, and ``sum_to``
wrappers (reverse mode's) are seen through, so the rewrite also applies to
stacks of per-step gradients.

>>> import numpy as np, tinygraph as tg
>>> from tinygraph import passes
>>> g = tg.Graph()
>>> X = g.input("X", shape=(3, None, 2))
>>> rows = tg.stack([X[0], X[1], X[2]])
>>> [n.op for n in passes.unstack_rows(g, [rows * 2.0]).nodes.values()]
['input', 'const', 'mul']
"""

from __future__ import annotations

from .draft import Draft, Rec

__all__ = ["unstack_rows", "single_row_slices", "row_of"]


def unstack_rows(draft: Draft) -> None:
    """``stack(X[0], …, X[T-1])`` -> ``X`` (``stack(X[T-1], …, X[0])`` -> ``X[::-1]``,
    ``stack(X[0], X[2], …)`` -> ``X[0::2]``, views; a run of rows between two other
    values -> a ``concat`` of the run's slice and the two), also through
    ``sum_to(…, like)`` wrappers:
    a stack of ``sum_to(X[t], L[t])`` is ``sum_to(X, L)`` (each row is reduced to its
    like's shape either way), so reverse mode's stacks of per-step gradients read
    whole arrays too. Rows or ranges read from a
    stack are first read from its parts, so a stack whose head is special (the
    initial state's) still yields its tail."""
    _stack_row_gradients(draft)
    _joined_rows(draft)
    for rec in draft.live():
        if rec.op != "stack" or rec.attrs.get("axis", 0) != 0:
            continue
        for user in [draft.recs[u] for u in draft.users[rec.id]]:
            index = user.attrs.get("index") if user.op == "getitem" else None
            if index is None or len(index) != 1:
                continue
            if isinstance(index[0], int):
                draft.replace(user.id, rec.inputs[index[0]])
                continue
            picked = rec.inputs[slice(*index[0])]
            if len(picked) >= 2:
                draft.replace(user.id, draft.add("stack", picked, {"axis": 0},
                                                 name=user.name + "/parts"))
    for rec in draft.live():
        if rec.op == "stack" and rec.attrs.get("axis", 0) == 0 and len(rec.inputs) >= 2:
            parts = [draft.recs[i] for i in rec.inputs]
            whole = _stack_of_rows(draft, parts)
            if whole is None:
                whole = _concat_of_runs(draft, parts, rec)
            if whole is not None and whole != rec.id:
                draft.replace(rec.id, whole)


def _joined_rows(draft: Draft) -> None:
    """Rows joined along another axis read the array too: ``stack(X[0], …, axis=k)`` is
    ``X`` with its first axis moved to k (a batch-first stack of per-step outputs), and
    ``concat(X[0], …, X[T-1])`` is ``X`` reshaped to ``(-1, *rest)`` (PyTorch's
    ``torch.cat(outputs)`` of per-step logits; its targets ``concat(Y[0], …)``): a
    transpose view and a reshape instead of T row reads and a join that grow with T."""
    for rec in draft.live():
        axis = rec.attrs.get("axis", 0)
        if rec.op not in ("stack", "concat") or len(rec.inputs) < 2 or not isinstance(axis, int) \
                or (rec.op == "stack" and axis == 0):
            continue
        whole = _stack_of_rows(draft, [draft.recs[i] for i in rec.inputs])
        new = None if whole is None else _moved(draft, whole, rec, axis)
        if new is not None and draft.recs[new].shape == rec.shape \
                and draft.recs[new].dtype == rec.dtype:
            draft.replace(rec.id, new)


def _moved(draft: Draft, whole: int, rec: Rec, axis: int) -> int | None:
    """``whole`` (the parts stacked on axis 0) as ``rec`` joins them along ``axis``."""
    ndim = len(draft.recs[whole].shape) - 1  # a part's rank
    stacked = rec.op == "stack"
    if not -(ndim + stacked) <= axis < ndim + stacked or (not stacked and ndim == 0):
        return None
    axis %= ndim + stacked
    moved = whole
    if axis:
        axes = (*range(1, axis + 1), 0, *range(axis + 1, ndim + 1))
        moved = draft.add("transpose", [whole], {"axes": axes}, name=rec.name + "/moved")
    if stacked:
        return moved
    shape = draft.recs[moved].shape
    target = (*shape[:axis], -1, *shape[axis + 2:])  # the steps' axis merged into the parts'
    if None in target:
        return None
    return draft.add("reshape", [moved], {"shape": target}, name=rec.name + "/joined")


def _concat_of_runs(draft: Draft, parts: list[Rec], stack: Rec) -> int | None:
    """``stack(a, X[0], …, X[n-1], b)`` -> ``concat(a[None], X[0:n], b[None])``: at most
    one value of its own on each side of one run of rows in order (a loss's first and
    last steps, handled apart, around its vectorized middle), so the stack's size no
    longer grows with T."""
    runs: list[tuple[int, int, int]] = []  # (first part, count, source)
    i = 0
    while i < len(parts):
        row = row_of(parts[i])
        j = i + 1
        if row is not None:
            while j < len(parts) and row_of(parts[j]) == (row[0], row[1] + j - i):
                j += 1
        if j - i >= 2:
            runs.append((i, j - i, row[0]))  # type: ignore[index]
        i = j
    if len(runs) != 1:
        return None
    first, count, source = runs[0]
    if first > 1 or len(parts) - first - count > 1:
        return None
    start = row_of(parts[first])[1]  # type: ignore[index]
    pieces = [draft.add("expand_dims", [p.id], {"axis": 0}, name=f"{stack.name}/head")
              for p in parts[:first]]
    pieces.append(draft.add("getitem", [source], {"index": ((start, start + count, None),)},
                            name=f"{stack.name}/rows"))
    pieces += [draft.add("expand_dims", [p.id], {"axis": 0}, name=f"{stack.name}/tail")
               for p in parts[first + count:]]
    joined = draft.add("concat", pieces, {"axis": 0}, name=stack.name)
    if draft.recs[joined].shape != stack.shape or draft.recs[joined].dtype != stack.dtype:
        return None
    return joined


def row_of(rec: Rec) -> tuple[int, int] | None:
    """``(source id, t)`` when ``rec`` is ``source[t]`` (one non-negative int index)."""
    index = rec.attrs.get("index") if rec.op == "getitem" and len(rec.inputs) == 1 else None
    if isinstance(index, tuple) and len(index) == 1 and type(index[0]) is int \
            and index[0] >= 0:
        return rec.inputs[0], index[0]
    return None


def _stack_of_rows(draft: Draft, parts: list[Rec]) -> int | None:
    """A node equal to ``stack(parts)`` built from whole arrays, if there is one."""
    first = parts[0]
    if first.op == "getitem":
        # Rows in time order, backwards (a loop run from the end) or every k-th one;
        # only non-negative indices (X[0], X[-1], … wraps around: not one slice).
        rows = [row_of(p) for p in parts]
        if rows[0] is None or rows[1] is None:
            return None
        source, start = rows[0]
        step = rows[1][1] - start
        count = len(parts)
        if step == 0 or any(r != (source, start + step * t) for t, r in enumerate(rows)):
            return None
        if step == 1 and start == 0 and draft.recs[source].shape[:1] == (count,):
            return source
        stop = start + step * count
        index = (start, stop, step) if step > 0 else (start, stop if stop >= 0 else None, step)
        return draft.add("getitem", [source], {"index": (index,)}, name=first.name + "/rows")
    if first.op == "sum_to" and all(p.op == "sum_to" for p in parts):
        values = _stack_of_rows(draft, [draft.recs[p.inputs[0]] for p in parts])
        likes = _stack_of_rows(draft, [draft.recs[p.inputs[1]] for p in parts])
        if values is None or likes is None or \
                len(draft.recs[values].shape) != len(draft.recs[likes].shape):
            return None
        return draft.add("sum_to", [values, likes], name=first.name + "/rows")
    return None


def _stack_row_gradients(draft: Draft) -> None:
    """``Σ_t getitem_grad(g_t, X, index=(t,))`` -> ``stack(g_0, …, g_{T-1})``.

    Reverse mode sums the gradients of the rows read from one array: each is a
    zero array of X's shape with one row filled, so T readers (per-step work no
    batch rule lifts) would cost T full arrays: quadratic in T. Their sum is
    the stack of the rows' gradients (a zero row where no step read one)."""
    live = draft.live()
    users = {rec.id: draft.readers(rec.id) for rec in live}
    for rec in live:
        if rec.op != "add" or rec.id not in draft.recs:
            continue
        readers = users.get(rec.id, ())
        if len(readers) == 1 and readers[0].op == "add":
            continue  # inside a larger sum: walked from its top
        terms, stack = [], [rec.id]
        while stack:
            rid = stack.pop()
            part = draft.recs[rid]
            if part.op == "add" and (rid == rec.id or len(users.get(rid, ())) == 1):
                stack.extend(part.inputs)
            else:
                terms.append(part)
        rows = _row_gradients(draft, terms)
        if rows is None:
            continue
        first = next(g for g in rows if g is not None)
        zero = None
        parts = []
        for g in rows:
            if g is None:
                zero = zero if zero is not None else draft.add("zeros_like", [first],
                                                               name=f"{rec.name}/zero_row")
                g = zero
            parts.append(g)
        draft.replace(rec.id, draft.add("stack", parts, {"axis": 0}, name=rec.name))


def _row_gradients(draft: Draft, terms: list[Rec]) -> list | None:
    """Per row t of one array, the gradient some term writes there (None: none), when
    every term is ``getitem_grad(g, X, index=(t,))`` of one X, each row at most once."""
    if len(terms) < 2 or any(t.op != "getitem_grad" for t in terms):
        return None
    like = terms[0].inputs[1]
    count = draft.recs[like].shape[:1]
    if len(count) != 1 or type(count[0]) is not int:
        return None
    rows: list = [None] * count[0]
    for term in terms:
        index = term.attrs.get("index")
        g = draft.recs[term.inputs[0]]
        if term.inputs[1] != like or not isinstance(index, tuple) or len(index) != 1 \
                or type(index[0]) is not int or not 0 <= index[0] < count[0] \
                or rows[index[0]] is not None or g.shape != draft.recs[like].shape[1:] \
                or g.dtype != term.dtype:
            return None
        rows[index[0]] = g.id
    return rows


def single_row_slices(draft: Draft) -> None:
    """``A[t:t+1]`` (a step that keeps the axis: unbatched code's ``Y[t:t+1]``) is
    ``A[t][None]``: row t, so it vectorizes like one."""
    for rec in draft.live():
        index = rec.attrs.get("index") if rec.op == "getitem" and len(rec.inputs) == 1 else None
        if not isinstance(index, tuple) or len(index) != 1 or not isinstance(index[0], tuple):
            continue
        start, stop, step = index[0]
        size = (*draft.recs[rec.inputs[0]].shape[:1], None)[0]
        if type(start) is int and type(size) is int and 0 <= start < size and stop == start + 1 \
                and step in (None, 1):  # (only rows known to exist: A[t] of none raises)
            row = draft.add("getitem", rec.inputs, {"index": (start,)}, name=f"{rec.name}/row")
            draft.replace(rec.id, draft.add("expand_dims", [row], {"axis": 0}, name=rec.name))

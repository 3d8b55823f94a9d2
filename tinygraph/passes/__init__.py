"""Pure graph -> graph rewrites that make a graph cheaper to run.

Each public pass takes a graph and the nodes that matter (``fetches``;
default: every node nothing reads) and returns a NEW graph computing the same
values; the input graph is untouched and ``validate()`` holds on the result.
Fetched nodes keep their names, so ``new.run("y", ...)`` works as before.

- :func:`cull`: drop nodes the fetches do not need.
- :func:`cse`: merge nodes computing the same op on the same inputs.
- :func:`fold_constants`: evaluate ops whose inputs are all consts.
- :func:`onehot_to_take`: ``one_hot(ids, n) @ M`` -> ``take(M, ids)``.
- :func:`bias_into_table`: ``take(M, ids) + b`` -> ``take(M + b, ids)`` (one bias
  add on the small table instead of on every looked-up row).
- :func:`unstack_rows`: a stack of the rows of one array -> that array.
- :func:`reroll`: the T proved-identical steps of an unrolled loop -> one ``scan``
  (steps proposed by :mod:`tinygraph.passes.steps`, proved by
  :mod:`tinygraph.passes.reroll`).
- :func:`hoist`: the carry-free work of every scan body out of its loop, batched
  over the steps through each op's batch rule (:mod:`tinygraph.core.batch_rules`);
  per-step heads sink after the loop onto the stacked values.
- :func:`body_cse`: equal nodes inside every scan body merged (a cell that writes
  ``h @ W`` twice computes it once per step).
- :func:`slice_sums`: ``(h @ W + b)[:, k]`` in a scan body becomes
  ``(h @ W)[:, k] + b[k]``, so the bias joins the hoisted input projection.
- :func:`fuse_cross_entropy`: a loss and its gradient computed from one softmax.
- :func:`regrad`: ``tg.grad`` results rebuilt on the rerolled forward, so the
  backward is a reverse scan (plans call it before :func:`optimize`'s passes).
- :func:`optimize`: reroll, vectorize what reads the loop's rows, hoist, sink,
  accumulate gradient sums, tidy the loops, the ``recurrence`` kernel rule
  (:mod:`tinygraph.passes.kernels`), then folding, adds of zeros, CSE and the two
  lookups; last,
  whole-sequence products and their biases as one ``affine`` (:mod:`tinygraph.passes.affine`).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(2,))
>>> y = tg.tanh(x * 2.0) + tg.tanh(x * 2.0)
>>> from tinygraph import passes
>>> len(g), len(passes.cse(g, [y]))
(8, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.graph import Graph
from ..core.node import Node
from ..core.op import OPS, bind_forward
from ..core.traverse import Fetches
from .accumulate import accumulate_pass, contract_pass
from .affine import affine_pass
from .body_cse import body_cse_pass
from .common_subexpr import cse_pass as _cse
from .concat_slices import concat_slices_pass
from .draft import Draft, Rec
from .fused_loss import fuse_cross_entropy_pass
from .hoist import hoist_pass
from .joins import join_slice_sums_pass
from .kernels import recurrence_kernel_pass
from .lerp import lerp_pass
from .likes import stored_likes_pass
from .regrad import regrad
from .reroll import reroll_pass
from .rows import unstack_rows as _unstack_rows
from .running import running_sums_pass
from .sequence import sequence_view
from .sink import reassociate_pass, sink_pass
from .slices import slice_sums_pass
from .split import split_joined_products_pass
from .stored_concats import stored_concats_pass
from .tidy import saved_carries_pass, tidy_pass, unread_outputs_pass
from .vectorize import vectorize_pass

__all__ = ["cull", "cse", "fold_constants", "onehot_to_take", "bias_into_table", "unstack_rows",
           "reroll", "hoist", "body_cse", "slice_sums", "fuse_cross_entropy", "sequence_view",
           "regrad", "optimize", "rewrite"]

_FOLD_MAX_ELEMENTS = 1 << 20  # a folded const larger than this would cost more memory than time

Pass = Callable[[Draft], None]


def rewrite(graph: Graph, fetches: Any, passes: list[Pass]) -> tuple[Graph, list[Node]]:
    """Apply ``passes`` to a draft of ``fetches``' ancestors; the new graph and fetch nodes."""
    roots = Fetches(graph, fetches).nodes if fetches is not None else _sinks(graph)
    draft = Draft(graph, roots)
    for apply in passes:
        apply(draft)
    return draft.build()


def _sinks(graph: Graph) -> list[Node]:
    read = {src.index for node in graph.nodes.values() for src in node.inputs}
    return [node for node in graph.nodes.values() if node.index not in read]


def _public(passes: list[Pass], doc: str) -> Callable[..., Graph]:
    def run_pass(graph: Graph, fetches: Any = None) -> Graph:
        return rewrite(graph, fetches, passes)[0]

    run_pass.__doc__ = doc
    return run_pass


# ---------------------------------------------------------- constant folding


def _fold(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op in OPS and rec.inputs and all(
            draft.recs[i].op == "const" for i in rec.inputs
        ):
            if None in rec.shape or int(np.prod(rec.shape)) > _FOLD_MAX_ELEMENTS:
                continue
            args = [draft.recs[i].attrs["value"] for i in rec.inputs]
            try:
                with np.errstate(all="ignore"):
                    value = bind_forward(rec.op, rec.attrs,
                                         [draft.recs[i].dtype for i in rec.inputs],
                                         rec.dtype)(*args)
            except Exception:  # noqa: BLE001 - a failing fold is left for run time to report
                continue
            draft.replace(rec.id, draft.add_const(np.asarray(value, dtype=rec.dtype),
                                                  name=rec.name))


def _zero_adds(draft: Draft) -> None:
    """``zeros_like(a) + b`` -> ``b`` when ``b`` already has the sum's (known) shape and dtype.

    Gradients start as zeros that a sum is added to (a param's gradient carried
    through a loop whose terms all moved out of it): the add copies ``b`` for nothing.
    ``b`` must be computed here (not an input, param or const, which the caller
    would then receive itself) and not fetched already (two results, one array).
    """
    for rec in draft.live():
        if rec.op != "add" or None in rec.shape:
            continue
        for zero, other in (rec.inputs, rec.inputs[::-1]):
            kept = draft.recs[other]
            if (draft.recs[zero].op == "zeros_like" and kept.shape == rec.shape
                    and kept.dtype == rec.dtype and other not in draft.root_set
                    and kept.op not in ("input", "param", "const")):
                draft.replace(rec.id, other)
                break


# ------------------------------------------------------- one_hot @ M -> take


def _onehot_take(draft: Draft) -> None:
    for rec in draft.live():
        if rec.op != "matmul":
            continue
        left, right = (draft.recs[i] for i in rec.inputs)
        if (left.op == "one_hot" and len(right.shape) == 2 and right.dtype == rec.dtype
                and left.attrs["depth"] == right.shape[0] and len(left.shape) >= 1):
            ids = left.inputs[0]
            draft.replace(rec.id, draft.add("take", [right.id, ids], {"axis": 0},
                                            name=rec.name + "/take", meta=rec.meta))
            continue
        hot = _transposed_one_hot(draft, left)
        if (hot is not None and len(right.shape) == 2 and None not in right.shape[1:]
                and right.dtype == rec.dtype == hot.dtype):
            # one_hot(ids)ᵀ @ G: the gradient of a lookup, a scatter-add of G's rows into
            # a table; the like only carries the table's shape (a zero-strided const).
            flat = draft.add("reshape", [hot.inputs[0]], {"shape": (-1,)}, name="opt/ids")
            like = draft.add_const(np.broadcast_to(np.zeros((), rec.dtype), rec.shape),
                                   name="opt/table_shape")
            draft.replace(rec.id, draft.add("take_grad", [right.id, flat, like], {"axis": 0},
                                            name=rec.name, meta=rec.meta))


def _transposed_one_hot(draft: Draft, rec: Rec) -> Rec | None:
    """The ``one_hot`` node when ``rec`` is its transpose, as a (n, depth) matrix."""
    if rec.op != "transpose" or rec.attrs.get("axes") not in (None, (1, 0)):
        return None
    inner = draft.recs[rec.inputs[0]]
    if inner.op == "reshape" and inner.attrs.get("shape") in ((-1, inner.shape[-1]),):
        inner = draft.recs[inner.inputs[0]]
    if inner.op != "one_hot" or inner.attrs["depth"] != rec.shape[0]:
        return None
    return inner


def _bias_into_table(draft: Draft) -> None:
    """``take(M, ids) + k`` -> ``take(M + k, ids)`` when k broadcasts along M's rows.

    Exact (each picked element gets the same single addition) and the add
    runs on the small table instead of on every picked row.
    """
    for rec in draft.live():
        if rec.op != "add":
            continue
        for t, k in (rec.inputs, rec.inputs[::-1]):
            table_take, bias = draft.recs[t], draft.recs[k]
            if table_take.op != "take" or table_take.attrs.get("axis", 0) != 0:
                continue
            table = draft.recs[table_take.inputs[0]]
            row = table.shape[1:]
            if (len(draft.users[t]) == 1 and bias.op in ("param", "const")
                    and len(bias.shape) <= len(row) and bias.dtype == table.dtype == rec.dtype
                    and _row_fits(bias.shape, row)):
                shifted = draft.add("add", [table.id, k], name=table.name + "/plus_bias")
                draft.replace(rec.id, draft.add("take", [shifted, table_take.inputs[1]],
                                                {"axis": 0}, name=rec.name, meta=rec.meta))
                break


def _row_fits(small: tuple, row: tuple) -> bool:
    """Broadcasting ``small`` against one row leaves the row's (known) shape unchanged."""
    pairs = zip(reversed(small), reversed(row), strict=False)
    return None not in row and all(a in (1, b) for a, b in pairs)


cull = _public([], "Drop the nodes ``fetches`` do not need.")
cse = _public([_cse], "Merge nodes that compute the same op on the same inputs.")
fold_constants = _public([_fold], "Replace ops whose inputs are all consts by their value.")
onehot_to_take = _public([_onehot_take], "Rewrite ``one_hot(ids, n) @ M`` to ``take(M, ids)``.")
bias_into_table = _public([_bias_into_table], "``take(M, ids) + b`` -> ``take(M + b, ids)``.")
unstack_rows = _public([_unstack_rows], "``stack(X[0], …, X[T-1])`` -> ``X`` (through sum_to).")
reroll = _public([reroll_pass], "T copies of a step -> one ``scan`` node (proved isomorphic).")
body_cse = _public([body_cse_pass], "Merge equal nodes inside every scan body.")
slice_sums = _public([slice_sums_pass],
                     "Slices of a sum with a carry-free term in scan bodies, term by term.")
fuse_cross_entropy = _public([fuse_cross_entropy_pass],
                             "A cross-entropy and its gradient from one softmax.")
hoist = _public([reassociate_pass, hoist_pass, sink_pass],
                "Carry-free work of every scan body out of its loop, batched over steps.")
# Reroll into scan first (before CSE merges the steps' equal consts); stacks of its rows
# read the stacked outputs; per-step work outside the loop vectorizes; hoist and sink
# around the loop; one fused kernel for plain recurrences; then the local rewrites.
# The loop passes run twice: tidying the backward scan (inputs it no longer reads) leaves
# forward outputs unread, and without them the forward body regroups and hoists further.
_LOOP_PASSES: list[Pass] = [unread_outputs_pass, body_cse_pass, lerp_pass,
                            split_joined_products_pass,
                            slice_sums_pass, reassociate_pass, hoist_pass, accumulate_pass,
                            sink_pass, contract_pass, stored_likes_pass, tidy_pass,
                            saved_carries_pass, stored_concats_pass]
OPTIMIZE_PASSES: list[Pass] = [reroll_pass, _unstack_rows, running_sums_pass, _cse, vectorize_pass,
                               *_LOOP_PASSES, *_LOOP_PASSES, join_slice_sums_pass,
                               recurrence_kernel_pass, concat_slices_pass,
                               _fold, _zero_adds, _cse, _onehot_take, _bias_into_table, _cse,
                               fuse_cross_entropy_pass, affine_pass]
optimize = _public(OPTIMIZE_PASSES, "All passes: reroll, hoist, sink, kernels, fold, CSE, lookups.")

"""Input projections a loop computes a step at a time, or all at once, by batch size.

The optimizer hoists a loop's input projection out of its body
(:mod:`tinygraph.passes.hoist`): ``x_t @ W + b`` for every step becomes one
``affine(X, W, b)`` over the whole (T, B, D) sequence, read by the scan one row
at a time. Which is faster depends on the rows per step:

- few rows (B = 1 .. 8): one large product instead of T small ones saves T
  calls' overhead, and the result is small. A GRU forward at B = 1 runs
  0.59 of a numpy loop hoisted against 0.80 in the loop.
- more rows (B >= 16): the calls cost little next to their arithmetic, and the
  hoisted (T, B, n) result is megabytes written to memory and read back, while
  a step's rows stay in cache when the step computes them. Measured side by
  side on a 2-core Xeon (one BLAS thread, three processes), the docs'
  MinimalGatedUnit forward at B = 32 ran 0.88-0.90 of the numpy loop in the loop
  against 0.94-0.98 hoisted (B = 16: 0.86-0.87 against 0.89-0.91; B = 64: 0.95
  against 1.05; B = 8: a tie, 0.77-0.80 against 0.76-0.79).

So a plan keeps the choice until it runs: :func:`fuse_projections` hands the
scan the projection's operands instead of its result, and the scan (through
:func:`project`) computes the whole product when a step has fewer than
:data:`LOOP_MIN_ROWS` rows, else gives the loop a :class:`ProjectedRows`
whose row ``t`` is computed when the step reads it (for weights up to
:data:`LOOP_MAX_WEIGHT_BYTES`: see there). The choice depends on
shapes alone, so a given input always takes the same path; both compute the
same product (the bias in it as a row of ``W`` where ``affine`` puts it there),
which OpenBLAS sums in the same order for one row block or many.

>>> import numpy as np
>>> x, w, b = np.ones((3, 2, 4)), np.ones((4, 5)), np.arange(5.0)
>>> rows = ProjectedRows(x, w, b)
>>> len(rows), rows.shape, rows[1].tolist() == (x[1] @ w + b).tolist()
(3, (3, 2, 5), True)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.forwards import dot
from ..core.prim_affine import affine_forward, bias_as_row, bias_in_product, stacked_product

__all__ = ["LOOP_MAX_WEIGHT_BYTES", "LOOP_MIN_ROWS", "ProjectedRows", "fuse_projections",
           "project"]

# Rows per step from which a loop computes its input projection a step at a time.
LOOP_MIN_ROWS = 16
# ...and whose weights are at most this large: a product of few rows packs all of ``W``
# for each call, so a wide projection (a GRU's 64 x 768, 384 KiB) costs more a step at
# a time than once (GRU and LSTM at B = 32: 2-3 % slower in the loop), a narrow one
# (the MinimalGatedUnit's two 64 x 128, 64 KiB each) less.
LOOP_MAX_WEIGHT_BYTES = 128 * 1024
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


class ProjectedRows:
    """``x @ w (+ b)`` for a (T, rows, k) sequence ``x``, row ``t`` computed when read.

    ``reuse``: the row is computed into one buffer reused by every step (only where
    nothing the step returns can alias it); else into a new array per step.
    """

    def __init__(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 reuse: bool = False):
        k, n = w.shape
        self.shape = (*x.shape[:-1], n)
        self.ndim = len(self.shape)
        self.dtype = np.result_type(x, w) if b is None else np.result_type(x, w, b)
        if b is not None and bias_in_product(math.prod(x.shape[:-1]), k, n):
            # The bias as a row of the weights where affine_forward puts it there for the
            # whole product (the same sizes decide): the two paths compute alike.
            (self._x, self._w), self._b = bias_as_row(x, w, b), None
        else:
            self._x, self._w, self._b = x, w, b
        self._out = np.empty(self.shape[1:], self.dtype) if reuse else None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        out = self._out
        row = dot(self._x[t], self._w) if out is None else dot(self._x[t], self._w, out)
        if self._b is not None:
            np.add(row, self._b, out=row)
        return row


def project(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, reuse: bool) -> Any:
    """The sequence ``x @ w (+ b)``: whole when a step has few rows, else by rows."""
    if (x.ndim == 3 and w.ndim == 2 and len(x) > 0 and x.shape[1] >= LOOP_MIN_ROWS
            and w.nbytes <= LOOP_MAX_WEIGHT_BYTES and x.dtype in _FLOATS and x.dtype == w.dtype
            and (b is None or b.dtype == x.dtype and b.size == w.shape[1])):
        return ProjectedRows(x, w, None if b is None else b.reshape(-1), reuse)
    return stacked_product(x, w) if b is None else affine_forward(x, w, b)


def fuse_projections(steps: list, fetch_slots: Sequence[int]) -> list:
    """``steps`` with each scan reading the operands of the projections only it reads.

    A step ``P = affine(X, W, b)`` (or ``X @ W``) whose result only a scan reads,
    as one of its sequences, leaves the list; the scan step reads ``X`` in its
    place and ``W`` (and ``b``) after its own arguments, and its kernel is told
    (:meth:`~tinygraph.exec.scan.ScanKernel.project_inputs`). An operand that
    died before the scan (at ``P``, or at a later reader) dies at the scan instead.
    """
    producer = {step.out: i for i, step in enumerate(steps)}
    readers = Counter(a for step in steps for a in step.args)
    fetched = set(fetch_slots)
    args = [list(step.args) for step in steps]
    frees = [list(step.frees) for step in steps]
    freed_at = {slot: i for i, step in enumerate(steps) for slot in step.frees}
    dropped: set[int] = set()
    for i, step in enumerate(steps):
        node = step.node
        if node.op != "scan" or not hasattr(step.forward, "project_inputs"):
            continue
        k, m = node.attrs["num_carry"], node.attrs["num_xs"]
        projected, extra = [], []
        for j in range(m):
            slot = args[i][k + j]
            p = producer.get(slot)
            if p is None or p in dropped or readers[slot] != 1 or slot in fetched:
                continue
            source = steps[p]
            if not _projection(source.node):
                continue
            args[i][k + j] = source.args[0]
            extra.extend(source.args[1:])
            if slot in frees[i]:  # the projection's result: never made now
                frees[i].remove(slot)
            for operand in source.args:
                f = freed_at.get(operand)
                if f is not None and f < i and operand in frees[f]:
                    frees[f].remove(operand)
                    frees[i].append(operand)
                    freed_at[operand] = i
            projected.append((j, len(source.args) == 3))
            dropped.add(p)
        if projected:
            step.forward.project_inputs(projected)
            args[i].extend(extra)
    return [replace(step, args=tuple(args[i]), frees=tuple(frees[i]))
            for i, step in enumerate(steps) if i not in dropped]


def _projection(node: Any) -> bool:
    """A (T, rows, k) @ (k, n) product, with or without a bias along its rows."""
    if node.op not in ("affine", "matmul"):
        return False
    x, w = node.inputs[:2]
    same = {x.dtype, w.dtype} | ({node.inputs[2].dtype} if node.op == "affine" else set())
    return (len(x.shape) == 3 and len(w.shape) == 2 and len(same) == 1
            and x.dtype in _FLOATS
            and (node.op == "matmul" or len(node.inputs[2].shape) <= 2
                 and all(d == 1 for d in node.inputs[2].shape[:-1])))

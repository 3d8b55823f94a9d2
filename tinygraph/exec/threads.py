"""How many BLAS threads a plan's matmuls use, chosen per call.

OpenBLAS (numpy's BLAS) splits every matmul above a small size over all
cores, and its threads spin while they wait. For the matmuls of a small
model (a (800, 64) @ (64, 66) projection) splitting costs more than it
saves, and on a busy machine the spinning threads fight the other work:
measured on 2 cores with two other processes running, a 600-step char LM
took 13-22 s with two threads and 1.6 s with one. So each call of a plan
(``g.run``, ``g.compile``'s function, ``CharLM.train`` around its whole
loop) runs under a thread count chosen here, through ``threadpoolctl``,
and the count in force before the call is restored after it:

- a plan whose largest matmul does fewer than ``BIG_MATMUL`` multiply-adds
  (m·k·n per BLAS call) runs with one thread;
- a plan with a bigger matmul keeps the count in force, unless the machine
  is busy (1-minute load average above the number of cores), then one;
- ``tg.set_blas_threads(n)``, the ``TINYGRAPH_BLAS_THREADS`` environment
  variable or a ``with tg.blas_threads(n):`` block choose ``n`` instead.

The automatic choice never raises the count in force, so an outer
``threadpoolctl.threadpool_limits(...)`` or ``OPENBLAS_NUM_THREADS`` still
caps it. A plan without BLAS work is called directly (no cost at all);
switching the count costs about 4 µs per call (the ``threadpoolctl`` context
manager itself re-scans the loaded libraries, ~350 µs, so the library
handles are found once per process and set directly).

>>> import numpy as np, tinygraph as tg
>>> g = tg.Graph()
>>> x = g.input("x", shape=(None, 4))
>>> y = x @ g.param("W", np.ones((4, 4)))
>>> with tg.blas_threads(1):             # every plan in the block: one thread
...     g.run(y, feeds={"x": np.ones((1, 4))})
array([[4., 4., 4., 4.]])
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import GraphError

__all__ = ["BIG_MATMUL", "blas_threads", "set_blas_threads", "get_blas_threads",
           "threads_for", "call_with_threads", "scoped_threads", "blas_work"]

#: Multiply-adds of one BLAS call from which more than one thread may pay off.
#: Measured on 2 cores: (1000, 128) @ (128, 128) (16 M) gains 2.5x from a second
#: thread on a quiet machine, (800, 64) @ (64, 66) (3.4 M) loses 30x on a busy one.
BIG_MATMUL = 1 << 24
_ENV = "TINYGRAPH_BLAS_THREADS"
_BLAS_OPS = ("matmul", "recurrence", "reverse_recurrence")

_override: int | None = None  # set_blas_threads / blas_threads; None: the automatic policy
_lock = threading.Lock()
_local = threading.local()  # depth of nested scopes in this thread


def _check_count(n: Any, where: str) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GraphError(f"{where}: the number of BLAS threads must be an int >= 1 or None "
                         f"(automatic), got {n!r}")
    return n


def set_blas_threads(n: int | None) -> None:
    """Use ``n`` BLAS threads in every plan call from now on; ``None``: choose per plan.

    >>> import tinygraph as tg
    >>> tg.set_blas_threads(1); tg.get_blas_threads()
    1
    >>> tg.set_blas_threads(None); tg.get_blas_threads() is None
    True
    """
    global _override
    _override = _check_count(n, "set_blas_threads")


def get_blas_threads() -> int | None:
    """The count set by :func:`set_blas_threads` or ``TINYGRAPH_BLAS_THREADS``; None: automatic."""
    if _override is not None:
        return _override
    value = os.environ.get(_ENV, "").strip()
    if not value or value.lower() == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise GraphError(f"{_ENV} must be an int >= 1 or 'auto', got {value!r}")
    return int(value)


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Within the block every plan call uses ``n`` BLAS threads (``None``: automatic)."""
    global _override
    chosen = _check_count(n, "blas_threads")
    before = _override
    _override = chosen
    try:
        yield
    finally:
        _override = before


# ------------------------------------------------------------------ the BLAS libraries
class _Blas:
    """The loaded BLAS libraries' thread controls, found once (finding them costs ~0.3 ms)."""

    def __init__(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController
            self.libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # no threadpoolctl or an unknown BLAS: leave threads alone
            self.libs = []

    def get(self) -> int:
        return min((lib.num_threads for lib in self.libs), default=1)

    def set(self, n: int) -> None:
        for lib in self.libs:
            lib.set_num_threads(n)


_blas: _Blas | None = None


def _libs() -> _Blas:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = _Blas()
    return _blas


_load = {"at": -math.inf, "busy": False}


def _busy() -> bool:
    """Whether other work keeps the cores busy (the 1-minute load, read at most once a second)."""
    now = time.monotonic()
    if now - _load["at"] > 1.0:
        try:
            _load["busy"] = os.getloadavg()[0] > (os.cpu_count() or 1)
        except OSError:  # not available on this system
            _load["busy"] = False
        _load["at"] = now
    return bool(_load["busy"])


# ------------------------------------------------------------------ the policy
def blas_work(graph: Any, order: Any = None) -> tuple[int, bool]:
    """The most multiply-adds one BLAS call of these nodes does, and whether a size was unknown.

    ``order``: the nodes to look at (default: all of ``graph``); scan bodies
    are searched too. Unknown sizes (``None``) count as 1.
    """
    biggest, unknown = 0, False
    pending = [list(graph.nodes.values()) if order is None else list(order)]
    while pending:
        for node in pending.pop():
            if node.op == "scan":
                pending.append(list(node.attrs["body"].nodes.values()))
            if node.op not in _BLAS_OPS or not node.inputs:
                continue
            out = node.shape if node.op == "matmul" else node.shape[1:]  # per step of T
            k = node.inputs[0].shape[-1] if node.inputs[0].shape else 1
            dims = [*out, k]
            unknown = unknown or None in dims
            biggest = max(biggest, math.prod(d for d in dims if d is not None))
    return biggest, unknown


def threads_for(plan: Any) -> int | None:
    """The BLAS threads a call of ``plan`` should use; None: do not touch the count."""
    chosen = get_blas_threads()
    if chosen is not None:
        return chosen
    work = getattr(plan, "_blas_work", None)
    if work is None:
        work = plan._blas_work = blas_work(plan.graph, plan.order)
    biggest, unknown = work
    if biggest == 0:
        return None  # no BLAS call at all: nothing to choose
    if biggest < BIG_MATMUL and not unknown:
        return 1
    return 1 if _busy() else None


@contextmanager
def scoped_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads (``None``: as is); the count before is restored.

    Only the outermost scope of a thread switches, so a plan called inside
    ``CharLM.train``'s scope does not pay again.
    """
    depth = getattr(_local, "depth", 0)
    if n is None or depth:
        _local.depth = depth + 1
        try:
            yield
        finally:
            _local.depth = depth
        return
    blas = _libs()
    before = blas.get()
    switch = n != before and bool(blas.libs)
    if switch:
        blas.set(n)
    _local.depth = 1
    try:
        yield
    finally:
        _local.depth = 0
        if switch:
            blas.set(before)


def call_with_threads(plan: Any, run: Callable[[], Any]) -> Any:
    """``run()`` under the thread count :func:`threads_for` chooses for ``plan``."""
    n = threads_for(plan)
    depth: int = getattr(_local, "depth", 0)
    if n is None or depth:
        return run()
    with scoped_threads(n):
        return run()

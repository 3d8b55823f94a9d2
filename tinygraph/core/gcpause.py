"""Building large graphs with Python's cyclic garbage collector paused.

Building a graph allocates many small container objects (nodes, their
attribute dicts, tuples of inputs), and CPython runs a cyclic collection
every few hundred allocations; in a process that already holds many objects
its full scans dominate. Measured: unrolling 10,000 steps (90,000 nodes) took
1.29 s with the collector on, 0.79 s paused, next to two million live dicts.
Nothing built there is garbage yet, so pausing loses nothing; the collector
is switched back on afterwards (only if it was on: nesting is safe).

>>> import gc
>>> with gc_paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import contextlib
import gc
import threading

__all__ = ["gc_paused"]


_lock = threading.Lock()
_depth = 0  # how many gc_paused blocks are open, in all threads
_was_enabled = False  # the collector's state when the first of them opened


class gc_paused(contextlib.ContextDecorator):  # noqa: N801 - used like a function
    """Context manager and decorator: the cyclic GC is off inside.

    One decorator instance may be entered by several threads at once, so the
    state lives in a process-wide count, not on the instance: the first block
    to open records whether the collector was on, the last to close restores it.
    """

    def __enter__(self) -> gc_paused:
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()

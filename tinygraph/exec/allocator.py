"""Keep freed array memory mapped: glibc's malloc tuned once, when the first plan is built.

A plan's large temporaries (a (T·B, V) softmax, a (B, 4H) gate block) are
allocated and freed on every call. With glibc's defaults a freed block above
its trim threshold is handed back to the kernel, and the next allocation of
the same size faults on every 4 KiB page again: on this project's virtual
machine a first touch costs about 3 µs per page, so ``np.exp`` of a fresh
(800, 66) array took 357 µs against 28 µs for the arithmetic. Raising the
trim threshold to 64 MiB and fixing the mmap threshold at 32 MiB (glibc's own
ceiling for its adaptive threshold) keeps up to 64 MiB of freed memory ready
for reuse; arrays above 32 MiB still come straight from the kernel and go
back when freed. Measured in one process: a CharLM training step 2.47 ms ->
1.84 ms, the MinimalGatedUnit forward+backward 1.14 -> 0.73 of a PyTorch eager
loop. A plan whose temporaries add up to more raises the trim threshold to
their total after its first run (:func:`keep_freed`, at most 1 GiB).

This is process-wide (PyTorch keeps a caching allocator for the same
reason), so it is explicit: set ``TINYGRAPH_MALLOC_TUNING=0`` before the first
plan is built to leave malloc alone. Anything but glibc (musl, macOS,
Windows) is left alone as well.

>>> from tinygraph.exec.allocator import tune_allocator
>>> tuned = tune_allocator()   # once per process; False where malloc is left alone
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Any

__all__ = ["tune_allocator", "keep_freed", "TRIM_THRESHOLD", "MMAP_THRESHOLD", "KEEP_MAX"]

TRIM_THRESHOLD = 64 << 20
MMAP_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>

# A plan whose temporaries add up to more keeps that much freed memory mapped, up to this.
KEEP_MAX = 1 << 30

_state: dict[str, Any] = {}


def tune_allocator() -> bool:
    """Apply the thresholds above once per process; whether malloc is (now) tuned."""
    if "tuned" not in _state:
        _state["tuned"] = _tune()
    return _state["tuned"]


def keep_freed(nbytes: int) -> bool:
    """Raise the trim threshold so ``nbytes`` of freed memory stay mapped (never lowered,
    at most :data:`KEEP_MAX`); whether it was raised.

    A plan calls it after its first run with the bytes of all its step results: a large
    training plan (a GRU at T=100, B=32, H=256) frees more than 64 MiB at the top of
    the heap at the end of every call, and with the threshold at 64 MiB glibc returned
    it to the kernel, so the next call faulted ~4,300 pages in again (116 against 107
    ms a call; an LSTM 160 against 135 ms).
    """
    want = min(max(int(nbytes), TRIM_THRESHOLD), KEEP_MAX)
    if not tune_allocator() or want <= _state.get("trim", TRIM_THRESHOLD):
        return False
    if not _state["mallopt"](_M_TRIM_THRESHOLD, want):
        return False
    _state["trim"] = want
    return True


def _tune() -> bool:
    if os.environ.get("TINYGRAPH_MALLOC_TUNING", "1").strip() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _state["mallopt"] = mallopt
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))

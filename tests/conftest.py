"""Suite-wide check: every graph any test runs is run both ways.

Each ``Graph.run`` with the default optimized plan (and each ``call_checked`` of a
compiled plan, ``UnrolledRNN.run``'s way in) is repeated with the plain
interpreter (``optimize=False``), the reference, and the two results must
agree to 1e-12 — so the rewrite passes are tested on every graph of the suite,
not only on the graphs written for them.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.exec.compiled import CompiledGraph

_original_run = tg.Graph.run


def _assert_close(fast, slow, where: str) -> None:
    if isinstance(fast, dict):
        assert fast.keys() == slow.keys(), where
        for key in fast:
            _assert_close(fast[key], slow[key], where)
    elif isinstance(fast, list | tuple):
        assert len(fast) == len(slow), where
        for a, b in zip(fast, slow, strict=True):
            _assert_close(a, b, where)
    else:
        a, b = np.asarray(fast), np.asarray(slow)
        assert a.shape == b.shape and a.dtype == b.dtype, where
        # atol: sums reassociated by the passes may cancel to ~1e-17 instead of 0.
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=where)


def _run_both_ways(self, fetches, feeds=None, optimize=True, check_finite=False):
    result = _original_run(self, fetches, feeds, optimize=optimize, check_finite=check_finite)
    # A memory test measures one run only.
    if optimize and not check_finite and not tracemalloc.is_tracing():
        reference = _original_run(self, fetches, feeds, optimize=False)
        _assert_close(result, reference, f"optimized vs interpreter on graph '{self.name}'")
    return result


_original_call_checked = CompiledGraph.call_checked


def _call_checked_both_ways(self, fed):
    # The lean entry point front ends use (UnrolledRNN.run): checked the same way.
    result = _original_call_checked(self, fed)
    if self.finite is None and not tracemalloc.is_tracing():
        reference = _original_run(self.graph, self.fetches, fed, optimize=False)
        _assert_close(result, reference,
                      f"compiled plan vs interpreter on graph '{self.graph.name}'")
    return result


@pytest.fixture(autouse=True)
def optimized_equals_interpreter(monkeypatch):
    monkeypatch.setattr(tg.Graph, "run", _run_both_ways)
    monkeypatch.setattr(CompiledGraph, "call_checked", _call_checked_both_ways)


@pytest.fixture(autouse=True)
def tanh_from_exp_in_plans(monkeypatch):
    """Plans compute large float64 tanh steps from exp on every machine, as on one where
    that was timed faster (tinygraph/core/fast_tanh.py): the suite then runs the same
    code and gets the same values wherever it runs, whatever a timing would say."""
    from tinygraph.core import fast_tanh

    monkeypatch.setattr(fast_tanh, "_measured", lambda: True)
    monkeypatch.delenv(fast_tanh.EXACT_TANH_ENV, raising=False)


@pytest.fixture
def small_buffers(monkeypatch):
    """Plans keep buffers from 32 KiB on, as without malloc tuning: tests of the buffered
    path (aliasing, threads) then run it with arrays of test size."""
    from tinygraph.exec import buffers

    monkeypatch.setattr(buffers, "TUNED_BUFFER_MIN_BYTES", buffers.BUFFER_MIN_BYTES)

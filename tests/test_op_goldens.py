"""tinygraph's ops against PyTorch on cases ported from tinygrad's op tests.

``tests/data/op_goldens.npz`` holds PyTorch's outputs and the gradients of
``sum(out * w)`` for each case of ``tests/op_cases.py`` (made by
``tests/data/make_op_goldens.py``). Here the same inputs go through the
tinygraph expression in float32, on the compiled plan and on the
interpreter, and both must match PyTorch within tinygrad's tolerances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from op_cases import CASES, inputs

import tinygraph as tg

GOLDEN = np.load(Path(__file__).parent / "data" / "op_goldens.npz", allow_pickle=False)


def test_the_golden_file_covers_every_case():
    stored = {key.split("/")[0] for key in GOLDEN.files}
    assert stored == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_pytorch(name):
    case = CASES[name]
    xs = inputs(name, case)
    for k, x in enumerate(xs):  # the same inputs the generator drew
        np.testing.assert_array_equal(x, GOLDEN[f"{name}/x{k}"])
    g = tg.Graph(name)
    nodes = [g.input(f"x{k}", shape=x.shape, dtype=x.dtype.name) for k, x in enumerate(xs)]
    out = case.tg_fn(*nodes)
    feeds = {f"x{k}": x for k, x in enumerate(xs)}
    fetches = [out]
    floats = [n for n in nodes if n.dtype.kind == "f"] if case.grad else []
    if case.grad:
        w = GOLDEN[f"{name}/w"]
        assert out.dtype == np.float32, out.dtype
        fetches += tg.grad(tg.sum(out * w), floats)
    for optimize in (True, False):
        got = g.run(fetches, feeds, optimize=optimize)
        np.testing.assert_allclose(np.asarray(got[0], dtype=np.float64), GOLDEN[f"{name}/out"],
                                   atol=case.atol, rtol=case.rtol, err_msg=f"{name} forward")
        for node, value in zip(floats, got[1:], strict=True):
            k = nodes.index(node)
            assert value.dtype == np.float32
            np.testing.assert_allclose(value, GOLDEN[f"{name}/g{k}"], atol=case.grad_atol,
                                       rtol=case.grad_rtol, err_msg=f"{name} d/d x{k}")

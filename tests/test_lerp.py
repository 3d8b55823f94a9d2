"""Gated mixes inside scan bodies: ``(1 - a) * b + a * c`` runs as ``b + a * (c - b)``."""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.passes.draft import Draft
from tinygraph.passes.lerp import lerp_pass

RNG = np.random.default_rng(7)


def _scan_ops(draft):
    scan = next(r for r in draft.live() if r.op == "scan")
    return sorted(n.op for n in scan.attrs["body"].nodes.values()
                  if n.op in ("add", "sub", "mul"))


@pytest.mark.parametrize("order", range(4))
def test_every_operand_order_is_rewritten_and_gives_the_numpy_values(order):
    g = tg.Graph()
    W = g.param("W", RNG.normal(size=(3, 3)) * 0.5)

    def step(h, x):
        z, c = tg.sigmoid(h @ W + x), tg.tanh(x - h)
        keep, take = (1.0 - z) * h, z * c
        if order & 1:
            keep = h * (1.0 - z)
        if order & 2:
            take = c * z
        return (keep + take if order < 2 else take + keep), None

    h, _ = tg.scan(step, g.input("h0", shape=(None, 3)), g.input("xs", shape=(None, None, 3)))
    draft = Draft(g, [h])
    lerp_pass(draft)
    assert _scan_ops(draft) == ["add", "add", "mul", "sub", "sub"]  # +x, mix; @W-x, c-h; z*
    xs, h0 = RNG.normal(size=(20, 4, 3)), RNG.normal(size=(4, 3))
    s = h0
    for x in xs:
        z = 1 / (1 + np.exp(-(s @ W.value + x)))
        s = (1 - z) * s + z * np.tanh(x - s)
    np.testing.assert_allclose(g.run(h, {"xs": xs, "h0": h0}), s, rtol=1e-12)


def test_a_stored_gate_complement_is_left_as_written():
    # (1 - z) is a per-step output too (a backward loop would read it): rewriting would
    # compute it anyway, so the mix keeps its four ops.
    g = tg.Graph()

    def step(h, x):
        z = tg.sigmoid(x)
        keep = 1.0 - z
        return keep * h + z * tg.tanh(x), keep

    h, _ = tg.scan(step, g.input("h0", shape=(2,)), g.input("xs", shape=(5, 2)))
    draft = Draft(g, [h])
    lerp_pass(draft)
    assert _scan_ops(draft) == ["add", "mul", "mul", "sub"]


def test_a_mix_with_other_than_one_is_left_alone():
    g = tg.Graph()

    def step(h, x):
        z = tg.sigmoid(x)
        return (2.0 - z) * h + z * x, None

    h, _ = tg.scan(step, g.input("h0", shape=(2,)), g.input("xs", shape=(5, 2)))
    draft = Draft(g, [h])
    lerp_pass(draft)
    assert _scan_ops(draft) == ["add", "mul", "mul", "sub"]

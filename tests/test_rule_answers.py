"""Shape rules' answers are remembered between nodes, and never change what a node gets.

An unrolled graph and its gradient ask every rule the same question at each
step, so ``infer`` remembers tinygraph's own rules' answers. The answers must
be the ones the rule gives, a question that differs only in an attr's type
must be asked again, the memory limit must hold for remembered answers too,
and a user's rule is asked every time.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.core import op as op_module
from tinygraph.core.op import OPS, Op, register


def test_a_remembered_answer_is_the_rules_answer():
    g = tg.Graph()
    x = g.input("x", shape=(None, 3, 4))
    first, again = tg.sum(x, axis=1), tg.sum(x, axis=1)
    assert first.shape == again.shape == (None, 4)
    assert tg.transpose(x, (2, 0, 1)).shape == (4, None, 3)
    assert tg.transpose(x, (1, 2, 0)).shape == (3, 4, None)  # another question, another answer
    np.testing.assert_array_equal(g.run(again, {"x": np.ones((2, 3, 4))}), np.full((2, 4), 3.0))


def test_an_attr_of_another_type_is_asked_again():
    # axis=1 and axis=True are equal keys to a dict; the rule refuses a bool axis.
    g = tg.Graph()
    x = g.input("x", shape=(2, 3))
    assert tg.sum(x, axis=1).shape == (2,)
    with pytest.raises(tg.GraphError):
        tg.sum(x, axis=True)
    assert [n.op for n in g.nodes.values()] == ["input", "sum"]  # the failed build left nothing


def test_the_memory_limit_holds_for_a_remembered_answer(monkeypatch):
    g = tg.Graph()
    x = g.input("x", shape=(1000, 1000))
    tg.exp(x)  # answered and remembered: 8 MB
    monkeypatch.setattr(op_module, "MAX_BYTES", 1_000_000)
    with pytest.raises(tg.ShapeError, match="needs 7.6 MiB, more than this machine's memory"):
        tg.exp(x)


def test_a_users_rule_is_asked_every_time():
    asked = []

    def rule(specs, attrs):
        asked.append(specs[0][0])
        return specs[0]

    register(Op("count_rule_calls", 1, lambda a: a, rule))
    try:
        g = tg.Graph()
        x = g.input("x", shape=(2,))
        for _ in range(3):
            g.add_node("count_rule_calls", [x])
        assert asked == [(2,)] * 3
    finally:
        del OPS["count_rule_calls"]

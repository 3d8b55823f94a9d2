"""Every batch rule against its definition: the op run step by step, stacked.

Loops over the registry with the gradient-check cases of test_autodiff: for
each op with a batch rule and each case, T = 3 steps of random inputs, every
non-empty subset of the float inputs batched; the rule's batched result must
equal stacking the op's per-step results (computed by numpy, one step at a time).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_autodiff import CASES, f, sample

import tinygraph as tg
from tinygraph.core.ops import OPS

STEPS = 3
# Ops with no batch rule, and why (the passes keep them per step).
WITHOUT_RULE = {
    "size": "a scalar count of one step's shape",
    "concat_part": "reverse-mode helper; its parts are per-step shapes",
    "take_grad": "scatter into one table: sums over steps",
    "getitem_grad": "reverse-mode helper",
    "broadcast_to_shape": "a fixed target shape per step",
    "advanced_getitem_grad": "reverse-mode helper",
    "recurrence": "already a loop over steps",
    "reverse_recurrence": "already a loop over steps",
    "scan": "already a loop over steps",
    "unpack": "reads a scan's outputs",
    "cross_entropy_and_grad": "made by the optimizer after per-step losses are batched",
}


def test_every_op_has_a_rule_or_a_reason():
    missing = [n for n, op in OPS.items() if op.batch is None and n not in WITHOUT_RULE]
    assert not missing, f"ops without a batch rule or a reason in WITHOUT_RULE: {missing}"
    assert not [n for n in WITHOUT_RULE if n in OPS and OPS[n].batch is not None]


class Handle:
    def __init__(self, node):
        self.node, self.shape, self.dtype = node, node.shape, node.dtype


def _value(spec, rng, steps=None):
    if spec[0] == "f":
        _, shape, _, kind = spec
        return sample(rng, shape if steps is None else (steps, *shape), kind)
    arr = spec[1]
    return arr if steps is None else np.stack([arr] * steps)


# Cases beyond the gradient checks' (whose only cases a rule declines, e.g. axis=None).
MORE_CASES = {
    "argmin": [([f(3, 4)], {"axis": 0})],
    "argmax": [([f(3, 4)], {"axis": -1, "keepdims": True})],
    "reshape": [([f(2, 6)], {"shape": (3, 4)})],
    "take": [([f(5, 3), ("i", np.array([4, 0, 2]))], {})],
    "one_hot": [([("i", np.array([[1, 0], [2, 2]]))], {"depth": 3})],
    "cross_entropy": [([f(4, 5), ("i", np.array([0, 4, 2, 2]))], {}),
                      ([f(4, 5), ("i", np.array([0, -1, 2, 2]))],
                       {"ignore_index": -1, "label_smoothing": 0.1})],
    "cross_entropy_grad": [([f(), f(2, 3, 4), ("i", np.array([[1, 0, 3], [3, 3, 2]]))], {}),
                           ([f(), f(4, 5), ("i", np.array([0, -1, 2, 2]))],
                            {"ignore_index": -1, "label_smoothing": 0.1}),
                           ([f(2), f(2, 3, 4), ("i", np.array([[1, 0, 3], [3, 3, 2]]))],
                            {"batch_axes": 1})],
}


@pytest.mark.parametrize("op", [n for n, o in OPS.items() if o.batch is not None])
def test_batch_rule_equals_the_op_step_by_step(op):
    rng = np.random.default_rng(sum(map(ord, op)))
    checked = 0
    for specs, attrs in CASES.get(op, []) + MORE_CASES.get(op, []):
        floats = list(range(len(specs)))  # any input may carry the steps (ids too)
        for count in range(1, len(floats) + 1):
            for chosen in itertools.combinations(floats, count):
                batched = [i in chosen for i in range(len(specs))]
                values = [_value(s, rng, STEPS if b else None) for s, b in zip(specs, batched,
                                                                                strict=True)]
                step = tg.Graph("step")
                step_in = [step.input(f"a{i}", shape=(v[0] if b else v).shape,
                                      dtype=(v[0] if b else v).dtype)
                           for i, (v, b) in enumerate(zip(values, batched, strict=True))]
                node = step.add_node(op, step_in, attrs)
                ref = np.stack([step.run(node, {f"a{i}": v[t] if b else v for i, (v, b)
                                                in enumerate(zip(values, batched, strict=True))},
                                         optimize=False) for t in range(STEPS)])
                whole = tg.Graph("all")
                args = [Handle(whole.input(f"a{i}", shape=v.shape, dtype=v.dtype))
                        for i, v in enumerate(values)]

                def emit(name, *xs, whole=whole, **kw):
                    return Handle(whole.add_node(name, [x.node for x in xs], kw))

                out = OPS[op].batch(emit, node, args, batched)
                if out is None:
                    continue  # the rule declines this case: the op stays per step
                got = whole.run(out.node, {f"a{i}": v for i, v in enumerate(values)},
                                optimize=False)
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{op} {attrs} batched={batched}")
                checked += 1
    assert checked, f"no case of {op} was batched; add one to test_autodiff.CASES"

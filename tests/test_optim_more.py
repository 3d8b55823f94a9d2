"""Adagrad, RMSprop, AdamW and clip_grad_value against hand-written numpy and torch.optim.

``tests/data/optim_goldens.npz`` holds torch.optim's params after each of
five steps on fixed gradients (made by ``tests/data/make_optim_goldens.py``);
the Adagrad check runs min-char-rnn's own update lines, copied verbatim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg

GOLDEN = np.load(Path(__file__).parent / "data" / "optim_goldens.npz", allow_pickle=False)
CONFIGS = {
    "rmsprop": (tg.optim.RMSprop, {}),
    "rmsprop_full": (tg.optim.RMSprop, {"lr": 0.02, "alpha": 0.9, "eps": 1e-6,
                                        "weight_decay": 0.1, "momentum": 0.5,
                                        "centered": True}),
    "adamw": (tg.optim.AdamW, {"lr": 0.01}),
    "adamw_decay": (tg.optim.AdamW, {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.3}),
    "adagrad_eps0": (tg.optim.Adagrad, {"lr": 0.1, "eps": 0.0}),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_optim(name):
    cls, kwargs = CONFIGS[name]
    g = tg.Graph()
    params = [g.param(f"p{k}", GOLDEN[f"p{k}"]) for k in range(2)]
    opt = cls(params, **kwargs)
    for step in range(5):
        opt.step([GOLDEN[f"g{step}_{k}"] for k in range(2)])
        for k, p in enumerate(params):
            np.testing.assert_allclose(p.value, GOLDEN[f"{name}/{step}_{k}"], rtol=1e-12,
                                       atol=1e-14, err_msg=f"{name} step {step} param {k}")


def test_adagrad_is_min_char_rnn_update():
    rng = np.random.default_rng(3)
    g = tg.Graph()
    Wxh = g.param("Wxh", rng.normal(size=(5, 3)) * 0.01)  # noqa: N806 - min-char-rnn's names
    bh = g.param("bh", np.zeros((5, 1)))
    learning_rate = 1e-1
    opt = tg.optim.Adagrad([Wxh, bh], lr=learning_rate)
    ref = [Wxh.value.copy(), bh.value.copy()]
    mem = [np.zeros_like(p) for p in ref]
    for _ in range(5):
        grads = [rng.normal(size=p.shape) for p in ref]
        opt.step(grads)
        # min-char-rnn.py, verbatim:
        for param, dparam, m in zip(ref, grads, mem, strict=True):
            m += dparam * dparam
            param += -learning_rate * dparam / np.sqrt(m + 1e-8)  # adagrad update
    np.testing.assert_allclose(Wxh.value, ref[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(bh.value, ref[1], rtol=0, atol=1e-10)


def test_rmsprop_by_hand():
    g = tg.Graph()
    w = g.param("w", np.array([1.0, -2.0]))
    opt = tg.optim.RMSprop([w], lr=0.1, alpha=0.5, eps=1e-3)
    p, v = w.value.copy(), np.zeros(2)
    for grad in (np.array([1.0, 2.0]), np.array([-0.5, 0.0]), np.array([3.0, 1.0])):
        opt.step([grad])
        v = 0.5 * v + 0.5 * grad ** 2
        p = p - 0.1 * grad / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(w.value, p, rtol=1e-15)


def test_clip_grad_value():
    read_only = np.array([-2.0, 0.25, 9.0])
    read_only.flags.writeable = False
    grads = [read_only, np.array([[0.5], [-0.7]], np.float32)]
    assert tg.optim.clip_grad_value(grads, 0.6) is None
    np.testing.assert_array_equal(grads[0], [-0.6, 0.25, 0.6])
    np.testing.assert_array_equal(grads[1], np.array([[0.5], [-0.6]], np.float32))
    assert grads[1].dtype == np.float32
    np.testing.assert_array_equal(read_only, [-2.0, 0.25, 9.0])  # untouched
    with pytest.raises(tg.GraphError, match="clip_value"):
        tg.optim.clip_grad_value(grads, -1.0)
    with pytest.raises(tg.GraphError, match="list"):
        tg.optim.clip_grad_value(tuple(grads), 1.0)


@pytest.mark.parametrize("make", [
    lambda ps: tg.optim.Adagrad(ps, lr=-1.0),
    lambda ps: tg.optim.RMSprop(ps, alpha=1.5),
    lambda ps: tg.optim.AdamW(ps, weight_decay="a"),
])
def test_bad_settings_raise(make):
    g = tg.Graph()
    with pytest.raises(tg.GraphError):
        make([g.param("w", np.zeros(2))])

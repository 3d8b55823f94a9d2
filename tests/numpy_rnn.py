"""Hand-written numpy references for the vanilla RNN, shared by the tests.

Nothing here calls tinygraph: these are the independent side of the
comparisons (forward and backpropagation through time written out).
"""

from __future__ import annotations

import numpy as np


def vanilla_bptt(p: dict, xs: np.ndarray, ys: np.ndarray, scale: float) -> tuple[float, dict]:
    """``scale`` times the summed cross-entropy of every step's logits against ``ys``
    (``s_t = tanh(x_t U + s_{t-1} W + b)``, logits ``s_t V + c``, ``s_0 = 0``), and its
    gradients for U, W, b, V, c."""
    steps, batch = ys.shape
    s = np.zeros((batch, p["W"].shape[0]))
    states, probs, loss = [s], [], 0.0
    for t in range(steps):
        s = np.tanh(xs[t] @ p["U"] + s @ p["W"] + p["b"])
        z = s @ p["V"] + p["c"]
        e = np.exp(z - z.max(-1, keepdims=True))
        probs.append(e / e.sum(-1, keepdims=True))
        states.append(s)
        loss -= np.log(probs[-1][np.arange(batch), ys[t]]).sum()
    grads = {k: np.zeros_like(p[k]) for k in ("U", "W", "b", "V", "c")}
    carry = np.zeros_like(s)
    for t in reversed(range(steps)):
        do = probs[t].copy()
        do[np.arange(batch), ys[t]] -= 1.0
        do *= scale
        grads["V"] += states[t + 1].T @ do
        grads["c"] += do.sum(0)
        dz = (do @ p["V"].T + carry) * (1 - states[t + 1] ** 2)
        grads["U"] += xs[t].T @ dz
        grads["W"] += states[t].T @ dz
        grads["b"] += dz.sum(0)
        carry = dz @ p["W"].T
    return loss * scale, grads

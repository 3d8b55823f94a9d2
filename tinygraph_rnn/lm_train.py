"""One optimizer step of :meth:`CharLM.train <tinygraph_rnn.CharLM.train>`, all or nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygraph as tg

__all__ = ["adam_step_or_undo"]


def adam_step_or_undo(opt: Any, params: list[Any], grads: list[np.ndarray], lr: float) -> None:
    """One ``opt`` step, undone (params and moments) if it leaves a param non-finite.

    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph()
    >>> w = g.param("w", np.ones(2))
    >>> opt = tg.optim.Adam([w], lr=0.1)
    >>> adam_step_or_undo(opt, [w], [np.ones(2)], 0.1); w.value.round(2)
    array([0.9, 0.9])
    """
    saved = ([p.value.copy() for p in params], [m.copy() for m in opt.m],
             [v.copy() for v in opt.v], opt.steps)
    opt.step(grads)
    if all(np.isfinite(p.value).all() for p in params):
        return
    values, opt.m, opt.v, opt.steps = saved
    for p, value in zip(params, values, strict=True):
        p.value[...] = value  # in place: compiled plans and the optimizer keep the array
    raise tg.EvaluationError(f"train: a step with lr={lr:g} made a param nan or inf; it was "
                             "undone (params, optimizer state and history are as before "
                             "it); lower lr")

"""Variable-length batches: ``run(xs, lengths=...)``, as PyTorch's packed sequences.

Sequences of different lengths are padded to one array ``xs`` of shape
``(T, B, D)``; ``lengths[b]`` says how many of sequence b's steps are real.
After its last real step a sequence's state stops changing and its outputs
are zero, so every sequence's numbers equal running it alone::

    t:        0    1    2    3        lengths = [4, 2]
    seq 0:   s1   s2   s3   s4
    seq 1:   s1   s2  (s2) (s2)       outputs there: 0

A one-directional net (a cell, or a :class:`~tinygraph_rnn.Stacked` one,
unrolled or scanned) needs nothing in the graph for this: its step t reads
only steps 0..t, so the padded steps change nothing before them, and
:func:`hold_after` holds the state and zeros the outputs after each
sequence's end. A :class:`~tinygraph_rnn.Bidirectional` net's backward
direction starts at the end, so its graph has a ``mask`` input
(:func:`mask_of`) that its steps read: ``s_t = m_t s_new + (1 - m_t) s_{t-1}``.

>>> import numpy as np
>>> mask_of(np.array([3, 1]), 3, np.float64)[:, :, 0]
array([[1., 1.],
       [1., 0.],
       [1., 0.]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.shapes import format_shape

__all__ = ["check_lengths", "mask_of", "hold_after"]


def check_lengths(lengths: Any, steps: int, batch: int | None) -> np.ndarray:
    """``lengths`` as int64 of shape ``(B,)`` (``(1,)`` unbatched), each in ``[1, T]``.

    ``batch`` is B, or ``None`` for an unbatched sequence (then ``lengths``
    is one int).
    """
    want = (f"lengths wants {'one int' if batch is None else f'integers of shape (B={batch},)'}"
            f" in [1, T={steps}]")
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise tg.FeedError(f"{want}; got dtype {arr.dtype}")
    shape_ok = arr.shape == () if batch is None else arr.shape == (batch,)
    if not shape_ok:
        raise tg.FeedError(f"{want}; got shape {format_shape(arr.shape)}")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise tg.FeedError(f"{want}; got lengths from {arr.min()} to {arr.max()}")
    return arr


def mask_of(lengths: np.ndarray, steps: int, dtype: Any) -> np.ndarray:
    """``(T, B, 1)``: 1 where step t is one of sequence b's, 0 after its end."""
    return (np.arange(steps)[:, None] < lengths[None, :])[:, :, None].astype(dtype)


def hold_after(outputs: np.ndarray, states: tuple, lengths: np.ndarray) -> tuple:
    """Zero ``outputs`` and hold each state part after every sequence's end.

    ``outputs`` and each part of ``states`` have shape ``(T, B, ·)``;
    returns new arrays (the inputs are not changed).
    """
    steps = outputs.shape[0]
    keep = mask_of(lengths, steps, bool)
    outputs = np.where(keep, outputs, 0)
    # Step t of sequence b reads row min(t, L_b - 1): the state after its last real step.
    rows = np.minimum(np.arange(steps)[:, None], lengths[None, :] - 1)
    held = tuple(np.take_along_axis(part, rows[:, :, None], axis=0) for part in states)
    return outputs, held

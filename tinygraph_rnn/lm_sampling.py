"""Drawing the next character from a language model's logits (used by ``CharLM.sample``).

>>> import numpy as np
>>> draw(np.array([0.0, 5.0, 1.0]), 0.0, np.random.default_rng(0))
1
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw"]


def draw(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One id from ``softmax(logits / temperature)``; the argmax at temperature 0."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    z = z - z.max()  # stable: the largest term is exp(0) = 1
    p = np.exp(z)
    p /= p.sum()
    # Inverse CDF with one uniform draw: a fixed number of draws per character.
    cdf = np.cumsum(p)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(index, len(p) - 1)

"""One check for the numeric options users pass (time limits, learning rates, sizes).

Every such option must be a real number (an int where a count is wanted),
finite, and inside its range; anything else is refused with the error class
of the caller's layer, naming the option, the range and what came. Python
ints of any size compare exactly, so ``10**400`` is refused as out of range
instead of overflowing in ``float()`` later (in a timer thread, say).

>>> check_number("lr", 0.1, low=0.0)
0.1
>>> check_number("timeout", float("inf"), low=0.0, low_open=True)
Traceback (most recent call last):
...
tinygraph.errors.GraphError: timeout must be a finite number in (0.0, inf), got inf
>>> check_number("steps", 10**12, low=1, high=10**7, integer=True)
Traceback (most recent call last):
...
tinygraph.errors.GraphError: steps must be an int in [1, 10000000], got 1000000000000
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import numpy as np

from ..errors import GraphError

__all__ = ["NumberOptions", "check_number"]


class NumberOptions(TypedDict, total=False):
    """Keyword options of `check_number`, for callers that share them (``**options``)."""

    low_open: bool
    high_open: bool
    integer: bool
    error: type[GraphError]
    hint: str


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 error: type[GraphError] = GraphError, hint: str = "") -> Any:
    """``value`` as a float (an int if ``integer``) if it is finite and in range, else ``error``.

    The range is ``[low, high]``; ``low_open``/``high_open`` exclude an end.
    numpy scalars are accepted; bools, strings, None and arrays are not.
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    opening = "(" if low_open else "["
    closing = ")" if high_open or high == math.inf else "]"
    what = "an int" if integer else "a finite number"
    wanted = f"{name} must be {what} in {opening}{low}, {high}{closing}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, kinds):
        raise error(f"{wanted}, got {_show(value)}{hint}")
    if isinstance(value, np.generic):
        value = value.item()
    try:
        finite = integer or math.isfinite(float(value))  # float(10**400) overflows: refused
    except OverflowError:
        finite = False
    inside = (
        finite
        and (low < value if low_open else low <= value)
        and (value < high if high_open else value <= high)
    )
    if not inside:
        raise error(f"{wanted}, got {_show(value)}{hint}")
    return int(value) if integer else float(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({type(value).__name__})"

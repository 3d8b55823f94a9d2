r"""User text in pictures: the one escaping function, and the lines of a label.

Every string a user controls — node names, scope names, the graph name, const
values, array statistics — reaches the DOT source only through :func:`quote`
(which calls :func:`escape`). DOT ids are opaque (``n0``, ``n1``, …), so user
text only ever appears inside a quoted label, where ``{a|b}`` records,
``<port>`` and ``a:b`` port syntax mean nothing. What is left to neutralise:

* ``"`` and ``\`` (the DOT lexer, and Graphviz's ``\N``/``\l`` label
  escapes): written ``\"`` and ``\\``; a newline becomes the label line
  break ``\n``;
* ``&``: Graphviz decodes ``&alpha;``-style entities in plain labels, and old
  versions copy entity-looking text into the SVG unescaped, breaking its
  XML; so ``&`` is written ``&amp;``, followed by an invisible word joiner
  when an entity name follows;
* invisible characters (controls, bidi overrides, surrogates,
  non-characters), which would break the SVG's XML or hide text: shown as
  ``\uXXXX``.

Labels are plain quoted strings, one line per fact, because the WebAssembly
Graphviz build has no HTML-like labels.

>>> print(quote('say "hi" \\'))
"say \"hi\" \\"
>>> print(quote("line one\nline two"))
"line one\nline two"
>>> escape("x" * 50, limit=9)
'xxxx…xxxx'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

__all__ = ["escape", "quote", "shorten", "array_summary", "value_preview"]

# Unicode categories that must not reach the SVG as they are: controls (Cc),
# format characters such as bidi overrides (Cf), surrogates (Cs), and
# unassigned code points including the XML-forbidden U+FFFE/U+FFFF (Cn).
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Cn"})
_ENTITY_NAME = re.compile(r"#?[A-Za-z0-9]+;")
_WORD_JOINER = "\u2060"
_ELLIPSIS = "…"


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (``None``: no cut).

    >>> shorten("abcdefghij", 5)
    'ab…ij'
    """
    if limit is None or len(text) <= limit:
        return text
    if limit < 3:
        return text[:limit]
    head = (limit - 1) // 2 + (limit - 1) % 2
    tail = limit - 1 - head
    return text[:head] + _ELLIPSIS + (text[-tail:] if tail else "")


def escape(text: Any, limit: int | None = None) -> str:
    r"""``text`` as the inside of a DOT quoted label, shown exactly as written.

    Parameters
    ----------
    text : object
        Converted with ``str``.
    limit : int, optional
        Longer text is cut in the middle (before escaping, so escapes stay whole).

    Returns
    -------
    str
        To be placed between double quotes; see :func:`quote`.

    Examples
    --------
    >>> print(escape("t=0/{a|b}:<port>"))
    t=0/{a|b}:<port>
    >>> print(escape("tab\there a&b"))
    tab\\u0009here a&amp;b
    >>> escape("&lt;")
    '&amp;\u2060lt;'
    """
    text = shorten(str(text), limit)
    pieces = []
    for i, char in enumerate(text):
        if char == "\\":
            pieces.append("\\\\")
        elif char == '"':
            pieces.append('\\"')
        elif char == "\n":
            pieces.append("\\n")
        elif char == "&":
            entity_like = _ENTITY_NAME.match(text, i + 1) is not None
            pieces.append("&amp;" + (_WORD_JOINER if entity_like else ""))
        elif unicodedata.category(char) in _INVISIBLE:
            pieces.append(f"\\\\u{ord(char):04x}")
        else:
            pieces.append(char)
    return "".join(pieces)


def quote(text: Any, limit: int | None = None) -> str:
    r"""``text`` as a complete DOT double-quoted string (see :func:`escape`).

    >>> print(quote('a "b"'))
    "a \"b\""
    """
    return f'"{escape(text, limit)}"'


def _number(x: float) -> str:
    return f"{x:.4g}"


def value_preview(value: Any, items: int = 4) -> str:
    """The first ``items`` entries of an array, flattened, as a short string.

    >>> value_preview(np.arange(10.0), items=3)
    '[0 1 2 …]'
    >>> value_preview(2.5)
    '2.5'
    """
    arr = np.asarray(value)
    if arr.ndim == 0:
        return _entry(arr.item())
    flat = arr.reshape(-1)
    shown = " ".join(_entry(v) for v in flat[:items].tolist())
    return f"[{shown}{' …' if flat.size > items else ''}]"


def _entry(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return _number(v)
    return str(v)


def array_summary(value: Any, items: int = 4) -> tuple[str, ...]:
    """Lines describing an array: shape and dtype, min/max/mean, NaN/inf flags, a preview.

    Statistics use the finite entries only, so one NaN does not hide the
    range; the NaN and inf counts are flagged on their own line.

    >>> array_summary(np.array([1.0, np.nan, 3.0]))
    ('(3,) float64', 'min 1 max 3 mean 2', 'NaN×1', '[1 nan 3]')
    """
    arr = np.asarray(value)
    dims = ", ".join(str(d) for d in arr.shape)
    lines = [f"({dims}{',' if arr.ndim == 1 else ''}) {arr.dtype}"]
    if arr.size == 0:
        return (*lines, "empty")
    if arr.dtype.kind not in "biuf":
        return (*lines, value_preview(arr, items))
    numbers = arr.astype(np.float64, copy=False)
    finite = numbers[np.isfinite(numbers)]
    if finite.size:
        lines.append(f"min {_number(finite.min())} max {_number(finite.max())} "
                     f"mean {_number(finite.mean())}")
    else:
        lines.append("no finite values")
    nans = int(np.isnan(numbers).sum())
    infs = int(np.isinf(numbers).sum())
    flags = [f"NaN×{nans}"] if nans else []
    flags += [f"inf×{infs}"] if infs else []
    if flags:
        lines.append(" ".join(flags))
    lines.append(value_preview(arr, items))
    return tuple(lines)

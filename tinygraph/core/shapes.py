"""Shape arithmetic with unknown sizes, used by the ops' shape rules.

A shape is a tuple whose entries are ``int`` sizes or ``None`` (a size known
only at run time). The rules follow numpy; where an unknown size meets a known
one the known one wins, because a mismatch can only be found at run time.

>>> broadcast_shapes((None, 1), (3,))
(None, 3)
>>> matmul_shape((None, 3), (3, 4))
(None, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Shape",
    "ShapeMismatch",
    "broadcast_shapes",
    "matmul_shape",
    "normalize_axis",
    "format_shape",
]

Shape = tuple  # tuple[int | None, ...]


class ShapeMismatch(Exception):
    """Raised by shape rules; the graph turns it into a ShapeError naming the node."""


def format_shape(shape: Shape) -> str:
    """``(None, 3)`` -> ``'(?, 3)'``: how shapes appear in messages and labels."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _broadcast_dim(a: int | None, b: int | None) -> int | None:
    if a == 1:
        return b
    if b == 1:
        return a
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise ShapeMismatch


def broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy broadcasting of shapes that may hold ``None``."""
    first = shapes[0]
    if len(shapes) == 2 and shapes[1] == first or all(s == first for s in shapes[1:]):
        return tuple(first)  # the common case: nothing to broadcast
    ndim = max(len(s) for s in shapes)
    out: list[int | None] = [1] * ndim
    for shape in shapes:
        padded = (1,) * (ndim - len(shape)) + tuple(shape)
        try:
            out = [_broadcast_dim(a, b) for a, b in zip(out, padded, strict=True)]
        except ShapeMismatch:
            listed = " and ".join(format_shape(s) for s in shapes)
            raise ShapeMismatch(f"cannot broadcast shapes {listed}") from None
    return tuple(out)


def _dims_agree(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """Result shape of ``np.matmul`` (1-D operands promoted, batch dims broadcast)."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeMismatch(
            f"matmul needs operands of rank >= 1, got {format_shape(a)} @ {format_shape(b)}; "
            "use mul for scalars"
        )
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if not _dims_agree(a2[-1], b2[-2]):
        raise ShapeMismatch(
            f"matmul inner sizes differ: {format_shape(a)} @ {format_shape(b)} "
            f"({a2[-1]} != {b2[-2]})"
        )
    try:
        batch = broadcast_shapes(a2[:-2], b2[:-2])
    except ShapeMismatch:
        raise ShapeMismatch(
            f"matmul batch dimensions do not broadcast: {format_shape(a)} @ {format_shape(b)}"
        ) from None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def normalize_axis(axis: object, ndim: int, what: str = "axis") -> int:
    """Check an ``axis=`` value against a rank and return it non-negative."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeMismatch(f"{what} must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeMismatch(f"{what}={axis} is out of range for rank {ndim}")
    return axis % ndim


def normalize_axes(axis: object, ndim: int) -> tuple[int, ...]:
    """``axis=None | int | sequence of int`` -> sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = [axis] if isinstance(axis, int) else list(axis) if isinstance(axis, Sequence) else None
    if axes is None:
        raise ShapeMismatch(f"axis must be None, an int or a tuple of ints, got {axis!r}")
    normalized = [normalize_axis(a, ndim) for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ShapeMismatch(f"axis {axis!r} repeats an axis")
    return tuple(sorted(normalized))

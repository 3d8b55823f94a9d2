"""Shape rules of the numpy-named primitives (comparisons, reductions, padding, indexing).

Same contract as :mod:`tinygraph.core.shape_rules`: ``rule(specs, attrs) ->
(shape, dtype)``, raising :class:`ShapeMismatch` or :class:`DtypeMismatch`.

>>> f = np.dtype("float64")
>>> compare([((None, 3), f), ((3,), f)], {})
((None, 3), dtype('bool'))
>>> pad([((2, None), f)], {"pad_width": ((1, 1), (0, 2))})
((4, None), dtype('float64'))
>>> index_shape((5, 6, 7), (ELLIPSIS, None, ARRAY), [(2, 3)])
(5, 6, 1, 2, 3)
"""

from __future__ import annotations

import numpy as np

from . import shape_rules as base
from .shape_rules import DtypeMismatch, Spec, reduce
from .shapes import ShapeMismatch, broadcast_shapes, format_shape, normalize_axes, normalize_axis

__all__ = [
    "ELLIPSIS", "ARRAY", "BOOL", "compare", "where", "unary_float_attr", "reduce_same",
    "reduce_float", "arg_reduce", "moments", "cumsum", "pad", "broadcast_to_shape", "squeeze",
    "gather", "gather_grad", "index_shape", "advanced_getitem", "advanced_getitem_grad",
    "cross_entropy", "cross_entropy_grad", "basic_getitem", "basic_getitem_grad",
    "to_numpy_index",
]

ELLIPSIS = "..."  # how ``...`` is stored in a getitem index attr (JSON has no Ellipsis)
ARRAY = "[]"      # the place of the next integer-array input in an advanced index
BOOL = np.dtype(bool)


def _float(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype("float64")


def compare(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    return broadcast_shapes(*(s for s, _ in specs)), BOOL


def where(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (cond, cdtype), (_, a), (_, b) = specs
    if cdtype != BOOL:
        raise DtypeMismatch(f"where's condition must be a bool node (e.g. x > 0), got dtype "
                            f"{cdtype}")
    return broadcast_shapes(*(s for s, _ in specs)), np.result_type(a, b)


def unary_float_attr(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """A float unary op whose attrs are numbers or one of a few words (leaky_relu, gelu)."""
    slope = attrs.get("negative_slope", 0.0)
    if isinstance(slope, bool) or not isinstance(slope, int | float):
        raise ShapeMismatch(f"negative_slope must be a number, got {slope!r}")
    if attrs.get("approximate", "none") not in ("none", "tanh"):
        raise ShapeMismatch(f"approximate must be 'none' or 'tanh', got "
                            f"{attrs['approximate']!r}")
    shape, dtype = specs[0]
    return shape, _float(dtype)


def reduce_same(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """max/min: the reduced shape, the input's dtype."""
    shape, _ = reduce(specs, attrs)
    return shape, specs[0][1]


def reduce_float(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    return reduce(specs, attrs, mean=True)


def moments(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """var/std: a float reduction with ``ddof``."""
    ddof = attrs.get("ddof", 0)
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise ShapeMismatch(f"ddof must be an int >= 0, got {ddof!r}")
    return reduce(specs, {k: v for k, v in attrs.items() if k != "ddof"}, mean=True)


def arg_reduce(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """argmax/argmin: ``axis`` None (flattened) or one int, numpy's int result."""
    shape, _ = specs[0]
    axis = attrs.get("axis")
    keepdims = attrs.get("keepdims", False)
    if not isinstance(keepdims, bool):
        raise ShapeMismatch(f"keepdims must be True or False, got {keepdims!r}")
    if axis is None:
        out = (1,) * len(shape) if keepdims else ()
    else:
        axis = normalize_axis(axis, len(shape))
        out = tuple(1 if i == axis else d for i, d in enumerate(shape) if keepdims or i != axis)
    return out, np.dtype(np.intp)


def cumsum(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    axis = attrs.get("axis")
    out_dtype = np.cumsum(np.zeros(1, dtype)).dtype
    if axis is None:
        return (None if None in shape else int(np.prod(shape, dtype=np.int64)),), out_dtype
    normalize_axis(axis, len(shape))
    return shape, out_dtype


def pad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    width = attrs.get("pad_width")
    if (not isinstance(width, tuple) or len(width) != len(shape)
            or not all(isinstance(p, tuple) and len(p) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p)
                for p in width)):
        raise ShapeMismatch(f"pad_width must give (before, after) ints >= 0 for each of the "
                            f"{len(shape)} axes, got {width!r}")
    value = attrs.get("constant_values", 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeMismatch(f"constant_values must be a number, got {value!r}")
    return tuple(None if d is None else d + a + b for d, (a, b) in zip(shape, width,
                                                                        strict=True)), dtype


def broadcast_to_shape(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    target = attrs.get("shape")
    if not isinstance(target, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in target):
        raise ShapeMismatch(f"shape= must be a tuple of ints >= 0, got {target!r}")
    if len(shape) > len(target) or broadcast_shapes(shape, target) != target:
        raise ShapeMismatch(f"cannot broadcast {format_shape(shape)} to {format_shape(target)}")
    return target, dtype


def squeeze(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    shape, dtype = specs[0]
    axis = attrs.get("axis")
    if axis is None:
        if None in shape:
            raise ShapeMismatch(f"squeeze without axis= needs known sizes, got "
                                f"{format_shape(shape)}; pass axis=")
        return tuple(d for d in shape if d != 1), dtype
    axes = normalize_axes(axis, len(shape))
    for a in axes:
        if shape[a] not in (1, None):
            raise ShapeMismatch(f"cannot squeeze axis {a} of size {shape[a]}")
    return tuple(d for i, d in enumerate(shape) if i not in axes), dtype


def _int_spec(spec: Spec, what: str) -> None:
    if spec[1].kind not in "iu":
        raise DtypeMismatch(f"{what} must be an integer array, got dtype {spec[1]}")


def gather(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``take_along_axis(x, indices, axis)``: x and indices of one rank, broadcast off axis."""
    (shape, dtype), (ids, _) = specs
    _int_spec(specs[1], "gather's indices")
    if len(ids) != len(shape) or not shape:
        raise ShapeMismatch(f"indices {format_shape(ids)} and array {format_shape(shape)} must "
                            "have one rank >= 1 (np.take_along_axis)")
    axis = normalize_axis(attrs.get("axis", -1), len(shape))
    off = tuple(1 if i == axis else d for i, d in enumerate(shape))
    out = list(broadcast_shapes(off, tuple(1 if i == axis else d for i, d in enumerate(ids))))
    out[axis] = ids[axis]
    return tuple(out), dtype


def gather_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``gather_grad(g, indices, like, axis)``: g added into zeros of like's shape."""
    (_, dtype), ids, (like, _) = specs
    _int_spec(ids, "gather_grad's indices")
    normalize_axis(attrs.get("axis", -1), len(like))
    return like, dtype


def _expand(index: tuple, ndim: int) -> tuple:
    """``index`` with its ``...`` replaced by full slices; checks the entries."""
    if sum(1 for i in index if i == ELLIPSIS) > 1:
        raise ShapeMismatch("an index can only have a single ellipsis ('...')")
    used = sum(1 for i in index if i is not None and i != ELLIPSIS)
    if used > ndim:
        raise ShapeMismatch(f"index {index!r} has {used} entries for {ndim} axes")
    full = ((None, None, None),) * (ndim - used)
    if ELLIPSIS in index:
        at = index.index(ELLIPSIS)
        return index[:at] + full + index[at + 1:]
    return index + full


def index_shape(shape: tuple, index: tuple, arrays: list[tuple]) -> tuple:
    """numpy's result shape of ``x[index]``: basic entries, and ARRAY markers for ``arrays``.

    With arrays, ints join them as 0-d advanced indices; the broadcast shape of
    the advanced indices replaces them in place when they are adjacent, else
    goes first (numpy's rule).
    """
    if not isinstance(index, tuple):
        raise ShapeMismatch(f"index must be a tuple, got {index!r}")
    index = _expand(index, len(shape))
    advanced = bool(arrays)
    basic: list = []           # the sizes basic entries produce, in order
    positions: list[int] = []  # where advanced entries sit in the index
    first = 0                  # how many basic sizes come before the first advanced entry
    dims = iter(shape)
    for at, item in enumerate(index):
        if item is None:
            basic.append(1)
            continue
        d = next(dims)
        is_int = isinstance(item, int) and not isinstance(item, bool)
        if is_int and d is not None and not -d <= item < d:
            raise ShapeMismatch(f"index {item} is out of range for size {d}")
        if item == ARRAY or (advanced and is_int):
            if not positions:
                first = len(basic)
            positions.append(at)
        elif is_int:
            continue
        elif isinstance(item, tuple) and len(item) == 3 and item[2] != 0 and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in item):
            basic.append(None if d is None else len(range(*slice(*item).indices(d))))
        else:
            raise ShapeMismatch(f"index entries must be ints, slices, None, '...' or integer "
                                f"arrays, got {item!r}")
    if not advanced:
        return tuple(basic)
    if index.count(ARRAY) != len(arrays):
        raise ShapeMismatch(f"index {index!r} marks {index.count(ARRAY)} arrays, "
                            f"{len(arrays)} given")
    joint = broadcast_shapes(*arrays)
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    at = first if adjacent else 0
    return tuple(basic[:at]) + tuple(joint) + tuple(basic[at:])


def advanced_getitem(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (shape, dtype), *arrays = specs
    for spec in arrays:
        _int_spec(spec, "an index array")
    return index_shape(shape, attrs.get("index"), [s for s, _ in arrays]), dtype  # type: ignore[arg-type]


def advanced_getitem_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    (_, dtype), (like, ldtype), *arrays = specs
    advanced_getitem([(like, ldtype), *arrays], attrs)
    return like, dtype


def _cross_entropy_attrs(attrs: dict) -> None:
    ignore = attrs.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
        raise ShapeMismatch(f"ignore_index must be an int or None, got {ignore!r}")
    smoothing = attrs.get("label_smoothing", 0.0)
    if isinstance(smoothing, bool) or not isinstance(smoothing, int | float) or not (
            0.0 <= smoothing <= 1.0):
        raise ShapeMismatch(f"label_smoothing must be a number in [0, 1], got {smoothing!r}")


def cross_entropy(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``cross_entropy(logits, targets, ignore_index=None, label_smoothing=0.0)``."""
    _cross_entropy_attrs(attrs)
    return base.cross_entropy(specs, attrs)


def cross_entropy_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    _cross_entropy_attrs(attrs)
    return base.cross_entropy_grad(specs, attrs)


def basic_getitem(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``x[index]`` with ints, (start, stop, step) slices, None and '...'."""
    shape, dtype = specs[0]
    return index_shape(shape, attrs.get("index"), []), dtype  # type: ignore[arg-type]


def basic_getitem_grad(specs: list[Spec], attrs: dict) -> tuple[tuple, np.dtype]:
    """``getitem_grad(g, like, index=...)``: g written into zeros of like's shape at index."""
    (_, dtype), (like, ldtype) = specs
    basic_getitem([(like, ldtype)], attrs)
    return like, dtype


def to_numpy_index(index: tuple, arrays: tuple = ()) -> tuple:
    """A stored index attr as numpy takes it: slices, Ellipsis, and the arrays in place."""
    rest = iter(arrays)
    return tuple(slice(*i) if isinstance(i, tuple) else Ellipsis if i == ELLIPSIS
                 else next(rest) if i == ARRAY else i for i in index)

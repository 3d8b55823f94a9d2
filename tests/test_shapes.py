"""Shape arithmetic against numpy itself: broadcasting and matmul on real arrays.

For known sizes the reference is what numpy does with arrays of those
shapes. For unknown sizes (``None``) the rule checked is the one a shape
inference must obey: whenever some concrete sizes broadcast in numpy, the
inferred shape must agree with numpy's result wherever it claims a size.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinygraph.core.shapes import (
    ShapeMismatch,
    broadcast_shapes,
    format_shape,
    matmul_shape,
    normalize_axes,
    normalize_axis,
)

RNG = np.random.default_rng(7)


def random_shape(max_ndim: int = 4) -> tuple[int, ...]:
    ndim = int(RNG.integers(0, max_ndim + 1))
    return tuple(int(d) for d in RNG.choice([1, 1, 2, 3], size=ndim))


def numpy_broadcast(*shapes):
    try:
        return np.broadcast(*[np.empty(s) for s in shapes]).shape
    except ValueError:
        return None


def test_format_shape():
    assert format_shape(()) == "()"
    assert format_shape((3,)) == "(3,)"
    assert format_shape((None, 3)) == "(?, 3)"
    assert format_shape((2, None, 4)) == "(2, ?, 4)"


def test_broadcast_of_known_shapes_matches_numpy():
    for _ in range(500):
        a, b = random_shape(), random_shape()
        want = numpy_broadcast(a, b)
        if want is None:
            with pytest.raises(ShapeMismatch, match="cannot broadcast"):
                broadcast_shapes(a, b)
        else:
            assert broadcast_shapes(a, b) == want, (a, b)


def test_broadcast_of_three_shapes_matches_numpy():
    for _ in range(200):
        shapes = [random_shape(3) for _ in range(3)]
        want = numpy_broadcast(*shapes)
        if want is not None:
            assert broadcast_shapes(*shapes) == want


@pytest.mark.parametrize("a,b,want", [
    ((None, 1), (3,), (None, 3)),
    ((None,), (None,), (None,)),
    ((None,), (1,), (None,)),
    ((None,), (4,), (4,)),
    ((), (None, 2), (None, 2)),
    ((2, None), (None, 1, 1), (None, 2, None)),
])
def test_broadcast_with_unknown_sizes(a, b, want):
    assert broadcast_shapes(a, b) == want


def test_broadcast_with_unknown_sizes_never_contradicts_numpy():
    for _ in range(500):
        a, b = random_shape(3), random_shape(3)
        want = numpy_broadcast(a, b)
        if want is None:
            continue
        hide_a = tuple(None if RNG.random() < 0.4 else d for d in a)
        hide_b = tuple(None if RNG.random() < 0.4 else d for d in b)
        got = broadcast_shapes(hide_a, hide_b)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g is None or g == w, (hide_a, hide_b, got, want)


def test_matmul_shape_matches_np_matmul():
    checked = 0
    for _ in range(600):
        a, b = random_shape(4), random_shape(4)
        if RNG.random() < 0.6 and a and b:  # make the inner sizes agree most of the time
            b = b[:-2] + (a[-1],) + b[-1:] if len(b) >= 2 else (a[-1],)
        try:
            want = np.matmul(np.empty(a), np.empty(b)).shape
        except ValueError:
            want = None
        if want is None:
            with pytest.raises(ShapeMismatch):
                matmul_shape(a, b)
        else:
            assert matmul_shape(a, b) == want, (a, b)
            checked += 1
    assert checked > 200


@pytest.mark.parametrize("a,b,want", [
    ((None, 3), (3, 4), (None, 4)),
    ((3,), (None, 3, 2), (None, 2)),
    ((None,), (None,), ()),
    ((2, None, 3), (None, 5), (2, None, 5)),
])
def test_matmul_shape_with_unknown_sizes(a, b, want):
    assert matmul_shape(a, b) == want


@pytest.mark.parametrize("a,b,fragment", [
    ((), (3,), "rank >= 1"),
    ((2, 3), (4, 5), "inner sizes differ: (2, 3) @ (4, 5) (3 != 4)"),
    ((2, 1, 3), (4, 3, 5), None),  # batch (2,) vs (4,) do not broadcast
])
def test_matmul_shape_mismatches(a, b, fragment):
    with pytest.raises(ShapeMismatch) as info:
        matmul_shape(a, b)
    if fragment:
        assert fragment in str(info.value)


def test_normalize_axis_and_axes():
    assert [normalize_axis(a, 3) for a in (-3, -1, 0, 2)] == [0, 2, 0, 2]
    for bad in (3, -4):
        with pytest.raises(ShapeMismatch, match=f"axis={bad} is out of range for rank 3"):
            normalize_axis(bad, 3)
    for bad in (1.0, True, "0", None):
        with pytest.raises(ShapeMismatch, match="must be an int"):
            normalize_axis(bad, 3)
    assert normalize_axes(None, 3) == (0, 1, 2)
    assert normalize_axes(-1, 3) == (2,)
    assert normalize_axes((2, 0), 3) == (0, 2)
    assert normalize_axes([], 2) == ()
    with pytest.raises(ShapeMismatch, match="repeats"):
        normalize_axes((0, -3), 3)
    with pytest.raises(ShapeMismatch):
        normalize_axes(1.5, 3)


def test_every_small_shape_pair_broadcasts_like_numpy():
    sizes = [(), (1,), (2,), (3,), (1, 1), (1, 2), (2, 1), (2, 3), (3, 2), (1, 3)]
    for a, b in itertools.product(sizes, repeat=2):
        want = numpy_broadcast(a, b)
        if want is None:
            with pytest.raises(ShapeMismatch):
                broadcast_shapes(a, b)
        else:
            assert broadcast_shapes(a, b) == want

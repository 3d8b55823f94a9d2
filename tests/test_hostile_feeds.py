"""``tinygraph run --feeds``: hostile .npz files refused fast and small, honest ones read."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import tinygraph as tg
from tinygraph import cli
from tinygraph.io import reader

LIMIT_SECONDS = 0.1
LIMIT_BYTES = 64 * 2**20


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npz(path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data, compress_type=method)
    return str(path)


def _refused(path: str, match: str) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(tg.GraphError, match=match):
            cli._read_feeds(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < LIMIT_SECONDS and peak < LIMIT_BYTES, (elapsed, peak)


def test_a_member_whose_header_claims_a_huge_shape_is_refused_before_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                                "shape": (10**12,)})
    lying = buf.getvalue() + np.zeros(3).tobytes()
    path = _npz(tmp_path / "f.npz", {"x.npy": lying})
    _refused(path, r"header claims shape \(1000000000000,\) float64 but the member holds 24")


def test_a_zip_bomb_member_behind_a_small_header_is_refused_after_the_header(tmp_path):
    bomb = _npy(np.zeros((3, 4))) + b"\0" * (128 * 2**20)
    path = _npz(tmp_path / "f.npz", {"ok.npy": _npy(np.ones(2)), "x.npy": bomb})
    assert (tmp_path / "f.npz").stat().st_size < 200_000
    _refused(path, r"member 'x.npy'.*header claims shape \(3, 4\)")


def test_the_declared_sizes_are_bounded_before_anything_is_inflated(tmp_path, monkeypatch):
    path = _npz(tmp_path / "f.npz", {"a.npy": _npy(np.zeros(1000)), "b.npy": _npy(np.zeros(1000))})
    monkeypatch.setattr(reader, "MAX_BYTES", 10_000)
    _refused(path, r"unpack to more than 10000 bytes \(member 'b.npy' declares 8128\)")


@pytest.mark.parametrize("members,match", [
    ({"x.npy": b"\x93NUMPY garbage"}, "not a valid .npy array"),
    ({"x.npy": _npy(np.array([1 + 2j]))}, "dtype complex128"),
    ({"x.npy": _npy(np.array(["a"]))}, "dtype <U1"),
    ({"notes.txt": b"hello"}, "unexpected or repeated member 'notes.txt'"),
])
def test_malformed_members_are_refused(tmp_path, members, match):
    _refused(_npz(tmp_path / "f.npz", members), match)


def test_honest_files_read_as_numpy_reads_them(tmp_path):
    arrays = {"c": np.arange(12.0).reshape(3, 4),
              "f": np.asfortranarray(np.arange(6).reshape(2, 3)),
              "big_endian": np.arange(4, dtype=">f4"), "flag": np.array(True),
              "empty": np.zeros((0, 3), dtype=np.int8)}
    for compressed in (False, True):
        path = tmp_path / f"f{compressed}.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        got = cli._read_feeds(str(path))
        with np.load(path) as want:  # numpy's own reader is the reference
            assert list(got) == list(want.files)
            for key in want.files:
                np.testing.assert_array_equal(got[key], want[key])
                assert got[key].dtype == want[key].dtype.newbyteorder("=")
                assert got[key].shape == want[key].shape

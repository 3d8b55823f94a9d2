"""Hostile files are refused fast and small: under 0.1 s and 64 MB each."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import tinygraph as tg
from tinygraph.io import archive

LIMIT_SECONDS = 0.1
LIMIT_BYTES = 64 * 2**20


def _saved() -> bytes:
    g = tg.Graph()
    g.param("W", np.ones((3, 4)))
    buf = io.BytesIO()
    g.save(buf)
    return buf.getvalue()


def _bomb(extra: int) -> bytes:
    """A valid file whose arrays/0.npy (3x4 header) is followed by ``extra`` zero bytes."""
    src = zipfile.ZipFile(io.BytesIO(_saved()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("arrays/"):
                data += b"\0" * extra
            z.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _refused(source, match: str) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(tg.FormatError, match=match):
            tg.load(source)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < LIMIT_SECONDS and peak < LIMIT_BYTES, (elapsed, peak)


def test_a_zip_bomb_behind_a_small_header_is_refused_before_inflating():
    data = _bomb(128 * 2**20)
    assert len(data) < 200_000
    _refused(io.BytesIO(data), "zip bomb")


def test_the_header_is_checked_against_the_member_size_before_the_body_is_read(monkeypatch):
    monkeypatch.setattr(archive, "MAX_RATIO", 10**9)  # past the up-front ratio check
    _refused(io.BytesIO(_bomb(32 * 2**20)), r"header claims shape \(3, 4\)")


def test_devices_and_folders_are_not_read(tmp_path):
    _refused("/dev/zero", "not a regular file")
    _refused(str(tmp_path), "not a regular file|cannot open")


def test_honest_files_still_load():
    g = tg.load(io.BytesIO(_saved()))
    np.testing.assert_array_equal(g["W"].value, np.ones((3, 4)))

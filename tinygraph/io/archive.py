"""The ``.tgraph`` container for :mod:`tinygraph.io`: a zip archive, read defensively.

An archive holds exactly ``graph.json`` and ``arrays/<k>.npy`` members.
Writing is deterministic (fixed timestamps, members in order), so the same
graph always gives the same bytes. Reading trusts nothing:

- the file size, the member count and the sum of the members' declared
  uncompressed sizes are limited before anything is inflated (a zip bomb is
  refused up front), and each member is then read to at most its declared
  size, with zipfile checking the CRC;
- member names must be exactly ``graph.json`` or ``arrays/<k>.npy``: no
  paths, no duplicates, no encryption, only stored or deflated data; nothing
  is ever extracted to disk;
- :func:`read_npy` checks an ``.npy`` header's dtype against :data:`DTYPES`
  and its shape against the bytes present before numpy allocates anything,
  and loads with ``allow_pickle=False``.

>>> import io, numpy as np
>>> buf = io.BytesIO()
>>> write_archive(buf, '{"k": 1}', [np.arange(3)])
>>> with Archive(buf, "<buf>", 10**6, 10**6, 10) as archive:
...     sorted(archive.members), read_npy(archive.read("arrays/0.npy"), "a")
(['arrays/0.npy', 'graph.json'], array([0, 1, 2]))
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import zipfile
from typing import Any

import numpy as np

from ..errors import FormatError

__all__ = ["DTYPES", "GRAPH_MEMBER", "MAX_RANK", "Archive", "write_archive", "read_npy"]

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")
GRAPH_MEMBER = "graph.json"
MAX_RANK = 64  # numpy's own limit on dimensions

# A member's first bytes hold its whole .npy header (numpy refuses longer ones).
_NPY_HEAD_BYTES = 16 * 1024
# Arrays (stored uncompressed by write_archive) may unpack to at most this much
# more than the file's own size; graph.json has its own limit.
MAX_INFLATED = 16 * 1024**2
MAX_RATIO = 16

_ARRAY_MEMBER = re.compile(r"arrays/(0|[1-9][0-9]{0,8})\.npy")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_archive(f: Any, text: str, arrays: list[np.ndarray]) -> None:
    """Write ``text`` as graph.json and ``arrays[k]`` as ``arrays/<k>.npy`` into file ``f``."""
    with zipfile.ZipFile(f, "w") as zf:
        _write_member(zf, GRAPH_MEMBER, zipfile.ZIP_DEFLATED, text.encode("utf-8"))
        for k, arr in enumerate(arrays):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            # Stored, not deflated: arrays of floats barely compress, and saving stays fast.
            _write_member(zf, f"arrays/{k}.npy", zipfile.ZIP_STORED, buf.getvalue())


def _write_member(zf: zipfile.ZipFile, name: str, method: int, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


class Archive:
    """An open, checked archive; use as a context manager.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    source : str
        How messages name the file.
    max_bytes, max_json_bytes, max_members : int
        Limits on the file size and the total unpacked size, on graph.json
        and on the number of members.
    """

    def __init__(self, path: Any, source: str, max_bytes: int, max_json_bytes: int,
                 max_members: int):
        self.source = source
        self.limits = (max_bytes, max_json_bytes, max_members)
        self.size = 0
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.zip: zipfile.ZipFile | None = None
        self.owned = not hasattr(path, "read")
        if self.owned:
            try:
                self.file = open(path, "rb")  # noqa: SIM115 - closed by __exit__
                status = os.fstat(self.file.fileno())
            except OSError as exc:
                raise FormatError(f"{source}: cannot open: {exc.strerror or exc}") from None
            if not stat.S_ISREG(status.st_mode):
                # /dev/zero, a FIFO or a directory: stat's size says nothing, reads never end.
                self.file.close()
                raise FormatError(f"{source}: not a regular file; a tinygraph file is a .tgraph "
                                  "file on disk (or pass a binary file object)")
            size = status.st_size
        else:
            self.file = path
            size = self.file.seek(0, os.SEEK_END)
            self.file.seek(0)
        self.size = size
        if size > max_bytes:
            self.close()
            raise FormatError(f"{source}: the file has {size} bytes, more than the limit of "
                              f"{max_bytes}; pass max_bytes= to allow it")

    def __enter__(self) -> Archive:
        try:
            try:
                self.zip = zipfile.ZipFile(self.file)
            except zipfile.BadZipFile:
                raise FormatError(f"{self.source}: not a tinygraph file (not a zip "
                                  "archive)") from None
            self._check_members()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
        if self.owned:
            self.file.close()

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.source}: {message}")

    def _check_members(self) -> None:
        max_bytes, max_json_bytes, max_members = self.limits
        infos = self.zip.infolist()  # type: ignore[union-attr]  # opened by __enter__
        if len(infos) > max_members:
            raise self.fail(f"{len(infos)} members, more than the limit of {max_members}")
        total = arrays = 0
        for info in infos:
            name = info.filename
            if name in self.members:
                raise self.fail(f"the member {name!r} appears twice")
            if name != GRAPH_MEMBER and not _ARRAY_MEMBER.fullmatch(name):
                raise self.fail(f"unexpected member {name!r}; a tinygraph file holds "
                                "graph.json and arrays/<k>.npy only")
            if info.flag_bits & 0x1:
                raise self.fail(f"member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.fail(f"member {name!r} uses an unsupported compression method "
                                f"{info.compress_type}")
            total += info.file_size
            if total > max_bytes:
                raise self.fail(f"the members unpack to more than the limit of {max_bytes} "
                                "bytes (a zip bomb?); pass max_bytes= to allow it")
            if name != GRAPH_MEMBER:
                arrays += info.file_size
            if arrays > MAX_INFLATED + MAX_RATIO * self.size:
                # tinygraph stores arrays uncompressed: a small file whose arrays inflate
                # far beyond its size is a zip bomb, refused before anything is inflated.
                raise self.fail(f"the arrays unpack to more than {MAX_RATIO} times the "
                                f"file's {self.size} bytes (a zip bomb?)")
            self.members[name] = info
        info = self.members.get(GRAPH_MEMBER)
        if info is None:
            raise self.fail("not a tinygraph file (no graph.json member)")
        if info.file_size > max_json_bytes:
            raise self.fail(f"graph.json has {info.file_size} bytes, more than the limit of "
                            f"{max_json_bytes}")

    def array_indices(self) -> list[int]:
        """The ``k`` of every ``arrays/<k>.npy`` member, in archive order."""
        return [int(name[len("arrays/"):-len(".npy")]) for name in self.members
                if name != GRAPH_MEMBER]

    def read(self, name: str) -> bytes:
        """A member's bytes: never more than its declared (and checked) size."""
        info = self.members[name]
        with self.zip.open(info) as f:  # type: ignore[union-attr]  # opened by __enter__
            data = f.read(info.file_size)
            # Reading on to the end makes zipfile verify the CRC.
            if len(data) != info.file_size or f.read(1):
                raise self.fail(f"member {name!r} is truncated or too long")
        return data


    def read_array(self, name: str, where: str) -> np.ndarray:
        """An ``arrays/<k>.npy`` member, its header checked against its size before the body
        is read: a 3x4 header in front of 128 MiB of zeros is refused after a few bytes."""
        info = self.members[name]
        with self.zip.open(info) as f:  # type: ignore[union-attr]  # opened by __enter__
            head = f.read(min(info.file_size, _NPY_HEAD_BYTES))
            shape, dtype, offset = _npy_header(head, where)
            if offset + math.prod(shape) * dtype.itemsize != info.file_size:
                raise FormatError(f"{where}: the header claims shape {shape} {dtype} but the "
                                  f"member holds {info.file_size - offset} bytes of data")
            body = f.read(info.file_size - len(head))
            if len(head) + len(body) != info.file_size or f.read(1):
                raise self.fail(f"member {name!r} is truncated or too long")
        return read_npy(head + body, where)


def _npy_header(data: bytes, where: str) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, offset of the data) from an .npy prefix; FormatError if it is refused."""
    fmt = np.lib.format
    f = io.BytesIO(data)
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError) as exc:
        raise FormatError(f"{where}: not a valid .npy array ({exc})") from None
    if dtype.name not in DTYPES or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: arrays of dtype {dtype} are refused; allowed: "
                          f"{', '.join(DTYPES)}")
    if len(shape) > MAX_RANK:
        raise FormatError(f"{where}: the header claims {len(shape)} dimensions, more than "
                          f"{MAX_RANK}")
    return shape, dtype, f.tell()


def read_npy(data: bytes, where: str) -> np.ndarray:
    """The array in ``.npy`` bytes, its header checked before memory is allocated for it.

    Raises FormatError (message prefixed with ``where``) for a malformed
    header, a dtype outside :data:`DTYPES` (object arrays: pickles are never
    loaded), or a shape that disagrees with the bytes present. Arrays come
    back in native byte order.
    """
    shape, dtype, offset = _npy_header(data, where)
    body = len(data) - offset
    if math.prod(shape) * dtype.itemsize != body:
        raise FormatError(f"{where}: the header claims shape {shape} {dtype} but the member "
                          f"holds {body} bytes of data")
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)

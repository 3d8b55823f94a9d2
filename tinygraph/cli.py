"""The ``tinygraph`` command: draw, run or describe a saved graph.

::

    tinygraph render FILE.tgraph -o out.svg [--collapse] [--format png] [--rankdir LR] ...
    tinygraph run FILE.tgraph [--feeds FEEDS.npz] [--fetch NAME ...] [-o OUT.npz]
    tinygraph info FILE.tgraph [--json]

``render`` loads the graph with :func:`tinygraph.load` and draws it with
:func:`tinygraph.render.render` (the system ``dot`` when on PATH, else the
built-in WebAssembly Graphviz, which writes SVG). ``info`` prints node and op
counts, the inputs, params and outputs (op nodes nothing reads) and the
top-level scopes. ``run`` evaluates the outputs (or ``--fetch`` nodes) with
inputs read from an ``.npz`` file (``allow_pickle=False``) and prints them or
saves them to another ``.npz``. A mistake (a bad file, an unknown option value, no engine
for PNG) prints one ``tinygraph: error: …`` line and exits with status 1.

>>> main(["info", "--help"])  # doctest: +ELLIPSIS
usage: tinygraph info [-h] [--json] FILE
...
0
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import stat
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from .core.shapes import format_shape
from .errors import GraphError
from .graph import Graph, load
from .io import reader as io_reader
from .io.archive import DTYPES, MAX_RANK
from .render import render
from .render.drawing import RANKDIRS
from .render.engine import DEFAULT_TIMEOUT, ENGINES, FORMATS

# numpy refuses .npy headers longer than this, so the first bytes of a member hold it all.
_NPY_HEAD_BYTES = 16 * 1024

__all__ = ["main", "describe"]

_LISTED = 10  # items shown per line of `info` before "… and N more"


def _version() -> str:
    """The installed distribution's version (``tinygraph --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tinygraph")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinygraph",
                                     description="Draw, run or describe a saved tinygraph graph.")
    parser.add_argument("--version", action="version", version=f"tinygraph {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    draw = commands.add_parser("render", help="draw a saved graph to svg/png/pdf/dot",
                               description="Draw a saved graph (.tgraph) to a file.")
    draw.add_argument("file", metavar="FILE", help="a graph saved with g.save()")
    draw.add_argument("-o", "--output", metavar="OUT",
                      help="output file (default: FILE with the format's suffix)")
    draw.add_argument("--format", choices=FORMATS,
                      help="output format (default: from OUT's suffix, else svg)")
    draw.add_argument("--collapse", action="store_true", help="draw each scope as one box")
    draw.add_argument("--hide-params", action="store_true", help="leave params out")
    draw.add_argument("--rankdir", choices=RANKDIRS, default="TB", help="layout direction")
    draw.add_argument("--order", action="store_true", help="number nodes in run order")
    draw.add_argument("--values", action="store_true", help="show params' and consts' values")
    draw.add_argument("--fetch", action="append", metavar="NAME",
                      help="draw only what this node needs (repeatable)")
    draw.add_argument("--max-nodes", type=int, default=500, metavar="N",
                      help="collapse scopes beyond N boxes (0: never; default 500)")
    draw.add_argument("--engine", choices=ENGINES, default="auto",
                      help="Graphviz to use (default: system dot if on PATH, else WASM)")
    draw.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                      help=f"layout time limit in seconds (default {DEFAULT_TIMEOUT:g})")

    run = commands.add_parser("run", help="evaluate a saved graph on feeds from an .npz file",
                              description="Evaluate a saved graph (.tgraph). Feeds come from "
                              "an .npz file whose keys are input names (np.savez).")
    run.add_argument("file", metavar="FILE", help="a graph saved with g.save()")
    run.add_argument("--feeds", metavar="FEEDS.npz", help="input name -> array (np.savez)")
    run.add_argument("--fetch", action="append", metavar="NAME",
                     help="a node to evaluate (repeatable; default: the outputs)")
    run.add_argument("-o", "--output", metavar="OUT.npz",
                     help="save the fetched arrays here instead of printing them")

    info = commands.add_parser("info", help="node/op counts, inputs, params, outputs",
                               description="Describe a saved graph (.tgraph).")
    info.add_argument("file", metavar="FILE", help="a graph saved with g.save()")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _load(path: str) -> Graph:

    try:
        return load(path)
    except OSError as exc:  # a missing or unreadable file is a user mistake too
        raise GraphError(f"cannot read {path!r}: {exc.strerror or exc}") from None


def describe(graph: Graph) -> dict[str, Any]:
    """Counts and lists for ``tinygraph info``, as plain JSON-ready data.

    >>> import numpy as np, tinygraph as tg
    >>> g = tg.Graph("g")
    >>> y = tg.tanh(g.input("x", shape=(None, 2)) @ g.param("W", np.ones((2, 3))))
    >>> d = describe(g)
    >>> d["nodes"], d["ops"], d["outputs"]
    (4, {'matmul': 1, 'tanh': 1}, [{'name': 'tanh', 'shape': '(?, 3)', 'dtype': 'float64'}])
    """
    nodes = list(graph.nodes.values())
    read = bytearray(len(nodes))
    ops: dict[str, int] = {}
    scopes: dict[str, int] = {}
    for node in nodes:
        for src in node.inputs:
            read[src.index] = 1
        if node.kind == "op":
            ops[node.op] = ops.get(node.op, 0) + 1
        scope, sep, _ = node.name.partition("/")
        if sep:
            scopes[scope] = scopes.get(scope, 0) + 1

    def entry(node: Any) -> dict[str, Any]:
        return {"name": node.name, "shape": format_shape(node.shape), "dtype": str(node.dtype)}

    params = [n for n in nodes if n.op == "param"]
    return {
        "name": graph.name,
        "nodes": len(nodes),
        "edges": sum(len(n.inputs) for n in nodes),
        "ops": ops,
        "consts": sum(n.op == "const" for n in nodes),
        "inputs": [entry(n) for n in nodes if n.op == "input"],
        "params": [entry(n) for n in params],
        "param_values": sum(int(n.value.size) for n in params),
        "outputs": [entry(n) for n in nodes if n.kind == "op" and not read[n.index]],
        "scopes": scopes,
    }


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = f", … and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return (shown + more) or "none"


def _info_text(d: dict[str, Any]) -> str:
    def nodes(key: str) -> str:
        return _listing([f"{e['name']} {e['shape']} {e['dtype']}" for e in d[key]])

    ops = _listing([f"{op} ×{count}" for op, count in d["ops"].items()])
    return "\n".join([
        f"graph {d['name']!r}: {d['nodes']} nodes, {d['edges']} edges",
        f"ops ({sum(d['ops'].values())}): {ops}",
        f"inputs ({len(d['inputs'])}): {nodes('inputs')}",
        f"params ({len(d['params'])}, {d['param_values']} values): {nodes('params')}",
        f"consts: {d['consts']}",
        f"outputs ({len(d['outputs'])}): {nodes('outputs')}",
        f"scopes ({len(d['scopes'])}): "
        + _listing([f"{name} ({count} nodes)" for name, count in d["scopes"].items()]),
    ])


def _render(args: argparse.Namespace) -> str:

    graph = _load(args.file)
    fmt = args.format
    output = args.output
    if output is None:
        output = str(Path(args.file).with_suffix("." + (fmt or "svg")))
    elif fmt is None and Path(output).suffix.lstrip(".").lower() not in FORMATS:
        fmt = "svg"
    if args.max_nodes < 0:
        raise GraphError(f"--max-nodes must be >= 0, got {args.max_nodes}")
    return render(graph, output, fmt, fetches=args.fetch, engine=args.engine,
                  timeout=args.timeout, collapse=args.collapse, hide_params=args.hide_params,
                  rankdir=args.rankdir, order=args.order, values=args.values or None,
                  max_nodes=args.max_nodes or None)


def _read_feeds(path: str | None) -> dict[str, np.ndarray]:
    """The ``--feeds`` .npz as input name -> array, read defensively (see :func:`_read_member`).

    The file must be a regular file; the members' declared sizes must add up to
    at most ``tinygraph.io.reader.MAX_BYTES`` before any is inflated; each
    member's .npy header is checked against its own declared size before its
    body is read, straight into the array (no second copy).
    """
    if path is None:
        return {}
    where = f"cannot read feeds from {path!r}"
    limit = io_reader.MAX_BYTES
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
            raise GraphError(f"{where}: not a regular file of at most {limit} bytes")
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise GraphError(f"{where}: it holds one array, not an .npz of input name -> "
                                 "array (write it with np.savez(path, x=...))")
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                members = _feed_members(zf, where, limit)
                return {key: _read_member(zf, info, f"{where}, member {info.filename!r}")
                        for key, info in members.items()}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise GraphError(f"{where} (an .npz file written by np.savez is expected): "
                         f"{exc}") from None


def _feed_members(zf: zipfile.ZipFile, where: str, limit: int) -> dict[str, zipfile.ZipInfo]:
    """input name -> member, every declared size checked before anything is inflated."""
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        key = info.filename[:-len(".npy")]
        if not info.filename.endswith(".npy") or key in members:
            raise GraphError(f"{where}: unexpected or repeated member {info.filename!r}; an "
                             "np.savez file holds one <name>.npy per array")
        if info.flag_bits & 0x1:
            raise GraphError(f"{where}: member {info.filename!r} is encrypted")
        total += info.file_size
        if total > limit:
            raise GraphError(f"{where}: its members unpack to more than {limit} bytes "
                             f"(member {info.filename!r} declares {info.file_size})")
        members[key] = info
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before the body is
    read: a header claiming (10**12,) in front of a few bytes costs a few bytes."""
    fmt = np.lib.format
    with zf.open(info) as f:
        head = f.read(min(info.file_size, _NPY_HEAD_BYTES))
        header = io.BytesIO(head)
        try:
            version = fmt.read_magic(header)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            read_header = (fmt.read_array_header_1_0 if version == (1, 0)
                           else fmt.read_array_header_2_0)
            shape, fortran, dtype = read_header(header)
        except (ValueError, EOFError) as exc:
            raise GraphError(f"{where}: not a valid .npy array ({exc})") from None
        if dtype.name not in DTYPES or dtype.fields is not None or len(shape) > MAX_RANK:
            raise GraphError(f"{where}: arrays of dtype {dtype} and {len(shape)} dimensions are "
                             f"refused; allowed: {', '.join(DTYPES)}, at most {MAX_RANK}")
        offset = header.tell()
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes != info.file_size:
            raise GraphError(f"{where}: the header claims shape {shape} {dtype} but the member "
                             f"holds {info.file_size - offset} bytes of data")
        arr = np.empty(math.prod(shape), dtype=dtype)
        view = arr.data.cast("B")  # memoryview(arr): numpy types __buffer__ from 3.12 only
        done = len(head) - offset
        view[:done] = head[offset:]
        while done < nbytes:
            got = cast(io.BufferedIOBase, f).readinto(view[done:])  # a ZipExtFile
            if not got:
                raise GraphError(f"{where}: the member is truncated")
            done += got
        if f.read(1):  # reading to the end also makes zipfile check the CRC
            raise GraphError(f"{where}: the member is longer than it declares")
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _write_npz(path: str, names: list[str], values: list[Any]) -> None:
    """What ``np.savez`` writes, but to exactly ``path`` and with any key (even ``file``)."""
    try:
        with zipfile.ZipFile(path, "w") as zf:
            for name, value in zip(names, values, strict=True):
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    except OSError as exc:
        raise GraphError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _one_line(text: str) -> str:
    """``text`` with control characters (newlines, ANSI escapes) and surrogates escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text).encode(
        "utf-8", "backslashreplace").decode("utf-8")


def _run(args: argparse.Namespace) -> str:
    graph = _load(args.file)
    fetches = args.fetch or [o["name"] for o in describe(graph)["outputs"]]
    if not fetches:
        raise GraphError(f"graph '{graph.name}' has no op nodes to evaluate; name one "
                         "with --fetch")
    if args.output and not Path(args.output).parent.is_dir():
        raise GraphError(f"cannot write {args.output!r}: the folder "
                         f"{str(Path(args.output).parent)!r} does not exist")
    values = graph.run(list(fetches), _read_feeds(args.feeds))
    if args.output:
        _write_npz(args.output, fetches, values)
        return args.output
    with np.printoptions(threshold=50, edgeitems=3, precision=6):
        return "\n".join(f"{name} {format_shape(np.shape(v))} {np.asarray(v).dtype}:\n{v}"
                         for name, v in zip(fetches, values, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: argparse has printed them
        return int(exc.code or 0)
    try:
        if args.command == "render":
            print(_render(args))
        elif args.command == "run":
            print(_run(args))
        else:
            described = describe(_load(args.file))
            text = json.dumps(described, indent=2) if args.json else _info_text(described)
            print(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    except GraphError as exc:
        print(f"tinygraph: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except (OSError, MemoryError, RecursionError, ValueError, UnicodeError, RuntimeError,
            TypeError) as exc:
        # The promise is one line and no traceback for anything a user's file or
        # arguments can cause (a layout engine's crash included).
        print(f"tinygraph: error: {type(exc).__name__}: {_one_line(str(exc))}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

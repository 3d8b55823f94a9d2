"""Run tinygraph graphs on a Dask cluster: batch inference and data-parallel gradients.

``pip install "tinygraph[dask]"``; nothing else imports this module.

How a call travels::

    driver                                             each worker (once per graph)
    ------                                             ----------------------------
    g.save() -> .tgraph bytes --scatter(broadcast)-->  tg.load(bytes) -> graph,
                sha256 of the bytes ----------------->    cached by that hash
    feeds split along their batch axis
      chunk 0, chunk 1, ... ------------------------>  compiled plan (cached per
                                                        fetches and fed inputs)
    join the chunks along the fetches' batch axis <--  fetched arrays

A graph travels as the bytes of its ``.tgraph`` file, through the safe
loader; Dask pickles its own task messages: run it on a cluster you trust.
Batch axes (:func:`batch_axis`), rules and limits: ``docs/distributed.md``.

>>> import numpy as np, tinygraph as tg, tinygraph.dask as tgd
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 3))
>>> y = x @ g.param("W", np.ones((3, 2))) + 1.0
>>> tgd.run(g, y, {"x": np.arange(12.0).reshape(4, 3)}, chunks=2)   # no client: local threads
array([[ 4.,  4.],
       [13., 13.],
       [22., 22.],
       [31., 31.]])
"""

from __future__ import annotations

import hashlib
import io
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import tinygraph as tg

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "tinygraph.dask needs Dask and its distributed scheduler, which tinygraph does not "
        "install by default: pip install \"tinygraph[dask]\" (or pip install "
        f"\"dask[distributed]\"); the import failed with: {exc}"
    ) from exc

__all__ = ["run", "Remote", "batch_axis"]

_CACHE_SIZE = 8  # graphs kept per worker process (a sweep over many models reuses slots)


# ------------------------------------------------------------------ batch axes


def batch_axis(node: tg.Node) -> int | None:
    """The batch axis of ``node``: its last ``None`` axis, or None when it has none.

    >>> import tinygraph as tg
    >>> g = tg.Graph()
    >>> [batch_axis(g.input(n, shape=s)) for n, s in [("a", (None, 3)), ("b", (5, None, 2)),
    ...                                                ("c", (4,))]]
    [0, 1, None]
    """
    axes = [i for i, d in enumerate(node.shape) if d is None]
    return axes[-1] if axes else None


def _take(arr: Any, axis: int, start: int, stop: int) -> Any:
    return arr[(slice(None),) * axis + (slice(start, stop),)]


# ------------------------------------------------------------ worker side


class _Loaded:
    """One graph loaded on a worker, with its compiled plans (per fetches and inputs)."""

    def __init__(self, blob: bytes):
        self.graph = tg.load(io.BytesIO(blob))
        self.plans: dict[tuple, Any] = {}
        self.lock = threading.Lock()  # params are assigned before a run: one run at a time


_graphs: OrderedDict[str, _Loaded] = OrderedDict()
_graphs_lock = threading.Lock()


def _loaded(blob: bytes, digest: str) -> _Loaded:
    """The graph of ``blob`` on this worker, loaded the first time its hash is seen."""
    with _graphs_lock:
        entry = _graphs.get(digest)
        if entry is None:
            if hashlib.sha256(blob).hexdigest() != digest:
                raise tg.FormatError(f"graph bytes do not match their sha256 {digest[:12]}…")
            entry = _graphs[digest] = _Loaded(blob)
            while len(_graphs) > _CACHE_SIZE:
                _graphs.popitem(last=False)
        _graphs.move_to_end(digest)
        return entry


def _run_chunk(blob: bytes, digest: str, fetches: tuple[str, ...], inputs: tuple[str, ...],
               params: Mapping[str, np.ndarray] | None, *arrays: np.ndarray) -> tuple:
    """Runs on a worker: ``fetches`` of the graph given ``arrays`` for ``inputs``."""
    entry = _loaded(blob, digest)
    with entry.lock:
        for name, value in (params or {}).items():
            entry.graph.params[name].value[...] = value
        plan = entry.plans.get((fetches, inputs))
        if plan is None:
            plan = entry.plans[fetches, inputs] = entry.graph.compile(list(fetches),
                                                                      inputs=list(inputs))
        return tuple(plan(*arrays))


# ------------------------------------------------------------- driver side


def _client(client: Any) -> Any:
    """``client``, else the current Dask client, else None (dask's local scheduler)."""
    if client is not None:
        return client
    try:
        return distributed.default_client()
    except ValueError:
        return None


def _graph_bytes(graph: tg.Graph) -> tuple[bytes, str]:
    if not isinstance(graph, tg.Graph):
        raise tg.GraphError(f"tinygraph.dask takes a tinygraph.Graph, got "
                            f"{type(graph).__name__}")
    blob = tg.save(graph, io.BytesIO()).getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


# The graphs' bytes held on each client's workers, newest last: a repeated call ships
# nothing, and holding the future keeps a re-scatter from racing the release of its key.
_shipped: weakref.WeakKeyDictionary[Any, OrderedDict[str, Any]] = weakref.WeakKeyDictionary()


def _ship_graph(client: Any, blob: bytes, digest: str) -> Any:
    """The graph's bytes on every worker once (a future), or the bytes themselves."""
    if client is None:
        return blob
    held = _shipped.setdefault(client, OrderedDict())
    if digest not in held:
        held[digest] = client.scatter(blob, broadcast=True, hash=False)
        while len(held) > _CACHE_SIZE:
            held.popitem(last=False)
    held.move_to_end(digest)
    return held[digest]


def _flatten(graph: tg.Graph, fetches: Any, names: list[str]) -> Any:
    """A template of ``fetches`` with leaf indices; their node names appended to ``names``."""
    if isinstance(fetches, dict):
        return {k: _flatten(graph, v, names) for k, v in fetches.items()}
    if isinstance(fetches, list | tuple):
        return type(fetches)(_flatten(graph, v, names) for v in fetches)
    if isinstance(fetches, tg.Node):
        if fetches.graph is not graph:
            raise tg.GraphError(f"fetch '{fetches.name}' belongs to graph "
                                f"'{fetches.graph.name}', not '{graph.name}'")
        name = fetches.name
    elif isinstance(fetches, str):
        name = fetches
    else:
        raise tg.GraphError(f"fetches are nodes, node names, or lists/tuples/dicts of those; "
                            f"got {type(fetches).__name__}")
    names.append(name)
    return len(names) - 1


def _rebuild(template: Any, values: Sequence[Any]) -> Any:
    if isinstance(template, dict):
        return {k: _rebuild(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return type(template)(_rebuild(v, values) for v in template)
    return values[template]


def _stand_in(value: Any) -> Any:
    """A dask array as zeros of its shape and dtype (a view of one number): never computed."""
    if isinstance(value, da.Array):
        return np.broadcast_to(np.zeros((), value.dtype), value.shape)
    return value


def _refuse_feed(graph: tg.Graph, fetch_names: list[str], key: Any, value: Any) -> None:
    """Raise the FeedError ``g.run`` raises for this one feed (it checks feeds before running)."""
    graph.run(fetch_names, {key: _stand_in(value)})
    raise tg.FeedError(f"feed {key!r} does not fit graph '{graph.name}'")  # pragma: no cover


def _resolve(graph: tg.Graph, fetch_names: list[str],
             feeds: Mapping[Any, Any]) -> dict[str, Any]:
    """``feeds`` by input name, numpy or dask arrays of the declared sizes."""
    if not isinstance(feeds, Mapping):
        raise tg.FeedError(f"feeds must be a dict of input -> array, got {type(feeds).__name__}")
    resolved: dict[str, Any] = {}
    for key, value in feeds.items():
        if isinstance(key, tg.Node) and key.graph is graph and key.op == "input":
            node = key
        elif isinstance(key, str) and key in graph.inputs:
            node = graph.inputs[key]
        else:
            _refuse_feed(graph, fetch_names, key, value)
        try:
            arr = value if isinstance(value, da.Array) else np.asarray(value)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != len(node.shape) or any(
                d is not None and d != n for d, n in zip(node.shape, arr.shape, strict=True)):
            _refuse_feed(graph, fetch_names, key, value)
        resolved[node.name] = arr
    return resolved


def _batch_size(graph: tg.Graph, feeds: Mapping[str, Any]) -> int:
    """The one batch size every split input agrees on (inputs of size 1 go whole)."""
    sizes = {name: arr.shape[axis] for name, arr in feeds.items()
             if (axis := batch_axis(graph.inputs[name])) is not None}
    big = {name: n for name, n in sizes.items() if n != 1}
    if not sizes:
        raise tg.GraphError(f"none of the fed inputs of graph '{graph.name}' has a batch (None) "
                            "axis, so there is nothing to split over workers; use g.run")
    first, rows = next(iter(big.items()), (None, 1))
    for name, size in big.items():
        if size != rows:
            raise tg.FeedError(f"input '{name}' has {size} rows along its batch axis "
                               f"{batch_axis(graph.inputs[name])} but input '{first}' has "
                               f"{rows}; inputs split together need the same batch size (or "
                               "size 1 to go whole to every chunk)")
    return rows


def _probe(graph: tg.Graph, fetch_names: list[str], feeds: Mapping[str, Any]) -> list:
    """``g.run`` on one row: the same FeedError as ``g.run``, and each fetch's trailing shape."""
    small = {}
    for name, arr in feeds.items():
        axis = batch_axis(graph.inputs[name])
        if axis is not None:
            arr = _take(arr, axis, 0, 1)
        small[name] = _stand_in(arr)  # a dask array's dtype is checked without computing it
    with np.errstate(all="ignore"):
        return graph.run(fetch_names, small)


def _boundaries(graph: tg.Graph, feeds: Mapping[str, Any], rows: int, chunks: int | None,
                client: Any) -> list[int]:
    """Row offsets 0 = b_0 < b_1 < … < b_n = rows of the chunks."""
    for name, arr in feeds.items():
        axis = batch_axis(graph.inputs[name])
        if isinstance(arr, da.Array) and axis is not None and arr.shape[axis] == rows:
            return [0, *np.cumsum(arr.chunks[axis]).tolist()]  # dask arrays keep their chunks
    if chunks is None:
        workers = 1 if client is None else max(1, sum(client.nthreads().values()))
        chunks = max(1, -(-rows // workers))
    if isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks < 1:
        raise tg.GraphError(f"chunks must be a number of rows >= 1, got {chunks!r}")
    return [*range(0, rows, int(chunks)), rows] if rows else [0, 0]


def _pieces(arr: Any, axis: int | None, rows: int, bounds: list[int], client: Any) -> list:
    """``arr`` cut at ``bounds`` along ``axis`` (or whole for every chunk), ready for tasks."""
    count = len(bounds) - 1
    if axis is None or arr.shape[axis] != rows or rows == 1:
        return [arr] * count
    if isinstance(arr, da.Array):
        arr = arr.rechunk({i: (tuple(np.diff(bounds)) if i == axis else -1)
                           for i in range(arr.ndim)})
        return list(arr.to_delayed().reshape(-1))
    parts = [_take(arr, axis, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    return parts if client is None else client.scatter(parts, hash=False)


def _gather(client: Any, futures: list, timeout: float | None) -> list:
    distributed.wait(futures, timeout=timeout)  # TimeoutError after timeout seconds
    return client.gather(futures)


def run(graph: tg.Graph, fetches: Any, feeds: Mapping[Any, Any], client: Any = None, *,
        chunks: int | None = None, compute: bool = True, timeout: float | None = None) -> Any:
    """Evaluate ``fetches`` like ``graph.run``, one chunk of the batch per Dask task.

    ``fetches`` (a node, a name, or a list/tuple/dict of those) must each have
    a batch axis; they come back joined along it, in the same structure.
    ``feeds`` maps inputs (nodes or names) to numpy or dask arrays; each is
    split along its batch axis into chunks of ``chunks`` rows (default: the
    batch spread over the workers' threads) unless it is a dask array, which
    keeps its chunks. ``client``: default the current Dask client, else dask's
    local threads. ``compute=False`` returns dask arrays; ``timeout``: seconds
    to wait for the workers.

    Raises
    ------
    tinygraph.FeedError
        As ``g.run`` raises it, on the driver before anything ships (checked
        on one row; a dask array by its shape and dtype), or the split inputs
        disagree on the batch size.
    tinygraph.GraphError
        A fetch has no batch axis (e.g. a scalar loss).
    """
    client = _client(client)
    fetch_names: list[str] = []
    template = _flatten(graph, fetches, fetch_names)
    fed = _resolve(graph, fetch_names, feeds)
    rows = _batch_size(graph, fed)
    probe = _probe(graph, fetch_names, fed)
    axes = []
    for name, value in zip(fetch_names, probe, strict=True):
        node = graph.nodes[name]
        axis = batch_axis(node)
        if axis is None or np.shape(value)[axis] != min(rows, 1):
            raise tg.GraphError(
                f"tgd.run: fetch '{name}' ({node.op}, shape {node.shape}) has no batch axis that "
                "follows the fed rows, so its value is not a join of per-chunk values (a mean "
                "or a sum over the batch is one); fetch the per-row node and reduce it on the "
                "driver, or use g.run")
        axes.append(axis)
    blob, digest = _graph_bytes(graph)
    shipped = _ship_graph(client, blob, digest)
    bounds = _boundaries(graph, fed, rows, chunks, client)
    names = tuple(fed)
    columns = [_pieces(fed[n], batch_axis(graph.inputs[n]), rows, bounds, client) for n in names]
    task = dask.delayed(_run_chunk, pure=False, nout=len(fetch_names))
    parts = [task(shipped, digest, tuple(fetch_names), names, None, *args)
             for args in zip(*columns, strict=True)] if names else []
    if not compute:
        lazy = []
        for j, (value, axis) in enumerate(zip(probe, axes, strict=True)):
            blocks = [da.from_delayed(part[j], shape=np.shape(value)[:axis]
                                      + (b - a,) + np.shape(value)[axis + 1:],
                                      dtype=np.asarray(value).dtype)
                      for part, a, b in zip(parts, bounds, bounds[1:], strict=False)]
            lazy.append(da.concatenate(blocks, axis=axis))
        return _rebuild(template, lazy)
    if client is None:
        results = dask.compute(*parts, scheduler="threads")
    else:
        results = _gather(client, client.compute(parts), timeout)
    joined = [np.concatenate([r[j] for r in results], axis=axis)
              for j, axis in enumerate(axes)]
    return _rebuild(template, joined)


class Remote:
    """``graph`` shipped to the workers of ``client`` once, to run there on pieces of data.

    The building block of :func:`run` and of data-parallel training
    (``tinygraph_rnn.lm_dask``): ``remote.map(fetches, inputs, pieces)`` runs
    the plan of ``fetches`` for ``inputs`` once per piece (a tuple of arrays,
    one per input), one task each, and returns each piece's list of fetched
    arrays. ``params`` (name -> array) replace the shipped param values for
    that call: a driver whose optimizer steps the params sends them each
    step instead of shipping the graph again.
    """

    def __init__(self, graph: tg.Graph, client: Any = None):
        self.graph = graph
        self.client = _client(client)
        if self.client is None:
            raise tg.GraphError("tgd.Remote needs a dask.distributed Client (client=...)")
        blob, self.digest = _graph_bytes(graph)
        self.shipped = _ship_graph(self.client, blob, self.digest)

    @property
    def threads(self) -> int:
        """The worker threads of the cluster: how many pieces run at once."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fetches: Sequence[Any], inputs: Sequence[Any], pieces: Sequence[Sequence],
            params: Mapping[str, np.ndarray] | None = None,
            timeout: float | None = None) -> list[list[np.ndarray]]:
        fetch_names: list[str] = []
        _flatten(self.graph, list(fetches), fetch_names)
        names = tuple(_input(self.graph, item) for item in inputs)
        futures = [self.client.submit(_run_chunk, self.shipped, self.digest, tuple(fetch_names),
                                      names, params, *piece, pure=False) for piece in pieces]
        return [list(r) for r in _gather(self.client, futures, timeout)]


def _input(graph: tg.Graph, item: Any) -> str:
    node = item if isinstance(item, tg.Node) else graph.inputs.get(item)
    if node is None or node.graph is not graph or node.op != "input":
        raise tg.FeedError(f"inputs= takes input nodes or their names; got {item!r}")
    return node.name

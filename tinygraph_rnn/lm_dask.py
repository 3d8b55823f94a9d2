"""Data-parallel training steps on a Dask cluster (``CharLM.train(client=...)``).

Each call splits the batch's streams into one share per worker thread; each
worker runs the training plan on its share with the driver's current params
(forward and backpropagation through time); the driver joins the per-stream
fetches (the final states) and combines the batch means (the loss and its
gradients) weighted by each share's streams::

    mean over B streams = sum over shares i of (B_i / B) * (mean over share i)

so the result is the whole batch's, and the driver clips and steps exactly
as a local step does. Needs ``pip install "tinygraph[dask]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import tinygraph as tg
import tinygraph.dask as tgd

__all__ = ["DataParallel"]


class DataParallel:
    """A plan like ``graph.compile(fetches, inputs)`` whose calls split the batch over workers.

    Parameters
    ----------
    graph : tinygraph.Graph
    fetches, inputs : list of nodes or names
        As for ``graph.compile``; each input is split along its batch axis
        (:func:`tinygraph.dask.batch_axis`), or sent whole when it has none.
    client : dask.distributed.Client
    means : list of nodes or names
        The fetches that are means over the batch (a loss, the gradients of
        a mean loss); they are combined weighted by share. Every other fetch
        must have a batch axis and is joined along it.

    Raises
    ------
    tinygraph.GraphError
        A fetch has no batch axis and is not listed in ``means``.
    """

    def __init__(self, graph: tg.Graph, fetches: Sequence[Any], inputs: Sequence[Any],
                 client: Any, means: Sequence[Any] = (), timeout: float | None = None):
        self.graph, self.fetches, self.inputs = graph, list(fetches), list(inputs)
        self.timeout = timeout
        mean_names = {graph.node(m).name if isinstance(m, str) else m.name for m in means}
        nodes = [graph.node(f) if isinstance(f, str) else f for f in self.fetches]
        self.means = [node.name in mean_names for node in nodes]
        self.axes = [tgd.batch_axis(node) for node in nodes]
        for node, axis, mean in zip(nodes, self.axes, self.means, strict=True):
            if axis is None and not mean:
                raise tg.GraphError(
                    f"data-parallel plan: fetch '{node.name}' (shape {node.shape}) has no batch "
                    "axis; list it in means=[...] if it is a mean over the batch (a loss, its "
                    "gradients), or fetch a per-row node")
        self.input_axes = [tgd.batch_axis(graph.node(i) if isinstance(i, str) else i)
                           for i in self.inputs]
        self.remote = tgd.Remote(graph, client)

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """The fetches for positional ``arrays``, one per input in order."""
        if len(arrays) != len(self.inputs):
            raise tg.FeedError(f"this plan takes {len(self.inputs)} positional inputs, got "
                               f"{len(arrays)}")
        arrays = [np.asarray(a) for a in arrays]  # type: ignore[assignment]
        sizes = {a.shape[axis] for a, axis in zip(arrays, self.input_axes, strict=True)
                 if axis is not None and axis < a.ndim}
        if len(sizes) != 1 or 0 in sizes:
            raise tg.FeedError(f"the split inputs must share one batch size >= 1; got sizes "
                               f"{sorted(sizes)}")
        rows = sizes.pop()
        shares = min(rows, self.remote.threads)
        bounds = [round(rows * i / shares) for i in range(shares + 1)]
        pieces = [tuple(a if axis is None else a[(slice(None),) * axis + (slice(lo, hi),)]
                        for a, axis in zip(arrays, self.input_axes, strict=True))
                  for lo, hi in zip(bounds, bounds[1:], strict=False)]
        # The driver's params are the truth (its optimizer steps them): sent every call.
        params = {name: node.value.copy() for name, node in self.graph.params.items()}
        results = self.remote.map(self.fetches, self.inputs, pieces, params=params,
                                  timeout=self.timeout)
        weights = [(hi - lo) / rows for lo, hi in zip(bounds, bounds[1:], strict=False)]
        out = []
        for j, (axis, mean) in enumerate(zip(self.axes, self.means, strict=True)):
            if mean:
                out.append(sum(w * r[j] for w, r in zip(weights, results, strict=True)))
            else:
                out.append(np.concatenate([r[j] for r in results], axis=axis))
        return out

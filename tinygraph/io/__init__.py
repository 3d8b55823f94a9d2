"""Save and load graphs: one zip archive of JSON structure and ``.npy`` arrays.

``g.save(path)`` writes a ``.tgraph`` file (any name works); ``tg.load(path)``
reads it back into an equal graph whose outputs match bit for bit. The
archive (:mod:`tinygraph.io.archive`) holds ``graph.json`` and one
``arrays/<k>.npy`` member per array::

    {"format": "tinygraph", "version": 1, "name": "affine", "nodes": [
      {"name": "x", "op": "input", "inputs": [], "shape": [null, 3], "dtype": "float64",
       "attrs": {}, "meta": {}},
      {"name": "W", "op": "param", ..., "value": {"array": 0}},
      {"name": "matmul", "op": "matmul", "inputs": ["x", "W"], "shape": [null, 4], ...}]}

Nodes are listed in insertion order (a topological order). Params keep their
value in ``value``; consts (attr ``value``) and input defaults (attr
``default``) are array attrs. Attr and meta values are tagged JSON
(:mod:`tinygraph.io.values`).

Loading trusts nothing in the file. Nothing is evaluated, unpickled or
imported: ops are looked up in :data:`tinygraph.core.ops.OPS`, and an op's attrs
must be keywords its forward takes. The graph is rebuilt through the normal
builder (``Graph.input/param/const/add_node``), so every shape rule re-checks
the file, and then each node's recorded shape and dtype must equal the
inferred ones. Sizes, member counts, nesting and dtypes are limited; anything
wrong raises :class:`~tinygraph.FormatError` naming the file, the node and
the field (or :class:`~tinygraph.CycleError` showing ``a -> b -> a``), never
a bare exception.

>>> import os, tempfile, numpy as np, tinygraph as tg
>>> g = tg.Graph("affine")
>>> x = g.input("x", shape=(None, 2))
>>> y = tg.tanh(x @ g.param("W", np.eye(2)), name="y")
>>> path = g.save(os.path.join(tempfile.mkdtemp(), "affine.tgraph"))
>>> h = tg.load(path)
>>> list(h.nodes), h.run("y", feeds={"x": np.zeros((1, 2))})
(['x', 'W', 'matmul', 'y'], array([[0., 0.]]))
"""

from .archive import DTYPES
from .reader import MAX_BYTES, MAX_JSON_BYTES, MAX_MEMBERS, load
from .writer import FORMAT_NAME, FORMAT_VERSION, save

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION", "DTYPES", "MAX_BYTES",
           "MAX_JSON_BYTES", "MAX_MEMBERS"]

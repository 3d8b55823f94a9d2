"""Write tests/data/io_v1.tgraph, the golden file of save/load format version 1.

The file pins the on-disk format: tests load it with the current code and
compare its outputs with hand-written numpy on the same seeded arrays, so a
change that breaks reading old files fails a test. Rerun only when the
format version changes (then keep the old file too):

    .venv/bin/python tests/data/make_io_fixtures.py
"""

from __future__ import annotations

import pathlib

import numpy as np

import tinygraph as tg

HERE = pathlib.Path(__file__).parent


def golden_graph() -> tg.Graph:
    """A small graph touching every kind of saved value (see tests/test_io.py)."""
    rng = np.random.default_rng(20240601)
    g = tg.Graph("golden v1")
    x = g.input("x", shape=(None, 3), dtype="float32")
    ids = g.input("ids", shape=(2,), dtype="int64", default=np.array([2, 0]))
    W = g.param("W", rng.standard_normal((3, 4)).astype(np.float32))
    E = g.param("E", rng.standard_normal((3, 4)))
    with g.scope("t=0"), g.scope('odd "name"\n:'):
        h = tg.tanh(x @ W + np.float32(0.5), name="h")
        h.meta.update({"t": 0, "kind": ("cell", 1), "origin": x})
    rows = tg.take(E, ids)
    tg.sum(tg.softmax(tg.transpose(h, axes=(1, 0))[:, :2], axis=0) * rows.T, axis=(0,),
           keepdims=False, name="out")
    return g


if __name__ == "__main__":
    path = golden_graph().save(HERE / "io_v1.tgraph")
    print(f"wrote {path}")

"""Save/load: round trips are bit-identical, and hostile files raise GraphError.

References are hand-written numpy on the same arrays, never the loader itself;
hostile files are built here byte by byte or by rewriting graph.json.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import warnings
import zipfile

import numpy as np
import pytest

import tinygraph as tg
import tinygraph.io as tgio

RNG = np.random.default_rng(1234)


def roundtrip(g: tg.Graph, tmp_path, name: str = "g.tgraph") -> tg.Graph:
    path = tmp_path / name
    assert g.save(path) == path
    return tg.load(path)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------- graphs


def affine_graph(dtype="float64"):
    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 3), dtype=dtype)
    W = g.param("W", RNG.standard_normal((3, 4)).astype(dtype))
    b = g.param("b", RNG.standard_normal(4).astype(dtype))
    y = tg.softmax(tg.tanh(x @ W + b), axis=-1, name="y")
    feeds = {"x": RNG.standard_normal((5, 3)).astype(dtype)}

    def reference():
        return softmax(np.tanh(feeds["x"] @ W.value + b.value))

    return g, y.name, feeds, reference


def embedding_graph():
    g = tg.Graph("lm")
    ids = g.input("ids", shape=(None,), dtype="int64")
    targets = g.input("targets", shape=(None,), dtype="int64")
    E = g.param("E", RNG.standard_normal((7, 4)))
    V = g.param("V", RNG.standard_normal((4, 7)))
    logits = tg.take(E, ids) @ V
    loss = tg.cross_entropy(logits, targets, name="loss")
    hot = tg.one_hot(ids, depth=7, dtype="float32", name="hot")
    feeds = {"ids": np.array([0, 6, 3, 3]), "targets": np.array([1, 2, 0, 6])}

    def reference():
        z = E.value[feeds["ids"]] @ V.value
        logp = z - z.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        nll = -logp[np.arange(4), feeds["targets"]].mean()
        return [nll, np.eye(7, dtype=np.float32)[feeds["ids"]]]

    return g, [loss.name, hot.name], feeds, reference


ODD = ['t=0', 'quote"s', "new\nline", "colon:x", "back\\slash", "<html>", "λ ünï"]


def scoped_graph():
    g = tg.Graph('odd "graph"\n')
    h0 = g.input("h0", shape=(2,), default=np.array([0.5, -0.25]))
    h = h0
    for k, scope in enumerate(ODD):
        with g.scope(scope), g.scope("inner"):
            c = g.const(np.arange(2.0) + k, name="c: 'k'")
            h = tg.sigmoid(h * c - 1.0)
    out = tg.sum(tg.stack([h, h0], axis=0), axis=(0,), keepdims=True, name="out")

    def reference():
        v = np.array([0.5, -0.25])
        for k in range(len(ODD)):
            v = 1.0 / (1.0 + np.exp(-(v * (np.arange(2.0) + k) - 1.0)))
        return (v + np.array([0.5, -0.25]))[None, :]

    return g, out.name, {}, reference


def shapes_graph():
    g = tg.Graph("shapes")
    x = g.input("x", shape=(2, 3, 4), dtype="float32")
    a = tg.transpose(x, axes=(2, 0, 1))[1:, :, ::-1]
    b = tg.reshape(a, (-1, 3))
    c = tg.concat([b, 2 * b], axis=0)
    m = tg.mean(c, axis=1)
    r = tg.relu(-m) ** 2 / 3
    out = tg.log_softmax(tg.exp(r) - 1, axis=0, name="out")
    feeds = {"x": RNG.standard_normal((2, 3, 4)).astype(np.float32)}

    def reference():
        bb = feeds["x"].transpose(2, 0, 1)[1:, :, ::-1].reshape(-1, 3)
        mm = np.concatenate([bb, np.float32(2) * bb]).mean(axis=1)
        rr = np.maximum(-mm, 0) ** np.float32(2) / np.float32(3)
        z = np.exp(rr) - np.float32(1)
        z = z - z.max()
        return z - np.log(np.exp(z).sum())

    return g, out.name, feeds, reference


GRAPHS = {"affine": affine_graph, "affine32": lambda: affine_graph("float32"),
          "embedding": embedding_graph, "scoped": scoped_graph, "shapes": shapes_graph}


# ----------------------------------------------------------- round trips


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_round_trip_is_bit_identical(make, tmp_path):
    g, fetch, feeds, reference = make()
    single = isinstance(fetch, str)
    fetches = [fetch] if single else fetch
    expected = g.run(fetches, feeds=feeds)
    got = roundtrip(g, tmp_path).run(fetches, feeds=feeds)
    references = [reference()] if single else reference()
    for e, o, r in zip(expected, got, references, strict=True):
        assert o.dtype == e.dtype and np.array_equal(o, e)
        np.testing.assert_allclose(o, r, rtol=1e-5 if o.dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_structure_is_preserved(make, tmp_path):
    g = make()[0]
    h = roundtrip(g, tmp_path)
    assert h.name == g.name
    assert list(h.nodes) == list(g.nodes)
    for a, b in zip(g.nodes.values(), h.nodes.values(), strict=True):
        assert (a.op, a.shape, a.dtype, a.index) == (b.op, b.shape, b.dtype, b.index)
        assert [n.name for n in a.inputs] == [n.name for n in b.inputs]
        assert a.meta == b.meta
        assert a.attrs.keys() == b.attrs.keys()
        for key, value in a.attrs.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == b.attrs[key].dtype
                assert np.array_equal(value, b.attrs[key])
            else:
                assert value == b.attrs[key] and type(value) is type(b.attrs[key])
    h.validate()
    assert sorted(h.nx.edges) == sorted(g.nx.edges)


def test_param_update_in_place_is_saved_and_loaded_param_is_live(tmp_path):
    g, fetch, feeds, _ = affine_graph()
    W = g["W"]
    W.value[0, :] += 10.0  # an optimizer step: in place, after the graph was built
    h = roundtrip(g, tmp_path)
    want = softmax(np.tanh(feeds["x"] @ W.value + g["b"].value))
    assert np.array_equal(h.run(fetch, feeds=feeds), g.run(fetch, feeds=feeds))
    np.testing.assert_allclose(h.run(fetch, feeds=feeds), want, rtol=1e-12)
    assert not np.shares_memory(h["W"].value, W.value)
    h["W"].value *= 0.0  # the loaded param is writeable and live
    np.testing.assert_allclose(h.run(fetch, feeds=feeds),
                               softmax(np.tanh(0 * feeds["x"] @ W.value + g["b"].value)))


def test_input_default_and_const_survive(tmp_path):
    g = scoped_graph()[0]
    h = roundtrip(g, tmp_path)
    assert np.array_equal(h["h0"].attrs["default"], [0.5, -0.25])
    const = h[f"{ODD[1]}/inner/c: 'k'"]
    assert np.array_equal(const.value, [1.0, 2.0])
    assert not const.value.flags.writeable


def test_meta_values_round_trip(tmp_path):
    g = tg.Graph()
    x = g.input("x", shape=(2,))
    y = tg.exp(x, name="y")
    meta = {"t": 3, "tag": (1, (2.5, None), [True, "s"]), "ints": {1: "a", (2, 3): [4]},
            "nan": math.nan, "inf": -math.inf, "np": np.float32(1.5), "i8": np.int8(-3),
            "arr": np.arange(3, dtype=np.uint16), "dt": np.dtype("int32"), "of": x, "big": 2**62}
    y.meta.update(meta)
    z = roundtrip(g, tmp_path)["y"].meta
    assert z.keys() == meta.keys()
    for key in ("t", "tag", "ints", "inf", "dt", "big"):
        assert z[key] == meta[key], key
        assert type(z[key]) is type(meta[key])
    assert math.isnan(z["nan"])
    assert type(z["np"]) is np.float32 and z["np"] == 1.5
    assert type(z["i8"]) is np.int8 and z["i8"] == -3
    assert z["arr"].dtype == np.uint16 and np.array_equal(z["arr"], [0, 1, 2])
    assert z["of"].name == "x" and z["of"].graph is not g  # a node of the loaded graph


def test_save_is_deterministic_and_accepts_file_objects(tmp_path):
    g = scoped_graph()[0]
    g.save(tmp_path / "a.tgraph")
    buf = io.BytesIO()
    assert tg.save(g, buf) is buf
    assert (tmp_path / "a.tgraph").read_bytes() == buf.getvalue()
    h = tg.load(io.BytesIO(buf.getvalue()))
    assert list(h.nodes) == list(g.nodes)
    assert not [p for p in os.listdir(tmp_path) if p != "a.tgraph"]  # no temporary left


def test_long_chain_round_trips_without_recursion(tmp_path):
    g = tg.Graph("chain")
    h = g.input("x", shape=(3,))
    for _ in range(20_000):
        h = tg.tanh(h)
    k = roundtrip(g, tmp_path)
    feed = np.array([0.1, -2.0, 3.0])
    want = feed
    for _ in range(20_000):
        want = np.tanh(want)
    assert np.array_equal(k.run(h.name, feeds={"x": feed}), want)

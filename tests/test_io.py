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
    for _ in range(5_000):
        h = tg.tanh(h)
    k = roundtrip(g, tmp_path)
    feed = np.array([0.1, -2.0, 3.0])
    want = feed
    for _ in range(5_000):
        want = np.tanh(want)
    assert np.array_equal(k.run(h.name, feeds={"x": feed}), want)


def test_unrolled_rnn_with_gradients_round_trips(tmp_path):
    import tinygraph_rnn as rnn

    net = rnn.unroll(rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=2, seed=3),
                     steps=5)
    g = net.graph
    loss = tg.sum(net.states[-1] * net.states[-1], name="loss")
    gU, gW = tg.grad(loss, [g["U"], g["W"]])
    xs = RNG.standard_normal((5, 2, 3))
    feeds = {node.name: xs[k] for k, node in enumerate(net.inputs)}
    fetches = [node.name for node in net.outputs] + [loss.name, gU.name, gW.name]
    h = roundtrip(g, tmp_path)
    h.validate()
    assert [h[n].meta for n in h.nodes] == [g[n].meta for n in g.nodes]
    got = h.run(fetches, feeds=feeds)
    for a, b in zip(g.run(fetches, feeds=feeds), got, strict=True):
        assert np.array_equal(a, b)
    # Independent reference: the seed's recurrence in numpy, gradients by central differences.
    b_, V, c = (g[k].value for k in ("b", "V", "c"))

    def forward(U, W):
        s, outs = np.zeros((1, 4)), []
        for x in xs:
            s = np.tanh(x @ U + s @ W + b_)
            outs.append(softmax(s @ V + c))
        return outs, (s * s).sum()

    U0, W0 = g["U"].value.copy(), g["W"].value.copy()
    outs, total = forward(U0, W0)
    for want, out in zip(outs, got[:5], strict=True):
        np.testing.assert_allclose(out, want, rtol=1e-12)
    np.testing.assert_allclose(got[5], total, rtol=1e-12)
    for k, base in enumerate((U0, W0)):
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[idx] = 1e-6
            args = [[base + step, W0], [U0, base + step]][k]
            minus = [[base - step, W0], [U0, base - step]][k]
            numeric[idx] = (forward(*args)[1] - forward(*minus)[1]) / 2e-6
        np.testing.assert_allclose(got[6 + k], numeric, rtol=1e-6, atol=1e-8)


def test_golden_file_of_format_version_1_still_loads(tmp_path):
    golden = os.path.join(os.path.dirname(__file__), "data", "io_v1.tgraph")
    g = tg.load(golden)
    rng = np.random.default_rng(20240601)  # the arrays make_io_fixtures.py drew
    W = rng.standard_normal((3, 4)).astype(np.float32)
    E = rng.standard_normal((3, 4))
    assert np.array_equal(g["W"].value, W) and np.array_equal(g["E"].value, E)
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0], [0.25, 0.5, 0.75]], dtype=np.float32)
    h = np.tanh(x @ W + np.float32(0.5))
    z = h.T[:, :2]
    p = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)
    want = (p * E[[2, 0]].T).sum(axis=0)
    np.testing.assert_allclose(g.run("out", feeds={"x": x}), want, rtol=1e-6)
    scoped = 't=0/odd "name"\n:/h'
    assert g[scoped].meta == {"t": 0, "kind": ("cell", 1), "origin": g["x"]}
    # The writer is stable too: saving what was loaded reproduces the file byte for byte.
    with open(golden, "rb") as f:
        assert g.save(io.BytesIO()).getvalue() == f.read()


# --------------------------------------------------------- hostile files


def base_graph() -> tg.Graph:
    g = tg.Graph("base")
    x = g.input("x", shape=(2, 3), default=np.ones((2, 3)))
    W = g.param("W", np.eye(3))
    c = g.const(np.array([1.0, 2.0, 3.0]), name="c")
    tg.softmax(x @ W + c, axis=-1, name="y")
    return g  # nodes: x, W, c, matmul, add, y


def saved(g: tg.Graph | None = None) -> bytes:
    return tg.save(base_graph() if g is None else g, io.BytesIO()).getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def archive(items, method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of (name, bytes) pairs, duplicates allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return buf.getvalue()


def with_json(edit, data: bytes | None = None) -> bytes:
    """The base file with graph.json edited (CRCs stay valid: only the content lies)."""
    parts = members(saved() if data is None else data)
    doc = json.loads(parts["graph.json"])
    edit(doc)
    parts["graph.json"] = json.dumps(doc).encode()
    return archive(parts.items())


def with_text(text: str | bytes) -> bytes:
    parts = members(saved())
    parts["graph.json"] = text.encode() if isinstance(text, str) else text
    return archive(parts.items())


def load_bytes(data: bytes, **kw):
    return tg.load(io.BytesIO(data), **kw)


def fails(data: bytes, match: str | None = None, error=tg.FormatError, **kw) -> str:
    with pytest.raises(error, match=match) as info:
        load_bytes(data, **kw)
    return str(info.value)


def node(i):
    return lambda doc: doc["nodes"][i]


def setter(i, field, value):
    def edit(doc):
        doc["nodes"][i][field] = value
    return edit


MARKER = "tinygraph_io_pwned"


def test_missing_or_wrong_path_is_a_format_error(tmp_path):
    with pytest.raises(tg.FormatError, match="cannot open"):
        tg.load(tmp_path / "nope.tgraph")
    with pytest.raises(tg.FormatError, match="cannot open"):
        tg.load(tmp_path)
    with pytest.raises(tg.FormatError, match="file name"):
        tg.load(123)


TAMPERED = {
    "unknown op": (setter(5, "op", "evil"), "unknown op \"evil\""),
    "code as op": (setter(5, "op", f"__import__('os').system('touch {MARKER}')"), "unknown op"),
    "shape claim": (setter(3, "shape", [2, 4]), "records shape"),
    "dtype claim": (setter(5, "dtype", "float32"), "records shape"),
    "unknown input": (setter(3, "inputs", ["x", "nope"]), "does not define"),
    "duplicate name": (setter(2, "name", "W"), "used twice"),
    "arity": (setter(5, "inputs", ["add", "x"]), "does not build"),
    "leaf with inputs": (setter(1, "inputs", ["x"]), "takes no inputs"),
    "ufunc keyword": (setter(3, "attrs", {"dtype": "object"}), "unknown attr"),
    "axis as code": (setter(5, "attrs", {"axis": f"__import__('os').mkdir('{MARKER}')"}),
                     "does not build"),
    "huge int": (setter(5, "attrs", {"axis": 2**70}), "64 bits"),
    "name int": (setter(0, "name", 5), "'name'"),
    "name empty": (setter(0, "name", ""), "'name'"),
    "inputs str": (setter(3, "inputs", "x"), "'inputs'"),
    "inputs ints": (setter(3, "inputs", [0, 1]), "'inputs'"),
    "shape str": (setter(0, "shape", "abc"), "'shape'"),
    "shape float": (setter(0, "shape", [2.0, 3]), "'shape'"),
    "shape negative": (setter(0, "shape", [-2, 3]), "'shape'"),
    "shape bool": (setter(0, "shape", [True, 3]), "'shape'"),
    "shape huge": (setter(0, "shape", [2**64, 3]), "'shape'"),
    "shape string size": (setter(0, "shape", ["2", 3]), "'shape'"),
    "shape rank": (setter(0, "shape", [1] * 65), "'shape'"),
    "dtype object": (setter(0, "dtype", "object"), "'dtype'"),
    "dtype typestr": (setter(0, "dtype", "<f8"), "'dtype'"),
    "dtype complex": (setter(0, "dtype", "complex128"), "'dtype'"),
    "dtype int": (setter(0, "dtype", 8), "'dtype'"),
    "attrs list": (setter(0, "attrs", []), "'attrs'"),
    "meta str": (setter(0, "meta", "x"), "'meta'"),
    "node not object": (lambda d: d["nodes"].__setitem__(0, ["x"]), "expected an object"),
    "missing field": (lambda d: d["nodes"][0].pop("shape"), "missing field"),
    "extra field": (setter(0, "code", "print(1)"), "unknown field"),
    "value on input": (setter(0, "value", {"array": 0}), "unknown field"),
    "param without value": (lambda d: d["nodes"][1].pop("value"), "missing field"),
    "value missing array": (setter(1, "value", {"array": 99}), "lacks"),
    "value str index": (setter(1, "value", {"array": "1"}), "lacks"),
    "value bool index": (setter(1, "value", {"array": True}), "lacks"),
    "value used twice": (setter(1, "value", {"array": 0}), "used twice"),
    "value not array": (setter(1, "value", 5), "expected an array"),
    "const without value": (setter(2, "attrs", {}), "expected an array"),
    "const extra attr": (lambda d: d["nodes"][2]["attrs"].update(evil=1), "unknown attr"),
    "unknown tag": (setter(0, "meta", {"k": {"pickle": "gASV"}}), "invalid tagged"),
    "two keys": (setter(0, "meta", {"k": {"a": 1, "b": 2}}), "tagged value"),
    "tuple of int": (setter(0, "meta", {"k": {"tuple": 5}}), "must hold a list"),
    "dict pair": (setter(0, "meta", {"k": {"dict": [1]}}), "pairs"),
    "dict list key": (setter(0, "meta", {"k": {"dict": [[[1], 2]]}}), "not hashable"),
    "dict dup key": (setter(0, "meta", {"k": {"dict": [[1, 2], [1, 3]]}}), "twice"),
    "float tag": (setter(0, "meta", {"k": {"float": "1e5"}}), "invalid tagged"),
    "dtype tag": (setter(0, "meta", {"k": {"dtype": "object"}}), "invalid tagged"),
    "node tag": (setter(0, "meta", {"k": {"node": "nope"}}), "invalid tagged"),
    "node in attrs": (setter(5, "attrs", {"axis": {"node": "x"}}), "invalid tagged"),
    "deep nesting": (setter(0, "meta", {"k": json.loads("[" * 100 + "]" * 100)}), "levels"),
    "default shape": (lambda d: d["nodes"][0].update(shape=[3, 3]), "does not build"),
    "version 3": (lambda d: d.update(version=3), "newer"),
    "version str": (lambda d: d.update(version="1"), "version"),
    "version bool": (lambda d: d.update(version=True), "version"),
    "format": (lambda d: d.update(format="pickle"), "not a tinygraph graph"),
    "graph name": (lambda d: d.update(name=["x"]), "'name'"),
    "nodes str": (lambda d: d.update(nodes="x"), "'nodes'"),
    "missing nodes": (lambda d: d.pop("nodes"), "missing field"),
    "top extra": (lambda d: d.update(exec="1"), "unknown field"),
    "forward reference": (lambda d: d["nodes"].insert(3, d["nodes"].pop(4)), "lists after"),
}


@pytest.mark.parametrize("case", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_json_is_refused_with_a_message(case, tmp_path, monkeypatch):
    edit, match = case
    monkeypatch.chdir(tmp_path)
    message = fails(with_json(edit), match)
    assert message.startswith("<file object>: ")
    assert not os.path.exists(MARKER)  # nothing in the file ran


def test_strings_that_look_like_code_stay_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = f"__import__('os').mkdir('{MARKER}')"
    g = load_bytes(with_json(setter(0, "meta", {code: code, "x": [code, {"tuple": [code]}]})))
    assert g["x"].meta == {code: code, "x": [code, (code,)]}
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("inputs", "cycle"), [
    ({3: ["add", "W"]}, "matmul -> add -> matmul"),
    ({5: ["y"]}, "y -> y"),
    ({3: ["y", "W"]}, "matmul -> add -> y -> matmul"),
])
def test_cycle_in_file_raises_cycle_error_showing_it(inputs, cycle):
    def edit(doc):
        for i, names in inputs.items():
            doc["nodes"][i]["inputs"] = names
    with pytest.raises(tg.CycleError) as info:
        load_bytes(with_json(edit))
    message = str(info.value)
    assert " -> " in message
    # find_cycle may start anywhere on the cycle: compare it as a rotation.
    want = cycle.split(" -> ")[:-1]
    got = info.value.cycle
    assert len(got) == len(want) and any(got == want[k:] + want[:k] for k in range(len(want)))
    assert " -> ".join([*got, got[0]]) in message


RAW_JSON = {
    "NaN": (b'{"format":"tinygraph","version":1,"name":"g","nodes":[{"name":"x","op":"input",'
            b'"inputs":[],"shape":[NaN],"dtype":"float64","attrs":{},"meta":{}}]}', "not valid"),
    "inf": (b'{"format":"tinygraph","version":1,"name":"g","nodes":[{"name":"x","op":"input",'
            b'"inputs":[],"shape":[1e400],"dtype":"float64","attrs":{},"meta":{}}]}', "'shape'"),
    "duplicate key": (b'{"format":"tinygraph","format":"tinygraph","version":1}', "repeats"),
    "bad utf-8": (b'{"format":"\xff\xfe"}', "not valid"),
    "trailing": (b'{"format":"tinygraph"} x', "not valid"),
    "empty": (b"", "not valid"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "not valid"),
    "list": (b"[1, 2]", "not a tinygraph graph"),
    "huge int": (b"1" * 5000, "not valid"),
}


@pytest.mark.parametrize("case", RAW_JSON.values(), ids=RAW_JSON.keys())
def test_malformed_json_text_is_refused(case):
    text, match = case
    parts = members(saved())
    parts["graph.json"] = text
    # Arrays no node refers to would be reported too; keep them only where JSON parses.
    fails(archive([("graph.json", text)]), match)
    fails(archive(parts.items()), match)


def test_every_truncation_is_refused():
    data = saved()
    for n in range(len(data)):
        with pytest.raises(tg.FormatError):
            load_bytes(data[:n])


def test_random_bytes_are_refused():
    rng = np.random.default_rng(7)
    for k in range(300):
        junk = rng.integers(0, 256, size=int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        prefix = [b"", b"PK\x03\x04", b"PK\x05\x06"][k % 3]
        with pytest.raises(tg.FormatError):
            load_bytes(prefix + junk)


def outputs(g: tg.Graph) -> np.ndarray:
    return g.run("y")


def check_rejected_or_intact(data: bytes) -> None:
    """A damaged file is refused, or (if the damage missed everything that matters) intact."""
    try:
        g = load_bytes(data)
    except tg.GraphError:
        return
    g.validate()
    reference = base_graph()
    assert list(g.nodes) == list(reference.nodes)
    assert np.array_equal(outputs(g), outputs(reference))


def test_every_single_byte_flip_is_refused_or_harmless():
    data = saved()
    refused = 0
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        try:
            load_bytes(bytes(flipped))
        except tg.GraphError:
            refused += 1
            continue
        check_rejected_or_intact(bytes(flipped))
    assert refused > 0.8 * len(data)  # zip timestamps and attributes may change harmlessly


def test_seeded_byte_mutations_are_refused_or_harmless():
    data = saved()
    rng = np.random.default_rng(11)
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, len(mutated)))
            action = rng.integers(0, 3)
            if action == 0:
                mutated[i] = int(rng.integers(0, 256))
            elif action == 1:
                del mutated[i]
            else:
                mutated.insert(i, int(rng.integers(0, 256)))
        check_rejected_or_intact(bytes(mutated))


def json_values():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8) \
        | st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(
                            ["tuple", "dict", "array", "scalar", "float", "dtype", "node", "x"]),
                            inner, max_size=2), max_leaves=6)


def json_paths(doc) -> list[tuple]:
    """Every place in a JSON document, iteratively (path = keys from the root)."""
    paths, stack = [], [((), doc)]
    while stack:
        path, value = stack.pop()
        paths.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value) \
            if isinstance(value, list) else ()
        stack.extend((path + (k,), v) for k, v in items)
    return paths


def test_random_json_replacements_raise_graph_errors_only():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    parts = members(saved())
    doc = json.loads(parts["graph.json"])
    paths = sorted(json_paths(doc)[1:], key=repr)

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(st.sampled_from(paths), json_values())
    def check(path, value):
        new = json.loads(parts["graph.json"])
        target = new
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        edited = dict(parts, **{"graph.json": json.dumps(new).encode()})
        try:
            g = load_bytes(archive(edited.items()))
        except tg.GraphError:
            return
        g.validate()  # whatever loads is a well-formed graph

    check()


# ----------------------------------------------------------- zip tricks


def test_oversized_files_are_refused(monkeypatch):
    data = saved()
    fails(data, "more than the limit", max_bytes=len(data) - 1)
    assert load_bytes(data, max_bytes=len(data) + 10_000)
    monkeypatch.setattr(tgio.reader, "MAX_BYTES", 100)
    fails(data, "pass max_bytes=")
    for bad in ("1GB", -1, 2.5, True):
        fails(data, "max_bytes must be", error=tg.GraphError, max_bytes=bad)


def test_zip_bomb_is_refused_before_unpacking():
    parts = members(saved())
    parts["graph.json"] = parts["graph.json"] + b" " * 20_000_000  # valid JSON, huge
    bomb = archive(parts.items())
    assert len(bomb) < 100_000
    fails(bomb, "zip bomb", max_bytes=1_000_000)


def test_json_size_and_member_count_limits(monkeypatch):
    data = saved()
    monkeypatch.setattr(tgio.reader, "MAX_JSON_BYTES", 100)
    fails(data, "graph.json has")
    monkeypatch.undo()
    monkeypatch.setattr(tgio.reader, "MAX_MEMBERS", 2)
    fails(data, "members, more than")


def patch_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Make the zip headers of member ``name`` declare ``size`` uncompressed bytes."""
    out = bytearray(data)
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30),
                                               (b"PK\x01\x02", 24, 28, 46)):
        i = out.find(sig)
        while i >= 0:
            (n,) = struct.unpack_from("<H", out, i + name_len_at)
            if out[i + name_at:i + name_at + n] == name:
                struct.pack_into("<I", out, i + size_at, size)
            i = out.find(sig, i + 1)
    return bytes(out)


def test_lying_member_sizes_are_caught():
    data = saved()
    real = len(members(data)["graph.json"])
    fails(patch_sizes(data, b"graph.json", real - 10))  # reads stop short: CRC/JSON fail
    fails(patch_sizes(data, b"graph.json", real + 10))
    fails(patch_sizes(data, b"graph.json", 2**32 - 1), "limit")


@pytest.mark.parametrize("evil", ["../evil.npy", "/etc/evil", "arrays/../../evil.npy",
                                  "arrays/0.npy/../x", "C:\\evil.npy", "arrays/01.npy",
                                  "arrays/", "graph.json/", "arrays/-1.npy"])
def test_member_names_outside_the_format_are_refused(evil, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parts = members(saved())
    fails(archive([*parts.items(), (evil, b"x")]), "unexpected member")
    assert os.listdir(tmp_path) == []  # nothing is ever extracted


def test_duplicate_members_are_refused():
    parts = members(saved())
    fails(archive([*parts.items(), ("arrays/0.npy", parts["arrays/0.npy"])]), "twice")
    fails(archive([*parts.items(), ("graph.json", b"{}")]), "twice")


def test_unreferenced_array_member_is_refused():
    parts = members(saved())
    fails(archive([*parts.items(), ("arrays/9.npy", parts["arrays/0.npy"])]), "no node refers")


def test_no_graph_json_or_odd_compression_is_refused():
    parts = members(saved())
    fails(archive([(k, v) for k, v in parts.items() if k != "graph.json"]), "no graph.json")
    fails(archive(parts.items(), zipfile.ZIP_BZIP2), "compression")
    data = saved()
    i = data.find(b"PK\x01\x02")
    encrypted = bytearray(data)
    encrypted[i + 8] |= 0x1
    fails(bytes(encrypted), "encrypted")


class Evil:
    """Unpickling this would create a directory: proof that nothing is unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def npy(arr: np.ndarray | None = None, header: dict | None = None, body: bytes = b"") -> bytes:
    buf = io.BytesIO()
    if header is None:
        np.save(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(body)
    return buf.getvalue()


def with_member(name: str, data: bytes) -> bytes:
    parts = members(saved())
    parts[name] = data
    return archive(parts.items())


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = str(tmp_path / MARKER)
    evil = np.empty(1, dtype=object)
    evil[0] = Evil(marker)
    fails(with_member("arrays/1.npy", npy(evil)), "dtype object")
    assert not os.path.exists(marker)


@pytest.mark.parametrize(("member", "header", "body", "match"), [
    ("arrays/1.npy", {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}, b"\0" * 8,
     "claims shape"),
    ("arrays/1.npy", {"descr": "<f8", "fortran_order": False, "shape": (3, 3)}, b"\0" * 8,
     "claims shape"),
    ("arrays/1.npy", {"descr": "<c16", "fortran_order": False, "shape": (3, 3)}, b"\0" * 144,
     "complex"),
    ("arrays/1.npy", {"descr": [("a", "<f8")], "fortran_order": False, "shape": (9,)},
     b"\0" * 72, "refused"),
    ("arrays/1.npy", {"descr": "<i8", "fortran_order": False, "shape": (3, 3)}, b"\0" * 72,
     "the node records"),  # an int array for a float param
    ("arrays/1.npy", {"descr": "<f8", "fortran_order": False, "shape": (9,)}, b"\0" * 72,
     "the node records"),  # right size, wrong shape
])
def test_lying_npy_members_are_refused(member, header, body, match):
    fails(with_member(member, npy(header=header, body=body)), match)
    fails(with_member(member, b"\x93NUMPY\x09\x00junk"), "not a valid .npy")


def test_big_endian_arrays_load_as_native_values():
    W = np.arange(9.0).reshape(3, 3)
    g = load_bytes(with_member("arrays/1.npy", npy(W.astype(">f8"))))
    assert g["W"].value.dtype == np.dtype("float64") and np.array_equal(g["W"].value, W)


# --------------------------------------------------------------- saving


def test_unsavable_values_raise_graph_error(tmp_path):
    g = base_graph()
    g["y"].meta["fn"] = print
    with pytest.raises(tg.GraphError, match="node 'y', meta 'fn'"):
        g.save(tmp_path / "a.tgraph")
    loop: list = []
    loop.append(loop)
    g["y"].meta["fn"] = loop
    with pytest.raises(tg.GraphError, match="levels deep"):
        g.save(tmp_path / "a.tgraph")
    g["y"].meta["fn"] = np.array(["a"])
    with pytest.raises(tg.GraphError, match="dtype <U1"):
        g.save(tmp_path / "a.tgraph")
    g["y"].meta["fn"] = tg.Graph().input("other", shape=())
    with pytest.raises(tg.GraphError, match="cannot save a Node"):
        g.save(tmp_path / "a.tgraph")
    assert os.listdir(tmp_path) == []
    with pytest.raises(tg.GraphError, match="cannot write"):
        base_graph().save(tmp_path / "no" / "dir.tgraph")
    with pytest.raises(tg.GraphError, match="takes a tinygraph.Graph"):
        tg.save("not a graph", tmp_path / "a.tgraph")


def test_docs_io_page_examples_run():
    import doctest

    page = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "io.md")
    result = doctest.testfile(page, module_relative=False, verbose=False, globs={},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 25, result
    assert result.failed == 0, result


def test_a_fused_recurrence_round_trips_and_a_forged_activation_is_refused(tmp_path):
    # An optimized graph holds the optimizer's recurrence op; it saves and loads
    # like any primitive, and its one attr is checked on load like any other.
    g = tg.Graph("rec")
    a = g.input("a", shape=(4, None, 3))
    W = g.param("W", np.random.default_rng(0).standard_normal((3, 3)) * 0.5)
    s = g.input("s0", shape=(None, 3))
    states = []
    for t in range(4):
        s = tg.tanh(a[t] + s @ W)
        states.append(s)
    fused = tg.passes.optimize(g, [tg.stack(states)])
    rec = next(n for n in fused.nodes.values() if n.op == "recurrence")
    back = roundtrip(fused, tmp_path)
    feeds = {"a": np.random.default_rng(1).standard_normal((4, 2, 3)), "s0": np.zeros((2, 3))}
    want, h = [], feeds["s0"]
    for t in range(4):
        h = np.tanh(feeds["a"][t] + h @ W.value)
        want.append(h)
    np.testing.assert_allclose(back.run(rec.name, feeds), want, rtol=1e-12)

    def forge(doc):
        entry = next(e for e in doc["nodes"] if e["op"] == "recurrence")
        entry["attrs"]["activation"] = "__import__('os')"
    data = with_json(forge, tg.save(fused, io.BytesIO()).getvalue())
    fails(data, "activation must be one of")

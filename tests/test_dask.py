"""tinygraph.dask on a real local cluster: two worker processes, one thread each.

The references are independent of the code under test: hand-written numpy
for the affine graph, the local ``g.run`` (the path the issue names as the
reference), and three local ``CharLM`` steps for data-parallel training.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
tgd = pytest.importorskip("tinygraph.dask")

from markdown_pages import run_page  # noqa: E402 - after the importorskips

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds any one distributed call may take before the test fails



@pytest.fixture(scope="module")
def client():
    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    dask_client = distributed.Client(cluster, timeout=TIMEOUT)
    dask_client.wait_for_workers(2, timeout=TIMEOUT)
    yield dask_client
    dask_client.close(timeout=TIMEOUT)
    cluster.close(timeout=TIMEOUT)


def _affine(seed=0):
    rng = np.random.default_rng(seed)
    g = tg.Graph("affine")
    x = g.input("x", shape=(None, 3))
    W = g.param("W", rng.normal(size=(3, 4)))
    b = g.param("b", rng.normal(size=4))
    y = tg.tanh(x @ W + b)
    return g, x, y, W.value, b.value


# ------------------------------------------------------------------ import


def test_tinygraph_imports_without_dask_and_tinygraph_dask_says_how_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["dask"] = None          # as if Dask were not installed
        sys.modules["distributed"] = None
        import numpy as np, tinygraph as tg, tinygraph_rnn as rnn
        g = tg.Graph()
        print(g.run(tg.exp(g.input("x", shape=(1,))), {"x": np.zeros(1)}))
        try:
            import tinygraph.dask
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    assert out.startswith("[1.]\n")
    assert 'pip install "tinygraph[dask]"' in out


# ------------------------------------------------------------ batch inference


def test_affine_1000_rows_equals_numpy_and_g_run(client):
    g, x, y, W, b = _affine()
    X = np.random.default_rng(1).normal(size=(1000, 3))
    got = tgd.run(g, y, {"x": X}, client=client, timeout=TIMEOUT)
    np.testing.assert_allclose(got, np.tanh(X @ W + b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, g.run(y, {"x": X}), rtol=0, atol=1e-12)
    assert got.shape == (1000, 4) and got.dtype == np.float64
    again = tgd.run(g, y, {x: X}, client=client, timeout=TIMEOUT)
    np.testing.assert_array_equal(again, got)  # repeated runs: the same numbers


def test_affine_dask_array_in_4_chunks_keeps_its_chunks(client):
    g, x, y, W, b = _affine(seed=2)
    X = np.random.default_rng(3).normal(size=(1000, 3))
    X_dask = da.from_array(X, chunks=(250, 3))
    got = tgd.run(g, y, {"x": X_dask}, client=client, timeout=TIMEOUT)
    np.testing.assert_allclose(got, np.tanh(X @ W + b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, g.run(y, {"x": X}), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tgd.run(g, y, {"x": X_dask}, client=client), got)

    lazy = tgd.run(g, {"y": y, "both": [y, x]}, {"x": X_dask}, client=client, compute=False)
    assert isinstance(lazy["y"], da.Array) and lazy["y"].chunks == ((250,) * 4, (4,))
    y_lazy, x_lazy = client.compute([lazy["y"], lazy["both"][1]], sync=True)
    np.testing.assert_array_equal(y_lazy, got)
    np.testing.assert_array_equal(x_lazy, X)


def test_fetch_structure_and_uneven_chunks_match_g_run(client):
    g, x, y, W, b = _affine(seed=4)
    X = np.random.default_rng(5).normal(size=(7, 3))
    fetches = {"y": y, "pair": (x, tg.exp(y)), "names": [y.name]}
    got = tgd.run(g, fetches, {"x": X}, client=client, chunks=3, timeout=TIMEOUT)
    want = g.run(fetches, {"x": X})
    assert isinstance(got["pair"], tuple) and isinstance(got["names"], list)
    np.testing.assert_allclose(got["y"], want["y"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["pair"][1], want["pair"][1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got["pair"][0], X)
    np.testing.assert_array_equal(got["names"][0], got["y"])


def _rnn(T=6, D=5, H=7, **kwargs):
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=D, seed=1)
    return rnn.unroll(cell, steps=T, **kwargs)


def test_unrolled_rnn_batch_64_equals_g_run(client):
    net = _rnn()
    rng = np.random.default_rng(6)
    xs = rng.normal(size=(6, 64, 5))
    s0 = rng.normal(size=(64, 7))
    fetches = {"outputs": net.outputs, "states": net.states}
    feeds = {node: xs[t] for t, node in enumerate(net.inputs)}
    for state in (s0, s0[:1], None):  # split with the streams, one row for all, the default
        fed = dict(feeds) if state is None else {**feeds, net.initial_state: state}
        got = tgd.run(net.graph, fetches, fed, client=client, timeout=TIMEOUT)
        want = net.graph.run(fetches, fed)
        for key in fetches:
            assert len(got[key]) == 6
            for a, b in zip(got[key], want[key], strict=True):
                assert a.shape == b.shape == (64, 5 if key == "outputs" else 7)
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    again = tgd.run(net.graph, fetches, fed, client=client, timeout=TIMEOUT)
    np.testing.assert_array_equal(np.array(again["states"]), np.array(got["states"]))


def test_sequence_input_splits_along_its_batch_axis_1(client):
    net = _rnn(sequence=True)
    xs = np.random.default_rng(7).normal(size=(6, 64, 5))
    assert tgd.batch_axis(net.sequence) == 1
    got = tgd.run(net.graph, net.states, {net.sequence: da.from_array(xs, chunks=(6, 16, 5))},
                  client=client, timeout=TIMEOUT)
    want = net.graph.run(net.states, {net.sequence: xs})
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_worker_loads_and_compiles_each_graph_once(client):
    g, x, y, W, b = _affine(seed=8)
    X = np.ones((10, 3))
    for _ in range(3):
        tgd.run(g, y, {"x": X}, client=client, timeout=TIMEOUT)
    digest = tgd._graph_bytes(g)[1]

    def cached(digest=digest):
        import tinygraph.dask as worker_tgd

        entry = worker_tgd._graphs.get(digest)
        return None if entry is None else (id(entry.graph), len(entry.plans))

    seen = client.run(cached)
    assert len(seen) == 2 and all(v is not None and v[1] == 1 for v in seen.values()), seen
    tgd.run(g, y, {"x": X}, client=client, timeout=TIMEOUT)
    assert client.run(cached) == seen  # the same loaded graph object, still one plan


# ----------------------------------------------------------------- mistakes


def test_bad_feeds_raise_feed_error_on_the_driver(client):
    g, x, y, W, b = _affine()
    X = np.ones((100, 3))
    with pytest.raises(tg.FeedError, match=r"input 'x' wants shape \(\?, 3\) float64; got "
                                            r"shape \(100, 2\)") as info:
        tgd.run(g, y, {"x": np.ones((100, 2))}, client=client)
    assert not any("distributed" in str(entry.path) for entry in info.traceback)
    with pytest.raises(tg.FeedError, match=r"input 'x' wants .*got shape \(100, 3, 1\)"):
        tgd.run(g, y, {"x": da.ones((100, 3, 1))}, client=client)
    with pytest.raises(tg.FeedError, match="'xx' names no input .* did you mean 'x'"):
        tgd.run(g, y, {"xx": X}, client=client)
    with pytest.raises(tg.FeedError, match="got dtype complex128"):
        tgd.run(g, y, {"x": X.astype(complex)}, client=client)
    with pytest.raises(tg.FeedError, match="got dtype complex128"):
        tgd.run(g, y, {"x": da.from_array(X.astype(complex), chunks=50)}, client=client)


def test_inputs_disagreeing_on_the_batch_size_raise_feed_error(client):
    g = tg.Graph("two")
    a, b = g.input("a", shape=(None, 2)), g.input("b", shape=(2, None))
    y = a + tg.transpose(b)
    with pytest.raises(tg.FeedError, match="input 'b' has 5 rows along its batch axis 1 but "
                                           "input 'a' has 4"):
        tgd.run(g, y, {"a": np.ones((4, 2)), "b": np.ones((2, 5))}, client=client)
    with pytest.raises(tg.FeedError, match="input 'b'"):
        tgd.run(g, y, {"a": np.ones((4, 2))}, client=client)  # missing, as g.run says


def test_a_fetch_without_batch_axis_is_refused_saying_what_to_do(client):
    g, x, y, W, b = _affine()
    loss = tg.mean(y)
    with pytest.raises(tg.GraphError, match=r"fetch 'mean' .*no batch axis.*reduce it on the "
                                            r"driver, or use g.run"):
        tgd.run(g, [y, loss], {"x": np.ones((8, 3))}, client=client)


# ------------------------------------------------------ data-parallel training


@pytest.mark.parametrize("batch_size", [5, 1])
def test_three_data_parallel_charlm_steps_equal_three_local_steps(client, batch_size):
    text = (ROOT / "tinygraph_rnn" / "data").glob("*.txt")
    corpus = next(iter(sorted(text))).read_text(encoding="utf-8")[:5000]

    def model():
        return rnn.CharLM.from_text(corpus, hidden_size=12, seq_len=6, batch_size=batch_size,
                                    seed=2)

    local, spread = model(), model()
    want = local.train(3, lr=0.05, verbose=False)
    got = spread.train(3, lr=0.05, verbose=False, client=client)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    for p, q in zip(spread.params, local.params, strict=True):
        np.testing.assert_allclose(p.value, q.value, rtol=0, atol=1e-9)
    assert spread.trained_steps == local.trained_steps == 3
    # The carried states stayed with their streams: the next local step continues equally.
    np.testing.assert_allclose(spread.train(1, lr=0.05, verbose=False),
                               local.train(1, lr=0.05, verbose=False), rtol=0, atol=1e-9)


def test_data_parallel_plan_weights_batch_means_by_share(client):
    from tinygraph_rnn.lm_dask import DataParallel

    g, x, y, W, b = _affine(seed=9)
    loss = tg.mean(y * y)
    (grad_W,) = tg.grad(loss, [g.params["W"]])
    X = np.random.default_rng(10).normal(size=(5, 3))  # shares of 2 and 3 rows
    fn = DataParallel(g, [loss, grad_W, y], [x], client, means=[loss, grad_W], timeout=TIMEOUT)
    got = fn(X)
    h = np.tanh(X @ W + b)
    np.testing.assert_allclose(got[0], np.mean(h * h), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[1], X.T @ (2 * h * (1 - h * h)) / h.size, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[2], h, rtol=0, atol=1e-12)
    with pytest.raises(tg.FeedError, match="takes 1 positional inputs"):
        fn(X, X)
    with pytest.raises(tg.GraphError, match="fetch 'mean' .*list it in means="):
        DataParallel(g, [loss], [x], client)


def test_remote_map_runs_each_piece_with_the_params_sent(client):
    g, x, y, W, b = _affine(seed=11)
    remote = tgd.Remote(g, client)
    X = np.random.default_rng(12).normal(size=(6, 3))
    W2 = W + 1.0
    (first,), (second,) = remote.map([y], [x], [(X[:2],), (X[2:],)], params={"W": W2},
                                     timeout=TIMEOUT)
    np.testing.assert_allclose(np.concatenate([first, second]), np.tanh(X @ W2 + b), rtol=0,
                               atol=1e-12)
    assert remote.threads == 2


# ---------------------------------------------------------------------- docs


def test_docs_distributed_page_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace, ran = run_page(ROOT / "docs" / "distributed.md")
    assert ran >= 3

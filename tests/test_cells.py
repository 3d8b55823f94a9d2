"""Cells against independent references: a hand-written numpy loop of the
seed's equations, and golden files computed once with PyTorch."""

from pathlib import Path

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

DATA = Path(__file__).parent / "data"
TORCH_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
CELLS = {"rnn": rnn.VanillaRNNCell, "gru": rnn.GRUCell, "lstm": rnn.LSTMCell}


def seed_forward(xs, U, W, b, V, c, s0):
    """The seed text's forward propagation, one vector at a time, column-vector style.

    The seed keeps U as (H, D), so ``U_seed @ x`` is our ``x @ U``; every
    sequence and batch row is its own python loop, nothing shared with
    tinygraph.
    """
    U_s, W_s, V_s = U.T, W.T, V.T
    states, outputs = [], []
    s = s0
    for x in xs:
        s = np.tanh(U_s @ x + W_s @ s + b)
        z = V_s @ s + c
        e = np.exp(z - z.max())
        states.append(s)
        outputs.append(e / e.sum())
    return np.array(states), np.array(outputs)


def vanilla_case(seed=5, T=7, D=4, H=6, O=3):  # noqa: E741
    rng = np.random.default_rng(seed)
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=seed)
    # Nonzero biases so a wiring bug in b or c cannot hide behind the zero init.
    cell.params["b"] = rng.normal(size=H)
    cell.params["c"] = rng.normal(size=O)
    return cell, rng


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_vanilla_equals_seed_numpy_loop(batched, with_h0):
    cell, rng = vanilla_case()
    T, D, H, B = 7, 4, 6, 3
    xs = rng.normal(size=(T, B, D) if batched else (T, D))
    h0 = rng.normal(size=(B, H) if batched else (H,)) if with_h0 else None
    out = rnn.unroll(cell, steps=T).run(xs, initial_state=h0)

    p = cell.params
    if batched:
        refs = [seed_forward(xs[:, i], p["U"], p["W"], p["b"], p["V"], p["c"],
                             h0[i] if with_h0 else np.zeros(H)) for i in range(B)]
        want_s = np.stack([r[0] for r in refs], axis=1)
        want_o = np.stack([r[1] for r in refs], axis=1)
    else:
        want_s, want_o = seed_forward(xs, p["U"], p["W"], p["b"], p["V"], p["c"],
                                      h0 if with_h0 else np.zeros(H))
    assert out["states"].shape == want_s.shape
    assert out["outputs"].shape == want_o.shape
    np.testing.assert_allclose(out["states"], want_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["outputs"], want_o, rtol=0, atol=1e-12)


def test_vanilla_shared_h0_broadcasts_over_the_batch():
    cell, rng = vanilla_case(seed=8)
    xs = rng.normal(size=(5, 2, 4))
    h0 = rng.normal(size=6)
    out = rnn.unroll(cell, steps=5).run(xs, initial_state=h0)
    p = cell.params
    for i in range(2):
        want_s, _ = seed_forward(xs[:, i], p["U"], p["W"], p["b"], p["V"], p["c"], h0)
        np.testing.assert_allclose(out["states"][:, i], want_s, rtol=0, atol=1e-12)


def test_vanilla_without_output_layer_outputs_are_states():
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=5, output_size=None, seed=2)
    assert list(cell.params) == ["U", "W", "b"]
    xs = np.random.default_rng(0).normal(size=(4, 3))
    net = rnn.unroll(cell, steps=4)
    out = net.run(xs)
    s, want = np.zeros(5), []
    for x in xs:
        s = np.tanh(cell.params["U"].T @ x + cell.params["W"].T @ s)
        want.append(s)
    np.testing.assert_allclose(out["states"], np.array(want), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["outputs"], out["states"])
    assert net.logits == net.outputs


def load_golden(kind, prefix):
    with np.load(DATA / f"torch_golden_{kind}.npz", allow_pickle=False) as f:
        return {k[len(prefix) + 1:]: f[k] for k in f.files if k.startswith(prefix + "_")}


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("prefix", ["batched", "unbatched"])
def test_from_torch_equals_pytorch_golden(kind, prefix):
    gold = load_golden(kind, prefix)
    cell = CELLS[kind].from_torch(*(gold[k] for k in TORCH_KEYS))
    T, D = gold["xs"].shape[0], gold["xs"].shape[-1]
    assert (cell.input_size, cell.hidden_size) == (D, gold["h0"].shape[-1])
    net = rnn.unroll(cell, steps=T)
    if kind == "lstm":
        out = net.run(gold["xs"], initial_state=(gold["h0"], gold["c0"]))
        hs, cs = out["states"]
        np.testing.assert_allclose(cs, gold["cells"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(cs[-1], gold["c_n"], rtol=0, atol=1e-10)
    else:
        out = net.run(gold["xs"], initial_state=gold["h0"])
        hs = out["states"]
    np.testing.assert_allclose(out["outputs"], gold["outputs"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(hs, gold["outputs"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(hs[-1], gold["h_n"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_from_torch_zero_state_matches_explicit_zero_state(kind):
    gold = load_golden(kind, "batched")
    cell = CELLS[kind].from_torch(*(gold[k] for k in TORCH_KEYS))
    net = rnn.unroll(cell, steps=gold["xs"].shape[0])
    zeros = np.zeros_like(gold["h0"])
    fed = net.run(gold["xs"], initial_state=(zeros, zeros) if kind == "lstm" else zeros)
    default = net.run(gold["xs"])
    np.testing.assert_array_equal(default["outputs"], fed["outputs"])
    # and the zero state really differs from the golden nonzero one
    assert not np.allclose(default["outputs"], gold["outputs"])


def test_from_torch_without_biases_means_zero_biases():
    gold = load_golden("gru", "unbatched")
    plain = rnn.GRUCell.from_torch(gold["weight_ih"], gold["weight_hh"])
    zero = rnn.GRUCell.from_torch(gold["weight_ih"], gold["weight_hh"],
                                  np.zeros(21), np.zeros(21))
    a = rnn.unroll(plain, steps=6).run(gold["xs"])["outputs"]
    b = rnn.unroll(zero, steps=6).run(gold["xs"])["outputs"]
    np.testing.assert_array_equal(a, b)


def test_from_torch_rejects_wrong_layouts():
    gold = load_golden("lstm", "unbatched")
    w_ih, w_hh, b_ih, b_hh = (gold[k] for k in TORCH_KEYS)
    with pytest.raises(tg.ShapeError, match=r"GRUCell.from_torch: weight_hh .*\(3\*H, H\)"):
        rnn.GRUCell.from_torch(w_ih, w_hh, b_ih, b_hh)  # 4 gate blocks given to a GRU
    with pytest.raises(tg.ShapeError, match="weight_ih has shape"):
        rnn.LSTMCell.from_torch(w_ih.T, w_hh, b_ih, b_hh)
    with pytest.raises(tg.ShapeError, match="bias_hh has shape"):
        rnn.LSTMCell.from_torch(w_ih, w_hh, b_ih, b_hh[:3])
    with pytest.raises(tg.GraphError, match="not an array"):
        rnn.LSTMCell.from_torch("weights", w_hh)


def test_initial_params_follow_the_seed_rule():
    D, H, O = 5, 16, 7  # noqa: E741
    cell = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=3)
    rng = np.random.default_rng(3)
    # declaration order U, W, (b zeros), V, (c zeros); bounds 1/sqrt(fan_in)
    want_U = rng.uniform(-1 / np.sqrt(D), 1 / np.sqrt(D), size=(D, H))
    want_W = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), size=(H, H))
    want_V = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), size=(H, O))
    np.testing.assert_array_equal(cell.params["U"], want_U)
    np.testing.assert_array_equal(cell.params["W"], want_W)
    np.testing.assert_array_equal(cell.params["V"], want_V)
    np.testing.assert_array_equal(cell.params["b"], np.zeros(H))
    again = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=3)
    other = rnn.VanillaRNNCell(input_size=D, hidden_size=H, output_size=O, seed=4)
    np.testing.assert_array_equal(again.params["W"], cell.params["W"])
    assert not np.array_equal(other.params["W"], cell.params["W"])


def test_param_spec_initializers_by_name():
    rng, f64 = np.random.default_rng(0), np.dtype("float64")
    np.testing.assert_array_equal(rnn.ParamSpec((2, 3), init="ones").initialize(rng, f64),
                                  np.ones((2, 3)))
    np.testing.assert_array_equal(rnn.ParamSpec((4,), init="zeros").initialize(rng, f64),
                                  np.zeros(4))
    with pytest.raises(tg.GraphError, match="'uniform', 'zeros', 'ones'"):
        rnn.ParamSpec((2,), init="normal").initialize(rng, f64)


@pytest.mark.parametrize("cls", [rnn.GRUCell, rnn.LSTMCell])
def test_gated_cells_declare_fused_weights(cls):
    gates = len(cls.gates)
    cell = cls(input_size=3, hidden_size=4, seed=0)
    shapes = {k: v.shape for k, v in cell.params.items()}
    assert shapes == {"W_ih": (3, gates * 4), "W_hh": (4, gates * 4),
                      "b_ih": (gates * 4,), "b_hh": (gates * 4,)}
    assert np.abs(cell.params["W_ih"]).max() <= 1 / np.sqrt(3)
    assert np.abs(cell.params["W_hh"]).max() <= 1 / np.sqrt(4)


def test_params_are_checked_before_unroll():
    cell = rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=2)
    cell.params["W"] = np.ones((4, 5))
    with pytest.raises(tg.ShapeError, match=r"params\['W'\] has shape \(4, 5\).*\(4, 4\)"):
        rnn.unroll(cell, steps=2)
    with pytest.raises(tg.GraphError, match=r"missing \['c'\]"):
        cell.params = {k: v for k, v in cell.params.items() if k != "c"}


def test_assigned_params_are_used_and_copied():
    cell = rnn.VanillaRNNCell(input_size=2, hidden_size=2, output_size=None)
    cell.params["U"] = np.eye(2)
    cell.params["W"] = np.zeros((2, 2))
    net = rnn.unroll(cell, steps=1)
    cell.params["U"] = np.full((2, 2), 9.0)  # after unroll: no effect on the graph
    out = net.run(np.array([[0.5, -1.0]]))
    np.testing.assert_allclose(out["states"], np.tanh([[0.5, -1.0]]), rtol=0, atol=1e-15)
    # the graph's param is the live value: assigning it changes the next run
    net.params["U"].value = 2 * np.eye(2)
    out = net.run(np.array([[0.5, -1.0]]))
    np.testing.assert_allclose(out["states"], np.tanh([[1.0, -2.0]]), rtol=0, atol=1e-15)


def test_float32_cells_stay_float32():
    cell = rnn.LSTMCell(input_size=2, hidden_size=3, dtype="float32")
    net = rnn.unroll(cell, steps=3)
    hs, cs = net.run(np.ones((3, 2)))["states"]
    assert hs.dtype == np.float32 and cs.dtype == np.float32
    assert {n.dtype for n in net.graph.nodes.values()} == {np.dtype("float32")}


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_sizes_raise(bad):
    with pytest.raises(tg.ShapeError, match="input_size must be a positive int"):
        rnn.GRUCell(input_size=bad, hidden_size=3)


def test_bad_dtype_raises():
    with pytest.raises(tg.GraphError, match="float"):
        rnn.GRUCell(input_size=2, hidden_size=3, dtype="int64")

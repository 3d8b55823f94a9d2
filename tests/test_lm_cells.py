"""CharLM on GRU, LSTM and custom cells: training, checkpoints and the readout's maths."""

from __future__ import annotations

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn

TEXT = "the cat sat on the mat. " * 30
TINY = {"hidden_size": 6, "seq_len": 5, "batch_size": 3}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trains_saves_and_continues(cell, tmp_path):
    lm = rnn.CharLM.from_text(TEXT, cell=cell, seed=1, **TINY)
    assert cell.upper() in repr(lm)
    before = lm.validation_loss()
    lm.train(30, lr=0.03, verbose=False)
    path = lm.save(tmp_path / "m.tgraph")
    back = rnn.CharLM.load(path)
    assert back.cell_name == lm.cell_name
    np.testing.assert_array_equal(back.validation_loss(), lm.validation_loss())
    assert lm.sample("the", 20, seed=3) == back.sample("the", 20, seed=3)
    # Stopping and resuming from the file equals never having stopped.
    np.testing.assert_array_equal(back.train(15, lr=0.03, verbose=False),
                                  lm.train(15, lr=0.03, verbose=False))
    assert lm.validation_loss() < 0.8 * before


def test_gru_first_window_loss_equals_a_numpy_loop():
    lm = rnn.CharLM.from_text(TEXT, cell="gru", seed=2, **TINY)
    p = {n.name: n.value for n in lm.params}
    H = lm.hidden_size  # noqa: N806
    x, y = lm.data.window(0, lm.seq_len, lm.batch_size)
    h = np.zeros((lm.batch_size, H))
    total = 0.0
    for t in range(lm.seq_len):
        gx = np.eye(len(lm.vocab))[x[t]] @ p["W_ih"] + p["b_ih"]
        gh = h @ p["W_hh"] + p["b_hh"]
        r = sigmoid(gx[:, :H] + gh[:, :H])
        z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        logits = h @ p["V_out"] + p["c_out"]
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(lm.batch_size), y[t]].sum()
    loss = lm.train(1, verbose=False)[0]
    np.testing.assert_allclose(loss, total / y.size, rtol=1e-12)


def test_a_cell_of_your_own_and_mistakes():
    class Peephole(rnn.Cell):
        def declare(self):
            D, H = self.input_size, self.hidden_size  # noqa: N806
            return {"U": rnn.ParamSpec((D, H)), "W": rnn.ParamSpec((H, H))}

        def step(self, x, h, p):
            h = tg.tanh(x @ p["U"] + h @ p["W"], name="h")
            return h, h

    vocab = len(set(TEXT))
    lm = rnn.CharLM.from_text(TEXT, cell=Peephole(input_size=vocab, hidden_size=4), **TINY)
    assert lm.hidden_size == 4 and "V_out" in lm.graph.params
    with pytest.raises(tg.GraphError, match="input_size=3"):
        rnn.CharLM.from_text(TEXT, cell=Peephole(input_size=3, hidden_size=4), **TINY)
    with pytest.raises(tg.GraphError, match="'gru'"):
        rnn.CharLM.from_text(TEXT, cell="transformer", **TINY)


def test_a_checkpoint_with_one_hot_inputs_still_trains_and_samples_the_same(tmp_path, monkeypatch):
    """Models were built with one-hot step inputs before they took ids: such a checkpoint
    loads, trains to the same losses and samples the same text as an ids model."""
    from tinygraph_rnn import lm_build

    text = "the cat sat on the mat. " * 30
    built_with_ids = lm_build.unroll

    def one_hot_unroll(cell, steps, name=None, ids=False):
        return built_with_ids(cell, steps, name=name)

    monkeypatch.setattr(lm_build, "unroll", one_hot_unroll)
    old = rnn.CharLM.from_text(text, hidden_size=8, seq_len=5, batch_size=2, seed=3)
    monkeypatch.undo()
    assert old.graph.nodes[old._h["inputs"][0].name].shape == (None, len(old.vocab))
    old.save(tmp_path / "old.tgz")
    loaded = rnn.CharLM.load(tmp_path / "old.tgz")
    new = rnn.CharLM.from_text(text, hidden_size=8, seq_len=5, batch_size=2, seed=3)
    assert new._h["inputs"][0].dtype.kind == "i"
    np.testing.assert_allclose(loaded.train(6, verbose=False), new.train(6, verbose=False),
                               rtol=0, atol=1e-12)
    assert loaded.sample("the", 20, seed=1) == new.sample("the", 20, seed=1)

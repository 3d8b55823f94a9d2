"""The character language model: data layout, training, validation, sampling, checkpoints, CLI.

Every number is checked against a numpy forward pass written here from the
seed's equations (``s_t = tanh(x_t U + s_{t-1} W + b)``, ``z_t = s_t V + c``),
or against hand-computed indices, never against the model's own code.
"""

import contextlib
import io
import math

import numpy as np
import pytest

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn import lm_cli
from tinygraph_rnn.__main__ import main
from tinygraph_rnn.lm_data import CharData
from tinygraph_rnn.vocab import load_corpus

# 40 distinct characters in ASCII order: the id of each is its position.
DISTINCT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
SHORT = load_corpus()[:2000]
TINY = {"hidden_size": 16, "seq_len": 8, "batch_size": 4}


# ------------------------------------------------------------ numpy reference


def weights(lm):
    return {p.name: p.value.copy() for p in lm.params}


def np_forward(p, ids, state):
    """Logits of each step and the final state, one character at a time."""
    logits = []
    for i in ids:
        state = np.tanh(p["U"][i] + state @ p["W"] + p["b"])  # one-hot row times U
        logits.append(state @ p["V"] + p["c"])
    return np.array(logits), state


def np_nll(logits, targets):
    top = logits.max(axis=-1)
    lse = top + np.log(np.exp(logits - top[..., None]).sum(axis=-1))
    return lse - np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def np_window_loss(p, x, y, state):
    """Mean NLL of a (k, B) window and the (B, H) final state, stream by stream."""
    losses, finals = [], []
    for r in range(x.shape[1]):
        logits, final = np_forward(p, x[:, r], state[r])
        losses.append(np_nll(logits, y[:, r]))
        finals.append(final)
    return float(np.mean(losses)), np.array(finals)


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


# ------------------------------------------------------------------- the data


def test_rows_windows_and_targets_follow_the_char_rnn_layout():
    data = CharData(DISTINCT, val_fraction=0.1)
    assert data.vocab.chars == tuple(DISTINCT)
    np.testing.assert_array_equal(data.train_ids, np.arange(36))
    np.testing.assert_array_equal(data.val_ids, [36, 37, 38, 39])
    # 36 training ids in 3 rows of 12
    np.testing.assert_array_equal(data.rows(3), [list(range(0, 12)), list(range(12, 24)),
                                                 list(range(24, 36))])
    # windows of 5 + 1 target column: (12 - 1) // 5 = 2 per epoch
    assert data.windows_per_epoch(5, 3) == 2
    x, y = data.window(1, seq_len=5, batch_size=3)
    assert x.shape == y.shape == (5, 3)
    np.testing.assert_array_equal(x, [[5, 17, 29], [6, 18, 30], [7, 19, 31], [8, 20, 32],
                                      [9, 21, 33]])
    np.testing.assert_array_equal(y, [[6, 18, 30], [7, 19, 31], [8, 20, 32], [9, 21, 33],
                                      [10, 22, 34]])
    x0, _ = data.window(0, seq_len=5, batch_size=3)
    np.testing.assert_array_equal(x0[:, 0], [0, 1, 2, 3, 4])
    with pytest.raises(tg.GraphError, match="2 windows"):
        data.window(2, seq_len=5, batch_size=3)


def test_validation_windows_are_one_stream_and_drop_only_a_partial_tail():
    data = CharData(DISTINCT, val_fraction=0.1)
    pairs = [(x[:, 0].tolist(), y[:, 0].tolist()) for x, y in data.val_windows(1)]
    assert pairs == [([36], [37]), ([37], [38]), ([38], [39])]
    pairs = [(x[:, 0].tolist(), y[:, 0].tolist()) for x, y in data.val_windows(2)]
    assert pairs == [([36, 37], [37, 38])]
    with pytest.raises(tg.FeedError, match="validation text has 4 characters"):
        data.val_windows(4)


def test_too_short_texts_and_bad_sizes_are_graph_errors():
    with pytest.raises(tg.FeedError, match="at least 45"):
        rnn.CharLM.from_text(DISTINCT, hidden_size=4, seq_len=8, batch_size=5)
    with pytest.raises(tg.GraphError, match="hidden_size must be a positive int"):
        rnn.CharLM.from_text(SHORT, hidden_size=0)
    with pytest.raises(tg.GraphError, match="val_fraction"):
        CharData(SHORT, val_fraction=1.0)
    with pytest.raises(tg.GraphError, match="at least 2 characters"):
        CharData("a")


# ------------------------------------------------------------------- training


def test_a_tiny_model_learns_a_short_text():
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    uniform = math.log(len(lm.vocab))
    before = lm.validation_loss()
    assert before == pytest.approx(uniform, rel=0.02)
    history = lm.train(steps=300, lr=0.02, verbose=False)
    assert len(history) == 300 and lm.history == history and lm.trained_steps == 300
    assert history[0] == pytest.approx(uniform, rel=0.02)
    assert np.mean(history[-30:]) < 0.7 * np.mean(history[:10])
    assert lm.validation_loss() < 0.8 * before


def test_the_same_seed_gives_a_bit_identical_loss_history_and_calls_compose():
    runs = []
    for _ in range(2):
        lm = rnn.CharLM.from_text(SHORT, seed=3, **TINY)
        runs.append(lm.train(steps=80, lr=0.02, verbose=False))
    assert runs[0] == runs[1]  # exact float equality, not approx
    split = rnn.CharLM.from_text(SHORT, seed=3, **TINY)
    assert split.train(30, lr=0.02, verbose=False) + split.train(50, lr=0.02,
                                                                  verbose=False) == runs[0]
    other = rnn.CharLM.from_text(SHORT, seed=4, **TINY).train(steps=80, lr=0.02, verbose=False)
    assert other != runs[0]


def test_each_step_carries_the_state_of_the_last_window_and_resets_at_an_epoch():
    # 2 windows per epoch, so 5 steps cross two epoch boundaries.
    text = (DISTINCT * 3)[:110]
    lm = rnn.CharLM.from_text(text, hidden_size=5, seq_len=4, batch_size=9, seed=1)
    assert lm.data.windows_per_epoch(4, 9) == 2
    state = np.zeros((9, 5))
    for step in range(5):
        p = weights(lm)
        x, y = lm.data.window(step % 2, 4, 9)
        if step % 2 == 0:
            state = np.zeros((9, 5))
        want, state = np_window_loss(p, x, y, state)
        (got,) = lm.train(1, lr=0.05, verbose=False)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), step


def test_one_adam_step_moves_each_weight_against_its_finite_difference_gradient():
    lm = rnn.CharLM.from_text("abcab" * 20, hidden_size=3, seq_len=4, batch_size=2, seed=2)
    p = weights(lm)
    x, y = lm.data.window(0, 4, 2)
    zero = np.zeros((2, 3))

    def loss(q):
        return np_window_loss(q, x, y, zero)[0]

    lr, eps = 1e-3, 1e-6
    lm.train(1, lr=lr, clip=1e6, verbose=False)
    after = weights(lm)
    for name, value in p.items():
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in p.items()}
            minus = {k: v.copy() for k, v in p.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            g = (loss(plus) - loss(minus)) / (2 * eps)
            # Adam's first step: m_hat = g, v_hat = g*g, so p -= lr * g / (|g| + 1e-8)
            want = value[index] - lr * g / (abs(g) + 1e-8)
            if abs(g) > 1e-5:
                assert after[name][index] == pytest.approx(want, abs=1e-9), (name, index)
            else:
                assert abs(after[name][index] - value[index]) <= lr * 1.001, (name, index)


def test_validation_loss_equals_a_numpy_forward_over_the_held_out_text():
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    lm.train(40, lr=0.02, verbose=False)
    p = weights(lm)
    ids = lm.data.val_ids
    scored = (len(ids) - 1) // lm.seq_len * lm.seq_len
    logits, _ = np_forward(p, ids[:scored], np.zeros(lm.hidden_size))
    want = float(np.mean(np_nll(logits, ids[1:scored + 1])))
    assert lm.validation_loss() == pytest.approx(want, rel=1e-12)


def test_progress_prints_steps_losses_and_speed():
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    buf = io.StringIO()
    history = lm.train(20, lr=0.02, file=buf, log_every=10)
    lines = buf.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["10/20", "20/20"]
    assert f"loss {history[-1]:.4f}" in lines[-1] and lines[-1].endswith("steps/s")


def test_training_arguments_are_checked():
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    for kwargs, match in (({"steps": -1}, "steps"), ({"steps": 1, "lr": -0.1}, "lr"),
                          ({"steps": 1, "clip": 0}, "clip")):
        with pytest.raises(tg.GraphError, match=match):
            lm.train(verbose=False, **kwargs)


# ------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def trained():
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    lm.train(150, lr=0.02, verbose=False)
    return lm


def test_sampling_is_deterministic_for_a_seed(trained):
    a = trained.sample("The ", length=60, temperature=1.0, seed=7)
    assert a == trained.sample("The ", length=60, temperature=1.0, seed=7)
    assert a.startswith("The ") and len(a) == 64
    assert a != trained.sample("The ", length=60, temperature=1.0, seed=8)


def test_low_temperature_approaches_the_numpy_argmax_chain(trained):
    p = weights(trained)
    vocab = trained.vocab
    logits, state = np_forward(p, vocab.encode("Mr. "), np.zeros(trained.hidden_size))
    z, out = logits[-1], []
    for _ in range(40):
        nxt = int(np.argmax(z))
        out.append(nxt)
        (z,), state = np_forward(p, [nxt], state)
    greedy = "Mr. " + vocab.decode(out)
    assert trained.sample("Mr. ", length=40, temperature=0, seed=0) == greedy
    for seed in range(3):
        assert trained.sample("Mr. ", length=40, temperature=1e-4, seed=seed) == greedy


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_draws_follow_the_tempered_softmax(trained, temperature):
    p = weights(trained)
    logits, _ = np_forward(p, trained.vocab.encode("Mrs. B"), np.zeros(trained.hidden_size))
    probs = np_softmax(logits[-1] / temperature)
    n = 1500
    counts = np.zeros(len(trained.vocab))
    for seed in range(n):
        counts[trained.vocab.index[trained.sample("Mrs. B", 1, temperature, seed)[-1]]] += 1
    sigma = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(counts / n - probs) <= 5 * sigma + 2e-3)


def test_sampling_arguments_are_checked(trained):
    with pytest.raises(tg.FeedError, match="non-empty prefix"):
        trained.sample("", 5)
    with pytest.raises(tg.FeedError, match="'@'"):
        trained.sample("a@", 5)
    with pytest.raises(tg.GraphError, match="temperature"):
        trained.sample("a", 5, temperature=-1.0)
    with pytest.raises(tg.GraphError, match="length"):
        trained.sample("a", -5)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_restores_weights_samples_and_training(tmp_path):
    lm = rnn.CharLM.from_text(SHORT, seed=0, **TINY)
    lm.train(45, lr=0.02, verbose=False)  # mid-epoch: the carried state matters
    path = lm.save(tmp_path / "lm.tgraph")
    assert "char_lm" not in lm.graph.node("loss").meta
    back = rnn.CharLM.load(path)
    assert repr(back) == repr(lm)
    assert back.vocab.chars == lm.vocab.chars and back.data.text == SHORT
    for name, value in weights(lm).items():
        np.testing.assert_array_equal(back.graph.node(name).value, value)
    assert back.validation_loss() == lm.validation_loss()
    assert back.sample("The", 50, 0.8, seed=1) == lm.sample("The", 50, 0.8, seed=1)
    assert back.history == lm.history
    # continuing from the file equals never having stopped (state, position, Adam moments)
    assert back.train(30, lr=0.02, verbose=False) == lm.train(30, lr=0.02, verbose=False)


def test_loading_a_graph_that_is_not_a_model_is_a_format_error(tmp_path):
    g = tg.Graph()
    tg.exp(g.input("x", shape=(2,)), name="loss")
    path = g.save(tmp_path / "plain.tgraph")
    with pytest.raises(tg.FormatError, match="not a CharLM checkpoint"):
        rnn.CharLM.load(path)


# ------------------------------------------------------------ CLI and the demo


def test_train_command_trains_prints_samples_and_saves(tmp_path):
    path = tmp_path / "cli.tgraph"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", "--steps", "20", "--hidden", "16", "--sample-length", "30",
                     "--prefix", "Mr. ", "--save", str(path)]) == 0
    out = buf.getvalue()
    assert "validation loss before training: 4.1" in out
    assert "validation loss after 20 steps" in out and "step 20/20" in out
    assert "\nMr. " in out and f"wrote {path}" in out
    assert rnn.CharLM.load(path).trained_steps == 20
    assert "note:" not in out  # the vanilla cell needs no warning


def test_train_command_with_a_gated_cell_says_what_to_expect(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 20, encoding="utf-8")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", "--cell", "gru", "--steps", "2", "--hidden", "4", "--seq-len", "5",
                     "--batch", "2", "--text-file", str(text), "--sample-length", "5",
                     "--prefix", "the "]) == 0
    assert "note: a GRUCell step costs about 3-4x a vanilla one" in buf.getvalue()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with pytest.raises(SystemExit) as exc:
            main(["train", "--steps", "1", "--batch", "0"])
    assert exc.value.code == 2


def test_the_demo_training_lowers_validation_loss_by_at_least_30_percent():
    buf = io.StringIO()
    report = lm_cli.demo_training(file=buf)
    uniform = math.log(len(report["model"].vocab))
    assert report["val_before"] == pytest.approx(uniform, rel=0.01)
    assert report["val_after"] <= 0.7 * report["val_before"]
    assert len(report["history"]) == lm_cli.DEMO_STEPS
    assert "% lower" in buf.getvalue() and report["sample"] in buf.getvalue()


def test_docs_lm_page_examples_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "lm.md"
    result = doctest.testfile(str(page), module_relative=False, verbose=False, globs={},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 20, result
    assert result.failed == 0, result

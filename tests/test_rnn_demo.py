"""The demo, the CLI, the pictures of unrolled nets, and the runnable docs/rnn.md."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from markdown_pages import run_page

import tinygraph as tg
import tinygraph_rnn as rnn
from tinygraph_rnn.__main__ import DEFAULT_TEXT, demo, main
from tinygraph_rnn.vocab import Vocab, load_corpus

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "rnn.md"


# ---------------------------------------------------------------- vocabulary


def test_vocab_is_the_sorted_characters_of_the_corpus():
    text = (ROOT / "tinygraph_rnn" / "data" / "corpus.txt").read_text("ascii")
    assert load_corpus() == text
    vocab = Vocab.from_text(text)
    assert vocab.chars == tuple(sorted(set(text)))
    ids = vocab.encode("Mr. Bennet")
    assert [vocab.chars[i] for i in ids] == list("Mr. Bennet")
    assert vocab.decode(ids) == "Mr. Bennet"
    np.testing.assert_array_equal(vocab.one_hot("ab").argmax(axis=1), vocab.encode("ab"))
    with pytest.raises(tg.FeedError, match="'é'"):
        vocab.encode("café")


# ----------------------------------------------------------------------- demo


def test_demo_predictions_match_a_numpy_forward_pass(tmp_path):
    buf = io.StringIO()
    result = demo(text=DEFAULT_TEXT, steps=12, hidden_size=16, out=tmp_path, file=buf)
    vocab, net, rows = result["vocab"], result["net"], result["rows"]
    text = DEFAULT_TEXT[:12]
    p = net.cell.params
    # the seed's loop on the same weights, one character at a time
    s = np.zeros(16)
    for k, ch in enumerate(text):
        x = np.zeros(len(vocab))
        x[vocab.chars.index(ch)] = 1.0
        s = np.tanh(x @ p["U"] + s @ p["W"] + p["b"])
        z = s @ p["V"] + p["c"]
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert rows[k]["input"] == ch
        assert rows[k]["predicted"] == vocab.chars[int(np.argmax(probs))]
        assert rows[k]["probability"] == pytest.approx(probs.max(), abs=1e-12)
    printed = buf.getvalue()
    for k, ch in enumerate(text):
        assert re.search(rf"^\s+{k}\s+{re.escape(repr(ch))}\s+"
                         rf"{re.escape(repr(rows[k]['predicted']))}\s+"
                         rf"{rows[k]['probability']:.4f}", printed, re.M), k
    for view in ("unrolled", "rolled", "cell"):
        path = tmp_path / f"rnn_{view}.svg"
        assert f"wrote {path}" in printed
        assert path.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_demo_cli_writes_svgs_and_prints_paths(tmp_path, capsys):
    assert main(["demo", "--steps", "5", "--hidden", "8", "--train-steps", "5",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "unrolled over 5 steps" in printed
    for view in ("unrolled", "rolled", "cell"):
        assert (tmp_path / f"rnn_{view}.svg").stat().st_size > 0
        assert f"wrote {tmp_path / f'rnn_{view}.svg'}" in printed


def test_demo_cli_rejects_unknown_characters(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--text", "naïve", "--out", str(tmp_path), "--no-pictures"])
    assert exc.value.code == 2
    assert "'ï'" in capsys.readouterr().err


def test_render_subcommand(tmp_path, capsys):
    path = tmp_path / "lstm.svg"
    assert main(["render", "--cell", "lstm", "--view", "rolled", "-o", str(path)]) == 0
    assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert f"wrote {path}" in capsys.readouterr().out


# ------------------------------------------------------------------- pictures


def dot_nodes(dot) -> list[str]:
    return re.findall(r"^\s*(n\d+) \[", dot.source, re.M)


def test_unrolled_picture_has_one_cluster_per_step_and_rolled_is_smaller():
    T = 6
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=3, hidden_size=4, output_size=3), steps=T)
    unrolled = net.to_dot(view="unrolled")
    rolled = net.to_dot(view="rolled")
    cell = net.to_dot(view="cell")
    clusters = re.findall(r"subgraph (cluster\w*)", unrolled.source)
    assert len(clusters) == T
    for k in range(T):
        assert f"t={k}" in unrolled.source
    assert len(dot_nodes(rolled)) < len(dot_nodes(unrolled)) / 3
    assert str(T) in rolled.source  # the loop edge is labelled with the step count
    assert len(dot_nodes(cell)) < len(dot_nodes(unrolled))


def test_windowed_view_of_a_long_net():
    net = rnn.unroll(rnn.VanillaRNNCell(input_size=2, hidden_size=2), steps=300)
    full = len(net.graph)
    windowed = net.to_dot(view="unrolled", window=2)
    source = windowed.source
    assert len(dot_nodes(windowed)) < full / 20
    for k in (0, 1, 298, 299):
        assert f"t={k}" in source
    assert "t=150" not in source


# ----------------------------------------------------------- docs/rnn.md runs


def test_docs_rnn_md_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the doc's render calls write here
    namespace, ran = run_page(DOC)
    assert ran >= 6
    for name in ("rnn_unrolled.svg", "rnn_rolled.svg", "rnn_cell.svg", "mgu_rolled.svg"):
        assert (tmp_path / name).stat().st_size > 0

    # The custom cell of the doc against a hand-written numpy loop of its equations.
    p = namespace["mgu"].params
    h, want = np.zeros(5), []
    for x in namespace["mgu_xs"]:
        f = 1 / (1 + np.exp(-(x @ p["W_f"] + h @ p["U_f"] + p["b_f"])))
        candidate = np.tanh(x @ p["W_h"] + (f * h) @ p["U_h"] + p["b_h"])
        h = (1 - f) * h + f * candidate
        want.append(h)
    np.testing.assert_allclose(namespace["mgu_out"]["states"], np.array(want), rtol=0,
                               atol=1e-12)
    assert namespace["mgu_net"].steps == 6

    # The layer-normalised peephole LSTM of the doc, the same way.
    p = namespace["ln_cell"].params
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c = np.zeros((2, 4)), np.zeros((2, 4))
    hs, cs = [], []
    for x in namespace["ln_xs"]:
        z = np.concatenate([x, h], axis=1) @ p["W"]
        z = (z - z.mean(axis=1, keepdims=True)) / np.sqrt(z.var(axis=1, keepdims=True) + 1e-5)
        i, f, g, o = np.split(z * p["gain"] + p["bias"], 4, axis=1)
        c = sig(f + p["peep_f"] * c) * c + sig(i + p["peep_i"] * c) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        hs.append(h)
        cs.append(c)
    np.testing.assert_allclose(namespace["ln_hs"], np.array(hs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(namespace["ln_cs"], np.array(cs), rtol=0, atol=1e-12)


def test_doc_figures_are_committed_and_linked():
    readme = (ROOT / "README.md").read_text()
    for name in ("rnn_rolled.svg", "rnn_unrolled.svg"):
        path = ROOT / "docs" / "figures" / name
        assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
        assert f"docs/figures/{name}" in readme
        assert f"figures/{name}" in DOC.read_text()

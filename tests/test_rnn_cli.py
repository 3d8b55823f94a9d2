"""``python -m tinygraph_rnn``: every argument checked before the expensive work, one line out."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import pytest

import tinygraph_rnn as rnn
from tinygraph_rnn import lm_cli
from tinygraph_rnn.__main__ import main


def _refused(argv: list[str]) -> str:
    """Run ``main(argv)``; it must exit 2 with exactly one ``error:`` line. Returns the line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exc:
            main(argv)
    assert exc.value.code == 2, (argv, out.getvalue(), err.getvalue())
    text = err.getvalue()
    assert text.startswith("error: ") and text.count("\n") == 1, text
    return text


@pytest.fixture
def nothing_expensive(monkeypatch):
    """Building or training a model fails the test: the mistake must be found before."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the model was built or trained before the arguments were checked")

    monkeypatch.setattr(rnn.CharLM, "from_text", forbidden)
    monkeypatch.setattr(rnn.CharLM, "train", forbidden)
    monkeypatch.setattr(lm_cli, "train_and_report", forbidden)


@pytest.mark.parametrize("argv,match", [
    (["--hidden", "100000"], r"--hidden 100000 .* needs about 6\d\d\.\d GiB .* more than this "
                             r"machine's memory"),
    (["--batch", "1000000000"], r"--batch 1000000000 needs about .* TiB"),
    (["--hidden", "0"], r"--hidden must be an int in \[1, inf\), got 0"),
    (["--seq-len", "-2"], r"--seq-len must be an int in \[1, inf\)"),
    (["--steps", "-1"], r"--steps must be an int in \[0, inf\)"),
    (["--seed", "-1"], r"--seed must be an int in \[0, "),
    (["--sample-length", "-5"], r"--sample-length must be an int"),
    (["--lr", "nan"], r"--lr must be a finite number in \(0.0, inf\), got nan"),
    (["--lr", "0"], r"--lr must be a finite number in \(0.0, inf\)"),
    (["--lr", "1e400"], r"--lr must be a finite number .* got inf"),
    (["--clip", "-1"], r"--clip must be a finite number in \(0.0, inf\)"),
    (["--temperature", "inf"], r"--temperature must be a finite number in \[0.0, inf\)"),
    (["--temperature", "-0.5"], r"--temperature must be"),
    (["--prefix", ""], r"--prefix must not be empty"),
    (["--prefix", "Zq\u20ac"], r"--prefix 'Zq\u20ac': characters 'Z', '\u20ac' are not in the "
                               r"vocabulary"),
    (["--save", "{tmp}/missing/lm.tgraph"], r"--save .*missing' does not exist"),
    (["--save", "{tmp}"], r"--save .* is a folder; give a file name"),
    (["--load", "{tmp}/nothing.tgraph"], r"--load .*: no such file"),
    (["--text-file", "{tmp}"], r"cannot read --text-file"),
])
def test_train_refuses_each_mistake_before_building_anything(argv, match, tmp_path,
                                                             nothing_expensive):
    line = _refused(["train", *[a.format(tmp=tmp_path) for a in argv]])
    assert re.search(match, line), line


def test_a_save_path_under_a_file_is_refused_before_training(tmp_path, nothing_expensive):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    line = _refused(["train", "--save", str(tmp_path / "notes.txt" / "lm.tgraph")])
    assert "notes.txt' is not a folder" in line, line


def test_a_loaded_checkpoint_checks_the_prefix_against_its_own_vocabulary(tmp_path,
                                                                          monkeypatch):
    lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
    path = lm.save(tmp_path / "lm.tgraph")
    monkeypatch.setattr(lm_cli, "train_and_report", lambda *a, **k: 1 / 0)
    assert "characters 'x' are not in the vocabulary of 5" in _refused(
        ["train", "--load", str(path), "--prefix", "abx"])


@pytest.mark.parametrize("argv,match", [
    (["demo", "--hidden", "1000000", "--no-pictures"], r"demo: --hidden 1000000 with \d+ "
                                                       r"characters needs about .* TiB"),
    (["demo", "--steps", "-3"], r"--steps must be an int in \[1, inf\), got -3"),
    (["demo", "--train-steps", "-1", "--no-pictures"], r"--train-steps must be an int"),
    (["demo", "--out", "/proc/no/such/dir"], r"--out: cannot create the folder"),
    (["render", "--steps", "10000000"], r"steps must be an int in \[1, 1000000\].*rnn.scan"),
    (["render", "--window", "0"], r"--window must be an int in \[1, inf\)"),
    (["render", "-o", "/proc/no/such/x.svg"], r"-o: cannot create the folder"),
])
def test_demo_and_render_refuse_mistakes_on_one_line(argv, match, nothing_expensive):
    line = _refused(argv)
    assert re.search(match, line), line


def test_an_unforeseen_memory_error_is_one_line_too(monkeypatch):
    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(rnn.CharLM, "from_text", too_big)
    line = _refused(["train", "--steps", "1"])
    assert line.startswith("error: out of memory (Unable to allocate 74.5 GiB"), line


def test_the_module_prints_no_traceback_and_exits_non_zero():
    # The real entry point, as a user runs it: one line on stderr, status 2.
    done = subprocess.run([sys.executable, "-m", "tinygraph_rnn", "train", "--hidden", "100000"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: train: --hidden 100000") and "Traceback" not in (
        done.stderr + done.stdout)
    assert done.stderr.count("\n") == 1

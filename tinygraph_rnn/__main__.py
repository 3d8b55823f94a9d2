"""``python -m tinygraph_rnn demo|train|render``: the seed's RNN as a graph, run, trained, drawn.

``demo`` builds the seed's vanilla RNN over the character vocabulary of the
bundled corpus, unrolls it over a sentence, runs forward propagation, prints
for every step the input character, the most likely next character and its
probability, and writes the unrolled, rolled and cell pictures as SVG; then
it trains a character language model on the corpus (validation loss before
and after, a sample; :mod:`tinygraph_rnn.lm_cli`). ``train`` runs that
training with options, saves and loads checkpoints.
``render`` draws any built-in cell in any view. ``make demo`` runs ``demo``.

::

    python -m tinygraph_rnn demo [--text "..."] [--steps T] [--hidden H] [--out DIR]
                                 [--train-steps N]
    python -m tinygraph_rnn train [--steps N] [--hidden H] [--seq-len K] [--batch B] [--lr LR]
                                  [--save PATH] [--load PATH] [--sample-length L] [--temperature T]
    python -m tinygraph_rnn render [--cell vanilla|gru|lstm] [--view rolled] [-o PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.core.options import NumberOptions, check_number

from .cells import VanillaRNNCell
from .gated_cells import GRUCell, LSTMCell
from .lm_cli import DEMO_STEPS, add_train_arguments, check_fits, demo_training, train_command
from .unroll import Unrolled, unroll
from .vocab import Vocab, load_corpus, show_char

__all__ = ["main", "demo", "build_demo_cell", "DEFAULT_TEXT"]

#: The corpus's first sentence.
DEFAULT_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a "
                "good fortune, must be in want of a wife.")

#: Above this many steps the unrolled picture shows a window: first k, "…", last k.
FULL_PICTURE_STEPS = 8
WINDOW = 3


def build_demo_cell(vocab: Vocab, hidden_size: int, seed: int = 0) -> VanillaRNNCell:
    """The seed's vanilla RNN over ``vocab``: one-hot chars in, next-char distribution out.

    The weights are the seed's untrained initialisation. This is the place
    where trained weights come in: assign ``cell.params`` before unrolling.
    """
    return VanillaRNNCell(input_size=len(vocab), hidden_size=hidden_size,
                          output_size=len(vocab), seed=seed)


def predictions(net: Unrolled, vocab: Vocab, text: str) -> list[dict[str, Any]]:
    """Run ``net`` over ``text``; per step the input, the argmax next char and its probability."""
    probs = net.run(vocab.one_hot(text, dtype=net.cell.dtype))["outputs"]
    rows = []
    for k, ch in enumerate(text):
        best = int(np.argmax(probs[k]))
        rows.append({"step": k, "input": ch, "predicted": vocab.chars[best],
                     "probability": float(probs[k, best]),
                     "actual": text[k + 1] if k + 1 < len(text) else None,
                     "p_actual": (float(probs[k, vocab.index[text[k + 1]]])
                                  if k + 1 < len(text) else None)})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The per-step predictions as a fixed-width text table."""
    lines = [f"{'step':>4}  {'input':<6} {'next (argmax)':<14} {'p':>6}   "
             f"{'actual next':<11} {'p(actual)':>9}"]
    for r in rows:
        actual = "" if r["actual"] is None else show_char(r["actual"])
        p_actual = "" if r["p_actual"] is None else f"{r['p_actual']:.4f}"
        lines.append(f"{r['step']:>4}  {show_char(r['input']):<6} "
                     f"{show_char(r['predicted']):<14} {r['probability']:>6.4f}   "
                     f"{actual:<11} {p_actual:>9}")
    return "\n".join(lines)


def write_pictures(net: Unrolled, out: Path) -> list[Path]:
    """The unrolled (windowed when long), rolled and cell views as SVGs in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    window = WINDOW if net.steps > FULL_PICTURE_STEPS else None
    paths = []
    for view, options in (("unrolled", {"window": window}), ("rolled", {}), ("cell", {})):
        path = out / f"rnn_{view}.svg"
        paths.append(Path(net.render(path, view=view, **options)))
    return paths


def demo(text: str = DEFAULT_TEXT, steps: int | None = None, hidden_size: int = 32,
         out: str | Path = "out", seed: int = 0, pictures: bool = True,
         file: Any = None) -> dict[str, Any]:
    """Run the demo; print to ``file`` (stdout); return the net, the rows and the SVG paths."""
    file = sys.stdout if file is None else file
    corpus = load_corpus()
    vocab = Vocab.from_text(corpus)
    text = text if steps is None else text[:steps]
    if not text:
        raise tg.FeedError("the demo needs a non-empty text (and --steps >= 1)")
    vocab.encode(text)  # unknown characters fail here, before anything is built
    check_fits("demo", len(vocab), hidden_size, len(text), 1,
               sizes=f"--hidden {hidden_size} with {len(vocab)} characters")
    cell = build_demo_cell(vocab, hidden_size, seed)
    net = unroll(cell, steps=len(text), name="vanilla_rnn")
    rows = predictions(net, vocab, text)

    print(f"vocabulary: {len(vocab)} characters of the bundled corpus ({len(corpus):,} chars)",
          file=file)
    print(f"cell: VanillaRNNCell(input_size={len(vocab)}, hidden_size={hidden_size}, "
          f"output_size={len(vocab)}), untrained (seed {seed}); uniform guessing would give "
          f"p = 1/{len(vocab)} = {1 / len(vocab):.4f}", file=file)
    print(f"unrolled over {net.steps} steps: {len(net.graph)} nodes, "
          f"{len(net.params)} shared params", file=file)
    print(f"text: {text!r}\n", file=file)
    print(format_table(rows), file=file)
    known = [r["p_actual"] for r in rows if r["p_actual"] is not None]
    if known:
        print(f"\nmean log-likelihood of the actual next characters: "
              f"{np.mean(np.log(known)):.4f} nats (uniform: {-np.log(len(vocab)):.4f})",
              file=file)
    paths = write_pictures(net, Path(out)) if pictures else []
    for path in paths:
        print(f"wrote {path}", file=file)
    return {"net": net, "vocab": vocab, "rows": rows, "paths": paths}


CELLS = {"vanilla": VanillaRNNCell, "gru": GRUCell, "lstm": LSTMCell}


def render(cell: str = "vanilla", steps: int = 4, view: str = "unrolled",
           window: int | None = None, output: str | Path = "out/rnn.svg",
           input_size: int = 3, hidden_size: int = 4, file: Any = None) -> Path:
    """Draw a built-in cell unrolled over ``steps`` in ``view``; returns the written path."""
    file = sys.stdout if file is None else file
    net = unroll(CELLS[cell](input_size=input_size, hidden_size=hidden_size), steps=steps)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    path = Path(net.render(output, view=view, window=window))
    print(f"wrote {path}", file=file)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinygraph_rnn",
                                     description="Recurrent cells as tinygraph graphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the seed's vanilla RNN over a sentence: predict, draw")
    d.add_argument("--text", default=DEFAULT_TEXT,
                   help="characters to feed (default: the corpus's first sentence)")
    d.add_argument("--steps", type=int, default=None, help="use only the first STEPS characters")
    d.add_argument("--hidden", type=int, default=32, help="hidden size (default 32)")
    d.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    d.add_argument("--out", default="out", help="directory for the SVGs (default out/)")
    d.add_argument("--no-pictures", action="store_true", help="skip writing SVGs")
    d.add_argument("--train-steps", type=int, default=DEMO_STEPS,
                   help=f"then train the character LM this many steps (default {DEMO_STEPS}; "
                        "0 skips)")
    add_train_arguments(sub.add_parser(
        "train", help="train the character language model on the corpus, then sample"))
    r = sub.add_parser("render", help="draw a built-in cell unrolled, rolled or alone")
    r.add_argument("--cell", choices=sorted(CELLS), default="vanilla")
    r.add_argument("--steps", type=int, default=4)
    r.add_argument("--view", choices=["unrolled", "rolled", "cell"], default="unrolled")
    r.add_argument("--window", type=int, default=None,
                   help="unrolled view of long nets: first/last WINDOW steps")
    r.add_argument("-o", "--output", default="out/rnn.svg",
                   help="file to write; the format follows the suffix (svg, png, pdf, dot)")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """The numeric options and output folders, checked before anything is built or run."""
    count: NumberOptions = {"integer": True, "error": tg.GraphError}
    if args.command == "demo":
        if args.steps is not None:
            check_number("--steps", args.steps, 1, **count)
        check_number("--hidden", args.hidden, 1, **count)
        check_number("--seed", args.seed, 0, 2**63 - 1, **count)
        check_number("--train-steps", args.train_steps, 0, **count)
        if not args.no_pictures:
            _make_folder("--out", Path(args.out))
    elif args.command == "render":
        check_number("--steps", args.steps, 1, **count)
        if args.window is not None:
            check_number("--window", args.window, 1, **count)
        _make_folder("-o", Path(args.output).parent)


def _make_folder(option: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise tg.GraphError(f"{option}: cannot create the folder {str(folder)!r}: "
                            f"{exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns 0, or exits with status 2 and one ``error:`` line."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check_args(args)
        if args.command == "demo":
            demo(text=args.text, steps=args.steps, hidden_size=args.hidden, out=args.out,
                 seed=args.seed, pictures=not args.no_pictures)
            if args.train_steps > 0:
                demo_training(steps=args.train_steps, seed=args.seed)
        elif args.command == "train":
            train_command(args)
        else:
            render(cell=args.cell, steps=args.steps, view=args.view, window=args.window,
                   output=args.output)
    except tg.GraphError as exc:
        parser.exit(2, f"error: {_one_line(str(exc))}\n")
    except MemoryError as exc:  # the estimates before building missed: still one line
        parser.exit(2, f"error: out of memory ({_one_line(str(exc)) or 'MemoryError'}); "
                       "choose smaller sizes\n")
    except OSError as exc:  # a disk filling up, a folder vanishing: not a bug to trace
        parser.exit(2, f"error: {_one_line(str(exc))}\n")
    return 0


def _one_line(text: str) -> str:
    """``text`` with control characters (newlines, ANSI escapes) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if __name__ == "__main__":
    sys.exit(main())

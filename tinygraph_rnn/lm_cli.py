"""``python -m tinygraph_rnn train`` and the training part of the demo.

Both train a :class:`~tinygraph_rnn.CharLM` on the bundled corpus (or a
given text file) and report what happened: the validation loss before
training (about ``ln V`` for V characters: the untrained model guesses
uniformly), the progress bar, the validation loss after and its drop, the
time, and a sample of generated text::

    python -m tinygraph_rnn train [--cell vanilla|gru|lstm] [--steps N] [--hidden H]
                                  [--seq-len K] [--batch B]
                                  [--lr LR] [--seed S] [--text-file PATH] [--load PATH]
                                  [--save PATH] [--prefix TEXT] [--sample-length L]
                                  [--temperature T]

:func:`add_train_arguments` and :func:`train_command` are what
``tinygraph_rnn.__main__`` wires into its ``train`` subcommand;
:func:`demo_training` is what the demo calls after forward propagation.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import tinygraph as tg
from tinygraph.core.arrays import format_bytes, machine_memory
from tinygraph.core.options import NumberOptions, check_number

from .lm import DEFAULT_CLIP, DEFAULT_LR, CharLM
from .lm_build import CELLS
from .vocab import Vocab, load_corpus

__all__ = ["DEMO_STEPS", "DEMO_SIZES", "add_train_arguments", "train_command",
           "demo_training", "train_and_report", "check_train_args", "check_fits",
           "check_output_path"]

#: Optimizer steps of the demo's training run (a few seconds on 2 cores).
DEMO_STEPS = 600
#: The demo model's sizes, also the defaults of ``train``.
DEMO_SIZES = {"hidden_size": 64, "seq_len": 25, "batch_size": 32}
DEFAULT_PREFIX = "It is a truth"
#: Below 1 the likelier characters win more often: more readable samples.
DEFAULT_TEMPERATURE = 0.5


def train_and_report(lm: CharLM, steps: int, lr: float = DEFAULT_LR, clip: float = DEFAULT_CLIP,
                     prefix: str = DEFAULT_PREFIX, sample_length: int = 200,
                     temperature: float = DEFAULT_TEMPERATURE, seed: int = 0,
                     file: Any = None) -> dict[str, Any]:
    """Train ``lm`` for ``steps`` with progress, print the losses and a sample; return them.

    Returns
    -------
    dict
        ``val_before``, ``val_after`` (nats per character), ``drop``
        (relative, ``1 - after / before``), ``seconds`` (training time),
        ``history`` (training losses) and ``sample`` (text).
    """
    file = sys.stdout if file is None else file
    before = lm.validation_loss()
    print(f"validation loss before training: {before:.4f} nats/char "
          f"(uniform guessing: ln {len(lm.vocab)} = {math.log(len(lm.vocab)):.4f})", file=file)
    print(f"training {steps} steps: Adam lr={lr:g}, gradient norm clipped at {clip:g}, "
          f"{lm.batch_size} streams x {lm.seq_len} characters per step", file=file, flush=True)
    if lm.cell_name != "VanillaRNNCell":
        print(f"note: a {lm.cell_name} step costs about 3-4x a vanilla one (measured: 600 steps "
              "of the demo's sizes in ~17-20 s single-threaded against ~5 s, 33-70 s with "
              "busy BLAS threads; docs/lm.md, 'Gated cells'); the bar shows steps/s",
              file=file)
    start = time.perf_counter()
    history = lm.train(steps, lr=lr, clip=clip, verbose=True, file=file)
    seconds = time.perf_counter() - start
    after = lm.validation_loss()
    drop = 1.0 - after / before
    print(f"validation loss after {lm.trained_steps} steps: {after:.4f} nats/char "
          f"({100 * drop:.1f}% lower; trained in {seconds:.1f} s)", file=file)
    text = lm.sample(prefix, length=sample_length, temperature=temperature, seed=seed)
    print(f"sample (temperature {temperature:g}, seed {seed}):\n{text}", file=file)
    return {"val_before": before, "val_after": after, "drop": drop, "seconds": seconds,
            "history": history, "sample": text}


def demo_training(steps: int = DEMO_STEPS, seed: int = 0, file: Any = None) -> dict[str, Any]:
    """The demo's training part: a CharLM of the bundled corpus trained for ``steps``."""
    file = sys.stdout if file is None else file
    lm = CharLM.from_text(load_corpus(), seed=seed, **DEMO_SIZES)
    print(f"\ntraining a character language model on the bundled corpus: {lm.data!r}\n"
          f"  {lm.cell_name} hidden_size={lm.hidden_size}, truncated BPTT over windows of "
          f"{lm.seq_len} steps carrying the state, {len(lm.graph)} graph nodes", file=file)
    report = train_and_report(lm, steps, file=file)
    report["model"] = lm
    return report


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand's options to ``parser``; returns it."""
    parser.add_argument("--cell", choices=list(CELLS), default="vanilla",
                        help="the recurrent cell (default vanilla; ignored with --load)")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS,
                        help=f"optimizer steps (default {DEMO_STEPS})")
    parser.add_argument("--hidden", type=int, default=DEMO_SIZES["hidden_size"],
                        help=f"hidden size (default {DEMO_SIZES['hidden_size']})")
    parser.add_argument("--seq-len", type=int, default=DEMO_SIZES["seq_len"],
                        help=f"BPTT window in steps (default {DEMO_SIZES['seq_len']})")
    parser.add_argument("--batch", type=int, default=DEMO_SIZES["batch_size"],
                        help=f"parallel text streams (default {DEMO_SIZES['batch_size']})")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR,
                        help=f"Adam learning rate (default {DEFAULT_LR:g})")
    parser.add_argument("--clip", type=float, default=DEFAULT_CLIP,
                        help=f"largest gradient norm (default {DEFAULT_CLIP:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    parser.add_argument("--text-file", default=None,
                        help="train on this text file instead of the bundled corpus")
    parser.add_argument("--load", default=None,
                        help="continue a checkpoint written by --save (sizes come from it)")
    parser.add_argument("--save", default=None, help="write the trained model to this file")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="text the sample starts from")
    parser.add_argument("--sample-length", type=int, default=200,
                        help="characters to generate (default 200)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature; 0 is greedy (default {DEFAULT_TEMPERATURE})")
    return parser


# Gates per cell: a vanilla RNN has one weight pair, a GRU three, an LSTM four.
_GATES = {"vanilla": 1, "gru": 3, "lstm": 4}
# Float64 copies of each weight alive while training: the param, its gradient, Adam's two
# moments, the copies a step keeps to undo itself, and slack for the plan's buffers.
_WEIGHT_COPIES = 8
# Float64 values per (step, stream, unit) the forward and backward passes keep.
_ACTIVATION_COPIES = 6


def check_fits(what: str, vocab: int, hidden: int, seq_len: int, batch: int,
               cell: str = "vanilla", sizes: str | None = None) -> None:
    """A GraphError unless a model of these sizes fits in this machine's memory.

    The estimate counts the weights (with their gradients and optimizer
    state) and the activations of one window; a model that cannot fit is
    refused before anything is allocated, instead of a MemoryError (or
    minutes of swapping) halfway through building it.

    >>> check_fits("train", vocab=30, hidden=64, seq_len=25, batch=32)
    >>> check_fits("train", vocab=30, hidden=10**6, seq_len=25, batch=32)
    Traceback (most recent call last):
    ...
    tinygraph.errors.GraphError: train: --hidden 1000000 ...
    """
    gates = _GATES.get(cell, 4)
    weights = gates * (vocab * hidden + hidden * hidden + 2 * hidden) + hidden * vocab + vocab
    activations = seq_len * batch * (gates * hidden + hidden + vocab)
    need = 8 * (_WEIGHT_COPIES * weights + _ACTIVATION_COPIES * activations)
    if need > machine_memory():
        sizes = sizes or (f"--hidden {hidden} with {vocab} characters, --seq-len {seq_len} "
                          f"and --batch {batch}")
        raise tg.GraphError(
            f"{what}: {sizes} needs about {format_bytes(need)} ({weights:,} weights with their "
            f"gradients and optimizer state, and one window's activations), more than this "
            f"machine's memory ({format_bytes(machine_memory())}); choose smaller sizes")


def check_output_path(option: str, path: str) -> Path:
    """``path`` as a Path if a file can be written there; a GraphError saying why not.

    Checked before the expensive work, so a typo does not throw away a
    trained model.
    """
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise tg.GraphError(f"{option} {path!r} is a folder; give a file name such as "
                            f"{str(target / 'model.tgraph')!r}")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise tg.GraphError(f"{option} {path!r}: {str(folder)!r} {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise tg.GraphError(f"{option} {path!r}: the folder {str(folder)!r} is not writable")
    return target


def check_train_args(args: argparse.Namespace) -> None:
    """Every ``train`` option that can be checked without the model; a GraphError if one is
    wrong, before any text is read or weights allocated."""
    count: NumberOptions = {"integer": True, "error": tg.GraphError}
    check_number("--steps", args.steps, 0, **count)
    check_number("--hidden", args.hidden, 1, **count)
    check_number("--seq-len", args.seq_len, 1, **count)
    check_number("--batch", args.batch, 1, **count)
    check_number("--seed", args.seed, 0, 2**63 - 1, **count)
    check_number("--sample-length", args.sample_length, 0, **count)
    check_number("--lr", args.lr, 0.0, low_open=True)
    check_number("--clip", args.clip, 0.0, low_open=True)
    check_number("--temperature", args.temperature, 0.0)
    if not args.prefix:
        raise tg.GraphError("--prefix must not be empty: the sample starts from it")
    if args.save is not None:
        check_output_path("--save", args.save)
    if args.load is not None and not Path(args.load).is_file():
        raise tg.GraphError(f"--load {args.load!r}: no such file")


def _check_prefix(prefix: str, vocab: Vocab) -> None:
    try:
        vocab.encode(prefix)
    except tg.FeedError as exc:
        raise tg.FeedError(f"--prefix {prefix!r}: {exc}") from None


def train_command(args: argparse.Namespace, file: Any = None) -> dict[str, Any]:
    """Run ``train`` with parsed ``args``; GraphError subclasses for user mistakes.

    Every option is checked before training starts (sizes against this
    machine's memory, the ``--save`` folder, the ``--prefix`` characters),
    so a mistake costs nothing.
    """
    file = sys.stdout if file is None else file
    check_train_args(args)
    if args.load is not None:
        lm = CharLM.load(args.load)
        _check_prefix(args.prefix, lm.vocab)
        print(f"loaded {args.load}: {lm!r}", file=file)
    else:
        if args.text_file is None:
            text = load_corpus()
        else:
            try:
                text = Path(args.text_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise tg.GraphError(f"cannot read --text-file {args.text_file!r}: {exc}") from None
        _check_prefix(args.prefix, Vocab.from_text(text))
        check_fits("train", len(set(text)), args.hidden, args.seq_len, args.batch, args.cell)
        lm = CharLM.from_text(text, hidden_size=args.hidden, seq_len=args.seq_len,
                              batch_size=args.batch, seed=args.seed, cell=args.cell)
        print(f"{lm!r} on {lm.data!r}", file=file)
    report = train_and_report(lm, args.steps, lr=args.lr, clip=args.clip, prefix=args.prefix,
                              sample_length=args.sample_length, temperature=args.temperature,
                              seed=args.seed, file=file)
    if args.save is not None:
        path = lm.save(args.save)
        print(f"wrote {path}", file=file)
    report["model"] = lm
    return report

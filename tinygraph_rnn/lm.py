"""A character language model: a recurrent net trained on a text to predict its next character.

:class:`CharLM` unrolls a cell (:class:`~tinygraph_rnn.VanillaRNNCell` by
default; ``cell="gru"``, ``"lstm"`` or any :class:`~tinygraph_rnn.Cell`) once over
``seq_len`` steps and adds one training objective to that graph: the mean
cross-entropy of the stacked logits against the next characters, and its
gradients (:func:`tinygraph.grad`, i.e. backpropagation through time)::

    x_0 … x_{k-1}  one-hot chars, (B, V) each        s0: state carried in, (B, H)
         │                                             │
    [ t=0 ] ─▶ [ t=1 ] ─▶ … ─▶ [ t=k-1 ] ─▶ final state (carried to the next window)
       │          │               │
    logits_0 … logits_{k-1} ─▶ stack ─▶ cross_entropy(·, targets (k, B)) = loss
                                                        └─▶ grad/… : dloss/dU, W, b, V, c

One compiled plan fetches ``[loss, final state, *grads]`` and runs every
training step; the optimizer (:class:`tinygraph.optim.Adam`, after
:func:`tinygraph.optim.clip_grad_norm`) updates the params in place.
Truncated BPTT: each window starts from the previous window's final state
(zeros at the start of an epoch), and gradients stop at the window's edge.
The same graph gives the validation loss (fetching no gradients) and samples
text (fetching only step 0). A checkpoint is the graph itself
(:meth:`Graph.save <tinygraph.Graph.save>`): the vocabulary, the text, the
sizes and the training state ride in the ``meta`` of the ``loss`` node.

>>> import tinygraph_rnn as rnn
>>> lm = rnn.CharLM.from_text("abcabcabd " * 40, hidden_size=8, seq_len=4, batch_size=2)
>>> history = lm.train(steps=30, lr=0.05, verbose=False)
>>> len(history), history[-1] < history[0]
(30, True)
>>> len(lm.sample("ab", length=5, seed=0))
7
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import tinygraph as tg
from tinygraph.exec.threads import scoped_threads, threads_for

from .lm_build import build_graph, make_cell
from .lm_checkpoint import check_checkpoint, restore_training, state_lists
from .lm_data import DEFAULT_VAL_FRACTION, CharData
from .lm_progress import ProgressBar
from .lm_sampling import draw
from .lm_train import adam_step_or_undo
from .vocab import Vocab

__all__ = ["CharLM", "DEFAULT_LR", "DEFAULT_CLIP"]

DEFAULT_LR = 0.01
DEFAULT_CLIP = 5.0
_META_KEY = "char_lm"
_META_VERSION = 1


class CharLM:
    """A character-level RNN language model over one text.

    Build one with :meth:`from_text` or :meth:`load` (the constructor is internal).

    Attributes
    ----------
    graph : tinygraph.Graph
        The unrolled training graph (loss and gradient nodes included).
    data : CharData
        The text as ids, split 90/10 into training and validation parts.
    vocab : Vocab
    hidden_size, seq_len, batch_size, seed : int
    params : list of Node
        ``U W b V c``, the live weights.
    history : list of float
        The training loss of every step so far (all :meth:`train` calls).
    """

    def __init__(self, graph: tg.Graph, data: CharData, handles: dict[str, Any],
                 sizes: dict[str, Any]):
        self.graph = graph
        self.data = data
        self.vocab: Vocab = data.vocab
        self.hidden_size = sizes["hidden_size"]
        self.seq_len = sizes["seq_len"]
        self.batch_size = sizes["batch_size"]
        self.seed = sizes["seed"]
        self.cell_name = sizes.get("cell", "VanillaRNNCell")
        handles = state_lists(handles)
        self._h = handles
        self.params: list[tg.Node] = list(handles["params"])
        self.history: list[float] = []
        # Where training resumes: window index in the epoch and the carried state.
        self._window = 0
        self._state = self._zero_state(self.batch_size)
        self._optimizer: tg.optim.Adam | None = None
        # Step inputs take ids (graphs built here) or one-hot rows (older checkpoints).
        ids = handles["inputs"][0].dtype.kind in "iu"
        self._encode: Any = np.asarray if ids else np.eye(len(self.vocab)).__getitem__
        inputs = [*handles["inputs"], *handles["initial_state"], handles["targets"]]
        # Compiled once, run every step: the plans read the live params at call time.
        self._train_fn = graph.compile([handles["loss"], *handles["final_state"],
                                        *handles["grads"]], inputs=inputs)
        self._eval_fn = graph.compile([handles["loss"], *handles["final_state"]], inputs=inputs)
        self._step_fn = graph.compile([handles["first_logits"], *handles["first_state"]],
                                      inputs=[handles["inputs"][0], *handles["initial_state"]])

    def _zero_state(self, rows: int) -> list[np.ndarray]:
        """Zeros for each state part (the LSTM has two), ``rows`` streams."""
        return [np.zeros((rows, node.shape[-1])) for node in self._h["initial_state"]]

    def _run(self, fn: Any, *args: Any) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        """``fn``'s first output, the state parts after it, and what follows them."""
        out = fn(*args)
        n = len(self._state)
        return out[0], list(out[1:1 + n]), list(out[1 + n:])

    # ------------------------------------------------------------- building
    @classmethod
    def from_text(cls, text: str, hidden_size: int = 64, seq_len: int = 25,
                  batch_size: int = 32, seed: int = 0,
                  val_fraction: float = DEFAULT_VAL_FRACTION, cell: Any = "vanilla") -> CharLM:
        """A fresh (untrained) model of ``text``.

        Parameters
        ----------
        text : str
            Its characters are the vocabulary; the first 90 % trains, the
            rest validates (``val_fraction``).
        hidden_size : int
            H, the size of the RNN state.
        seq_len : int
            k, the time steps unrolled: the window of truncated BPTT.
        batch_size : int
            B, parallel streams of the training text per step.
        seed : int
            Seeds the initial weights; the same seed gives the same training.
        val_fraction : float
            The share of the text held out for :meth:`validation_loss`.
        cell : str, Cell subclass or Cell instance
            ``"vanilla"`` (default), ``"gru"``, ``"lstm"``, or a cell of your
            own (an instance needs ``input_size`` = the number of distinct
            characters). A cell without an output layer of that size gets
            a readout ``h_t @ V_out + c_out``.

        Raises
        ------
        tinygraph.GraphError
            A size is not a positive int, or the text is too short for them.

        Examples
        --------
        >>> import tinygraph_rnn as rnn
        >>> lm = rnn.CharLM.from_text("hello world " * 20, hidden_size=8, seq_len=5, batch_size=2)
        >>> lm
        <CharLM: 8 characters, hidden_size=8, seq_len=5, batch_size=2, trained 0 steps>
        >>> round(lm.validation_loss(), 1)   # untrained: about ln(8) = 2.08
        2.1
        """
        for what, value in (("hidden_size", hidden_size), ("seq_len", seq_len),
                            ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise tg.GraphError(f"CharLM: {what} must be a positive int, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise tg.GraphError(f"CharLM: seed must be an int, got {seed!r}")
        data = CharData(text, val_fraction=val_fraction)
        data.windows_per_epoch(int(seq_len), int(batch_size))  # too short: fail before building
        data.val_windows(int(seq_len))
        size = len(data.vocab)
        chosen = make_cell(cell, size, int(hidden_size), int(seed))
        g, handles = build_graph(chosen, size, int(seq_len), int(seed))
        sizes = {"hidden_size": chosen.hidden_size, "seq_len": int(seq_len),
                 "batch_size": int(batch_size), "seed": int(seed), "cell": chosen.name}
        return cls(g, data, handles, sizes)

    # -------------------------------------------------------------- training
    def train(self, steps: int, lr: float = DEFAULT_LR, clip: float = DEFAULT_CLIP,
              verbose: bool = True, file: Any = None, log_every: int | None = None,
              client: Any = None, callback: Any = None,
              val_every: int | None = None) -> list[float]:
        """Train for ``steps`` windows with Adam and gradient clipping; the losses.

        Each step runs one window of ``seq_len`` characters in each of the
        ``batch_size`` rows, starting from the state the previous window
        ended in (zeros when an epoch starts). Calling ``train`` twice
        continues where the first call stopped (data position, state, Adam
        moments): ``train(a); train(b)`` equals ``train(a + b)``.

        Parameters
        ----------
        steps : int
            Number of optimizer steps (windows).
        lr : float
            Adam's learning rate.
        clip : float
            The largest global gradient norm (:func:`tinygraph.optim.clip_grad_norm`).
        verbose : bool
            Print a progress bar with the step, the loss and steps/s to ``file``.
        file : file object, optional
            Where progress goes (default ``sys.stdout``).
        log_every : int, optional
            Steps between progress lines when ``file`` is not a terminal
            (default: about 10 lines per call).
        client : dask.distributed.Client, optional
            Train data-parallel on its workers (``pip install "tinygraph[dask]"``):
            each worker differentiates its share of the streams, the driver
            combines the gradients weighted by share, then clips and steps as
            here; the result equals training without a client (docs/distributed.md).
        callback : callable, optional
            ``callback(step, loss, val_loss)`` after each step (``step`` counts
            from 1 over all calls); ``val_loss`` is the validation loss every
            ``val_every`` steps (default: 10 times a call) and at the last, else
            None. Returning ``False`` stops training after that step.

        Returns
        -------
        list of float
            The training loss (mean cross-entropy in nats) of each step.

        Raises
        ------
        tinygraph.EvaluationError
            The loss or the gradients became nan or inf (lower ``lr``).
        """
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise tg.GraphError(f"train: steps must be an int >= 0, got {steps!r}")
        for what, value in (("lr", lr), ("clip", clip)):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value <= 0):
                raise tg.GraphError(f"train: {what} must be a positive number, got {value!r}")
        if self._optimizer is None:
            self._optimizer = tg.optim.Adam(self.params, lr=lr)
        self._optimizer.lr = float(lr)
        bar = ProgressBar(int(steps), file, log_every) if verbose else None
        losses: list[float] = []
        gradients = self._train_fn
        if client is not None:  # the same fetches, each worker running its share of the streams
            from .lm_dask import DataParallel

            h = self._h
            gradients = DataParallel(self.graph, [h["loss"], *h["final_state"], *h["grads"]],
                                     [*h["inputs"], *h["initial_state"], h["targets"]], client,
                                     means=[h["loss"], *h["grads"]])
        every = val_every or max(1, int(steps) // 10)
        with scoped_threads(threads_for(self._train_fn.plan)):  # one BLAS scope for the loop
            for i in range(1, int(steps) + 1):
                losses.append(self._train_step(gradients, clip, lr))
                if bar is not None:
                    bar.update(len(losses), losses[-1])
                if callback is not None:
                    val = self.validation_loss() if i % every == 0 or i == steps else None
                    if callback(self.trained_steps, losses[-1], val) is False:
                        break
        if bar is not None:
            bar.close()
        return losses

    def _train_step(self, gradients: Any, clip: float, lr: float) -> float:
        """One optimizer step on the next window; its training loss."""
        per_epoch = self.data.windows_per_epoch(self.seq_len, self.batch_size)
        if self._window >= per_epoch:  # a new epoch starts from the top with a zero state
            self._window = 0
            self._state = self._zero_state(self.batch_size)
        x, y = self.data.window(self._window, self.seq_len, self.batch_size)
        loss, state, grads = self._run(gradients, *self._encode(x), *self._state, y)
        tg.optim.clip_grad_norm(grads, clip, error_if_nonfinite=True)
        adam_step_or_undo(self._optimizer, self.params, grads, lr)
        # Only a step that fully succeeded is recorded: params, Adam, history agree.
        self._state = state
        self._window += 1
        self.history.append(float(loss))
        return float(loss)

    @property
    def trained_steps(self) -> int:
        """Optimizer steps taken so far."""
        return 0 if self._optimizer is None else self._optimizer.steps

    def validation_loss(self) -> float:
        """Mean cross-entropy (nats per character) of the held-out text.

        The held-out ids run as one stream through the training graph's
        windows, each starting from the previous window's final state, so
        every prediction sees all the text before it. No gradient is
        computed. See :meth:`CharData.val_windows` for which targets count.
        """
        state = self._zero_state(1)
        total, count = 0.0, 0
        for x, y in self.data.val_windows(self.seq_len):
            loss, state, _ = self._run(self._eval_fn, *self._encode(x), *state, y)
            total += float(loss) * y.size
            count += y.size
        return total / count

    # -------------------------------------------------------------- sampling
    def sample(self, prefix: str, length: int = 200, temperature: float = 1.0,
               seed: int = 0) -> str:
        """``prefix`` followed by ``length`` characters drawn from the model.

        The prefix runs through step 0 of the graph one character at a
        time, carrying the state; then each next character is drawn from
        ``softmax(logits / temperature)`` with ``np.random.default_rng(seed)``
        and fed back in. ``temperature=0`` takes the most likely character
        (greedy); small temperatures approach it, large ones flatten the
        distribution. The same seed gives the same text.

        Raises
        ------
        tinygraph.FeedError
            ``prefix`` is empty or has characters outside the vocabulary.
        tinygraph.GraphError
            ``length`` is negative or ``temperature`` is negative or not finite.
        """
        if not isinstance(prefix, str) or not prefix:
            raise tg.FeedError("sample needs a non-empty prefix string to start from, e.g. "
                               f"{self.vocab.chars[-1]!r}")
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
            raise tg.GraphError(f"sample: length must be an int >= 0, got {length!r}")
        if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
                or not math.isfinite(temperature) or temperature < 0):
            raise tg.GraphError(f"sample: temperature must be a finite number >= 0, got "
                                f"{temperature!r}")
        ids = self.vocab.encode(prefix)
        rng = np.random.default_rng(seed)
        state = self._zero_state(1)
        logits = None
        for i in ids:
            logits, state, _ = self._run(self._step_fn, self._encode(np.array([i])), *state)
        out = list(ids)
        for _ in range(int(length)):
            nxt = draw(logits[0], temperature, rng)  # type: ignore[index]  # set by the first step
            out.append(nxt)
            logits, state, _ = self._run(self._step_fn, self._encode(np.array([nxt])), *state)
        return self.vocab.decode(out)

    # ----------------------------------------------------------- checkpoints
    def save(self, path: Any) -> Any:
        """Write the model to ``path`` with :meth:`tinygraph.Graph.save`; returns ``path``.

        The file is the training graph with its weights; the ``loss`` node's
        ``meta["char_lm"]`` holds the text, the sizes, the handles into the
        graph and the training state (data position, carried state, Adam
        moments), so :meth:`load` continues exactly where training stopped.
        """
        loss = self._h["loss"]
        loss.meta[_META_KEY] = self._checkpoint()
        try:
            return self.graph.save(path)
        finally:
            del loss.meta[_META_KEY]  # the live graph keeps no stale copy

    @classmethod
    def load(cls, path: Any) -> CharLM:
        """A model saved by :meth:`save`, ready to sample, validate or train on.

        Raises
        ------
        tinygraph.FormatError
            The file is not a tinygraph file, or not a saved CharLM.
        """
        graph = tg.load(path)
        loss = graph.nodes.get("loss")
        info = None if loss is None else loss.meta.pop(_META_KEY, None)
        if not isinstance(info, dict) or info.get("version") != _META_VERSION:
            raise tg.FormatError(f"{path!s}: not a CharLM checkpoint (its 'loss' node has no "
                                 f"meta[{_META_KEY!r}] of version {_META_VERSION}); save one "
                                 "with CharLM.save")
        check_checkpoint(graph, info, str(path))
        try:
            data = CharData(info["text"], info["val_fraction"], vocab=Vocab(info["vocab"]))
            model = cls(graph, data, info["handles"], info["sizes"])
            model._restore(info["training"])
        except (KeyError, TypeError, ValueError, IndexError, tg.GraphError) as exc:
            raise tg.FormatError(f"{path!s}: damaged CharLM checkpoint ({type(exc).__name__}: "
                                 f"{exc})") from None
        return model

    def _checkpoint(self) -> dict[str, Any]:
        opt = self._optimizer
        adam = None if opt is None else {"steps": opt.steps, "lr": opt.lr, "m": list(opt.m),
                                         "v": list(opt.v)}
        return {"version": _META_VERSION, "text": self.data.text,
                "vocab": "".join(self.vocab.chars), "val_fraction": self.data.val_fraction,
                "sizes": {"hidden_size": self.hidden_size, "seq_len": self.seq_len,
                          "batch_size": self.batch_size, "seed": self.seed,
                          "cell": self.cell_name},
                "handles": dict(self._h),
                "training": {"window": self._window, "state": [s.copy() for s in self._state],
                             "history": list(self.history), "adam": adam}}

    def _restore(self, training: dict[str, Any]) -> None:
        restore_training(self, training)

    def __repr__(self) -> str:
        cell = "" if self.cell_name == "VanillaRNNCell" else f"{self.cell_name}, "
        return (f"<CharLM: {len(self.vocab)} characters, {cell}hidden_size={self.hidden_size}, "
                f"seq_len={self.seq_len}, batch_size={self.batch_size}, "
                f"trained {self.trained_steps} steps>")


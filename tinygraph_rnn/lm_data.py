"""Data for the character language model: ids, the train/validation split, windows.

A text becomes integer ids over its sorted characters (:class:`~tinygraph_rnn.vocab.Vocab`).
The first 90 % of the ids train, the last 10 % validate. Training uses the
standard char-rnn layout: the training ids are cut into ``B`` equal rows
(``B`` parallel streams of text) and walked left to right in windows of
``k`` columns; the targets are the same window shifted by one character::

    rows (B=3, 8 columns each)       window 0 (k=3)      window 1
    a b c d e f g h                  x: a b c  y: b c d   x: d e f  y: e f g
    i j k l m n o p                  x: i j k  y: j k l   x: l m n  y: m n o
    q r s t u v w x                  x: q r s  y: r s t   x: t u v  y: u v w

Row ``r`` of window ``w+1`` continues row ``r`` of window ``w``, so the final
state of one window is the right initial state of the next (truncated
backpropagation through time carries the state, not the gradient). Windows
are returned time-major, ``(k, B)``, as the unrolled graph takes them.

>>> data = CharData("abcdefghijklmnopqrstuvwxyz" * 2, val_fraction=0.1)
>>> len(data.vocab), len(data.train_ids), len(data.val_ids)
(26, 47, 5)
>>> x, y = data.window(0, seq_len=3, batch_size=2)
>>> data.vocab.decode(x[:, 0]), data.vocab.decode(y[:, 0])
('abc', 'bcd')
>>> data.vocab.decode(x[:, 1]), data.vocab.decode(y[:, 1])
('xyz', 'yza')
"""

from __future__ import annotations

import numpy as np

import tinygraph as tg

from .vocab import Vocab

__all__ = ["CharData", "DEFAULT_VAL_FRACTION"]

DEFAULT_VAL_FRACTION = 0.1


class CharData:
    """A text as ids, split into training and validation parts.

    Parameters
    ----------
    text : str
        The whole text; its characters make the vocabulary (so the held-out
        part never meets an unknown character).
    val_fraction : float, optional
        The share of the text, taken from its end, held out for validation.
    vocab : Vocab, optional
        A vocabulary to use instead of the text's own (it must cover the text).

    Attributes
    ----------
    vocab : Vocab
    ids : ndarray of int64
        The whole text as ids.
    train_ids, val_ids : ndarray of int64
        ``ids[:split]`` and ``ids[split:]``, ``split = round(len * (1 - val_fraction))``.

    Raises
    ------
    tinygraph.GraphError
        ``text`` is not a non-empty string or ``val_fraction`` is not in (0, 1).
    tinygraph.FeedError
        ``vocab`` does not cover the text.
    """

    def __init__(self, text: str, val_fraction: float = DEFAULT_VAL_FRACTION,
                 vocab: Vocab | None = None):
        if not isinstance(text, str) or len(text) < 2:
            raise tg.GraphError(f"the language model needs a text of at least 2 characters, got "
                                f"{type(text).__name__} {text!r:.40}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not (
                0 < val_fraction < 1):
            raise tg.GraphError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
        self.text = text
        self.val_fraction = float(val_fraction)
        self.vocab = Vocab.from_text(text) if vocab is None else vocab
        self.ids = self.vocab.encode(text)
        split = int(round(len(self.ids) * (1 - self.val_fraction)))
        self.train_ids = self.ids[:split]
        self.val_ids = self.ids[split:]

    def rows(self, batch_size: int) -> np.ndarray:
        """The training ids as ``batch_size`` rows of equal length (the tail is dropped).

        >>> CharData("abcdefghijk", val_fraction=0.1).rows(3).tolist()
        [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
        """
        columns = len(self.train_ids) // batch_size
        return self.train_ids[:columns * batch_size].reshape(batch_size, columns)

    def windows_per_epoch(self, seq_len: int, batch_size: int) -> int:
        """How many windows of ``seq_len`` (plus one target column) fit in a row.

        Raises
        ------
        tinygraph.FeedError
            Not even one fits: the training text is too short for these sizes.
        """
        count = (len(self.train_ids) // batch_size - 1) // seq_len
        if count < 1:
            need = batch_size * (seq_len + 1)
            raise tg.FeedError(f"the training text has {len(self.train_ids)} characters; "
                               f"batch_size={batch_size} rows of seq_len={seq_len} + 1 need at "
                               f"least {need}: use a longer text or smaller sizes")
        return count

    def window(self, index: int, seq_len: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``index`` of an epoch: input ids and target ids, both ``(seq_len, batch_size)``.

        Window ``w`` covers columns ``w*seq_len … (w+1)*seq_len - 1`` of
        :meth:`rows`; its targets are the next column of each.
        """
        count = self.windows_per_epoch(seq_len, batch_size)
        if not 0 <= index < count:
            raise tg.GraphError(f"window {index} does not exist; an epoch has {count} windows")
        rows = self.rows(batch_size)
        start = index * seq_len
        x = rows[:, start:start + seq_len].T
        y = rows[:, start + 1:start + seq_len + 1].T
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def val_windows(self, seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The held-out ids as consecutive windows of one stream, each ``(seq_len, 1)``.

        Every target of ``val_ids[1:]`` is scored once, except the last
        ``(len(val_ids) - 1) % seq_len`` (a window is always full).

        >>> data = CharData("abcdefghij", val_fraction=0.5)
        >>> [data.vocab.decode(x) + ">" + data.vocab.decode(y) for x, y in data.val_windows(2)]
        ['fg>gh', 'hi>ij']

        Raises
        ------
        tinygraph.FeedError
            The held-out text is shorter than ``seq_len + 1``.
        """
        ids = self.val_ids
        count = (len(ids) - 1) // seq_len
        if count < 1:
            raise tg.FeedError(f"the validation text has {len(ids)} characters; seq_len="
                               f"{seq_len} needs at least {seq_len + 1}: use a longer text, a "
                               "larger val_fraction or a smaller seq_len")
        out = []
        for w in range(count):
            start = w * seq_len
            out.append((ids[start:start + seq_len, None].copy(),
                        ids[start + 1:start + seq_len + 1, None].copy()))
        return out

    def __repr__(self) -> str:
        return (f"<CharData: {len(self.ids):,} characters, {len(self.vocab)} distinct; "
                f"{len(self.train_ids):,} train, {len(self.val_ids):,} validation>")

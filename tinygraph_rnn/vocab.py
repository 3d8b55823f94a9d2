"""The bundled corpus and a character vocabulary over it.

The corpus is a public-domain text (Pride and Prejudice, chapters 1-6; see
``data/README.md``) shipped inside the package and read with
:mod:`importlib.resources`, so it works from a wheel as well as a checkout.
A :class:`Vocab` maps characters to integer ids (sorted, so ids are stable)
and sequences to the one-hot rows a cell's inputs take.

>>> vocab = Vocab.from_text("hello")
>>> vocab.chars
('e', 'h', 'l', 'o')
>>> vocab.encode("hole").tolist()
[1, 3, 2, 0]
>>> vocab.one_hot("he")
array([[0., 1., 0., 0.],
       [1., 0., 0., 0.]])
"""

from __future__ import annotations

from importlib import resources

import numpy as np

import tinygraph as tg

__all__ = ["Vocab", "load_corpus", "show_char"]


def load_corpus() -> str:
    """The bundled corpus text (ASCII, ~42 KB).

    >>> load_corpus().startswith("PRIDE AND PREJUDICE")
    True
    """
    return resources.files("tinygraph_rnn").joinpath("data/corpus.txt").read_text("ascii")


def show_char(ch: str) -> str:
    """A character as it prints in a table: quoted, with escapes for whitespace.

    >>> show_char("a"), show_char(" "), show_char("\\n")
    ("'a'", "' '", "'\\\\n'")
    """
    return repr(ch)


class Vocab:
    """Characters <-> integer ids, ids in sorted character order.

    Parameters
    ----------
    chars : iterable of str
        The distinct characters (they are sorted).
    """

    def __init__(self, chars):
        self.chars: tuple[str, ...] = tuple(sorted(set(chars)))
        self.index: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The vocabulary of every character in ``text``."""
        return cls(text)

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"<Vocab of {len(self)} characters>"

    def encode(self, text: str) -> np.ndarray:
        """``text`` as an int array of ids.

        Raises
        ------
        tinygraph.FeedError
            A character of ``text`` is not in the vocabulary.
        """
        unknown = [ch for ch in dict.fromkeys(text) if ch not in self.index]
        if unknown:
            raise tg.FeedError(f"characters {', '.join(map(show_char, unknown))} are not in the "
                               f"vocabulary of {len(self)} characters; use only characters of "
                               "the corpus")
        return np.array([self.index[ch] for ch in text], dtype=np.int64)

    def decode(self, ids) -> str:
        """Ids back to a string."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def one_hot(self, text: str, dtype="float64") -> np.ndarray:
        """``text`` as one-hot rows, shape ``(len(text), len(self))``."""
        return np.eye(len(self), dtype=dtype)[self.encode(text)]

"""The training progress display: tqdm live, or a few lines into a file.

On a terminal, and in a Jupyter notebook (a widget when ``ipywidgets`` is
installed, else a text bar the notebook redraws in place), ``tqdm`` shows a
live bar with the loss. Into a file or a pipe it prints a line every
``log_every`` steps and at the end, so logs stay short::

    step 100/400 [######..................] loss 2.3740  51.0 steps/s

>>> import io
>>> buf = io.StringIO()
>>> bar = ProgressBar(4, buf, log_every=2)
>>> for step in range(1, 5):
...     bar.update(step, loss=4.0 / step)
>>> bar.close()
>>> for line in buf.getvalue().splitlines():
...     print(line.split("  ")[0])
step 2/4 [############............] loss 2.0000
step 4/4 [########################] loss 1.0000
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import std as tqdm_std

__all__ = ["ProgressBar", "in_notebook"]


def in_notebook(file: Any) -> bool:
    """Whether ``file`` is a Jupyter kernel's output stream (not a tty, but redrawn in place)."""
    return type(file).__module__.startswith("ipykernel")


def _live_bar(total: int, file: Any) -> Any:
    if in_notebook(file):
        try:
            import ipywidgets  # noqa: F401 - tqdm's notebook bar needs it
            from tqdm.notebook import tqdm as notebook_tqdm
            return notebook_tqdm(total=total, unit="step")
        except ImportError:
            pass  # the text bar: the notebook honours its carriage returns
    return tqdm_std.tqdm(total=total, file=file, unit="step", dynamic_ncols=True)


class ProgressBar:
    """Training progress: tqdm live on a terminal or in a notebook, a few lines otherwise.

    Parameters
    ----------
    total : int
        The number of steps the bar fills up to.
    file : file object, optional
        Where to write (default ``sys.stdout``).
    log_every : int, optional
        Steps between lines when ``file`` is not a terminal (default: a tenth).
    """

    WIDTH = 24

    def __init__(self, total: int, file: Any, log_every: int | None):
        self.total = total
        self.file = sys.stdout if file is None else file
        isatty = getattr(self.file, "isatty", None)
        self.live = bool(isatty and isatty()) or in_notebook(self.file)
        self.every = log_every or max(1, total // 10)
        self.start = time.perf_counter()
        self.bar = _live_bar(total, self.file) if self.live else None

    def update(self, done: int, loss: float) -> None:
        """Show that ``done`` steps are finished, the last with training loss ``loss``."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(done - self.bar.n)
            return
        if done % self.every and done != self.total:
            return
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        filled = self.WIDTH * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (f"step {done:>{len(str(self.total))}}/{self.total} [{bar}] loss {loss:.4f}  "
                f"{rate:.1f} steps/s")
        print(line, file=self.file, flush=True)

    def close(self) -> None:
        """End the live bar."""
        if self.bar is not None:
            self.bar.close()

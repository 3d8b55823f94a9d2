"""A dependency-free text progress bar for training loops.

On a terminal the bar is redrawn in place (``\\r``); into a file or a pipe it
prints a line every ``log_every`` steps and at the end, so logs stay short::

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

__all__ = ["ProgressBar"]


class ProgressBar:
    """A text progress bar: redrawn in place on a terminal, a few lines otherwise.

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
        self.live = bool(isatty and isatty())
        self.every = log_every or max(1, total // 10)
        self.start = time.perf_counter()

    def update(self, done: int, loss: float) -> None:
        """Show that ``done`` steps are finished, the last with training loss ``loss``."""
        if not self.live and done % self.every and done != self.total:
            return
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        filled = self.WIDTH * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (f"step {done:>{len(str(self.total))}}/{self.total} [{bar}] loss {loss:.4f}  "
                f"{rate:.1f} steps/s")
        print(f"\r{line}" if self.live else line, end="" if self.live else "\n",
              file=self.file, flush=True)

    def close(self) -> None:
        """End the in-place line on a terminal."""
        if self.live:
            print(file=self.file, flush=True)

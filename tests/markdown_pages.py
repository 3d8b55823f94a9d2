"""Run the Python blocks of a docs page, checking each printed output.

A block that prints must be followed by a ``text`` block showing exactly
what it printed, so the page cannot drift from what the code does.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def page_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the page, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


def run_page(page: Path) -> tuple[dict, int]:
    """Execute the page's ``python`` blocks in one namespace; the namespace and count."""
    blocks = page_blocks(page)
    namespace: dict = {}
    ran = 0
    for i, (lang, code) in enumerate(blocks):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page}:block{i}", "exec"), namespace)  # noqa: S102 - our docs
        ran += 1
        if out.getvalue():
            assert blocks[i + 1][0] == "text", f"block {i} prints but no output is shown"
            assert out.getvalue() == blocks[i + 1][1], f"block {i}"
    return namespace, ran

"""A ``graphviz.Digraph`` that lays itself out with tinygraph's engines.

Every ``to_dot()`` of tinygraph returns a :class:`Digraph`: the usual
``graphviz.Digraph`` (``.source``, ``.body``, …), except that showing it in
Jupyter, ``pipe()`` and ``render()`` go through
:func:`tinygraph.render.engine.layout` — the system ``dot`` when it is on
``PATH``, else the in-process WebAssembly Graphviz — so a notebook with no
system Graphviz still displays the picture instead of raising
``ExecutableNotFound``.

>>> d = Digraph(body=["\\ta -> b\\n"])
>>> bundle = d._repr_mimebundle_()
>>> sorted(bundle), bundle["image/svg+xml"].count('class="node"')
(['image/svg+xml'], 2)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import graphviz

from .engine import DEFAULT_TIMEOUT, layout

__all__ = ["Digraph"]


class Digraph(graphviz.Digraph):
    """``graphviz.Digraph`` whose SVG comes from :func:`tinygraph.render.engine.layout`."""

    def pipe(self, format: str | None = None, renderer: Any = None,  # noqa: A002
             formatter: Any = None, neato_no_op: Any = None, quiet: bool = False, *,
             engine: Any = None, encoding: str | None = None) -> Any:
        """The laid-out picture as bytes (``str`` when ``encoding`` is given)."""
        data = layout(self.source, format or "svg", "auto", DEFAULT_TIMEOUT)
        return data if encoding is None else data.decode(encoding)

    def _repr_image_svg_xml(self) -> str:
        return self.pipe(format="svg", encoding="utf-8")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **_: Any) -> dict[str, str]:
        return {"image/svg+xml": self._repr_image_svg_xml()}

    def render(self, filename: Any = None, directory: Any = None, view: bool = False,
               cleanup: bool = False, format: str | None = None,  # noqa: A002
               renderer: Any = None, formatter: Any = None, neato_no_op: Any = None,
               quiet: bool = False, quiet_view: bool = False, *, outfile: Any = None,
               engine: Any = None, raise_if_result_exists: bool = False,
               overwrite_source: bool = False) -> str:
        """Write the DOT source and the picture next to it; returns the picture's path.

        As ``graphviz.Digraph.render`` (``filename`` + ``.<format>``, or
        ``outfile``), laid out by tinygraph's engines; ``view`` is ignored.
        """
        if outfile is not None:
            out = Path(outfile)
            fmt = format or out.suffix.lstrip(".") or "svg"
            source_path = out.with_suffix(".gv") if filename is None else Path(filename)
        else:
            fmt = format or "svg"
            source_path = Path(filename if filename is not None else "Digraph.gv")
            out = Path(f"{source_path}.{fmt}")
        if directory is not None:
            source_path, out = Path(directory) / source_path, Path(directory) / out
        data = layout(self.source, fmt, "auto", DEFAULT_TIMEOUT)
        if not cleanup:
            source_path.write_text(self.source, encoding="utf-8")
        out.write_bytes(data)
        return os.fspath(out)

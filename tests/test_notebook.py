"""examples/*.ipynb run headless, as a user's Jupyter would, with no system Graphviz."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def path_without_dot() -> str:
    """PATH with every folder holding a ``dot`` program left out."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not shutil.which("dot", path=d)]
    return os.pathsep.join(keep)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_notebook_runs_and_shows_its_pictures(path, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", path_without_dot())
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's frozen-modules note
    nb = nbformat.read(path, as_version=4)
    # The kernel is this interpreter, whatever kernelspecs the machine has.
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.kernel_manager_class = _ThisPython
    client.execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    svgs = [out.data["image/svg+xml"] for out in outputs
            if out.output_type in ("display_data", "execute_result")
            and "image/svg+xml" in out.get("data", {})]
    if path.name == "tour.ipynb":
        # the affine graph, the rolled and unrolled cell, the training curve
        assert len(svgs) == 4, [s[:80] for s in svgs]
        assert all("<svg" in s for s in svgs)
        assert "softmax" in svgs[0] and re.search(r'class="node [^"]*step(-|&#45;)3', svgs[2])
        assert "polyline" in svgs[3] and "steps" in svgs[3]


class _ThisPython(nbclient.client.KernelManager):
    @property
    def kernel_spec(self):  # type: ignore[override]
        spec = super().kernel_spec
        spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        return spec

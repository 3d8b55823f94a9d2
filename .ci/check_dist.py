"""Build the sdist and wheel and use them as a new user would (``make dist-check``; CI).

1. The sdist holds what its tests need: tests/ (data, markdown_pages.py),
   docs/, benchmarks/, examples/, LICENSE, py.typed.
2. The wheel goes into a fresh venv; from another folder the README's first
   example runs, ``tinygraph --help`` and ``--version`` answer, the demo runs,
   and ``py.typed`` is installed next to the packages.
3. The sdist, unpacked, passes its own test suite in that venv.

Needs the package index (pip installs the wheel's dependencies); ~3 minutes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ["LICENSE", "README.md", "pyproject.toml", "tests/conftest.py",
          "tests/markdown_pages.py", "tests/data/op_goldens.npz", "docs/core.md",
          "benchmarks/README.md", "benchmarks/run.py", "examples/tour.ipynb",
          "tinygraph/py.typed", "tinygraph_rnn/py.typed", "tinygraph_rnn/data/corpus.txt"]


def sh(*args: object, cwd: Path | None = None) -> str:
    print("+", " ".join(map(str, args)), flush=True)
    done = subprocess.run([str(a) for a in args], cwd=cwd, text=True, capture_output=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tinygraph-dist-"))
    dist = work / "dist"
    sh(sys.executable, "-m", "build", "--sdist", "--wheel", "-o", dist, ROOT)
    sdist, = dist.glob("*.tar.gz")
    wheel, = dist.glob("*.whl")
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        missing = [n for n in NEEDED if n not in names]
        if missing:
            sys.exit(f"the sdist lacks {missing}")
        tar.extractall(work, filter="data")
    print(f"sdist: {len(names)} entries, all of {len(NEEDED)} needed ones", flush=True)

    venv = work / "venv"
    sh(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    sh(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(py, "-m", "pip", "install", "--quiet", f"{wheel}[test]")
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    print(sh(py, "-c", first, cwd=elsewhere))
    print(sh(venv / "bin" / "tinygraph", "--help", cwd=elsewhere)[:200])
    print(sh(venv / "bin" / "tinygraph", "--version", cwd=elsewhere))
    sh(py, "-m", "tinygraph_rnn", "demo", cwd=elsewhere)
    typed = sh(py, "-c", "import pathlib, tinygraph, tinygraph_rnn as r; "
               "print(all((pathlib.Path(m.__file__).parent / 'py.typed').is_file() "
               "for m in (tinygraph, r)), tinygraph.__file__)", cwd=elsewhere)
    if not typed.startswith("True") or str(ROOT) in typed:
        sys.exit(f"py.typed not installed, or the checkout was imported: {typed}")
    print(sh(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=work / top)[-400:])
    print("dist-check: ok")


if __name__ == "__main__":
    main()

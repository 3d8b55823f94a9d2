"""docs/scan.md and the README's scan section run, and print what they say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from markdown_pages import run_page

ROOT = Path(__file__).resolve().parent.parent


def test_docs_scan_md_runs_and_prints_what_it_says():
    namespace, ran = run_page(ROOT / "docs" / "scan.md")
    assert ran >= 14
    # The page's Fibonacci scan against the numbers themselves.
    first = [0.0, 1.0]
    while len(first) < 11:
        first.append(first[-1] + first[-2])
    np.testing.assert_array_equal(namespace["first_ten"], first[:10])
    assert float(namespace["last_a"]) == first[10]


def test_readme_scan_section_runs_and_links_the_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Loops over time: scan or unroll", 1)[1].split("\n## ", 1)[0]
    assert "docs/scan.md" in section
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 8
    namespace: dict = {}
    exec(compile(blocks[0], "README.md:scan", "exec"), namespace)  # noqa: S102 - our README
    rolled, unrolled, long = namespace["rolled"], namespace["unrolled"], namespace["long"]
    xs = np.random.default_rng(0).normal(size=(5, 3))
    a, b = rolled.run(xs), unrolled.run(xs)
    np.testing.assert_allclose(a["states"], b["states"], rtol=0, atol=1e-12)
    assert long["states"].shape[0] == 10_000 and np.isfinite(long["states"]).all()

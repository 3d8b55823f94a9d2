# Every target builds .venv itself, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-scan lint typecheck docs api dist-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tinygraph_rnn demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/scan_bench.py
	$(PY) benchmarks/general.py
	$(PY) benchmarks/variants.py
	$(PY) benchmarks/custom_cells.py
	$(PY) benchmarks/build_time.py

# Its own process: it limits BLAS to one thread before numpy loads.
bench-scan: $(STAMP)
	$(PY) benchmarks/scan_bench.py

docs: $(STAMP) api
	$(PY) docs/make_render_figures.py
	$(PY) docs/make_rnn_figures.py

# The API reference from the docstrings, into build/api/ (not committed); a warning fails it.
api: $(STAMP)
	$(PY) -W error -m pdoc --docformat numpy -o build/api tinygraph tinygraph.render tinygraph.io \
		tinygraph.dask tinygraph.autodiff tinygraph.exec tinygraph_rnn

lint: $(STAMP) typecheck
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy tinygraph tinygraph_rnn

# Build the sdist and wheel, install the wheel in a fresh venv, use it from another
# folder, run the sdist's own tests (needs the package index; a few minutes).
dist-check: $(STAMP)
	$(PY) .ci/check_dist.py

clean:
	rm -rf $(VENV) out build *.egg-info

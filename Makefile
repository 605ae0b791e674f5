# sar-jax: make install | make lint | make test | make test-slow | make train | make parity | make bench
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install lint test test-slow test-all train parity bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e '.[test,torch]'
	touch $@

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# the fast tier (minutes); test-slow: the end-to-end, subprocess and multi-process tests; CI runs both
test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" tests

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow tests

test-all: $(VENV)/.installed
	$(PY) -m pytest -q tests

train: $(VENV)/.installed
	$(PY) -m sar_jax.train --config quickstart

parity: $(VENV)/.installed
	$(PY) -m sar_jax.parity --out parity_out

bench: $(VENV)/.installed
	$(PY) -m benchmarks.throughput --device cpu --quick

clean:
	rm -rf $(VENV) runs parity_out .pytest_cache

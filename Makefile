# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the default tests).
# Both create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch by default (this machine has one on disk; an unpinned torch pulls a multi-GB
# CUDA build). Bring your own: `make install TORCH_SPEC="torch==2.5.1"` or install torch first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test test-slow demo lint clean-data

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) scripts/prepare_data.py data=bach

lint: install
	$(PY) -m ruff check src scripts tests

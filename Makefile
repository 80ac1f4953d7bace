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

# The main job: the bundled Bach corpus -> cached segments (summary printed) -> one VAE per decoder
# conditioning, side by side -> the posterior-collapse report -> MIDI samples from the in-attention
# model. About 12 minutes on a 2-core CPU; everything lands in outputs/demo/.
DEMO_DIR ?= outputs/demo
demo: install
	$(PY) scripts/prepare_data.py data=bach_2bar
	$(PY) scripts/train.py -m experiment=collapse_demo hydra.sweep.dir=$(DEMO_DIR) trainer.enable_progress_bar=false
	$(PY) scripts/sample.py ckpt=$(DEMO_DIR)/0_in_attention_seed0/checkpoints/last.ckpt mode=prior n=4 \
		top_p=0.9 out_dir=$(DEMO_DIR)/samples/prior
	$(PY) scripts/sample.py ckpt=$(DEMO_DIR)/0_in_attention_seed0/checkpoints/last.ckpt mode=interpolate \
		input=data/midi/bach/bwv1.6.mid input2=data/midi/bach/bwv10.7.mid steps=5 top_p=0.9 \
		out_dir=$(DEMO_DIR)/samples/interpolate
	@echo "report: $(DEMO_DIR)/report/summary.md  samples: $(DEMO_DIR)/samples/"

lint: install
	$(PY) -m ruff check src scripts tests

# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the default tests).
# Both create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch by default (this machine has one on disk; an unpinned torch pulls a multi-GB
# CUDA build). Bring your own: `make install TORCH_SPEC="torch==2.5.1"` or install torch first.
TORCH_SPEC ?= torch==2.13.0
# Every other package at the versions CI tested (requirements.lock, written by `make lock`); LOCK= takes
# pyproject.toml's ranges instead.
LOCK ?= requirements.lock
EXTRAS := dev,bench,tensorboard

.PHONY: install lock test test-slow test-browser demo study lint clean-data

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(if $(LOCK),$(PY) -m pip install -q -r $(LOCK))
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# requirements.lock again from a fresh venv (after changing a dependency in pyproject.toml).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q "$(TORCH_SPEC)"
	.lock-venv/bin/python -m pip install -q ".[$(EXTRAS)]"
	head -4 requirements.lock > requirements.lock.new
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|musicvae)( |==|@)' >> requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

install: $(VENV)/.installed

# One pytest-xdist worker per core (each gets its share of torch's threads: tests/conftest.py), an idle worker
# taking tests queued on the other (worksteal: the suite's few long tests otherwise finish last on one); TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-slow: install
	$(PY) -m pytest -q -m slow

# The report page (the demo's after `make demo`, else one from synthetic runs) in headless Chromium: every
# player loads, every figure renders, no console error; a screenshot lands beside the page (index.png).
# Chromium comes from the system packages; where it cannot be installed the test skips and says why.
test-browser: install
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		{ apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; }; } || \
		echo "chromium could not be installed here: the browser test will skip"
	$(PY) -m pip install -q -e ".[browser]"
	$(PY) -m pytest -q -m slow tests/browser

# The main job: the bundled Bach corpus -> cached segments (summary printed) -> one VAE per decoder
# conditioning (in_attention, cross_attention and the `none` control at the demo_size recipe), three
# single-thread runs side by side, 1,800 steps -> the report, whose calls at a glance (printed) say, at 300, 900
# and 1,800 steps, whether each decoder uses z and whether z paid for itself -> MIDI samples from the in-attention
# model. Within 15 minutes on a 2-core CPU from a fresh clone (docs/results/demo/); everything lands in outputs/demo/.
DEMO_DIR ?= outputs/demo
demo: install
	$(PY) scripts/prepare_data.py data=bach_2bar
	$(PY) scripts/train.py -m experiment=collapse_demo hydra.sweep.dir=$(DEMO_DIR) trainer.enable_progress_bar=false \
		hydra/launcher=parallel hydra.launcher.n_jobs=3 '~hydra.callbacks.report'
	$(PY) scripts/compare.py $(DEMO_DIR)
	$(PY) scripts/sample.py ckpt=$(DEMO_DIR)/0_in_attention_seed0/checkpoints/last.ckpt mode=prior n=4 \
		top_p=0.9 out_dir=$(DEMO_DIR)/samples/prior
	$(PY) scripts/sample.py ckpt=$(DEMO_DIR)/0_in_attention_seed0/checkpoints/last.ckpt mode=interpolate \
		input=data/midi/bach/bwv1.6.mid input2=data/midi/bach/bwv10.7.mid steps=5 top_p=0.9 \
		out_dir=$(DEMO_DIR)/samples/interpolate
	@echo "report: $(DEMO_DIR)/report/index.html (and summary.md)  samples: $(DEMO_DIR)/samples/"

# The rate-distortion study of docs/results/rate_distortion_demo/: in_attention, cross_attention and
# none x beta 0.05/0.2/1.0 x seeds 0/1/2 at the demo_size recipe (anytime evaluation), 4,800 steps, plus the
# learning-rate grid 1e-3/2e-3 at beta 0.05: two single-thread processes side by side (one per core), seed by
# seed (each seed's three modes), first the lr grid (one process per rate), then beta 0.2 and 1.0 (one process
# per beta), then the report. 36 runs, about 15 min per pair of runs on 2 cores (~4.5 h in all); started again
# into the same STUDY_DIR it trains only the runs not finished and resumes an interrupted one (skip_finished,
# resume), so it runs in sittings: STUDY_SLICES=grid runs the beta 0.05 grid alone, STUDY_SLICES=betas the rest.
STUDY_DIR ?= outputs/rate_distortion_demo
STUDY_SLICES ?= grid betas
STUDY_RUN = OMP_NUM_THREADS=1 $(PY) scripts/train.py -m experiment=rate_distortion_demo hydra.sweep.dir=$(STUDY_DIR) \
	'~hydra.callbacks.report' trainer.enable_progress_bar=false model/conditioning=in_attention,cross_attention,none
study: install
	$(PY) scripts/prepare_data.py data=bach_2bar
	mkdir -p $(STUDY_DIR)
	st=0; for slice in $(STUDY_SLICES); do for seed in 0 1 2; do \
		if [ $$slice = grid ]; then a="kl.beta=0.05 optim.lr=1e-3"; b="kl.beta=0.05 optim.lr=2e-3"; \
		else a="kl.beta=0.2 optim.lr=1e-3"; b="kl.beta=1.0 optim.lr=1e-3"; fi; \
		$(STUDY_RUN) $$a seed=$$seed >> $(STUDY_DIR)/$$slice-a.log 2>&1 & pa=$$!; \
		$(STUDY_RUN) $$b seed=$$seed >> $(STUDY_DIR)/$$slice-b.log 2>&1 & pb=$$!; \
		wait $$pa || st=1; wait $$pb || st=1; \
	done; done; exit $$st
	$(PY) scripts/compare.py $(STUDY_DIR)

lint: install
	$(PY) -m ruff check src scripts tests

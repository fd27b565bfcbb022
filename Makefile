# Every target creates .venv itself when it is missing. torch is installed first, as the CPU build
# pinned below, only when the venv has no torch: a CUDA torch you installed yourself is kept.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test test-min bench bench-gpu prove lint format venv dev-venv browser screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

$(VENV)/.runtime: $(PY) requirements.txt
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

## make demo: one URL (python -m apps all): the landing page with every app; settings via KINEMA_* env vars,
## ports via ARGS="--port 7860 --drag-port 8501"
demo: $(VENV)/.runtime
	$(PY) -m apps all $(ARGS)

## make test: the whole suite, offline (slow and browser tests included), on two pytest-xdist workers, each
## test file on one worker (its module fixtures, e.g. the training runs, are built once; no file is over 7% of
## the suite). PYTEST_ARGS come last, so `make test PYTEST_ARGS="-n 0"` runs it serially.
PYTEST_WORKERS ?= -n 2 --dist loadfile
test: $(VENV)/.dev browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

## make test-min: the unit, pipeline and app tests (not slow, not e2e) in .venv-min, a venv at the lowest versions
## requirements.txt allows: every `NAME>=X` (also `NAME>=X,<Y`) is installed as `NAME==X`, via
## .venv-min/requirements-min.txt, which the sed below writes. torch is the exception: it stays the CPU
## build $(TORCH_SPEC), since CPU wheels of older torch releases are not on the project's machines, so
## the torch bound is not checked here. The dev tools come from requirements-dev.txt as usual.
VENV_MIN := .venv-min
PY_MIN := $(VENV_MIN)/bin/python

$(PY_MIN):
	$(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install --upgrade --quiet pip

$(VENV_MIN)/requirements-min.txt: requirements.txt | $(PY_MIN)
	sed -E -e '/^torch[<>=]/d' -e 's/>=([^,;]+).*/==\1/' requirements.txt > $@

$(VENV_MIN)/.installed: $(VENV_MIN)/requirements-min.txt requirements-dev.txt
	$(PY_MIN) -m pip install --quiet "$(TORCH_SPEC)" -r $(VENV_MIN)/requirements-min.txt -r requirements-dev.txt
	touch $@

test-min: $(VENV_MIN)/.installed
	HF_HUB_OFFLINE=1 $(PY_MIN) -m pytest tests/unit tests/pipelines tests/apps -m "not slow" $(PYTEST_ARGS)

## browser tests use Debian's chromium; CI installs it, elsewhere they skip when it is absent
browser:
	@if [ "$$CI" = "true" ] && [ ! -x /usr/bin/chromium ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium"; \
	fi

## make screenshots: rerun the browser tests and refresh the README pictures in assets/screenshots/
screenshots: $(VENV)/.dev
	KINEMA_UPDATE_SCREENSHOTS=1 HF_HUB_OFFLINE=1 $(PY) -m pytest tests/e2e

## make bench: ratio benchmarks, one table, JSON in bench-results/
bench: $(VENV)/.dev
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/run.py $(ARGS)

## make bench-gpu: every app path at real size on a CUDA GPU (default and low-VRAM), one table and
## bench-results/gpu_paths.json; without CUDA it says so and exits 0. Needs a CUDA torch in .venv.
bench-gpu: $(VENV)/.dev
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/gpu_paths.py $(ARGS)

## make prove: train the mini SD/SVD bases and every control from scratch on synthetic scenes, measure each on
## held-out scenes, print one table and write bench-results/prove.json; installs assets/models/mini/.
## ARGS="--quick": the controls only, short runs on the installed bases.
prove: $(VENV)/.dev
	HF_HUB_OFFLINE=1 $(PY) tests/benchmarks/prove.py $(ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

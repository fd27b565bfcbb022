# Every target creates .venv itself when it is missing. torch is installed first, as the CPU build
# pinned below, only when the venv has no torch: a CUDA torch you installed yourself is kept.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test bench lint format venv dev-venv browser screenshots

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

## make demo: launch every app that exists (python -m apps all); settings via KINEMA_* env vars
demo: $(VENV)/.runtime
	$(PY) -m apps all $(ARGS)

## make test: the whole suite, offline (slow and browser tests included)
test: $(VENV)/.dev browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

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

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# motor-kit: the front door. `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

DATA    ?=
RUN     ?= demo
WEIGHTS ?=
KERNEL  ?= infer
PRESET  ?= cpu

.DEFAULT_GOAL := help
.PHONY: help setup test demo synth local-score predict bundle push-dataset push-kernel kernel-status kernel-output \
        submit submissions dry-run bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the kit with its pinned dependencies (skipped when up to date)

test: setup ## run the test suite (CPU, tiny fixtures)
	$(PY) -m pytest -q

synth: setup ## write a synthetic competition dataset to data/synth (SIZE=small N_TRAIN=24 N_TEST=8)
	$(PY) -m kitlib synth --out data/synth --size $${SIZE:-small} --n-train $${N_TRAIN:-24} --n-test $${N_TEST:-8} --preview

clean: ## remove runs/, build/ and data/ (keeps .venv)
	rm -rf runs build data

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
        z-error submit submissions dry-run bench clean

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

demo: setup ## the main job: synthesise data (or DATA=dir), local-score on CPU, predict test, score it
	$(PY) -m kitlib demo $(if $(DATA),--data $(DATA)) --run $(RUN) --preset $(PRESET)

local-score: setup ## train per fold, predict held-out folds, tune presence, score (DATA=dir [WEIGHTS=...] [RUN=name])
	$(PY) -m kitlib local-score $(if $(DATA),--data $(DATA)) --run $(RUN) --preset $(PRESET) $(if $(WEIGHTS),--weights $(WEIGHTS))

z-error: setup ## out-of-fold |z error| of runs/$(RUN)'s fold models, z-head vs centre slice (DATA=dir [RUN=name])
	$(PY) -m kitlib z-error $(if $(DATA),--data $(DATA)) --run $(RUN) --preset $(PRESET)

predict: setup ## write runs/$(RUN)/submission.csv for DATA's test split with WEIGHTS (default: the run's folds)
	$(PY) -m kitlib predict $(if $(DATA),--data $(DATA)) --preset $(PRESET) --out runs/$(RUN)/submission.csv \
		--weights $(or $(WEIGHTS),$(wildcard runs/$(RUN)/fold*/weights/best.pt))

bundle: setup ## build the src / wheels / weights datasets under build/datasets/ (RUN, WEIGHTS, WHEELS_FROM=dir)
	$(PY) -m kitlib bundle --run runs/$(RUN) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(WHEELS_FROM),--find-links $(WHEELS_FROM))

push-dataset: setup ## create or version the three datasets on Kaggle and wait until ready
	$(PY) -m kitlib push-dataset

push-kernel: setup ## push kernels/$(KERNEL) (internet off, GPU, competition + datasets) as a new version
	$(PY) -m kitlib push-kernel $(KERNEL)

kernel-status: setup ## status of KERNEL's latest version; WAIT=1 polls until it ends; a failed run exits 1
	$(PY) -m kitlib kernel-status $(KERNEL) $(if $(WAIT),--wait)

kernel-output: setup ## download KERNEL's outputs and log to build/kernels/$(KERNEL)/output/
	$(PY) -m kitlib kernel-output $(KERNEL)

submit: setup ## submit KERNEL's last pushed version once complete (KERNEL_VERSION=n, MESSAGE=...)
	$(PY) -m kitlib submit $(KERNEL) $(if $(KERNEL_VERSION),--version $(KERNEL_VERSION)) $(if $(MESSAGE),--message "$(MESSAGE)")

submissions: setup ## latest submissions with public / private scores
	$(PY) -m kitlib submissions

dry-run: setup ## run kernels/$(KERNEL) locally as Kaggle would, offline; validate + score (REUSE_VENV=1, TINY=1)
	$(PY) -m kitlib dry-run $(KERNEL) $(if $(REUSE_VENV),--reuse-venv) $(if $(TINY),--tiny-weights)

bench: setup ## inference s/tomo at real size on CPU (+GPU fp16 if any) -> bench/results/latest.{json,md} (QUICK=1: small)
	$(PY) -m bench.run $(if $(QUICK),--quick)

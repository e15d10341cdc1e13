# motor-kit: the front door. `make help` lists every target and variable.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KIT    := $(PY) -m kitlib

# Variables (empty: the CLI's default, which `make help` shows beside each one).
DATA     ?=#  competition folder (default: data/demo for demo, else under the Kaggle root)
RUN      ?=#  run name under runs/ (default: demo for demo, the data folder's name for local-score)
PRESET   ?=#  config preset: default (GPU) or cpu (default: cpu for demo; a new run's: default; else the run's own)
CONFIG   ?=#  a config YAML merged onto the preset (may be partial)
SET      ?=#  space-separated overrides section.key=value, e.g. SET="infer.batch=8 train.epochs=5"
DEVICE   ?=#  cpu, 0, 0,1 (default: the config's)
EXIST_OK ?=#  1: replace the files of an existing run of that name
RESUME   ?=#  1: continue an existing run (finished folds are kept)
FOLDS    ?=#  import-folds: the train kernel's output folders (default: build/kernels/train*/output)
WEIGHTS  ?=#  checkpoints instead of the run's
KERNEL   ?= infer#  folder under kernels/
FOLD     ?=#  KERNEL=train: the fold's own kernel (push-kernel, kernel-status, kernel-output)
EXTRA    ?=#  extra training sources, comma-separated folders (DIR:z_window=N:negatives=false sets trust)
LABELS_OVERRIDE ?=#  labels_override.csv from make review, applied to training and scoring labels
TENSORBOARD ?=#  1: log training to TensorBoard in runs/<run>/fold<k>/ (view: tensorboard --logdir runs/<run>)
NOTEBOOK ?=#  1: KERNEL's notebook form (.ipynb made from the script's # %% cells): push-kernel, kernel-status, submit
STYLES   ?=#  synth: comma-separated appearance styles clean,ctf,dose,thick (default: all)
HOLD_OUT ?= ctf#  generalize: the style(s) held out of training, space-separated, one run each

CONFIG_ARGS = $(if $(PRESET),--preset $(PRESET)) $(if $(CONFIG),--config $(CONFIG)) $(foreach s,$(SET),--set $(s)) \
              $(if $(DEVICE),--device $(DEVICE)) $(if $(TENSORBOARD),--set train.tensorboard=true)
RUN_ARGS    = $(if $(RUN),--run $(RUN)) $(if $(EXIST_OK),--exist-ok) $(if $(RESUME),--resume)
DATA_ARGS   = $(if $(DATA),--data $(DATA))
LABEL_ARGS  = $(if $(EXTRA),--extra $(EXTRA)) $(if $(LABELS_OVERRIDE),--labels-override $(LABELS_OVERRIDE))

.DEFAULT_GOAL := help
.PHONY: help setup test demo synth download local-score import-folds predict z-error bundle push-dataset push-kernel \
        review kernel-status kernel-output submit submissions runs dry-run bench rehearse spacing generalize train-speed gpu-check clean

help: ## list the targets and variables
	@echo "targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'
	@echo "variables (VAR=value):"
	@grep -E '^[A-Z_]+ +\?=[^#]*#  ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) +\?= *([^#]*)#  (.*)/\1=\2|\3/' | \
		awk -F'|' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the kit with its pinned dependencies (skipped when up to date)

test: setup ## run the test suite (CPU, tiny fixtures)
	$(PY) -m pytest -q

synth: setup ## write a synthetic competition dataset to data/synth (SIZE=small N_TRAIN=24 N_TEST=8 STYLES=all)
	$(KIT) synth --out data/synth --size $${SIZE:-small} --n-train $${N_TRAIN:-24} --n-test $${N_TEST:-8} --preview \
	  $(if $(STYLES),--styles $(STYLES))

download: setup ## download the competition data into data/<competition>/ (skipped when there; needs kaggle.json)
	$(KIT) download

clean: ## remove what the kit rebuilds (build/, runs/*/export/ caches, data/demo, data/bench, data/rehearse, data/spacing, data/generalize); keeps your runs
	rm -rf build data/demo data/bench data/rehearse data/spacing data/generalize runs/*/export

demo: setup ## the main job: synthesise data (or DATA=dir), local-score on CPU, predict test, score it
	$(KIT) demo $(DATA_ARGS) $(RUN_ARGS) $(CONFIG_ARGS)

local-score: setup ## train per fold, predict the held-out folds, tune presence, score (DATA=dir RUN=name EXTRA=dirs)
	$(KIT) local-score $(DATA_ARGS) $(RUN_ARGS) $(LABEL_ARGS) $(CONFIG_ARGS)

import-folds: setup ## score folds trained by the train kernel: FOLDS=dirs (kernel-output), then tune as local-score
	$(KIT) local-score $(DATA_ARGS) $(RUN_ARGS) $(LABEL_ARGS) --from-folds $(or $(FOLDS),$(wildcard build/kernels/train*/output),build/kernels/train/output)

z-error: setup ## out-of-fold |z error| of RUN's fold models, z-head vs centre slice (DATA=dir RUN=name)
	$(KIT) z-error $(DATA_ARGS) $(if $(RUN),--run $(RUN)) $(CONFIG_ARGS)

review: setup ## runs/$(RUN)/review.html: check RUN's out-of-fold mistakes, export labels_override.csv (DATA=dir TOP=20)
	$(KIT) review $(DATA_ARGS) $(if $(RUN),--run $(RUN)) $(if $(TOP),--top $(TOP))

predict: setup ## write runs/$(RUN)/submission.csv for DATA's test split with RUN's models, config and presence rule
	$(KIT) predict $(DATA_ARGS) $(if $(RUN),--run $(RUN)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(CONFIG_ARGS)

bundle: setup ## build the src / wheels / weights datasets under build/datasets/ (RUN, WEIGHTS, WHEELS_FROM=dir)
	$(KIT) bundle $(if $(RUN),--run $(RUN)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(WHEELS_FROM),--find-links $(WHEELS_FROM))

push-dataset: setup ## create or version the three datasets on Kaggle and wait until ready
	$(KIT) push-dataset

push-kernel: setup ## push kernels/$(KERNEL) (internet off, GPU, competition + datasets); KERNEL=train FOLD=k per fold
	$(KIT) push-kernel $(KERNEL) $(if $(FOLD),--fold $(FOLD)) $(if $(NOTEBOOK),--notebook)

kernel-status: setup ## status of KERNEL's latest version; WAIT=1 polls until it ends; a failed run exits 1
	$(KIT) kernel-status $(KERNEL)$(if $(FOLD),-fold$(FOLD))$(if $(NOTEBOOK),-notebook) $(if $(WAIT),--wait)

kernel-output: setup ## download KERNEL's outputs and log to build/kernels/$(KERNEL)[-fold$(FOLD)]/output/
	$(KIT) kernel-output $(KERNEL)$(if $(FOLD),-fold$(FOLD))$(if $(NOTEBOOK),-notebook)

submit: setup ## submit KERNEL's last pushed version once complete (KERNEL_VERSION=n, MESSAGE=...)
	$(KIT) submit $(KERNEL)$(if $(NOTEBOOK),-notebook) $(if $(KERNEL_VERSION),--version $(KERNEL_VERSION)) $(if $(MESSAGE),--message "$(MESSAGE)")

submissions: setup ## latest submissions with public / private scores, written into the runs they came from
	$(KIT) submissions

runs: setup ## runs/index.csv: every run's date, commit, preset, data, OOF F2, wall time, kernel and LB scores
	$(KIT) runs

dry-run: setup ## run kernels/$(KERNEL) locally as Kaggle would, offline; validate + score (REUSE_VENV=1, TINY=1)
	$(KIT) dry-run $(KERNEL) $(if $(REUSE_VENV),--reuse-venv) $(if $(TINY),--tiny-weights)

bench: setup ## inference s/tomo at real size on CPU (+GPU fp16 if any) -> bench/results/latest.{json,md} (QUICK=1: small)
	$(PY) -m bench.run $(if $(QUICK),--quick)

rehearse: setup ## default preset end to end at real size on CPU + full-job projection -> bench/results/rehearse.{json,md}
	$(PY) -m bench.rehearse $(if $(QUICK),--quick)

spacing: setup ## the spacing policies (native / spacing / size) trained on the demo data, scored on hidden-spacing test sets -> bench/results/spacing.{json,md}
	$(PY) -m bench.spacing

generalize: setup ## train the demo on all appearance styles but one (HOLD_OUT), score seen vs held-out style -> bench/results/generalize.{json,md}
	$(PY) -m bench.generalize --hold-out $(HOLD_OUT)

train-speed: setup ## seconds per training epoch (cpu preset) with and without appearance / RAM cache on runs/demo's fold 0 -> bench/results/train_speed.{json,md}
	$(PY) -m bench.train_speed

gpu-check: ## on a GPU machine: CUDA fp16 bench, short training, inference on every GPU -> bench/results/gpu_check.*
	bash bench/gpu_check.sh

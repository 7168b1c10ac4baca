# One entry point for people and CI. `make hub` and `make test` are the two
# set-up commands in the README: each creates the virtualenv it needs.
PY      ?= python3
VENV    ?= .venv
REFVENV ?= .refvenv
BIN      = $(VENV)/bin
REF_VERSION = 0.99.38

.PHONY: hub test test-slow test-assistants assistants lint bench refvenv clean ci-deps

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The reference client for interop tests and benchmarks lives in its own
# throw-away venv: its distribution and import names clash with ours.
$(REFVENV)/.installed:
	$(PY) -m venv $(REFVENV)
	$(REFVENV)/bin/python -m pip install -q synapse-channel==$(REF_VERSION)
	touch $@

refvenv: $(REFVENV)/.installed

hub: $(VENV)/.installed
	$(BIN)/synapse hub

test: $(VENV)/.installed $(REFVENV)/.installed
	SYNAPSE_REF_BIN=$(abspath $(REFVENV))/bin $(BIN)/python -m pytest

test-slow: $(VENV)/.installed $(REFVENV)/.installed
	SYNAPSE_REF_BIN=$(abspath $(REFVENV))/bin $(BIN)/python -m pytest -m slow

# The real assistant CLIs (pinned in tests/assistants/pins.txt) from the npm
# registry, cached outside the repository (~/.cache/synapse-channel/assistants).
assistants:
	$(PY) tests/assistants/install.py

test-assistants: $(VENV)/.installed assistants
	$(BIN)/python -m pytest -m assistants tests/assistants

lint: $(VENV)/.installed
	$(BIN)/ruff check src plugins tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.installed $(REFVENV)/.installed
	SYNAPSE_REF_BIN=$(abspath $(REFVENV))/bin $(BIN)/python benchmarks/run_all.py

# Commands the tests drive (command:Debian package). Missing ones skip locally and fail under CI=true.
CI_TOOLS = zsh:zsh fish:fish tmux:tmux openssl:openssl systemd-analyze:systemd node:nodejs npm:npm chromium:chromium

# PostgreSQL's server binaries are not on PATH on Debian (/usr/lib/postgresql/N/bin): checked by path.
ci-deps:
	@missing=""; for t in $(CI_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not installing$$missing (needs root and apt-get); their tests will be skipped"; fi; \
	fi

clean:
	rm -rf $(VENV) $(REFVENV)

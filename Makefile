# trio_netstack developer entry points. Every target sets up what it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the system tests and the demo drive as real peers.
DEB_PACKAGES := iproute2 iputils-ping netcat-openbsd tcpdump tshark dnsmasq-base nftables ethtool
DEB_COMMANDS := ip ping nc tcpdump tshark dnsmasq nft ethtool

.PHONY: demo test lint typecheck unit system deps venv clean

demo: venv deps
	$(PY) -m trio_netstack.tools.demo

test: venv deps lint typecheck
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q -m "not system" --ignore=tests/system

system: venv deps
	$(PY) -m pytest -q tests/system

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Installs the Debian packages only when a command is missing (and only as root).
deps:
	@missing=""; for c in $(DEB_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	  else \
	    echo "note: missing$$missing; system tests will skip (run as root to install)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: bench
# Stack vs Linux kernel benchmark in namespace labs (root only); see docs/performance.md.
bench: venv deps
	$(PY) tools/bench/run.py

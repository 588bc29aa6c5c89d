# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each sets up what it needs: a virtualenv with the packages, and the Debian
# services the tests start (prometheus, alertmanager, stunnel4).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test soak venv services bench nab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(STAMP)

services:
	@bash scripts/ensure-services.sh

demo: $(STAMP)
	$(VENV)/bin/blipwatch demo $(DEMO_ARGS)

test: $(STAMP) services
	$(PY) -m pytest -q -ra -m "not soak" $(PYTEST_ARGS)

# long tests (marked soak): fault injection under load (failover, graceful stop, broker outage,
# hostile input at volume, cut and stalled connections), restarts mid-stream, the detection bars on
# 48 h of the default simulated shop, the full-length demos and the bench; CI runs them after make test
soak: $(STAMP) services
	$(PY) -m pytest -q -ra -m soak tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/blipwatch bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis

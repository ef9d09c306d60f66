# Training Health Monitor — every install step lives here, so a fresh clone works.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup browser postgres run test test-fast bench bench-smoke clean

## setup: virtual environment with the service, the torch trainer client and test tools
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # pinned: a looser pin pulls GBs of CUDA wheels
	$(PY) -m pip install -q -e '.[server,torch,dev]'
	touch $@

## browser: Debian's chromium for the dashboard tests (playwright drives /usr/bin/chromium)
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium (apt-get)"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null; \
	fi

## postgres: make sure the local PostgreSQL answers (tests need it)
postgres:
	@pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | tail -1) main start || true
	@pg_isready -h 127.0.0.1 -p 5432 || (echo "PostgreSQL at 127.0.0.1:5432 is not running" && exit 1)

## run: the service on embedded SQLite plus a demo trainer streaming into it
run: setup
	$(PY) -m monitor.quickstart $(RUN_ARGS)

## test: every test (SQLite, PostgreSQL, browser, webhooks, torch)
test: setup browser postgres
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run

bench-smoke: setup
	$(PY) -m benchmarks.run --smoke

clean:
	rm -rf $(VENV) monitor-data .pytest_cache

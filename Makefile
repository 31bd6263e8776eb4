# Durable: `make run` to try it, `make test` to check it. Needs Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Web server and worker (django-q2 cluster) together; Ctrl-C stops both.
run: $(VENV)/.installed
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/
	$(PY) manage.py serve $(HOST):$(PORT)

# Debian's chromium for the browser tests (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium could not be installed: browser tests will be skipped"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.installed chromium lint
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) bench/timer_latency.py
	$(PY) bench/dashboard_list.py

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles .pytest_cache .ruff_cache

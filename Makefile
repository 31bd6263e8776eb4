# Durable: `make run` to try it, `make test` to check it. Needs Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench mutate chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[site,dev]'
	touch $@

# Web server and worker (django-q2 cluster) together; Ctrl-C stops both. A development
# site: the published secret key, plain HTTP and the demo login are allowed only with
# DJANGO_DEBUG=1, which serve's cluster subprocess and demo_setup inherit.
run: export DJANGO_DEBUG := 1
# The web server and the worker's processes share their metrics' counters here (GET /metrics).
run: export PROMETHEUS_MULTIPROC_DIR := $(CURDIR)/.metrics
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

# The suite and the benchmarks run with DEBUG off, as production does, so settings need a
# secret key: this one is for tests only. The test client and the live server speak plain
# HTTP, so HTTPS redirects and Secure cookies are off (tests/test_production.py turns them
# on in the servers it starts).
test bench mutate: export DJANGO_SECRET_KEY := test-only-key-not-secret-6c1f0d9e2b7a4c58
test bench mutate: export DJANGO_HTTPS := 0
test: $(VENV)/.installed chromium lint
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) bench/timer_latency.py
	$(PY) bench/dashboard_list.py
	$(PY) bench/engine_bench.py
	$(PY) bench/retention_bench.py
	$(PY) bench/metrics_cost.py
	$(PY) bench/consumer_bench.py
	$(PY) bench/api_bench.py

# Mutation testing of the engine core against the fast in-process tests (docs/testing.md;
# [tool.mutmut] in pyproject.toml). Too slow for `make test`: about an hour on one core.
# Results are kept in mutants/ and only changed functions are tested again; delete it
# for a clean run. Then: the score per module (killed or timed out / all mutants).
mutate: $(VENV)/.installed
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results --all true | awk -F'[.:] *' \
	  '{ n[$$2]++; all++ } / (killed|timeout)$$/ { k[$$2]++; kall++ } \
	  END { for (m in n) printf "%-10s %4d / %4d\n", m, k[m], n[m] | "sort"; close("sort"); printf "%-10s %4d / %4d\n", "overall", kall, all }'

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles .pytest_cache .ruff_cache .metrics

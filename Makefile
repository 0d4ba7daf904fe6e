# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Without DATABASE_URL the project runs its own embedded PostgreSQL (var/pgdata).
SHELL := /bin/bash
# The newest supported Python the machine has (3.11 to 3.13).
PY ?= $(firstword $(foreach py,python3.13 python3.12 python3.11,$(shell $(py) -c "" 2>/dev/null && echo $(py))))
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
MANAGE := $(PYTHON) manage.py
SAMPLE_DIR ?= var/data/sample
DEMO_USER ?= admin
DEMO_PASSWORD ?= admin-demo-password
UV_COMPILE := uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"

# System commands some tests need (empty: not installed). `make test` installs the
# missing ones from Debian's packages when it can (root, or sudo without a password)
# and otherwise skips their tests with one line each. To see what a machine without
# them gets: make test CHROMIUM= PROMTOOL= AMTOOL= INSTALL_TEST_TOOLS=no
CHROMIUM ?= $(shell command -v chromium)
PROMTOOL ?= $(shell command -v promtool)
AMTOOL ?= $(shell command -v amtool)
INSTALL_TEST_TOOLS ?= auto

# Development defaults; production sets DEBUG=off and a SECRET_KEY (see README).
export DEBUG ?= on
export DATA_ROOT ?= $(CURDIR)/var/data

.PHONY: alerts-test install lock migrate demo demo-setup serve worker test test-suite test-tools containers-check test-embedded lint format \
	messages bench bench-providers bench-features bench-corrections bench-import bench-sync bench-storage bench-enrich bench-live \
	bench-scale bench-summary bench-status db-stop

# Development installs the development lock (runtime + tests + lint, same
# versions); production installs requirements.txt only (see docs/deploy.md).
$(BIN)/activate: requirements.txt requirements-dev.txt
	@[ -n "$(PY)" ] || { echo "Python 3.11, 3.12 or 3.13 is required (none of python3.13, python3.12, python3.11 found)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	touch $(BIN)/activate

install: $(BIN)/activate

# Re-pin both locks after editing requirements.in or requirements-dev.in (uv: `pip install uv`).
lock:
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt

migrate: install
	$(MANAGE) migrate --noinput

demo-setup: migrate
	$(MANAGE) ensure_demo_admin --username $(DEMO_USER) --password $(DEMO_PASSWORD)
	$(MANAGE) bootstrap_reference_data
	$(MANAGE) generate_sample_data $(SAMPLE_DIR)
	$(MANAGE) run_pipeline --continue-on-failure --path $(SAMPLE_DIR)
	$(MANAGE) integrity_status

demo: demo-setup
	@echo
	@echo "Admin: http://127.0.0.1:8000/admin/  user: $(DEMO_USER)  password: $(DEMO_PASSWORD)"
	@echo "API docs: http://127.0.0.1:8000/api/docs/   metrics: http://127.0.0.1:8000/metrics"
	@echo
	$(MAKE) --no-print-directory serve

# The web server and one worker cluster; Ctrl-C stops both.
serve:
	@trap 'kill 0' EXIT; \
	$(MANAGE) qcluster & \
	$(MANAGE) runserver 127.0.0.1:8000 --noreload

worker: install
	$(MANAGE) qcluster

# Everything CI checks: the whole suite in parallel (TEST_WORKERS processes); when it ran against a
# PostgreSQL server, the embedded-server pass (below); the alert-rule tests; the container files; lint.
test: install
	@$(MAKE) --no-print-directory test-tools
	@$(MAKE) --no-print-directory test-suite

# pytest-xdist: each worker has its own test database (<name>_gw0, _gw1, ...). The conftest hands
# out the longest tests first (the HTTP schemathesis run takes minutes alone); a worker is given one
# test at a time (--maxschedchunk 1), so none waits behind a long one while the other worker idles.
# Not --dist loadgroup/loadscope: they key tests by node id, and schemathesis' in-process tests share
# one id per function (92 tests ran as 1). TEST_WORKERS=0: one process. Three on two cores: much of
# the suite waits on child processes, servers and the clock (CPU time was 10.6 of 13 wall minutes).
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS) --dist load --maxschedchunk 1

# The embedded-server pass after a run on a server: what behaves differently on the embedded
# backend, not the whole suite again (that would double `make test`; see README "Two commands").
# The `embedded` tests, less the slow restart tests (they start servers of their own and ran in
# the first pass already), and a smoke set: the backend and pytest-django's test databases on it,
# COPY import, the pipeline, corrections with rollback, feature upserts, yearly partitions,
# summary triggers, advisory locks, health, the status doors, and a child process killed
# mid-correction and resumed, reaching the test database through the server's socket folder.
EMBEDDED_SMOKE := etl/tests/test_embedded_postgres.py etl/tests/test_pipeline.py etl/tests/test_partitions.py \
	etl/tests/test_locks.py etl/tests/test_summaries.py etl/tests/test_health.py \
	batchimport/tests/test_loader.py corrections/tests/test_execute_rollback.py \
	corrections/tests/test_resume_after_kill.py enrichment/candles/tests/test_v2_upsert.py \
	mytrader/tests/test_status_reads.py
EMBEDDED_SMOKE_ARGS := $(EMBEDDED_SMOKE)

test-suite:
	CHROMIUM_PATH="$(CHROMIUM)" $(BIN)/pytest -q $(XDIST) $(PYTEST_ARGS)
	@if [ -n "$$DATABASE_URL" ]; then \
	  echo "== the embedded-PostgreSQL pass: its own tests and a smoke set (Makefile EMBEDDED_SMOKE)"; \
	  $(MAKE) --no-print-directory test-embedded PYTEST_ARGS='$(EMBEDDED_SMOKE_ARGS)'; \
	fi
	@if [ -n "$(PROMTOOL)" ] && [ -n "$(AMTOOL)" ]; then \
	  $(MAKE) --no-print-directory alerts-test; \
	else \
	  echo "SKIPPED alert-rule tests: promtool/amtool not found (install Debian's prometheus and prometheus-alertmanager)"; \
	fi
	@$(MAKE) --no-print-directory containers-check
	@$(MAKE) --no-print-directory lint

# The container files, as far as this machine allows (no Docker engine is needed):
# hadolint on the Dockerfile and `docker-compose config` when they are installed.
containers-check:
	@if command -v hadolint >/dev/null; then hadolint Dockerfile; \
	else echo "SKIPPED Dockerfile lint: hadolint not found (not in Debian's archive: see docs/deploy.md)"; fi
	@if command -v docker-compose >/dev/null; then compose=docker-compose; \
	elif docker compose version >/dev/null 2>&1; then compose="docker compose"; fi; \
	if [ -n "$$compose" ]; then SECRET_KEY=check POSTGRES_PASSWORD=check $$compose -f compose.yaml config -q && echo "compose.yaml is valid"; \
	else echo "SKIPPED compose.yaml check: docker-compose not found (install Debian's docker-compose)"; fi

# Install the missing test commands from Debian's packages, when this user may.
test-tools:
	@missing=(); \
	[ -n "$(CHROMIUM)" ] || missing+=(chromium); \
	[ -n "$(PROMTOOL)" ] || missing+=(prometheus); \
	[ -n "$(AMTOOL)" ] || missing+=(prometheus-alertmanager); \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose); \
	[ $${#missing[@]} -gt 0 ] && [ "$(INSTALL_TEST_TOOLS)" != no ] || exit 0; \
	if [ "$$(id -u)" -eq 0 ]; then sudo_cmd=""; elif sudo -n true 2>/dev/null; then sudo_cmd=sudo; \
	else echo "not root and no password-less sudo: not installing $${missing[*]}"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "no apt-get: not installing $${missing[*]}"; exit 0; }; \
	echo "== apt-get install $${missing[*]} (commands the tests use)"; \
	$$sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $$sudo_cmd apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null \
	  || echo "apt-get install $${missing[*]} failed: their tests will be skipped"

# The whole suite on the embedded server (no DATABASE_URL), in parallel: one server for the run
# (var/pgdata-test), which every worker joins; the last one out stops it.
test-embedded: install
	env -u DATABASE_URL EMBEDDED_PG_DATA=$(CURDIR)/var/pgdata-test CHROMIUM_PATH="$(CHROMIUM)" $(BIN)/pytest -q $(XDIST) $(PYTEST_ARGS)

# Refresh the Turkish catalogue from the marked strings, then compile it (needs
# gettext's msgfmt). The compiled .mo is committed, so installing needs no gettext.
messages: install
	$(MANAGE) makemessages -l tr --no-location $(foreach dir,.venv var staticfiles bench api_fuzz browser_tests,-i "$(dir)/*")
	$(MANAGE) compilemessages -l tr -i .venv -i var

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each benchmark migrates first: some write to the configured database.
bench: bench-providers bench-features bench-corrections bench-import bench-sync

bench-providers: migrate
	$(PYTHON) bench/bench_providers.py 500

bench-features: migrate
	$(PYTHON) bench/bench_features.py

bench-corrections: migrate
	$(PYTHON) bench/bench_corrections.py

bench-import: migrate
	$(PYTHON) bench/bench_import.py

bench-sync: migrate
	$(PYTHON) bench/bench_sync.py

# Bytes per candle after the pipeline on 1 M generated candles; refuses a database holding candles.
bench-storage: migrate
	$(PYTHON) bench/bench_storage.py --symbols 4000 --bars 250 --symbols-first

# Not part of `make bench`: status doors at 1 M and 10 M candles, the summary triggers' cost (about 20 minutes).
bench-summary: migrate
	$(PYTHON) bench/bench_summary.py

# Not part of `make bench`: /api/etl/status, the dashboard and /metrics at 100,000 symbols on a
# database made by SQL in about a minute (bench/bench_status.py; BENCH_STATUS_ARGS="--reuse --fold").
BENCH_STATUS_ARGS ?=
bench-status: migrate
	$(PYTHON) bench/bench_status.py $(BENCH_STATUS_ARGS)

# 10,000 symbols against a local Yahoo/CoinMarketCap look-alike enforcing their rate limits.
bench-enrich: migrate
	$(PYTHON) bench/bench_enrich.py

# Not part of `make bench`: it runs on the real clock for about ten minutes.
# Arguments: symbols, minutes, worker processes (LIVE_BENCH="500 5 4").
LIVE_BENCH ?= 500 5 4
bench-live: migrate
	$(PYTHON) bench/bench_live.py $(LIVE_BENCH)

# Not part of `make bench`: issue 14's scale run, N symbols x B daily bars, one file per symbol,
# through the pipeline with the plain-script reference for features (make bench-scale N=5000 B=250;
# BENCH_SCALE_ARGS="--keep", then "--reuse --steps noop" re-runs one step on the kept data).
N ?= 5000
B ?= 250
BENCH_SCALE_ARGS ?=
bench-scale: migrate
	$(PYTHON) bench/bench_scale.py $(N) $(B) $(BENCH_SCALE_ARGS)

# Stop the embedded server (it stops by itself when its last process exits
# normally; a process killed by a signal leaves it running for the next one).
db-stop:
	$(PYTHON) -c "from mytrader.db.embedded.server import stop_server; from mytrader.settings import DATABASES as D; print('stopped' if stop_server(D['default'].get('PGDATA', 'var/pgdata')) else 'not running')"

# Unit tests of the Prometheus alerting rules (Debian package `prometheus` has promtool).
alerts-test:
	promtool check rules ops/prometheus/alerts.yml
	cd ops/prometheus && promtool test rules alerts_test.yml
	ops/alertmanager/test-routes.sh

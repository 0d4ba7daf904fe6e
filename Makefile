# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Without DATABASE_URL the project runs its own embedded PostgreSQL (var/pgdata).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
MANAGE := $(PYTHON) manage.py
SAMPLE_DIR ?= var/data/sample
DEMO_USER ?= admin
DEMO_PASSWORD ?= admin-demo-password

# Development defaults; production sets DEBUG=off and a SECRET_KEY (see README).
export DEBUG ?= on
export DATA_ROOT ?= $(CURDIR)/var/data

.PHONY: alerts-test install migrate demo demo-setup serve worker test test-embedded lint format bench db-stop

$(BIN)/activate: requirements.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

install: $(BIN)/activate

migrate: install
	$(MANAGE) migrate --noinput
	$(MANAGE) createcachetable

demo-setup: migrate
	$(MANAGE) ensure_demo_admin --username $(DEMO_USER) --password $(DEMO_PASSWORD)
	$(MANAGE) bootstrap_reference_data
	$(MANAGE) generate_sample_data $(SAMPLE_DIR)
	$(MANAGE) run_pipeline --continue-on-failure --path $(SAMPLE_DIR) --option overwrite_mismatched=true
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

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The whole suite once more on the embedded server (no DATABASE_URL).
test-embedded: install
	env -u DATABASE_URL EMBEDDED_PG_DATA=$(CURDIR)/var/pgdata-test $(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(PYTHON) bench/bench_providers.py 500
	$(PYTHON) bench/bench_features.py
	$(PYTHON) bench/bench_corrections.py
	$(PYTHON) bench/bench_import.py
	$(PYTHON) bench/bench_sync.py

# Stop the embedded server (it stops by itself when its last process exits
# normally; a process killed by a signal leaves it running for the next one).
db-stop:
	$(PYTHON) -c "from mytrader.db.embedded.server import stop_server; from mytrader.settings import DATABASES as D; print('stopped' if stop_server(D['default'].get('PGDATA', 'var/pgdata')) else 'not running')"

# Unit tests of the Prometheus alerting rules (Debian package `prometheus` has promtool).
alerts-test:
	promtool check rules ops/prometheus/alerts.yml
	cd ops/prometheus && promtool test rules alerts_test.yml
	ops/alertmanager/test-routes.sh

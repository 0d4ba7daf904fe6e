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

.PHONY: install migrate demo demo-setup serve worker test test-embedded lint format bench clean-db

$(BIN)/activate: requirements.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

install: $(BIN)/activate

migrate: install
	$(MANAGE) migrate --noinput

demo-setup: migrate
	$(MANAGE) ensure_demo_admin --username $(DEMO_USER) --password $(DEMO_PASSWORD)
	$(MANAGE) bootstrap_reference_data
	$(MANAGE) run_pipeline --continue-on-failure
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
	$(BIN)/pytest -q

# The whole suite once more on the embedded server (no DATABASE_URL).
test-embedded: install
	env -u DATABASE_URL EMBEDDED_PG_DATA=$(CURDIR)/var/pgdata-test $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(PYTHON) bench/bench_sync.py

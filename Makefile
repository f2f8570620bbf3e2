# tracehouse: `make demo` and `make test` work on a fresh clone; both create the venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= var/demo
DEMO_DAYS ?= 30
DEMO_TRACES ?= 2000
PYTEST_ARGS ?=

.PHONY: venv venv-spark demo test test-spark bench lint notebook docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The Spark engine's optional packages (dbt-spark session, pyspark; Java 17 must be on PATH).
SPARK_STAMP := $(VENV)/.installed-spark
venv-spark: $(SPARK_STAMP)

$(SPARK_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	@touch $(SPARK_STAMP)

demo: venv
	@rm -rf $(DEMO_DIR)
	@mkdir -p $(DEMO_DIR)
	$(BIN)/tracehouse generate --lake $(DEMO_DIR)/lake --start 2026-01-01 --days $(DEMO_DAYS) \
		--traces-per-day $(DEMO_TRACES) --seed 1 --truth $(DEMO_DIR)/truth.json --bad-rows 0.001
	$(BIN)/tracehouse run --lake $(DEMO_DIR)/lake --warehouse $(DEMO_DIR)/warehouse
	$(BIN)/tracehouse summary --warehouse $(DEMO_DIR)/warehouse --lake $(DEMO_DIR)/lake \
		--truth $(DEMO_DIR)/truth.json

test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# DuckDB and a local SparkSession build the same lake; every mart must be equal (one process,
# one SparkSession: no -n). Spark's metastore_db/derby.log go into the test's warehouse folder.
test-spark: venv-spark
	TRACEHOUSE_TEST_SPARK=1 $(BIN)/python -m pytest tests/test_spark_parity.py -s -p no:xdist $(PYTEST_ARGS)

BENCH_SIZES ?= 1M
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	TRACEHOUSE_BENCH_SIZES=$(BENCH_SIZES) nice -n 10 $(BIN)/python -m tracehouse.bench

# ruff (Python, tests, the notebook's source), mypy, sqlfluff over the models (.sqlfluff: dbt
# templater on the duckdb target; macros are linted where they render, inside the models).
SQLFLUFF_PROCESSES ?= 2
lint: venv
	$(BIN)/ruff check python tests notebooks
	$(BIN)/mypy python/tracehouse
	@mkdir -p var/lint/lake
	TRACEHOUSE_WAREHOUSE=var/lint TRACEHOUSE_LAKE=var/lint/lake \
		$(BIN)/sqlfluff lint models --processes $(SQLFLUFF_PROCESSES)

# The regression notebook: notebooks/regression_report.py is the source; bring the paired .ipynb
# in step after editing either (tests/test_report_notebook.py fails when they drift).
notebook: venv
	$(BIN)/jupytext --sync notebooks/regression_report.py

docs: venv
	TRACEHOUSE_LAKE=$(DEMO_DIR)/lake TRACEHOUSE_WAREHOUSE=$(DEMO_DIR)/warehouse \
		$(BIN)/dbt docs generate --profiles-dir . --project-dir .

clean:
	rm -rf var target logs .pytest_cache

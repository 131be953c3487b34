# Low back pain pathway — developer commands. Everything runs from a local virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
SHARED ?= ../shared

.PHONY: help venv run test test-pg bench conformance lint catalogue clean

help:
	@echo "make run          set up and start the server on http://127.0.0.1:$(PORT)/fhir (SQLite under ./var/)"
	@echo "make test         set up and run the test suite"
	@echo "make lint         ruff (app, tests, bench) and mypy (configured in pyproject.toml: strict for app/records, app/reasoning, app/fhirpath)"
	@echo "make bench        run the benchmarks in bench/ (needs $(SHARED)/data)"
	@echo "make conformance  validate every official FHIR R4 example (needs $(SHARED)/data)"

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres]'
	@touch $(BIN)/activate

venv: $(BIN)/activate

run: venv
	PORT=$(PORT) $(BIN)/lbp serve

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/ingest.py --shared $(SHARED)
	$(BIN)/python bench/read.py
	$(BIN)/python bench/validation.py

conformance: venv
	$(BIN)/lbp conformance $(SHARED)/data/hl7.fhir.r4.examples-4.0.1.tgz

catalogue: venv
	$(BIN)/python -m app.knowledge.catalogue

lint: venv
	$(BIN)/python -m ruff check app tests bench
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) var .pytest_cache

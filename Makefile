# `make run`: the default synthetic study end to end; `make test`: the test suite.
# Both bootstrap .venv on a fresh machine (Python 3.11).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) all

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake

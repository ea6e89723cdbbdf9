# `make run`: the default synthetic study end to end; `make test`: the test suite.
# Both bootstrap .venv on a fresh machine (Python 3.11).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test test-e2e test-slurm lint clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) all

test: $(STAMP) chromium
	$(VENV)/bin/python -m pytest -q -m "not slurm and not e2e"

# Whole studies through Snakemake: the reduced synthetic study (with fine-tuning and the downstream
# benchmarks) and the cc12m world's data stages on local fixtures. About 6 minutes on 2 cores.
test-e2e: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "e2e and not slurm"

# The study through `--profile slurm` on a real local SLURM cluster (scripts/slurm-local-up.sh
# installs and starts it, as root; the test stops it again). About 8 minutes on 2 cores.
test-slurm: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slurm

# Headless Chromium for the HTML-report test (Debian; needs root and apt on a fresh machine)
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake

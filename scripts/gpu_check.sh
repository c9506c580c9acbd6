#!/usr/bin/env bash
# The GPU check (make gpu-check): on one GPU, in a few minutes, the CIFAR paper model trained,
# sampled, featurized with the GPU projection, scored, retrained with its outputs; every model on
# CUDA, GPU and CPU features compared; throughput and peak memory in
# results/benchmarks/gpu_check.json. Fails (exit 1) where there is no GPU or a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec timeout 1200 "$PY" -m dabench.gpu_check "$@"

#!/usr/bin/env bash
# The GPU check of issue 12 (bench/gpu_check.py), capped at 5 minutes. Run from the repository
# root on a machine with an NVIDIA GPU, after `make install` (or with PYTHON pointing at a
# Python that has mnist-sweep and a CUDA build of TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export MNIST_SWEEP_DATA_DIR=${MNIST_SWEEP_DATA_DIR:-$(cd .. && pwd)/shared/datasets}
nvidia-smi -L
exec timeout 300 "$PYTHON" bench/gpu_check.py

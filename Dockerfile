# syntax=docker/dockerfile:1
# The mnist-sweep image: workers, the nightly scheduler and (same MLflow version as the clients)
# the tracking server all run from it. See docker-compose.yml.
#
#   docker build -t mnist-sweep .                                     # CPU
#   docker build -t mnist-sweep:gpu --build-arg TENSORFLOW='tensorflow[and-cuda]' .
#
# The GPU variant keeps the slim base and pulls CUDA/cuDNN as pip wheels (`tensorflow[and-cuda]`);
# the host needs only the NVIDIA driver and the NVIDIA Container Toolkit. Alternatively build on
# TensorFlow's own CUDA image: --build-arg BASE_IMAGE=tensorflow/tensorflow:latest-gpu
# (Python 3.11 there, TensorFlow already installed).
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG TENSORFLOW=tensorflow

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# tzdata: the scheduler service computes "next $NIGHTLY_AT" in the container's $TZ.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The locked dependencies first (requirements.txt: the tested versions, psycopg 3 among them), then
# the code, so editing the code or the search spaces does not reinstall TensorFlow.
COPY requirements.txt ./
RUN pip install -r requirements.txt "${TENSORFLOW}" -c requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps .

COPY search_spaces ./search_spaces
COPY sweeps ./sweeps

# /mlartifacts: the tracking server's artifact store; /checkpoints: the workers' shared checkpoint
# store. A fresh named volume copies this owner.
RUN useradd --create-home --uid 1000 sweep \
    && install -d -o sweep -g sweep /mlartifacts /checkpoints
USER sweep

ENTRYPOINT ["mnist-sweep"]
CMD ["--help"]

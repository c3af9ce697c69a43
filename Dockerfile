# syntax=docker/dockerfile:1.7
# Three images from one file:
#   docker build --target operator -t ghcr.io/codekiln/operator:0.1.0 .   (control plane, no torch)
#   docker build --target workload -t ghcr.io/codekiln/workload:0.1.0 .   (CUDA, torch, DeepSpeed, Triton, vLLM)
#   docker build --target sandbox  -t ghcr.io/codekiln/sandbox:0.1.0 .    (language toolchains + bubblewrap)

ARG PYTHON_VERSION=3.11
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04

# ---------------------------------------------------------------- operator
FROM python:${PYTHON_VERSION}-slim AS operator
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
COPY kernels/ kernels/
RUN pip install . && useradd --uid 10001 --no-create-home codekiln
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["codekiln"]
CMD ["operator", "--all-namespaces"]

# ---------------------------------------------------------------- workload
FROM ${CUDA_IMAGE} AS workload
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev git build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
COPY kernels/ kernels/
# torch first (CUDA wheels), then the project with the GPU extras.
RUN pip install torch --index-url https://download.pytorch.org/whl/cu128 \
    && pip install ".[data,train,rl,kernels,vllm]" \
    && useradd --uid 10001 --create-home codekiln
USER 10001
ENTRYPOINT []
CMD ["codekiln", "--help"]

# ---------------------------------------------------------------- sandbox
FROM python:${PYTHON_VERSION}-slim AS sandbox
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        bubblewrap util-linux tar bash python3 gcc g++ libc6-dev nodejs golang-go default-jdk-headless rustc \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
COPY kernels/ kernels/
RUN pip install ".[sandbox]" && useradd --uid 10001 --no-create-home sandbox
# Sandboxed programs run with /usr/bin/python3 (Debian's), not this image's server Python.
# Runs as non-root with a read-only root filesystem; the pod mounts a tmpfs at /tmp.
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "codekiln.workloads.sandbox"]
CMD ["serve"]

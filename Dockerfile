# One image for every Python service of the deployment: mlflow, ray-head, ray-worker, coordinator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, pinned to the CPU wheel: an unpinned torch pulls GBs of CUDA packages. The GPU worker
# group of deploy/k8s uses a CUDA build of the same image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t deep-unfolding-study:cuda .
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"

# Dependencies before code, so editing code does not reinstall them.
COPY pyproject.toml README.md ./
COPY study/__init__.py study/__init__.py
COPY workers/__init__.py workers/__init__.py
RUN pip install .

COPY study study
COPY workers workers
COPY configs configs
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 study \
    && mkdir -p /mlartifacts /mlflow-auth && chown study /mlartifacts /mlflow-auth
USER study

# Ray needs the same token on every node and the driver (RAY_AUTH_TOKEN, set in compose).
ENV RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0

# authlens images, one per target (docs/DEPLOY.md):
#
#   serve          the API: ONNX Runtime + FastAPI, no torch, non-root; mount a bundle at /models/current
#                    docker build --target serve -t authlens:serve .
#                    docker run -p 8000:8000 -v "$PWD/bundles/demo:/models/current:ro" \
#                      -e AUTHLENS_API_KEY_HASHES='["<sha256>"]' -e AUTHLENS_ADMIN_KEY_HASH=<sha256> authlens:serve
#   serve-bundled  serve with a bundle copied in
#                    docker build --target serve-bundled --build-arg BUNDLE=bundles/demo -t authlens:demo .
#   batch          serve + Ray (authlens score --engine ray): the head and worker image of a Ray cluster
#                    docker build --target batch -t authlens:batch .
#   bundle         a bundle alone, for an init container to copy (deploy/kubernetes)
#                    docker build --target bundle --build-arg BUNDLE=bundles/demo -t authlens-bundle:demo .
#   train          the training stack (torchrun included); CPU torch by default
#                    docker build --target train -t authlens:train .
#                  CUDA torch (PyPI's wheels carry the CUDA libraries constraints.txt pins):
#                    --build-arg TORCH_INDEX=https://pypi.org/simple
#                  a CUDA base image (Python 3.11 installed from the distribution when missing):
#                    --build-arg TRAIN_BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
#
# Every dependency is pinned by constraints.txt. Settings are the AUTHLENS_* variables of
# serving/core/config.py; listening beyond loopback needs AUTHLENS_API_KEY_HASHES.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRAIN_BASE=python:3.11-slim-bookworm

# ----------------------------------------------------------------------------- sources
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY authlens ./authlens
COPY model ./model
COPY serving ./serving
# the command's root registers training's command modules (light; torch loads only inside them)
COPY training ./training

FROM source AS build-serve
RUN python -m venv /opt/authlens \
 && /opt/authlens/bin/pip install --no-cache-dir -c constraints.txt ".[serve]"

FROM source AS build-batch
RUN python -m venv /opt/authlens \
 && /opt/authlens/bin/pip install --no-cache-dir -c constraints.txt ".[serve,ray]"

# ----------------------------------------------------------------------------- serve
FROM ${PYTHON_IMAGE} AS serve
RUN useradd --no-log-init --create-home --uid 10001 --user-group authlens \
 && mkdir -p /models \
 && chown authlens:authlens /models
COPY --from=build-serve /opt/authlens /opt/authlens
ENV PATH=/opt/authlens/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUTHLENS_HOST=0.0.0.0 \
    AUTHLENS_PORT=8000 \
    AUTHLENS_LOG_FORMAT=json
USER 10001
WORKDIR /home/authlens
EXPOSE 8000
# ready = a verified, warmed model is serving (503 while starting, reloading a bad bundle or draining)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["authlens", "serve", "--bundle", "/models/current"]

FROM serve AS serve-bundled
ARG BUNDLE=bundles/demo
COPY --chown=root:root ${BUNDLE} /models/current

# ----------------------------------------------------------------------------- batch (Ray)
FROM ${PYTHON_IMAGE} AS batch
# KubeRay's default probes run wget inside Ray pods
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --no-log-init --create-home --uid 10001 --user-group authlens
COPY --from=build-batch /opt/authlens /opt/authlens
ENV PATH=/opt/authlens/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUTHLENS_LOG_FORMAT=json
USER 10001
WORKDIR /home/authlens
CMD ["authlens", "score", "--help"]

# ----------------------------------------------------------------------------- bundle
FROM busybox:1.37.0 AS bundle
ARG BUNDLE=bundles/demo
COPY ${BUNDLE} /bundle
USER 65534
CMD ["cp", "-r", "/bundle/.", "/models/current/"]

# ----------------------------------------------------------------------------- train
FROM ${TRAIN_BASE} AS train
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python:3.11 images have it; a CUDA base gets Debian's or Ubuntu's python3.11
# hadolint ignore=DL3008
RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 python3.11-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --no-log-init --create-home --uid 10001 --user-group authlens
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY authlens ./authlens
COPY model ./model
COPY serving ./serving
COPY training ./training
COPY configs ./configs
RUN python3.11 -m venv /opt/authlens \
 && /opt/authlens/bin/pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -c constraints.txt ".[train]"
ENV PATH=/opt/authlens/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUTHLENS_LOG_FORMAT=json
USER 10001
WORKDIR /work
CMD ["authlens", "train", "--help"]

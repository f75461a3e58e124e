# CPU image: preprocess, tokenize, evaluate, export, register, deploy (and train on CPU), and serve:
# components.serve is the custom predictor of a KServe InferenceService (it listens on 8080).
#   make images REGISTRY=... TAG=...   (see images/build.py)
# Pinned base image, pinned dependencies (constraints.txt), a non-root user, no build tools or
# caches in the final layer. Runs with a read-only root filesystem (make container-test runs every
# stage so): HOME, the HF and matplotlib caches go to /tmp, which must be writable (a tmpfs under
# docker, an emptyDir on Kubeflow), and outputs to the mounted artifact paths.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt pyproject.toml ./
# The CPU build of torch comes from PyTorch's own index; everything else from PyPI, pinned.
# TORCH_SOURCE lets a build with no route to that index name a mounted wheel folder instead
# (images/build.py --torch-wheels). The dependencies go in a layer of their own, before the code
# is copied, so a change to the code rebuilds in seconds.
ARG TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu"
# hadolint ignore=SC2086,DL3013
RUN touch README.md \
    && pip install ${TORCH_SOURCE} torch==2.13.0 \
    && pip install -c constraints.txt '.[serve,tracking]'
COPY README.md ./
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps --force-reinstall -c constraints.txt '.[serve,tracking]' \
    && find /opt/venv -name "__pycache__" -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="textclf-cpu" \
      org.opencontainers.image.source="https://github.com/textclf/textclf-pipeline" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
RUN groupadd --gid 10001 textclf && useradd --uid 10001 --gid textclf --no-create-home --shell /usr/sbin/nologin textclf
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    GIT_COMMIT=${GIT_COMMIT}
WORKDIR /tmp
USER 10001:10001
CMD ["python3", "-m", "components.preprocess", "--help"]

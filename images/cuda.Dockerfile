# CUDA image: the train stage on GPU nodes (one process per GPU under torchrun when asked).
# PyPI's torch 2.13.0 wheel for Linux x86_64 is the CUDA build and carries its CUDA libraries,
# so the base stays a slim Python image; the node's NVIDIA driver is mounted in by the NVIDIA
# container toolkit. Same layout, user and read-only root as the CPU image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt pyproject.toml ./
# The dependencies in a layer of their own, before the code (and README), as in cpu.Dockerfile.
RUN touch README.md \
    && pip install torch==2.13.0 \
    && pip install -c constraints.txt '.[tracking]'
COPY README.md ./
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps --force-reinstall -c constraints.txt '.[tracking]' \
    && find /opt/venv -name "__pycache__" -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="textclf-cuda" \
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
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    GIT_COMMIT=${GIT_COMMIT}
WORKDIR /tmp
USER 10001:10001
CMD ["python3", "-m", "components.train", "--help"]

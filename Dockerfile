# Colorflow image for the production stack (docker-compose.airflow.yml): Airflow 3.3 components (api-server,
# scheduler, dag-processor, triggerer, Celery workers) and the MLflow server, from the locked requirements.txt.
FROM python:3.11-slim-bookworm

# Where torch==2.13.0 (pinned in requirements.txt) comes from. The default, PyPI, serves a CUDA-enabled wheel
# for Linux x86_64 that also runs on CPU-only nodes, so the default image suits every service, the GPU worker
# included. Do NOT build the GPU worker from https://download.pytorch.org/whl/cpu. The compose file passes
# TORCH_INDEX_URL for the shared image and GPU_TORCH_INDEX_URL for the GPU worker's image: the GPU worker can
# pick a CUDA build matching the node's driver (https://download.pytorch.org/whl/cu<version>), and the CPU
# image can use https://download.pytorch.org/whl/cpu to save several GB.
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    COLORFLOW_HOME=/var/lib/colorflow \
    SE_OFFLINE=true

# Chromium and its driver for the Selenium browser mode of the Instagram connector; curl for health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium chromium-driver curl \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /tmp/requirements.txt
# torch first, from TORCH_INDEX_URL (PyPI stays reachable for its dependencies); the lock then installs the
# rest at the locked versions and keeps that torch (2.13.0+cpu or +cuXXX satisfy ==2.13.0).
RUN pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        -c /tmp/requirements.txt torch==2.13.0 \
    && pip install -r /tmp/requirements.txt
RUN useradd --create-home --uid 50000 --user-group colorflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /var/lib/colorflow \
    && chown -R colorflow:colorflow /opt/airflow /var/lib/colorflow

COPY . /opt/colorflow
# The repository's packages and Airflow plugins are imported from the source tree, as in the embedded setup;
# the `colorflow` command is declared in pyproject.toml.
ENV PYTHONPATH=/opt/colorflow:/opt/colorflow/plugins
RUN pip install --no-deps --no-build-isolation -e /opt/colorflow

USER colorflow
WORKDIR /opt/colorflow
EXPOSE 8080 8793 5000
CMD ["airflow", "version"]

"""Colorflow Studio as people reach it: its own process (`colorflow studio`) on a loopback port, in front of a
real MLflow server whose registry holds a model trained and registered by the production code. One server,
registry and Studio serve every test of the package."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedded.ports import free_port, running_mlflow, wait_for_port
from models.train import TrainConfig
from tests.training import register_small_model

BIN = Path(sys.executable).parent
PHOTO_CAP_MB = 2.0  # small, so the cap is cheap to cross


@pytest.fixture(scope="package")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlflow(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="package")
def registered(dataset_lake: tuple[str, str], small: Callable[..., TrainConfig], tracking_uri: str) -> dict:
    return register_small_model(small, tracking_uri, dataset_lake[0])


@pytest.fixture(scope="package")
def studio_url(registered: dict, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "COLORFLOW_MLFLOW_TRACKING_URI": tracking_uri,
        "COLORFLOW_STUDIO_MAX_PHOTO_MB": str(PHOTO_CAP_MB),
    }
    log_path = tmp_path_factory.mktemp("studio") / "studio.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "colorflow"), "studio", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_for_port(port, server, timeout_s=120)
        except RuntimeError:
            pytest.fail(log_path.read_text()[-3000:])
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)

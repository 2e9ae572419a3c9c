"""The embedded stack for integration tests: a private home and free ports, so it never touches a
developer's `.colorflow/` or a stack started by `make up`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded import services
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from pipelines.settings import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    # Not under pytest's private temporary folder: the PostgreSQL server runs as its own user and must
    # be able to reach its data folder inside this home.
    home = Path(tempfile.mkdtemp(prefix="colorflow-stack-"))
    home.chmod(0o755)
    settings = Settings(
        home=home,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        sandbox_port=free_port(),
        postgres_port=free_port(),
        airflow_password="test",
    )
    services.up(settings)
    try:
        yield settings
    finally:
        stopped = services.down(settings)
        shutil.rmtree(home, ignore_errors=True)
        assert len(stopped) == len(services.stack_services(settings)), f"only {stopped} were running at the end"


@pytest.fixture(scope="session")
def airflow(stack_settings: Settings) -> AirflowClient:
    return AirflowClient(stack_settings.airflow_url, stack_settings.airflow_username, stack_settings.airflow_password)


@pytest.fixture(scope="module")
def photo_folder() -> Iterator[Path]:
    """A folder of photos for `ingest_local`, readable by every process of the stack (pytest's own
    temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="colorflow-photos-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

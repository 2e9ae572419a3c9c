"""The embedded stack for integration tests: a private home and free ports, so it never touches a
developer's `.colorflow/` or a stack started by `make up`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded import services
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from pipelines.settings import Settings


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home: Path = tmp_path_factory.mktemp("colorflow-home")
    settings = Settings(
        home=home, airflow_port=free_port(), mlflow_port=free_port(), sandbox_port=free_port(), airflow_password="test"
    )
    services.up(settings)
    try:
        yield settings
    finally:
        stopped = services.down(settings)
        assert len(stopped) == len(services.stack_services(settings)), f"only {stopped} were running at the end"


@pytest.fixture(scope="session")
def airflow(stack_settings: Settings) -> AirflowClient:
    return AirflowClient(stack_settings.airflow_url, stack_settings.airflow_username, stack_settings.airflow_password)

"""Settings for embedded stacks that tests start for themselves, and such stacks running."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embedded import services
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from embedded.settings import StackSettings


def private_stack_settings(prefix: str, **overrides: object) -> StackSettings:
    """Settings of an embedded stack of its own: a fresh home and free ports, so it never touches a
    developer's `.colorflow/` or another stack. The home is not under pytest's private temporary folder:
    the PostgreSQL server runs as its own user and must be able to reach its data folder inside it."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    return StackSettings(
        home=home,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        sandbox_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
        studio_port=free_port(),
        airflow_password="test",
        retry_delay_seconds=3,  # drills kill tasks: their retries need not wait half a minute
        **overrides,
    )


@contextlib.contextmanager
def running_stack(prefix: str, **overrides: object) -> Iterator[tuple[StackSettings, AirflowClient]]:
    """A private stack (see `private_stack_settings`) started for the block, then stopped and removed."""
    settings = private_stack_settings(prefix, **overrides)
    try:
        services.up(settings)
        yield settings, AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    finally:
        services.down(settings)
        shutil.rmtree(settings.home, ignore_errors=True)

"""Settings for embedded stacks that tests start for themselves."""

from __future__ import annotations

import tempfile
from pathlib import Path

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
        airflow_password="test",
        **overrides,
    )

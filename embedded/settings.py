"""The embedded stack's settings: the product's (`pipelines.settings.Settings`) plus what only the stack on
this machine has, its ports, the UI login and the sandbox stand-ins, read from the same `COLORFLOW_*`
variables.

The sandbox is the one place that lets connectors reach a loopback address: with `sandbox` on (the default
here, never in the product's settings), the stand-ins' host joins the HTTP guard's allow-list.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipelines.settings import Settings


class StackSettings(Settings):
    """Settings of an embedded stack: where its services listen, how to log in, whether the sandbox runs."""

    bind_host: str = Field(default="127.0.0.1", description="Address the embedded services listen on.")
    airflow_port: int = Field(default=8080, description="Port of the embedded Airflow API server and UI.")
    mlflow_port: int = Field(default=5000, description="Port of the embedded MLflow tracking server.")
    sandbox_port: int = Field(default=8790, description="Port of the sandbox host (stand-ins for web services).")
    postgres_port: int = Field(default=5433, description="Port of the embedded PostgreSQL (Airflow's metadata).")
    studio_port: int = Field(default=5600, description="Port of Colorflow Studio, the colorizing web page.")
    airflow_username: str = Field(default="admin", description="Login of the embedded Airflow UI.")
    airflow_password: str = Field(default="admin", description="Password of the embedded Airflow UI.")
    sandbox: bool = Field(
        default=True, description="Run the sandbox stand-ins and point the sources' connections at them."
    )
    executor: Literal["local", "celery"] = Field(
        default="local",
        description="How Airflow runs tasks: `local` (LocalExecutor, tasks as children of the scheduler) or"
        " `celery` (CeleryExecutor: Redis and Celery workers on queues `default` and `gpu`, as in production).",
    )
    redis_port: int = Field(default=6380, description="Port of the embedded Redis (the Celery broker).")
    default_workers: int = Field(default=2, ge=1, description="Celery workers on queue `default` (celery mode).")
    worker_concurrency: int = Field(
        default=1, ge=1, description="Tasks each `default` worker runs at once; the `gpu` worker always runs one."
    )

    @model_validator(mode="after")
    def _derive_stack_defaults(self) -> StackSettings:
        if "mlflow_tracking_uri" not in self.model_fields_set:
            self.mlflow_tracking_uri = f"http://{self.bind_host}:{self.mlflow_port}"
        if self.sandbox and self.sandbox_host not in self.http_allowed_hosts:
            self.http_allowed_hosts = [*self.http_allowed_hosts, self.sandbox_host]
        return self

    @property
    def airflow_url(self) -> str:
        return f"http://{self.bind_host}:{self.airflow_port}"

    @property
    def studio_url(self) -> str:
        return f"http://{self.bind_host}:{self.studio_port}"

    @property
    def sandbox_host(self) -> str:
        return f"{self.bind_host}:{self.sandbox_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.sandbox_host}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def mlflow_artifacts_url(self) -> str:
        """Where the stack's MLflow server keeps artifacts: in the lake, beside the data they came from."""
        return f"{self.lake_url.rstrip('/')}/mlflow"


@lru_cache(maxsize=1)
def get_stack_settings() -> StackSettings:
    """The embedded stack's settings, read once from the environment."""
    return StackSettings()

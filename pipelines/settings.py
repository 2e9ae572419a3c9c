"""One typed settings object for every Colorflow component.

Everything that differs between the embedded default and production is read here from `COLORFLOW_*`
environment variables, so that DAGs, CLIs, tests and services agree on where the lake, the catalog and
MLflow live without passing paths around. Unset values fall back to the embedded setup under
`.colorflow/` in the repository.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where Colorflow keeps its data and how its services are reached."""

    model_config = SettingsConfigDict(env_prefix="COLORFLOW_", extra="ignore")

    home: Path = Field(
        default=REPO_ROOT / ".colorflow",
        description="Working folder of the embedded setup: lake, catalog, service state and logs.",
    )
    lake_url: str = Field(
        default="", description="Object store root: file:///path or s3://bucket/prefix (default: <home>/lake)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Custom S3 endpoint (MinIO or another S3-compatible store); None means AWS."
    )
    catalog_url: str = Field(
        default="", description="SQLAlchemy URL of the catalog (default: SQLite file <home>/catalog.db)."
    )
    mlflow_tracking_uri: str = Field(
        default="", description="MLflow tracking server (default: the embedded server on mlflow_port)."
    )
    bind_host: str = Field(default="127.0.0.1", description="Address the embedded services listen on.")
    airflow_port: int = Field(default=8080, description="Port of the embedded Airflow API server and UI.")
    mlflow_port: int = Field(default=5000, description="Port of the embedded MLflow tracking server.")
    sandbox_port: int = Field(default=8790, description="Port of the sandbox host (stand-ins for web services).")
    postgres_port: int = Field(default=5433, description="Port of the embedded PostgreSQL (Airflow's metadata).")
    airflow_username: str = Field(default="admin", description="Login of the embedded Airflow UI.")
    airflow_password: str = Field(default="admin", description="Password of the embedded Airflow UI.")
    sandbox: bool = Field(
        default=True, description="Point sources at the local sandbox stand-ins instead of the real services."
    )
    http_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (name or name:port) connectors may reach even at internal addresses; JSON list.",
    )
    local_photos_dir: Path | None = Field(
        default=None,
        description="Folder ingest_local reads by default (None: the sample photos shipped in pip packages).",
    )

    @model_validator(mode="after")
    def _derive_embedded_defaults(self) -> Settings:
        self.home = self.home.resolve()
        if not self.lake_url:
            self.lake_url = (self.home / "lake").as_uri()
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.home / 'catalog.db'}"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"http://{self.bind_host}:{self.mlflow_port}"
        sandbox_host = f"{self.bind_host}:{self.sandbox_port}"
        if self.sandbox and sandbox_host not in self.http_allowed_hosts:
            self.http_allowed_hosts = [*self.http_allowed_hosts, sandbox_host]
        return self

    @property
    def airflow_url(self) -> str:
        return f"http://{self.bind_host}:{self.airflow_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.bind_host}:{self.sandbox_port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

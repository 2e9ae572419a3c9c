"""Settings: embedded defaults under the home folder, overridable by COLORFLOW_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.settings import REPO_ROOT, Settings


def test_defaults_put_everything_under_the_repo_colorflow_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "LAKE_URL", "CATALOG_URL", "MLFLOW_TRACKING_URI", "MLFLOW_PORT"):
        monkeypatch.delenv(f"COLORFLOW_{name}", raising=False)
    settings = Settings()
    assert settings.home == REPO_ROOT / ".colorflow"
    assert settings.lake_url == (REPO_ROOT / ".colorflow" / "lake").as_uri()
    assert settings.catalog_url == f"sqlite:///{REPO_ROOT / '.colorflow' / 'catalog.db'}"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.bind_host == "127.0.0.1"
    assert settings.sandbox is True


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLORFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("COLORFLOW_LAKE_URL", "s3://colorflow/lake")
    monkeypatch.setenv("COLORFLOW_CATALOG_URL", "postgresql+psycopg2://db/catalog")
    monkeypatch.setenv("COLORFLOW_AIRFLOW_PORT", "18080")
    monkeypatch.setenv("COLORFLOW_SANDBOX", "false")
    settings = Settings()
    assert settings.lake_url == "s3://colorflow/lake"
    assert settings.catalog_url == "postgresql+psycopg2://db/catalog"
    assert settings.airflow_url == "http://127.0.0.1:18080"
    assert settings.logs_dir == tmp_path / "logs"
    assert settings.sandbox is False


def test_a_bad_port_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORFLOW_MLFLOW_PORT", "five thousand")
    with pytest.raises(ValueError, match="mlflow_port"):
        Settings()

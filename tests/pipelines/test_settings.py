"""Settings: defaults under the working folder, overridable by COLORFLOW_* variables; the quality stage's
section from COLORFLOW_QUALITY_*."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.settings import MAX_PIXELS, REPO_ROOT, Settings


def test_defaults_put_everything_under_the_repo_colorflow_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "LAKE_URL", "CATALOG_URL", "MLFLOW_TRACKING_URI", "HTTP_ALLOWED_HOSTS"):
        monkeypatch.delenv(f"COLORFLOW_{name}", raising=False)
    settings = Settings()
    assert settings.home == REPO_ROOT / ".colorflow"
    assert settings.lake_url == (REPO_ROOT / ".colorflow" / "lake").as_uri()
    assert settings.catalog_url == f"sqlite:///{REPO_ROOT / '.colorflow' / 'catalog.db'}"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.http_allowed_hosts == [], "no internal host is reachable unless someone allows it"
    assert settings.quality.max_pixels == MAX_PIXELS


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLORFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("COLORFLOW_LAKE_URL", "s3://colorflow/lake")
    monkeypatch.setenv("COLORFLOW_CATALOG_URL", "postgresql+psycopg2://db/catalog")
    monkeypatch.setenv("COLORFLOW_QUALITY_LICENSE_ALLOW_LIST", '["CC0-1.0"]')
    monkeypatch.setenv("COLORFLOW_QUALITY_NEAR_DUPLICATE_DISTANCE", "4")
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.lake_url == "s3://colorflow/lake"
    assert settings.catalog_url == "postgresql+psycopg2://db/catalog"
    assert settings.quality.license_allow_list == ["CC0-1.0"]
    assert settings.quality.near_duplicate_distance == 4


def test_a_bad_number_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORFLOW_QUALITY_MAX_PIXELS", "fifty million")
    with pytest.raises(ValueError, match="max_pixels"):
        Settings()

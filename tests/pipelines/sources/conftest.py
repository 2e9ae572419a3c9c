"""Fixtures every connector test uses: a lake and a catalog of its own, and settings that allow the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.catalog import Catalog
from pipelines.http import host_key
from pipelines.settings import Settings
from pipelines.storage import FileStore


@pytest.fixture
def settings(sandbox_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, http_allowed_hosts=[host_key(sandbox_url)])


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    return catalog


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "lake")

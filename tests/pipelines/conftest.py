"""A private lake and catalog per test: the stage tests read and write real files and a real SQLite
database, nothing shared between tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.catalog import Catalog
from pipelines.storage import FileStore


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "lake")


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    return catalog

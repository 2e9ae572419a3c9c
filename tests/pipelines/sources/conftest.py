"""Settings that allow the sandbox, for every connector test (the lake and catalog come from tests/pipelines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.http import host_key
from pipelines.settings import Settings


@pytest.fixture
def settings(sandbox_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, http_allowed_hosts=[host_key(sandbox_url)])

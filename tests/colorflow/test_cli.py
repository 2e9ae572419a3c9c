"""The `colorflow` command as people run it: the console script the bootstrap installs in the virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.catalog import SightingRecord, open_catalog
from pipelines.raw_zone import content_digest, ingest_photo, raw_key
from pipelines.settings import Settings
from pipelines.storage import open_store
from tests.corpus import color_photo

COLORFLOW = Path(sys.executable).parent / "colorflow"


def colorflow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLORFLOW_HOME": str(home)}
    return subprocess.run([str(COLORFLOW), *args], env=environment, capture_output=True, text=True, timeout=300)


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = colorflow("--help", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lake" in result.stdout


def test_lake_audit_exits_1_on_drift_and_0_once_repaired(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store, catalog = open_store(settings=settings), open_catalog(settings)
    ingest_photo(store, catalog, color_photo(1), SightingRecord("local", "one", "file:///one.jpg"), "ingest")
    assert colorflow("lake", "audit", "--grace-minutes", "0", home=tmp_path).returncode == 0

    orphan = color_photo(2)
    orphan_key = raw_key(content_digest(orphan), "jpg")
    store.put(orphan_key, orphan)
    found = colorflow("lake", "audit", "--grace-minutes", "0", home=tmp_path)
    assert found.returncode == 1
    assert "1 raw object with no image row" in found.stderr and orphan_key in found.stderr
    assert "the lake and the catalog disagree: 1 raw object with no image row" in found.stderr
    *_, report_key = store.list("reports/audit/")  # named by time: the newest sorts last
    assert json.loads(store.get(report_key))["counts"] == {"orphan_object": 1}

    assert colorflow("lake", "audit", "--grace-minutes", "0", "--repair", home=tmp_path).returncode == 0
    assert colorflow("lake", "audit", "--grace-minutes", "0", home=tmp_path).returncode == 0

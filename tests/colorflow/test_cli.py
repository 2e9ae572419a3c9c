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


def test_help_lists_every_command_and_each_command_explains_itself(tmp_path: Path) -> None:
    listing = colorflow("--help", home=tmp_path)
    assert listing.returncode == 0, listing.stderr
    commands = ("colorize", "studio", "dataset", "takedown", "train", "stack", "lake", "airflow")
    assert all(f"    {command} " in listing.stdout for command in commands), listing.stdout
    for command, option in (
        (["colorize"], "--output"),
        (["colorize"], "--strength"),
        (["studio"], "--port"),
        (["dataset", "build"], "--source"),
        (["dataset", "show"], "version"),
        (["train"], "--dataset"),
        (["stack"], "screenshots"),
        (["stack", "screenshots"], "--dag-id"),
        (["lake", "audit"], "--repair"),
        (["takedown"], "--requested-by"),
        (["lake", "lifecycle"], "--dry-run"),
    ):
        shown = colorflow(*command, "--help", home=tmp_path)
        assert shown.returncode == 0 and option in shown.stdout, (command, shown.stderr)


def test_airflow_runs_the_airflow_cli_with_the_stack_settings(tmp_path: Path) -> None:
    result = colorflow("airflow", "config", "get-value", "core", "dags_folder", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(Path(__file__).resolve().parents[2] / "dags")


def test_a_missing_dataset_version_is_a_clear_error(tmp_path: Path) -> None:
    result = colorflow("dataset", "show", "0123456789abcdef", home=tmp_path)
    assert result.returncode == 1
    assert "no published dataset version 0123456789abcdef" in result.stderr


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


def test_takedown_prints_what_it_withdrew_and_exits_1_when_it_names_nothing_known(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store, catalog = open_store(settings=settings), open_catalog(settings)
    ingested = ingest_photo(
        store, catalog, color_photo(3), SightingRecord("flickr", "53012345", "https://f/1.jpg"), "i"
    )
    asked = ("--reason", "the author asked", "--requested-by", "ana@example.org")

    unknown = colorflow("takedown", "--source", "flickr", "--source-id", "999", *asked, home=tmp_path)
    assert unknown.returncode == 1 and "nothing known matches" in unknown.stderr

    done = colorflow("takedown", "--source", "flickr", "--source-id", "53012345", *asked, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 image(s) withdrawn" in done.stdout and "1 newly withdrawn, 1 objects deleted" in done.stdout
    assert "dataset versions: none" in done.stdout and "reports/takedowns/td-" in done.stdout
    assert not store.exists(ingested.key)

    again = colorflow("takedown", "--source", "flickr", "--source-id", "53012345", *asked, home=tmp_path)
    assert again.returncode == 0 and "already applied: nothing changed" in again.stdout

    both = colorflow("takedown", "--author", "x", "--sha256", "a" * 64, *asked, home=tmp_path)
    assert both.returncode == 2 and "name the photos one way" in both.stderr

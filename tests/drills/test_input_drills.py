"""Hostile and broken input through ingestion and validation: every file is accounted for (a verdict, or a
recorded reason it was not read) and no run crashes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import FetchFailure, Image, open_catalog
from pipelines.raw_zone import content_digest
from pipelines.sources.local import MAX_FILE_BYTES, discover_photos
from tests.corpus import color_photo, tricky_corpus
from tests.drills.audit import audit_after_fault

pytestmark = [pytest.mark.integration]


@pytest.fixture
def hostile_folder() -> Iterator[Path]:
    """The tricky corpus (broken, disguised, bombs, odd formats) plus what a file system can hold against us:
    a link to a secret outside the folder, a link to a photo inside it, a pipe that would block a reader
    forever, and a sparse file bigger than any photo. Among ordinary photos, as it arrives in production:
    a batch made mostly of broken files fails validation on purpose, as a sign that a source changed."""
    folder = Path(tempfile.mkdtemp(prefix="colorflow-hostile-"))
    folder.chmod(0o755)
    tricky_corpus(folder / "corpus")
    for seed in range(9600, 9640):
        (folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    outside = Path(tempfile.mkdtemp(prefix="colorflow-outside-"))
    (outside / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY----- drill")
    (folder / "key.jpg").symlink_to(outside / "id_rsa")
    (folder / "again.jpg").symlink_to(folder / "photo-9600.jpg")
    os.mkfifo(folder / "pipe.jpg")
    with (folder / "huge.tif").open("wb") as sparse:
        sparse.truncate(MAX_FILE_BYTES + 1)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.slow_drill
@pytest.mark.drill("hostile input", "tricky corpus, links out of the folder, a pipe, a 512 MB sparse file")
def test_every_hostile_file_is_accounted_for_and_nothing_crashes(
    airflow: AirflowClient, stack_settings: StackSettings, hostile_folder: Path, drill_report: dict
) -> None:
    entries = discover_photos([hostile_folder])

    ingest, ingest_state = airflow.run("ingest_local", {"folder": str(hostile_folder), "batch_size": 8})
    _, validate_state = airflow.run("validate_images")

    assert (ingest_state, validate_state) == ("success", "success"), "no run may crash on hostile input"
    catalog = open_catalog(stack_settings)
    with catalog.session() as session:
        refused = {
            Path(row.source_id): row.reason
            for row in session.scalars(select(FetchFailure).where(FetchFailure.run_id == ingest))
        }
        verdicts = {sha256: status for sha256, status in session.execute(select(Image.sha256, Image.status))}
    judged, unaccounted = 0, []
    for path in entries:
        if path in refused:
            continue
        verdict = verdicts.get(content_digest(path.read_bytes()))
        if verdict in ("accepted", "rejected"):
            judged += 1
        else:
            unaccounted.append(f"{path.name}: {verdict}")
    drill_report.update(
        outcome=f"{len(entries)} files: {judged} judged, {len(refused)} refused with a reason, 0 crashes",
        objects_lost=len(unaccounted),
    )
    assert unaccounted == []
    assert {path.name for path in refused} == {"key.jpg", "again.jpg", "pipe.jpg", "huge.tif"}, refused
    assert audit_after_fault(stack_settings, drill_report) == []

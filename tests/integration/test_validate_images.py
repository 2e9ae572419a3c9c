"""`validate_images` through the real Airflow: the tricky corpus, ingested by `ingest_local` among ordinary
photos, is judged file by file with readable reasons, and a batch of login pages fails the task at once
with a message naming the source.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import Image, open_catalog
from pipelines.raw_zone import content_digest
from pipelines.settings import Settings
from pipelines.sources.local import PHOTO_SUFFIXES
from tests.corpus import color_photo, tricky_corpus

pytestmark = pytest.mark.integration

PADDING_PHOTOS = range(300, 340)  # ordinary photos the corpus arrives among, as it would in production
DUPLICATE_REASON = re.compile(r"(near|exact) duplicate of [0-9a-f]{12}")


def verdicts(settings: Settings, digests: set[str]) -> dict[str, tuple[str, list[str] | None]]:
    with open_catalog(settings).session() as session:
        rows = session.execute(
            select(Image.sha256, Image.status, Image.reject_reasons).where(Image.sha256.in_(digests))
        )
        return {sha256: (status, reasons) for sha256, status, reasons in rows}


def test_the_tricky_corpus_is_judged_file_by_file(
    airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path
) -> None:
    # ingest_local reads photo files; the corpus's Lab `.npy` sample is a Kaggle-style sample, not a file there.
    corpus = {
        name: entry
        for name, entry in tricky_corpus(photo_folder / "corpus").items()
        if entry[0].suffix.lower() in PHOTO_SUFFIXES
    }
    for seed in PADDING_PHOTOS:
        (photo_folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    ingest, _ = airflow.run("ingest_local", {"folder": str(photo_folder), "license": "CC0 1.0"})
    assert airflow.run_state("ingest_local", ingest) == "success"

    airflow.run("validate_images")

    digests = {content_digest(path.read_bytes()): name for name, (path, _) in corpus.items()}
    judged = verdicts(stack_settings, set(digests))
    assert set(judged) == set(digests), "every corpus file reached the catalog"
    assert all(status in ("accepted", "rejected") for status, _ in judged.values()), "every file has a verdict"
    duplicates = [judged[content_digest(corpus[name][0].read_bytes())] for name in ("photo", "exact_duplicate")]
    assert sorted(status for status, _ in duplicates) == ["accepted", "rejected"], f"one copy is kept: {duplicates}"
    for name, (path, expected) in corpus.items():
        if name in ("photo", "exact_duplicate"):
            continue
        status, reasons = judged[content_digest(path.read_bytes())]
        if expected == "accept":
            # The corpus is made of library photos, which the sandbox's sources serve too: when another
            # source already brought the same photo, keeping that copy and rejecting this one is right.
            seen_elsewhere = reasons and all(
                DUPLICATE_REASON.fullmatch(reason) and not any(sha.startswith(reason[-12:]) for sha in digests)
                for reason in reasons
            )
            assert status == "accepted" or seen_elsewhere, f"{name}: {reasons}"
        else:
            keyword = expected.removeprefix("reject:").lower()
            assert status == "rejected" and any(keyword in reason.lower() for reason in reasons), f"{name}: {reasons}"


def test_a_batch_of_login_pages_fails_at_once_naming_the_source(
    airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path
) -> None:
    pages = photo_folder / "login-pages"
    pages.mkdir()
    for number in range(12):
        (pages / f"photo-{number}.jpg").write_text(f"<html><body>Please log in ({number})</body></html>")
    airflow.run("ingest_local", {"folder": str(pages), "license": "CC0"})

    # The ingest's raw_images event schedules a validation of its own; the manual run queues behind it.
    # Whichever judged the pages must have failed at once, naming the source.
    airflow.run("validate_images")
    failures = [
        (failed["dag_run_id"], task)
        for failed in airflow.runs("validate_images", state="failed")
        for task in airflow.task_instances("validate_images", failed["dag_run_id"])
        if task["task_id"] == "judge"
    ]
    messages = [airflow.task_log("validate_images", run_id, "judge", task["try_number"]) for run_id, task in failures]
    naming_local = [task for (_, task), log in zip(failures, messages, strict=True) if "source local" in log]
    assert naming_local, "no failed validation names the source"
    assert all(task["try_number"] == 1 for task in naming_local), "a changed source pages on-call at once"

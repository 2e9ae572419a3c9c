"""The built_lake audit on a real built_lake (a folder, and a bucket of an S3-protocol server) built by the real stages:
a clean built_lake reports nothing; each kind of drift planted in it is found, and repaired where the built_lake can
rebuild it."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import timedelta

import pytest
from PIL import Image as PILImage
from sqlalchemy import insert, select, text

from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, Image, Sighting, SightingRecord, utcnow
from pipelines.lake_audit import audit_lake, write_report
from pipelines.quality import validate_batch
from pipelines.raw_zone import ingest_photo, quarantine_key, raw_key
from pipelines.stitch import ShardParams, load_manifest, manifest_key, stitch_dataset
from pipelines.storage import ObjectStore
from pipelines.takedowns import TakedownRequest, apply_takedown
from sandbox.library import PhotoLibrary
from tests.corpus import color_photo

LIBRARY = PhotoLibrary()
NOW = timedelta(0)  # no grace: drift planted a moment ago counts


def gray_photo() -> bytes:
    buffer = io.BytesIO()
    PILImage.open(io.BytesIO(LIBRARY.encode(8))).convert("L").convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def offer(store: ObjectStore, catalog: Catalog, data: bytes, source_id: str) -> str:
    record = SightingRecord("unsplash", source_id, f"https://unsplash.example/{source_id}", license="CC-BY-2.0")
    return ingest_photo(store, catalog, data, record, run_id="ingest__1", name_hint=f"{source_id}.jpg").sha256


@pytest.fixture
def built_lake(file_or_s3_store: ObjectStore, catalog: Catalog) -> tuple[ObjectStore, Catalog, dict]:
    """A built_lake as the pipeline leaves it: photos ingested and judged (one gray photo quarantined), and a
    published dataset version."""
    store = file_or_s3_store
    shas = [offer(store, catalog, LIBRARY.encode(number), f"photo-{number}") for number in (0, 1, 2, 3, 4, 6)]
    gray = offer(store, catalog, gray_photo(), "gray-photo")
    validate_batch(store, catalog, "validate__1")
    manifest = stitch_dataset(store, catalog, ShardParams(load_size=32, shard_size=2))
    return store, catalog, {"photos": shas, "gray": gray, "manifest": manifest}


def kinds(report) -> dict[str, int]:
    return report.counts()


def test_a_clean_lake_reports_nothing(built_lake) -> None:
    store, catalog, built = built_lake
    report = audit_lake(store, catalog, checksums=True, grace=NOW)
    assert report.findings == []
    assert report.scanned["objects"] == 7 and report.scanned["images"] == 7
    assert report.scanned["dataset versions"] == 1 and report.scanned["shards"] == len(built["manifest"]["shards"])
    assert "no drift" in report.summary()


def test_an_object_without_its_row_is_found_and_its_row_rebuilt(built_lake) -> None:
    store, catalog, _ = built_lake
    data = color_photo(11)
    sha = offer(store, catalog, data, "lost-row")
    with catalog.session() as session:
        session.execute(Sighting.__table__.delete().where(Sighting.image_sha256 == sha))
        session.execute(Image.__table__.delete().where(Image.sha256 == sha))
    store.put("raw/zz/notes.txt", b"not a photo")

    report = audit_lake(store, catalog, grace=NOW)
    assert kinds(report) == {"orphan_object": 2}
    assert {finding.subject for finding in report.findings} == {raw_key(sha, "jpg"), "raw/zz/notes.txt"}
    assert audit_lake(store, catalog, grace=timedelta(hours=1)).findings == [], "a fresh write may be in flight"

    repaired = audit_lake(store, catalog, repair=True, grace=NOW)
    [rebuilt] = [finding for finding in repaired.findings if finding.repaired]
    assert rebuilt.subject == raw_key(sha, "jpg") and "ingestion runs of" in rebuilt.repaired
    with catalog.session() as session:
        row = session.get(Image, sha)
        assert (row.status, row.byte_size, row.format) == ("pending", len(data), "jpg")
    assert kinds(audit_lake(store, catalog, grace=NOW)) == {"orphan_object": 1}, "the stray key cannot be rebuilt"


def test_a_missing_object_is_found_and_restored_from_its_quarantine_copy(built_lake) -> None:
    store, catalog, built = built_lake
    gone = built["photos"][0]
    store.delete(raw_key(gone, "jpg"))
    store.delete(raw_key(built["gray"], "jpg"))
    assert store.exists(quarantine_key(built["gray"], "x.jpg"))

    report = audit_lake(store, catalog, grace=NOW)
    assert kinds(report) == {"missing_object": 2}
    [lost] = [finding for finding in report.findings if finding.subject == raw_key(gone, "jpg")]
    assert "unsplash photo-0 (run ingest__1)" in lost.detail, "the report names the run that brings it back"

    repaired = audit_lake(store, catalog, repair=True, grace=NOW)
    assert [finding.subject for finding in repaired.findings if finding.repaired] == [raw_key(built["gray"], "jpg")]
    assert store.exists(raw_key(built["gray"], "jpg"))
    assert [finding.subject for finding in audit_lake(store, catalog, grace=NOW).findings] == [raw_key(gone, "jpg")]


def test_checksums_find_altered_objects_and_shards(built_lake) -> None:
    store, catalog, built = built_lake
    store.put(raw_key(built["photos"][1], "jpg"), b"cut short")
    shard = built["manifest"]["shards"][0]["key"]
    store.put(shard, b"\0" * 512 + store.get(shard)[512:])

    assert audit_lake(store, catalog, grace=NOW).findings == [], "sizes and names alone cannot tell"
    report = audit_lake(store, catalog, checksums=True, repair=True, grace=NOW)
    assert kinds(report) == {"corrupt_object": 1, "altered_shard": 1}
    assert {finding.subject for finding in report.findings} == {raw_key(built["photos"][1], "jpg"), shard}
    assert not any(finding.repaired for finding in report.findings)


def test_dataset_drift_and_unknown_sightings_are_found(built_lake, catalog: Catalog) -> None:
    store, catalog, built = built_lake
    version = built["manifest"]["version"]
    shard = built["manifest"]["shards"][-1]["key"]
    store.delete(shard)
    with catalog.session() as session:
        session.execute(
            insert(DatasetVersion).values(
                version="unpublished",
                manifest_key=manifest_key("unpublished"),
                params={},
                sample_count=1,
                created_at=utcnow(),
            )
        )
        session.execute(
            insert(DatasetMember).values(
                version="unpublished",
                image_sha256=built["photos"][0],
                split="train",
                shard="datasets/unpublished/x.tar",
            )
        )
    with catalog.engine.connect() as connection:  # a sighting whose image row is gone: only without the foreign key
        connection.execute(text("PRAGMA foreign_keys=OFF"))
        connection.execute(
            insert(Sighting).values(
                source="flickr",
                source_id="123",
                image_sha256="f" * 64,
                url="https://flickr.example/123",
                fetched_at=utcnow(),
                run_id="r",
            )
        )
        connection.commit()

    report = audit_lake(store, catalog, grace=NOW)
    assert kinds(report) == {"missing_manifest": 1, "missing_shard": 2, "unknown_image": 1}
    assert {finding.subject for finding in report.findings} == {
        "unpublished",
        shard,
        "datasets/unpublished/x.tar",
        "flickr 123",
    }
    assert load_manifest(store, version)["version"] == version
    assert audit_lake(store, catalog, grace=timedelta(hours=1)).counts() == {"missing_shard": 2, "unknown_image": 1}


def test_unfinished_writes_older_than_a_day_are_found_and_thrown_away(built_lake) -> None:
    store, catalog, _ = built_lake
    writing = store.open_write("datasets/next/train/train-00000.tar")
    writing.__enter__().write(os.urandom(6 * 1024 * 1024))  # past S3's 5 MiB part: a multipart upload
    [unfinished] = store.unfinished_writes()
    if unfinished.started_at > utcnow() - timedelta(hours=1):  # moto dates every upload 2010; real stores do not
        assert audit_lake(store, catalog, grace=NOW).findings == [], "a write started a moment ago is in flight"

    report = audit_lake(store, catalog, repair=True, grace=NOW, stale_after=NOW)
    assert kinds(report) == {"unfinished_write": 1}
    assert report.findings[0].repaired == "thrown away"
    assert list(store.unfinished_writes()) == []
    assert audit_lake(store, catalog, grace=NOW, stale_after=NOW).findings == []
    assert writing.__exit__(RuntimeError, RuntimeError("the writer gives up"), None) is False


def test_the_report_reads_as_a_summary_and_keeps_every_finding_in_json(built_lake) -> None:
    store, catalog, built = built_lake
    for number in range(30):
        store.put(f"raw/zz/stray-{number:02d}", b"x")
    report = audit_lake(store, catalog, grace=NOW)
    summary = report.summary()
    assert summary.splitlines()[1] == "30 raw object with no image row"
    assert "... and 10 more (all in the JSON report)" in summary
    key = write_report(store, report, "manual__1")
    saved = json.loads(store.get(key))
    assert key == "reports/audit/manual__1.json" and len(saved["findings"]) == 30
    assert saved["counts"] == {"orphan_object": 30} and saved["scanned"]["images"] == 7
    with catalog.session() as session:
        assert session.scalar(select(Image.sha256).where(Image.sha256 == built["gray"]))


def test_each_catalog_engine_is_matched_bucket_by_bucket(
    file_or_s3_store: ObjectStore, sqlite_or_postgres_catalog: Catalog
) -> None:
    """Forty photos spread over many of the 256 hash buckets, on SQLite and PostgreSQL: the hash ranges the
    audit reads from each engine line up with the built_lake's listing, so only the planted drift shows."""
    store, catalog = file_or_s3_store, sqlite_or_postgres_catalog
    shas = sorted(offer(store, catalog, color_photo(seed), f"photo-{seed}") for seed in range(40))
    assert len({sha[:2] for sha in shas}) > 30
    store.delete(raw_key(shas[0], "jpg"))
    orphan = color_photo(99)
    store.put(raw_key(hashlib.sha256(orphan).hexdigest(), "jpg"), orphan)

    report = audit_lake(store, catalog, checksums=True, grace=NOW)
    assert report.scanned["objects"] == 40 and report.scanned["images"] == 40
    assert {(finding.kind.name, finding.subject) for finding in report.findings} == {
        ("MISSING_OBJECT", raw_key(shas[0], "jpg")),
        ("ORPHAN_OBJECT", raw_key(hashlib.sha256(orphan).hexdigest(), "jpg")),
    }


def test_a_withdrawn_image_is_missing_on_purpose_and_its_leftover_bytes_are_deleted(built_lake) -> None:
    store, catalog, built = built_lake
    gray = built["gray"]
    request = TakedownRequest(reason="the author asked", requested_by="ana", sha256=gray)
    outcome = apply_takedown(request, store, catalog, tracking_uri="")  # in no dataset: MLflow is not asked
    assert outcome.objects_deleted == [raw_key(gray, "jpg"), quarantine_key(gray, "x.jpg")]
    assert audit_lake(store, catalog, grace=NOW).findings == [], "its bytes are gone on purpose"

    store.put(raw_key(gray, "jpg"), gray_photo())  # a takedown cut short before its deletes
    report = audit_lake(store, catalog, grace=NOW)
    assert kinds(report) == {"withdrawn_object": 1}
    assert audit_lake(store, catalog, repair=True, grace=NOW).findings[0].repaired == "deleted"
    assert not store.exists(raw_key(gray, "jpg"))
    assert audit_lake(store, catalog, grace=NOW).findings == []

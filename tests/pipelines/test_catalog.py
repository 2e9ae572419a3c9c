"""The catalog on SQLite and on a real PostgreSQL server: migrations, upserts, and no duplicate rows."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, select, text, update

from models.registry import quality_reports
from pipelines.catalog import (
    MIGRATIONS_DIR,
    Base,
    Catalog,
    DatasetMember,
    DatasetVersion,
    Image,
    NewImage,
    QualityResult,
    Sighting,
    SightingRecord,
    utcnow,
)
from pipelines.quality import pending_images
from pipelines.stitch import ShardParams
from pipelines.stitch.select import first_seen_query, keep_one_per_photo, member_query, stream_members
from pipelines.storage import FileStore


@pytest.fixture
def catalog(sqlite_or_postgres_catalog: Catalog) -> Catalog:
    return sqlite_or_postgres_catalog


def sighting(source: str = "unsplash", source_id: str = "photo-1", **extra) -> SightingRecord:
    return SightingRecord(source=source, source_id=source_id, url=f"https://example.org/{source_id}.jpg", **extra)


def test_migrations_build_exactly_the_models_schema(catalog: Catalog) -> None:
    with catalog.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrate_is_idempotent(catalog: Catalog) -> None:
    catalog.migrate()
    with catalog.engine.connect() as connection:
        newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == newest


def test_the_license_migration_moves_the_sources_words_and_names_the_term(sqlite_or_postgres_catalog: Catalog) -> None:
    """Rows written before the vocabulary held the services' words in `license`: upgrading keeps them in
    `license_text` and puts the term they mean in `license` (None where the vocabulary has none)."""
    from alembic import command
    from alembic.config import Config

    catalog = sqlite_or_postgres_catalog
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with catalog.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    old_words = ["Attribution License", "CC0: Public Domain", "Unsplash License", "Instagram (all rights reserved)"]
    with catalog.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO images (sha256, raw_key, format, byte_size, status, first_seen_at) "
                "VALUES ('a', 'raw/a', 'jpg', 1, 'pending', CURRENT_TIMESTAMP)"
            )
        )
        for number, words in enumerate(old_words):
            connection.execute(
                text(
                    "INSERT INTO sightings (source, source_id, image_sha256, url, license, fetched_at, run_id) "
                    "VALUES ('s', :id, 'a', 'u', :words, CURRENT_TIMESTAMP, 'r')"
                ),
                {"id": str(number), "words": words},
            )
    catalog.migrate()
    with catalog.session() as session:
        rows = session.execute(select(Sighting.license_text, Sighting.license).order_by(Sighting.source_id)).all()
    assert [tuple(row) for row in rows] == [
        ("Attribution License", "CC-BY-2.0"),
        ("CC0: Public Domain", "CC0-1.0"),
        ("Unsplash License", "Unsplash"),
        ("Instagram (all rights reserved)", None),
    ]


def test_an_image_is_added_once(catalog: Catalog) -> None:
    assert catalog.add_image("a" * 64, "raw/aa/" + "a" * 64 + ".jpg", "jpg", 1234) is True
    assert catalog.add_image("a" * 64, "raw/aa/" + "a" * 64 + ".jpg", "jpg", 1234) is False
    assert catalog.count(Image) == 1
    assert catalog.count(Image, status="pending") == 1


def test_sightings_are_unique_per_source_and_id_and_keep_attribution(catalog: Catalog) -> None:
    catalog.add_image("b" * 64, "raw/bb/b.jpg", "jpg", 10)
    record = sighting(author="Ansel", author_url="https://example.org/ansel", license="CC0", page_url="https://x/p")
    assert catalog.add_sighting("b" * 64, record, run_id="run-1") is True
    assert catalog.add_sighting("b" * 64, record, run_id="run-2") is False
    assert catalog.add_sighting("b" * 64, sighting(source="flickr", source_id="photo-1"), run_id="run-2") is True
    assert catalog.count(Sighting) == 2
    assert catalog.count_by_source() == {"flickr": 1, "unsplash": 1}
    with catalog.session() as session:
        first = session.query(Sighting).filter_by(source="unsplash").one()
        assert (first.author, first.license, first.run_id) == ("Ansel", "CC0", "run-1")


def test_known_source_ids(catalog: Catalog) -> None:
    catalog.add_image("c" * 64, "raw/cc/c.jpg", "jpg", 10)
    for number in range(3):
        catalog.add_sighting("c" * 64, sighting(source_id=f"id-{number}"), run_id="run")
    wanted = [f"id-{number}" for number in range(1200)]
    assert catalog.known_source_ids("unsplash", wanted) == {"id-0", "id-1", "id-2"}
    assert catalog.known_source_ids("flickr", wanted) == set()


def test_upsert_updates_only_the_named_columns(catalog: Catalog) -> None:
    catalog.add_image("d" * 64, "raw/dd/d.jpg", "jpg", 10)
    row = {
        "sha256": "d" * 64,
        "raw_key": "ignored",
        "format": "png",
        "byte_size": 99,
        "status": "accepted",
        "first_seen_at": utcnow(),
    }
    with catalog.session() as session:
        assert catalog.upsert(session, Image, [row], key=["sha256"], update=["status"]) == 0
    with catalog.session() as session:
        image = session.get(Image, "d" * 64)
        assert (image.status, image.format, image.byte_size, image.raw_key) == ("accepted", "jpg", 10, "raw/dd/d.jpg")


def test_a_failed_transaction_leaves_no_rows(catalog: Catalog) -> None:
    with pytest.raises(RuntimeError), catalog.session() as session:
        catalog.upsert(
            session,
            Image,
            [
                {
                    "sha256": "e" * 64,
                    "raw_key": "k",
                    "format": "jpg",
                    "byte_size": 1,
                    "status": "pending",
                    "first_seen_at": utcnow(),
                }
            ],
            key=["sha256"],
        )
        raise RuntimeError("killed mid-transaction")
    assert catalog.count(Image) == 0


def test_concurrent_writers_create_no_duplicates(catalog: Catalog) -> None:
    """Parallel mapped tasks offer the same photos at once; each must end up, and be counted as new, once."""

    def offer(worker: int) -> tuple[int, int]:
        images = sightings = 0
        for number in range(10):
            sha = f"{number:064x}"
            images += catalog.add_image(sha, f"raw/{sha[:2]}/{sha}.jpg", "jpg", number)
            sightings += catalog.add_sighting(sha, sighting(source_id=f"photo-{number}"), run_id=f"worker-{worker}")
        return images, sightings

    with ThreadPoolExecutor(max_workers=4) as pool:
        added = list(pool.map(offer, range(4)))
    assert catalog.count(Image) == 10
    assert catalog.count(Sighting) == 10
    assert (sum(images for images, _ in added), sum(sightings for _, sightings in added)) == (10, 10)


def test_batched_writers_count_each_new_row_once(catalog: Catalog) -> None:
    """Tasks record their photos in batches larger than one statement; overlapping batches written at once
    still add, and count as new, each image and each sighting exactly once."""
    # More rows than one statement carries: SQLAlchemy sends 1,000 per multi-row INSERT by default.
    photos = [f"{number:064x}" for number in range(1_150)]

    def offer(worker: int) -> tuple[int, int]:
        mine = random.Random(worker).sample(photos, k=len(photos) - 40 * worker)
        images = catalog.add_images([NewImage(sha, f"raw/{sha[:2]}/{sha}.jpg", "jpg", 1) for sha in mine])
        sightings = catalog.add_sightings([(sha, sighting(source_id=f"photo-{sha[-4:]}")) for sha in mine], "run")
        return len(images), sightings

    with ThreadPoolExecutor(max_workers=4) as pool:
        added = list(pool.map(offer, range(4)))
    assert catalog.count(Image) == catalog.count(Sighting) == len(photos)
    assert (sum(images for images, _ in added), sum(sightings for _, sightings in added)) == (len(photos),) * 2
    assert catalog.add_images([NewImage(photos[0], "raw/x.jpg", "jpg", 1)]) == set()


@contextlib.contextmanager
def selects_run(catalog: Catalog) -> Iterator[list[tuple[str, Any]]]:
    """Every SELECT the catalog's engine sends while the block runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_connection, _cursor, statement: str, parameters: Any, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(catalog.engine, "before_cursor_execute", record)


def full_scans(catalog: Catalog, statement: str, parameters: Any) -> list[str]:
    """The steps of the query's plan that read a whole table instead of an index. PostgreSQL is told to avoid
    sequential scans, as it would on a table of millions: on a few rows it rightly prefers them, and the test
    asks whether an index *can* answer the query."""
    with catalog.engine.connect() as connection:
        if catalog.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)]
            return [step for step in plan if "Seq Scan" in step]
        plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        return [step for step in plan if step.startswith("SCAN") and "INDEX" not in step]


def test_the_stages_queries_read_through_indexes(catalog: Catalog, tmp_path: Path) -> None:
    """The queries a stage runs over a batch (pending images, accepted candidates, a dataset's members) must
    not read whole tables: at a million images a full scan per batch is what makes a daily run slow."""
    photos = [f"{number:064x}" for number in range(6)]
    catalog.add_images([NewImage(sha, f"raw/{sha[:2]}/{sha}.jpg", "jpg", 1) for sha in photos])
    catalog.add_sightings([(sha, sighting(source_id=sha[-6:], license="CC0-1.0")) for sha in photos], "run")
    with catalog.session() as session:
        session.execute(update(Image).where(Image.sha256.in_(photos[:4])).values(status="accepted"))
        catalog.upsert(
            session,
            DatasetVersion,
            [{"version": "v1", "manifest_key": "m", "params": {}, "sample_count": 4, "created_at": utcnow()}],
            key=["version"],
        )
        catalog.upsert(
            session,
            DatasetMember,
            [{"version": "v1", "image_sha256": sha, "split": "train", "shard": "s"} for sha in photos[:4]],
            key=["version", "image_sha256"],
        )
        catalog.upsert(
            session,
            QualityResult,
            [{"run_id": "q1", "image_sha256": sha, "check": "decodes", "passed": True} for sha in photos],
            key=["run_id", "image_sha256", "check"],
        )
    filtered = ShardParams(sources=("unsplash",), since=date(2026, 1, 1), until=date(2100, 1, 1))
    with selects_run(catalog) as queries:
        assert len(pending_images(catalog)) == 2
        for params in (ShardParams(), filtered):
            kept = keep_one_per_photo(catalog, params).kept
            assert len(kept) == len(list(stream_members(catalog, params, kept))) == 4
        quality_reports(FileStore(tmp_path / "lake"), catalog, "v1")
    # On PostgreSQL the candidates travel through COPY, past the engine's cursor events: checked as compiled.
    if catalog.engine.dialect.name == "postgresql":
        for candidate_query in (first_seen_query, member_query):
            for params in (ShardParams(), filtered):
                compiled = candidate_query(params).compile(
                    dialect=catalog.engine.dialect, compile_kwargs={"render_postcompile": True}
                )
                queries.append((compiled.string, compiled.params))
    assert len(queries) >= 5
    for statement, parameters in queries:
        assert full_scans(catalog, statement, parameters) == [], statement

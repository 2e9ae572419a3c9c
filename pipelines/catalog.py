"""The catalog: where each image came from, under what license, whether it was accepted, and which
dataset versions contain it.

SQLAlchemy 2 over SQLite (embedded) or PostgreSQL (production), with the schema owned by Alembic
migrations in `pipelines/catalog_migrations/`. Every write is an upsert keyed on the natural key, so a
task that is retried or rerun for the same interval leaves the same rows, never duplicates.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from pipelines.settings import Settings, get_settings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "catalog_migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time read back from the catalog, made aware: SQLite returns the stored UTC times without a zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class ImageStatus(StrEnum):
    """Where an image stands: pending until the quality stage judges it, then accepted or rejected; withdrawn
    when a takedown removed it, for good (its row stays as the tombstone that refuses it at ingestion)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Image(Base):
    """One distinct image, identified by the SHA-256 of its bytes as fetched."""

    __tablename__ = "images"
    # Stages read images by status in sha256 order (pending for the quality stage, accepted for the stitch);
    # what the stitch reads of each is in the index too, so its query never visits the table.
    __table_args__ = (
        Index("ix_images_status_sha256_candidate", "status", "sha256", "raw_key", "format", "phash", "first_seen_at"),
    )

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    raw_key: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    phash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.PENDING)
    reject_reasons: Mapped[list[str] | None] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Sighting(Base):
    """One place an image was found: a source's record of it, with attribution and license."""

    __tablename__ = "sightings"
    # The stitch reads each accepted image's sources: the index alone answers it.
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_sightings_source_id"),
        Index("ix_sightings_image_sha256_source", "image_sha256", "source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(512))
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"))
    url: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(255))
    author_url: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(128))  # a term of `pipelines.licenses`' vocabulary
    license_text: Mapped[str | None] = mapped_column(String(255))  # what the source itself said
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str] = mapped_column(String(255))


class QualityResult(Base):
    """The outcome of one quality check on one image in one validation run."""

    __tablename__ = "quality_results"
    __table_args__ = (UniqueConstraint("run_id", "image_sha256", "check", name="uq_quality_run_image_check"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(255), index=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    check: Mapped[str] = mapped_column(String(128))
    passed: Mapped[bool] = mapped_column(Boolean)
    observed: Mapped[str | None] = mapped_column(Text)


class DatasetVersion(Base):
    """An immutable, published set of Lab shards in the lake."""

    __tablename__ = "dataset_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    manifest_key: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    sample_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DatasetMember(Base):
    """An image's place in a dataset version: its split and the shard that holds it."""

    __tablename__ = "dataset_members"

    version: Mapped[str] = mapped_column(ForeignKey("dataset_versions.version"), primary_key=True)
    # Indexed alone too: a takedown asks which versions hold an image, the moment someone asks.
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), primary_key=True, index=True)
    split: Mapped[str] = mapped_column(String(16))
    shard: Mapped[str] = mapped_column(String(255))


class FetchFailure(Base):
    """A photo a source offered that could not be fetched, kept so no loss is silent."""

    __tablename__ = "fetch_failures"
    __table_args__ = (UniqueConstraint("source", "source_id", "run_id", name="uq_fetch_failures_source_id_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str] = mapped_column(String(255))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Takedown(Base):
    """A request to remove photos: what it named, why, who asked and when. Its id is derived from what it
    named, so the same request made twice is one takedown."""

    __tablename__ = "takedowns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    selector: Mapped[dict[str, str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Withdrawal(Base):
    """An image a takedown withdrew: the image row (status withdrawn) and its sightings are the tombstone."""

    __tablename__ = "withdrawals"

    takedown_id: Mapped[str] = mapped_column(ForeignKey("takedowns.id"), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), primary_key=True, index=True)
    withdrawn_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Tombstones:
    """What takedowns withdrew, as ingestion checks it: each withdrawn image's sha256 and each of its
    sightings' (source, source id), mapped to the takedown that withdrew it."""

    by_sha256: dict[str, str]
    by_source_id: dict[tuple[str, str], str]

    def takedown_of(self, sighting: SightingRecord, sha256: str | None = None) -> str | None:
        """The takedown that refuses this photo, by its source id or (once fetched) its bytes; None if none."""
        found = self.by_source_id.get((sighting.source, sighting.source_id))
        return found or (self.by_sha256.get(sha256) if sha256 else None)


@dataclass(frozen=True)
class NewImage:
    """Raw bytes just stored in the lake, to be registered as a pending image."""

    sha256: str
    raw_key: str
    format: str
    byte_size: int


@dataclass(frozen=True)
class SightingRecord:
    """What a source knows about one photo it offered. `license` is a term of Colorflow's vocabulary
    (`pipelines.licenses`), None when the source's terms have none; `license_text` is what the source said."""

    source: str
    source_id: str
    url: str
    page_url: str | None = None
    author: str | None = None
    author_url: str | None = None
    license: str | None = None
    license_text: str | None = None


def _enable_sqlite_concurrency(dbapi_connection, _record) -> None:
    # Parallel Airflow tasks write the same SQLite file: WAL lets readers run beside a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Catalog:
    """Access to the catalog database; one instance per process is enough."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(self.engine, "connect", _enable_sqlite_concurrency)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to call on every start."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    def _insert_missing(
        self, session: Session, model: type[Base], rows: Sequence[dict[str, Any]], key: Sequence[str], returned: Any
    ) -> list[Any]:
        """Insert the rows whose `key` is new, leaving existing rows exactly as they are (first-seen facts, who
        first offered an image and when, stay stable across reruns); the `returned` column of each row that
        went in.

        The database answers which rows went in (`RETURNING`), so the answer is exact even when other writers
        add the same rows at the same moment. One statement is executed with every row: SQLAlchemy compiles
        it once and sends multi-row batches, so a million rows cost a million rows, not a million statements.
        Rows go in key order, so concurrent writers of overlapping batches take the unique index's locks in the
        same order and wait for each other instead of deadlocking (PostgreSQL)."""
        if not rows:
            return []
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        ordered = sorted(rows, key=lambda row: tuple(row[column] for column in key))
        statement = dialect.insert(model.__table__).on_conflict_do_nothing(index_elements=list(key))
        return list(session.connection().execute(statement.returning(returned), ordered).scalars())

    def upsert(
        self,
        session: Session,
        model: type[Base],
        rows: Sequence[dict[str, Any]],
        key: Sequence[str],
        update: Sequence[str] = (),
    ) -> int:
        """Insert rows, or on a key conflict update only the `update` columns; returns rows inserted.

        With no `update` columns, existing rows are left exactly as they are, which keeps first-seen
        facts (who first offered an image, and when) stable across reruns, and the rows go in as one batch.
        """
        if not update:
            return len(self._insert_missing(session, model, rows, key, returned=getattr(model, key[0])))
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        inserted = 0
        for row in rows:
            exists_before = session.execute(
                select(func.count()).select_from(model).filter_by(**{column: row[column] for column in key})
            ).scalar_one()
            statement = dialect.insert(model).values(**row)
            statement = statement.on_conflict_do_update(
                index_elements=list(key), set_={column: statement.excluded[column] for column in update}
            )
            session.execute(statement)
            inserted += 0 if exists_before else 1
        return inserted

    def add_image(self, sha256: str, raw_key: str, format: str, byte_size: int) -> bool:
        """Register raw bytes as a pending image; True when the image is new to the catalog."""
        return bool(self.add_images([NewImage(sha256, raw_key, format, byte_size)]))

    def add_images(self, images: Sequence[NewImage]) -> set[str]:
        """Register many raw objects as pending images in one transaction; the sha256s that were new.

        The database answers which rows went in (`RETURNING`), so the count is exact even when other
        writers add the same images at the same moment."""
        now = utcnow()
        rows = [{**asdict(image), "status": ImageStatus.PENDING, "first_seen_at": now} for image in images]
        with self.session() as session:
            return set(self._insert_missing(session, Image, rows, key=["sha256"], returned=Image.sha256))

    def add_sighting(self, image_sha256: str, sighting: SightingRecord, run_id: str) -> bool:
        """Record where an image was seen; True when this (source, source id) is new."""
        return self.add_sightings([(image_sha256, sighting)], run_id) == 1

    def add_sightings(self, sightings: Sequence[tuple[str, SightingRecord]], run_id: str) -> int:
        """Record many (image sha256, sighting) pairs in one transaction; how many were new."""
        now = utcnow()
        rows = [
            {**asdict(sighting), "image_sha256": sha256, "run_id": run_id, "fetched_at": now}
            for sha256, sighting in sightings
        ]
        with self.session() as session:
            return len(self._insert_missing(session, Sighting, rows, key=["source", "source_id"], returned=Sighting.id))

    def add_fetch_failure(self, source: str, source_id: str, url: str, reason: str, run_id: str) -> None:
        """Record that a candidate could not be fetched in this run (once per run, however often retried)."""
        row = {
            "source": source,
            "source_id": source_id,
            "url": url,
            "reason": reason,
            "run_id": run_id,
            "failed_at": utcnow(),
        }
        with self.session() as session:
            self.upsert(session, FetchFailure, [row], key=["source", "source_id", "run_id"], update=["reason"])

    def known_source_ids(self, source: str, source_ids: Iterable[str]) -> set[str]:
        """The subset of `source_ids` already sighted, so connectors skip fetching them again."""
        wanted = list(source_ids)
        known: set[str] = set()
        with self.session() as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = select(Sighting.source_id).where(Sighting.source == source, Sighting.source_id.in_(chunk))
                known.update(session.scalars(query))
        return known

    def tombstones(self) -> Tombstones:
        """Every withdrawn image's digest and source ids: takedowns are rare, so a task holds them all."""
        with self.session() as session:
            withdrawn = dict(session.execute(select(Withdrawal.image_sha256, Withdrawal.takedown_id)).tuples().all())
            query = select(Sighting.source, Sighting.source_id, Withdrawal.takedown_id).join(
                Withdrawal, Withdrawal.image_sha256 == Sighting.image_sha256
            )
            by_source_id = {(source, source_id): takedown for source, source_id, takedown in session.execute(query)}
        return Tombstones(withdrawn, by_source_id)

    def count(self, model: type[Base], **filters: Any) -> int:
        with self.session() as session:
            return session.execute(select(func.count()).select_from(model).filter_by(**filters)).scalar_one()

    def count_by_source(self) -> dict[str, int]:
        """Sightings per source, for summaries."""
        with self.session() as session:
            query = select(Sighting.source, func.count()).group_by(Sighting.source).order_by(Sighting.source)
            return dict(session.execute(query).tuples().all())


def open_catalog(settings: Settings | None = None, migrate: bool = True) -> Catalog:
    """The configured catalog, with its schema up to date."""
    settings = settings or get_settings()
    catalog = Catalog(settings.catalog_url)
    if migrate:
        catalog.migrate()
    return catalog

"""A private lake and catalog per test: the stage tests read and write real files and a real SQLite
database, nothing shared between tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from sqlalchemy import create_engine, text

from pipelines.catalog import Catalog
from pipelines.storage import FileStore, ObjectStore, S3Store


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "lake")


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    return catalog


@pytest.fixture
def lake(store: FileStore, catalog: Catalog) -> tuple[FileStore, Catalog]:
    """The private lake and catalog together, for stages that write both."""
    return store, catalog


@pytest.fixture(params=["file", "s3"])
def file_or_s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """A private lake on each backend: a folder, and a bucket of a real S3-protocol server."""
    if request.param == "file":
        yield FileStore(tmp_path / "lake")
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    yield S3Store(bucket, prefix="colorflow", endpoint_url=endpoint, part_bytes=5 * 1024 * 1024)


@pytest.fixture(params=["sqlite", "postgresql"])
def sqlite_or_postgres_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A private catalog on each engine: a SQLite file, and a database of its own on a PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        server = request.getfixturevalue("postgres_url")
        database = f"catalog_{uuid.uuid4().hex[:10]}"
        with create_engine(server, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
        url = server.rsplit("/", 1)[0] + f"/{database}"
    catalog = Catalog(url)
    catalog.migrate()
    yield catalog
    catalog.engine.dispose()

"""The images of a dataset version: accepted images chosen from the catalog by the filters, one kept per
photo when the same photo reached the lake from several sources, and each given its split by its content
hash."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import BinaryIO

import pyarrow
import pyarrow.csv
from sqlalchemy import Select, func, select

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting
from pipelines.near_duplicates import keep_first
from pipelines.stitch.params import ShardParams

QUERY_BATCH_ROWS = 10_000  # rows fetched from the catalog at a time when streaming candidates
COPY_WORK_MEM = "256MB"  # PostgreSQL's sort memory for the candidate query: a million rows sort in it
CANDIDATE_COLUMNS = ("sha256", "raw_key", "format", "phash", "first_seen_at", "sources")


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset version: its bytes' address and where it goes."""

    sha256: str
    raw_key: str
    format: str
    sources: tuple[str, ...]
    split: str = ""


@dataclass(frozen=True)
class Candidates:
    """Accepted images before de-duplication, column by column: a million small objects would cost more
    than the query that reads them. `sources` holds each image's distinct sources, sorted, comma-joined."""

    sha256: Sequence[str]
    raw_key: Sequence[str]
    format: Sequence[str]
    phash: Sequence[str | None]
    first_seen_at: Sequence[datetime]
    sources: Sequence[str]

    def __len__(self) -> int:
        return len(self.sha256)

    def member(self, position: int, split: str = "") -> DatasetImage:
        sources = tuple(self.sources[position].split(","))
        return DatasetImage(self.sha256[position], self.raw_key[position], self.format[position], sources, split)


def split_of(sha256: str, split_ratios: Sequence[tuple[str, float]]) -> str:
    """The split an image belongs to, from its content hash alone: it never moves as the dataset grows, and
    a photo met again from another source lands where it was."""
    position = int(sha256[:15], 16) / 16**15
    cumulative = 0.0
    for name, ratio in split_ratios:
        cumulative += ratio
        if position < cumulative:
            return name
    return split_ratios[-1][0]


def accepted_query(params: ShardParams) -> Select:
    """Accepted images with at least one sighting inside the filters, one row each with its sources joined,
    grouped in sha256 order (the index's own)."""
    query = (
        select(
            Image.sha256,
            Image.raw_key,
            Image.format,
            Image.phash,
            Image.first_seen_at,
            func.aggregate_strings(Sighting.source, ","),
        )
        .join(Sighting, Sighting.image_sha256 == Image.sha256)
        .where(Image.status == ImageStatus.ACCEPTED)
    )
    if params.sources:
        query = query.where(Sighting.source.in_(params.sources))
    if params.since:
        query = query.where(Sighting.fetched_at >= datetime.combine(params.since, clock_time(), UTC))
    if params.until:
        query = query.where(Sighting.fetched_at < datetime.combine(params.until, clock_time(), UTC))
    return query.group_by(Image.sha256).order_by(Image.sha256)


def select_accepted(catalog: Catalog, params: ShardParams) -> Candidates:
    """Accepted images with at least one sighting inside the filters, each with every source it came from."""
    query = accepted_query(params)
    if catalog.engine.dialect.driver == "psycopg2":
        columns = _copied_columns(catalog, query)
    else:
        columns = _fetched_columns(catalog, query)
    sha256, raw_key, image_format, phash, first_seen_at, sources = columns
    return Candidates(sha256, raw_key, image_format, phash, first_seen_at, [_distinct(names) for names in sources])


def _fetched_columns(catalog: Catalog, query: Select) -> list[list]:
    """The query's rows a batch at a time, turned into columns: Core rows through the session's connection,
    no ORM loading per row."""
    columns: list[list] = [[] for _ in CANDIDATE_COLUMNS]
    with catalog.session() as session:
        batches = session.connection().execute(query.execution_options(yield_per=QUERY_BATCH_ROWS)).partitions()
        for rows in batches:
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                column.extend(values)
    return columns


def _copied_columns(catalog: Catalog, query: Select) -> list[list]:
    """The query's rows through PostgreSQL's COPY as CSV, parsed by Arrow: a million rows through a cursor
    cost about 9 µs each in the driver alone, more than the query; COPY streams them in a second or two.
    The CSV goes through a temporary file so memory holds one block of it at a time, never the whole."""
    compiled = query.compile(dialect=catalog.engine.dialect, compile_kwargs={"render_postcompile": True})
    connection = catalog.engine.raw_connection()
    try:
        with connection.cursor() as cursor, tempfile.TemporaryFile() as copied:
            # The grouping sorts every accepted image; PostgreSQL's default 4 MB would sort them on disk.
            cursor.execute("SET LOCAL work_mem = %s", (COPY_WORK_MEM,))
            statement = cursor.mogrify(compiled.string, compiled.params).decode()
            cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)", copied)
            connection.rollback()  # read only: ends the transaction that SET LOCAL applied to
            copied.seek(0)
            return _csv_columns(copied)
    finally:
        connection.close()


def _csv_columns(csv_file: BinaryIO) -> list[list]:
    """The candidate columns of a COPY's CSV, read a block at a time."""
    reader = pyarrow.csv.open_csv(
        csv_file,
        read_options=pyarrow.csv.ReadOptions(column_names=CANDIDATE_COLUMNS, block_size=16 << 20),
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={
                name: pyarrow.timestamp("us", tz="UTC") if name == "first_seen_at" else pyarrow.string()
                for name in CANDIDATE_COLUMNS
            },
            strings_can_be_null=True,
        ),
    )
    columns: list[list] = [[] for _ in CANDIDATE_COLUMNS]
    for batch in reader:
        for column, values in zip(columns, batch.columns, strict=True):
            column.extend(values.to_pylist())
    return columns


def _distinct(sources: str) -> str:
    """An image's sources once each, sorted: it may have several sightings from one source."""
    return sources if "," not in sources else ",".join(sorted(set(sources.split(","))))


def drop_near_duplicates(candidates: Candidates, max_distance: int) -> tuple[list[int], dict[str, str]]:
    """Keep one image per photo: the first seen (so a growing dataset keeps the members it had), dropping
    any whose perceptual hash is within `max_distance` bits of a kept one. Identical bytes are one image
    already (the lake is content-addressed); this catches the same photo re-encoded or resized by another
    source, which the quality stage can miss when two sources were validated at the same time.

    Returns the positions of the kept candidates, first seen first, and, for each dropped image, the image
    it copies."""
    ordered = sorted(
        range(len(candidates)), key=lambda position: (candidates.first_seen_at[position], candidates.sha256[position])
    )
    # Hashes of different lengths are never alike; each length is its own greedy pass.
    by_hash_length: dict[int, list[int]] = {}
    for position in ordered:
        phash = candidates.phash[position]
        if phash:
            by_hash_length.setdefault(len(phash), []).append(position)
    originals: dict[int, int] = {}
    for group in by_hash_length.values():
        selection = keep_first([candidates.phash[position] for position in group], max_distance)
        for index in selection.dropped.tolist():
            originals[group[index]] = group[selection.nearest_kept[index]]
    kept = [position for position in ordered if position not in originals]
    dropped = {
        candidates.sha256[position]: candidates.sha256[originals[position]]
        for position in ordered
        if position in originals
    }
    return kept, dropped

"""The images of a dataset version, read from the catalog in two passes so that a million of them never sit
in memory as rows: first each accepted image's sha256 and perceptual hash in the order they were first seen,
to keep one image per photo; then the kept images' addresses and sources in sha256 order, a batch at a time,
for the shards. Both passes read only the catalog's covering index and, on PostgreSQL, arrive through COPY."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any, BinaryIO

import pyarrow
import pyarrow.csv
from sqlalchemy import Select, func, select

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting
from pipelines.near_duplicates import keep_first
from pipelines.stitch.params import ShardParams

QUERY_BATCH_ROWS = 10_000  # rows fetched from the catalog at a time through a cursor
COPY_BLOCK_BYTES = 16 << 20  # CSV read at a time from a COPY: about 60,000 candidate rows
COPY_WORK_MEM = "256MB"  # PostgreSQL's sort memory for the candidate queries: a million rows sort in it


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset version: its bytes' address and where it goes."""

    sha256: str
    raw_key: str
    format: str
    sources: tuple[str, ...]
    split: str = ""


@dataclass(frozen=True)
class OnePerPhoto:
    """The first pass's result: the sha256 of every image the version keeps, sorted, and each dropped near
    copy with the image it copies: about 120 bytes per image, all a build holds while its shards stream."""

    kept: list[str]
    dropped: dict[str, str]


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


def _accepted(params: ShardParams, *columns: Any) -> Select:
    """Accepted images with at least one sighting inside the filters, one row each."""
    query = (
        select(*columns)
        .join(Sighting, Sighting.image_sha256 == Image.sha256)
        .where(Image.status == ImageStatus.ACCEPTED)
    )
    if params.sources:
        query = query.where(Sighting.source.in_(params.sources))
    if params.since:
        query = query.where(Sighting.fetched_at >= datetime.combine(params.since, clock_time(), UTC))
    if params.until:
        query = query.where(Sighting.fetched_at < datetime.combine(params.until, clock_time(), UTC))
    return query.group_by(Image.sha256)


def first_seen_query(params: ShardParams) -> Select:
    """The first pass: sha256 and perceptual hash, first seen first (so a growing dataset keeps the
    members it had)."""
    return _accepted(params, Image.sha256, Image.phash).order_by(Image.first_seen_at, Image.sha256)


def member_query(params: ShardParams) -> Select:
    """The second pass: what a shard needs of each image, its sources joined, in sha256 order (the index's)."""
    columns = (Image.sha256, Image.raw_key, Image.format, func.aggregate_strings(Sighting.source, ","))
    return _accepted(params, *columns).order_by(Image.sha256)


def keep_one_per_photo(catalog: Catalog, params: ShardParams) -> OnePerPhoto:
    """Keep one image per photo: the first seen, dropping any whose perceptual hash is within the params'
    distance of a kept one. Identical bytes are one image already (the lake is content-addressed); this
    catches the same photo re-encoded or resized by another source, which the quality stage can miss when
    two sources were validated at the same time."""
    first_seen: list[str] = []
    phashes: list[str | None] = []
    for batch in query_batches(catalog, first_seen_query(params), ("sha256", "phash")):
        first_seen.extend(batch.column(0).to_pylist())
        phashes.extend(batch.column(1).to_pylist())
    # Hashes of different lengths are never alike; each length is its own greedy pass.
    by_hash_length: dict[int, list[int]] = {}
    for position, phash in enumerate(phashes):
        if phash:
            by_hash_length.setdefault(len(phash), []).append(position)
    dropped: dict[str, str] = {}
    for group in by_hash_length.values():
        selection = keep_first([phashes[position] for position in group], params.near_duplicate_distance)
        for index in selection.dropped.tolist():
            dropped[first_seen[group[index]]] = first_seen[group[selection.nearest_kept[index]]]
    kept = sorted(sha256 for sha256 in first_seen if sha256 not in dropped)
    return OnePerPhoto(kept, dropped)


def stream_members(catalog: Catalog, params: ShardParams, kept: Sequence[str]) -> Iterator[DatasetImage]:
    """The kept images (sorted sha256s, as `keep_one_per_photo` found them) with their addresses, sources
    and splits, in sha256 order, a batch at a time. Raises when one of them is no longer an accepted image:
    the catalog changed between the passes, and the plan must be made again."""
    position = 0
    for batch in query_batches(catalog, member_query(params), ("sha256", "raw_key", "format", "sources")):
        rows = zip(*(column.to_pylist() for column in batch.columns), strict=True)
        for sha256, raw_key, image_format, sources in rows:
            if position < len(kept) and kept[position] < sha256:
                raise RuntimeError(f"image {kept[position]} stopped being accepted while the build was planned")
            if position < len(kept) and kept[position] == sha256:
                position += 1
                split = split_of(sha256, params.split_ratios)
                yield DatasetImage(sha256, raw_key, image_format, tuple(sorted(set(sources.split(",")))), split)
    if position < len(kept):
        raise RuntimeError(f"image {kept[position]} stopped being accepted while the build was planned")


def query_batches(catalog: Catalog, query: Select, names: Sequence[str]) -> Iterator[pyarrow.RecordBatch]:
    """A query's rows as Arrow batches of strings. PostgreSQL's go through COPY as CSV: a million rows through
    a cursor cost about 9 µs each in the driver alone, more than the query; COPY streams them in a second or
    two. SQLite's come through the cursor, Core rows without ORM loading."""
    if catalog.engine.dialect.driver == "psycopg2":
        yield from _copied_batches(catalog, query, names)
        return
    with catalog.session() as session:
        batches = session.connection().execute(query.execution_options(yield_per=QUERY_BATCH_ROWS)).partitions()
        for rows in batches:
            columns = [pyarrow.array(values, pyarrow.string()) for values in zip(*rows, strict=True)]
            yield pyarrow.RecordBatch.from_arrays(columns, names=list(names))


def _copied_batches(catalog: Catalog, query: Select, names: Sequence[str]) -> Iterator[pyarrow.RecordBatch]:
    """Through a temporary file, so memory holds one block of the CSV at a time, never the whole."""
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
            yield from _csv_batches(copied, names)
    finally:
        connection.close()


def _csv_batches(csv_file: BinaryIO, names: Sequence[str]) -> Iterator[pyarrow.RecordBatch]:
    yield from pyarrow.csv.open_csv(
        csv_file,
        read_options=pyarrow.csv.ReadOptions(column_names=list(names), block_size=COPY_BLOCK_BYTES),
        convert_options=pyarrow.csv.ConvertOptions(
            column_types=dict.fromkeys(names, pyarrow.string()), strings_can_be_null=True
        ),
    )

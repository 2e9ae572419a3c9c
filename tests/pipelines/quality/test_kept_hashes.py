"""The accepted images' hashes kept in the lake between runs: a later run reads them from the lake and only
the images accepted since from the catalog, finds copies of images accepted long before, and rebuilds from
the catalog when the two disagree."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event, update

from pipelines.catalog import Catalog, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.quality import validate_batch
from pipelines.quality.kept_hashes import INDEX_PREFIX, KeptHashes, kept_hashes
from pipelines.raw_zone import ingest_photo
from pipelines.storage import FileStore
from tests.corpus import color_photo, near_duplicate

HASH_LENGTH = 16


def offer(store: FileStore, catalog: Catalog, data: bytes, name: str) -> str:
    record = SightingRecord("local", name, f"file:///{name}")
    return ingest_photo(store, catalog, data, record, run_id="ingest", name_hint=name).sha256


def rebuilt(store: FileStore, catalog: Catalog, tmp_path: Path) -> KeptHashes:
    """The hashes as a run with an empty lake index would read them."""
    return kept_hashes(FileStore(tmp_path / "empty-lake"), catalog, HASH_LENGTH)


def same(first: KeptHashes, second: KeptHashes) -> bool:
    return all(
        np.array_equal(getattr(first, name), getattr(second, name)) for name in ("sha256", "codes", "width", "height")
    )


@pytest.fixture
def statements(catalog: Catalog) -> list[str]:
    seen: list[str] = []
    event.listen(catalog.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_later_run_reads_the_lake_and_only_what_was_accepted_since(
    store: FileStore, catalog: Catalog, tmp_path: Path, statements: list[str]
) -> None:
    originals = [color_photo(seed, size=(320, 240)) for seed in range(12)]
    for number, data in enumerate(originals):
        offer(store, catalog, data, f"photo-{number}.jpg")
    assert validate_batch(store, catalog, "day-1")["accepted"] == 12
    assert len(kept_hashes(store, catalog, HASH_LENGTH)) == 12

    copies = [near_duplicate(Image.open(io.BytesIO(data))) for data in originals[:3]]
    for number, data in enumerate(copies):
        offer(store, catalog, data, f"copy-{number}.jpg")
    for seed in range(100, 104):
        offer(store, catalog, color_photo(seed, size=(320, 240)), f"new-{seed}.jpg")
    statements.clear()
    summary = validate_batch(store, catalog, "day-2")
    assert summary["by_reason"] == {"near duplicate": 3}, "copies of images accepted on day 1 are found"
    reads = [sql for sql in statements if "phash" in sql and "FROM images" in sql and "count" not in sql.lower()]
    assert reads and all("verdict_at >" in sql for sql in reads), "day 1's hashes came from the lake"

    kept = kept_hashes(store, catalog, HASH_LENGTH)
    assert len(kept) == 16 and same(kept, rebuilt(store, catalog, tmp_path))
    assert list(kept.sha256) == sorted(kept.sha256)
    versions = [key for key in store.list(f"{INDEX_PREFIX}/") if key.endswith(".npz")]
    assert len(versions) == 2, "the two newest versions are kept"


def test_a_lake_index_the_catalog_disagrees_with_is_rebuilt(store: FileStore, catalog: Catalog, tmp_path: Path) -> None:
    hashes = [offer(store, catalog, color_photo(seed, size=(320, 240)), f"p{seed}.jpg") for seed in range(6)]
    validate_batch(store, catalog, "day-1")
    assert len(kept_hashes(store, catalog, HASH_LENGTH)) == 6
    with catalog.session() as session:  # an image taken out of the accepted set after the index was written
        session.execute(update(ImageRow).where(ImageRow.sha256 == hashes[0]).values(status="rejected"))
    kept = kept_hashes(store, catalog, HASH_LENGTH)
    assert len(kept) == 5 and hashes[0].encode() not in set(kept.sha256)
    assert same(kept, rebuilt(store, catalog, tmp_path))

"""The local source: the shipped sample photos by default, or any folder, stored once."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.catalog import Image as ImageRow
from pipelines.settings import Settings
from pipelines.sources.local import (
    SAMPLE_PHOTOS,
    discover_photos,
    ingest_files,
    path_batches,
    photos_to_ingest,
    sample_photos,
)
from pipelines.storage import FileStore


def write_photo(path: Path, color: str, image_format: str = "JPEG") -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format=image_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def test_sample_folders_hold_the_packages_real_photographs() -> None:
    names = {path.name for path in sample_photos()}
    assert names == SAMPLE_PHOTOS
    assert {"astronaut.png", "coffee.png", "chelsea.png", "china.jpg", "flower.jpg", "grace_hopper.jpg"} <= names


def test_folder_choice(tmp_path: Path) -> None:
    mine = write_photo(tmp_path / "mine" / "a.jpg", "red")
    assert photos_to_ingest(str(tmp_path / "mine"), Settings(home=tmp_path)) == [mine]
    assert photos_to_ingest(None, Settings(home=tmp_path, local_photos_dir=tmp_path / "mine")) == [mine]
    assert photos_to_ingest(None, Settings(home=tmp_path)) == sample_photos()


def test_discover_is_recursive_sorted_and_skips_other_files(tmp_path: Path) -> None:
    write_photo(tmp_path / "b.JPG", "red")
    write_photo(tmp_path / "nested" / "a.png", "blue", "PNG")
    (tmp_path / "notes.txt").write_text("not a photo")
    assert discover_photos([tmp_path]) == [tmp_path / "b.JPG", tmp_path / "nested" / "a.png"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_photos([tmp_path / "absent"])


def test_path_batches() -> None:
    paths = [Path(f"/p/{number}.jpg") for number in range(5)]
    assert path_batches(paths, 2) == [["/p/0.jpg", "/p/1.jpg"], ["/p/2.jpg", "/p/3.jpg"], ["/p/4.jpg"]]
    assert path_batches([], 2) == []
    with pytest.raises(ValueError):
        path_batches(paths, 0)


def test_ingest_counts_duplicates_and_unreadable_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lake")
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    photos = [write_photo(tmp_path / "in" / f"{color}.jpg", color) for color in ("red", "green", "blue")]
    copy = tmp_path / "in" / "copy-of-red.jpg"
    copy.write_bytes(photos[0].read_bytes())
    offered = [*photos, copy, tmp_path / "in" / "vanished.jpg"]

    counts = ingest_files(offered, store, catalog, run_id="run-1", license="CC0-1.0")
    assert counts == {"offered": 4, "objects_written": 3, "images_added": 3, "sightings_added": 3, "unreadable": 1}
    assert catalog.count(ImageRow) == 3 and catalog.count(Sighting, license="CC0-1.0") == 3

    again = ingest_files(offered, store, catalog, run_id="run-2")
    assert again == {"offered": 4, "objects_written": 0, "images_added": 0, "sightings_added": 0, "unreadable": 1}
    assert len(list(store.list("raw/"))) == 3


def test_links_special_and_oversized_files_are_refused_with_a_recorded_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "lake")
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    folder = tmp_path / "in"
    photo = write_photo(folder / "photo.jpg", "red")
    secret = tmp_path / "secret.key"
    secret.write_text("do not ingest me")
    (folder / "passwd.jpg").symlink_to(secret)
    (folder / "inside-link.jpg").symlink_to(photo)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "huge.jpg").write_bytes(b"\xff\xd8" + bytes(2048))
    monkeypatch.setattr("pipelines.sources.local.MAX_FILE_BYTES", 1024)

    found = discover_photos([folder])
    counts = ingest_files(found, store, catalog, run_id="run-1")

    assert [path.name for path in found] == ["huge.jpg", "inside-link.jpg", "passwd.jpg", "photo.jpg", "pipe.jpg"]
    assert counts["offered"] == 1 and counts["unreadable"] == 4
    with catalog.session() as session:
        reasons = {Path(row.source_id).name: row.reason for row in session.query(FetchFailure)}
    assert "symbolic link" in reasons["passwd.jpg"] and "symbolic link" in reasons["inside-link.jpg"]
    assert "not a regular file" in reasons["pipe.jpg"] and "over the 1024 byte limit" in reasons["huge.jpg"]
    assert not any(b"do not ingest me" in store.get(key) for key in store.list("raw/"))

"""Photos from a local folder: the operator's own collection, or by default the real photographs that
ship inside the scikit-image, scikit-learn and matplotlib packages (so a fresh install has data to run on).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pipelines.catalog import Catalog, SightingRecord
from pipelines.fan_out import batched
from pipelines.licenses import from_term
from pipelines.raw_zone import RawZoneWriter, content_digest
from pipelines.settings import Settings, get_settings
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

SOURCE = "local"
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
SAMPLE_PHOTOS = frozenset(
    {
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "retina.jpg",
        "china.jpg",
        "flower.jpg",
        "grace_hopper.jpg",
        "Minduka_Present_Blue_Pack.png",
    }
)
# A larger file is refused unread: even a 16-bit TIFF scan of a large print stays below this.
MAX_FILE_BYTES = 512 * 1024 * 1024
# Where each package keeps the sample images it ships, relative to the package folder.
SAMPLE_PHOTO_FOLDERS = {
    "skimage": "data",
    "sklearn": "datasets/images",
    "matplotlib": "mpl-data/sample_data",
}


def sample_photo_folders() -> list[Path]:
    """The installed packages' sample image folders, found without importing the packages."""
    folders = []
    for package, relative in SAMPLE_PHOTO_FOLDERS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            logger.warning("package %s is not installed; its sample photos are skipped", package)
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / relative
        if folder.is_dir():
            folders.append(folder)
    return folders


def sample_photos() -> list[Path]:
    """The real color photographs among the packages' samples (the folders also hold charts, logos, text
    and grayscale test images, which are no material for a colorizer)."""
    return [path for path in discover_photos(sample_photo_folders()) if path.name in SAMPLE_PHOTOS]


def photos_to_ingest(folder: str | None = None, settings: Settings | None = None) -> list[Path]:
    """The photos to read: the folder asked for, else the configured one, else the packages' sample photos."""
    settings = settings or get_settings()
    if folder:
        return discover_photos([Path(folder)])
    if settings.local_photos_dir:
        return discover_photos([settings.local_photos_dir])
    return sample_photos()


def discover_photos(folders: Iterable[Path]) -> list[Path]:
    """Entries named like images under `folders` (recursively, by suffix), sorted so every run sees the same
    order. Links and special files are kept: `ingest_files` records why it refuses them, so none goes missing
    without a trace."""
    photos: set[Path] = set()
    for folder in folders:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"photo folder {folder} does not exist or is not a folder")
        photos.update(
            path
            for path in folder.rglob("*")
            if path.suffix.lower() in PHOTO_SUFFIXES and (path.is_symlink() or not path.is_dir())
        )
    return sorted(photos)


def _refusal(path: Path) -> str | None:
    """Why `path` is not read, or None for a regular file of a sane size. Links are never followed: one
    could pull any file the worker can read (a key, /etc/shadow) into the lake."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link (to {os.readlink(path)}): links are not followed"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a pipe, socket or device): not read"
    if info.st_size > MAX_FILE_BYTES:
        return f"{info.st_size} bytes, over the {MAX_FILE_BYTES} byte limit for one photo"
    return None


def path_batches(paths: list[Path], batch_size: int) -> list[list[str]]:
    """Paths split for mapped tasks, as strings (which travel through XCom)."""
    return [[str(path) for path in batch] for batch in batched(paths, batch_size)]


def ingest_files(
    paths: Iterable[Path], store: ObjectStore, catalog: Catalog, run_id: str, license: str | None = None
) -> dict[str, int]:
    """Store each file in the raw zone with a `local` sighting; returns counts for the run's summary.

    The content hash is the source id: a local file has no identity of its own beyond its bytes. A file
    that cannot or must not be read is recorded in the catalog's fetch failures with the reason, never fatal
    to the batch.
    """
    counts: Counter[str] = Counter()
    with RawZoneWriter(store, catalog, run_id) as writer:
        for path in paths:
            path = Path(path)
            try:
                refusal = _refusal(path)
                data = b"" if refusal else path.read_bytes()
            except OSError as error:
                refusal = f"cannot read: {error.strerror or error}"
            if refusal:
                logger.error("skipping %s: %s", path, refusal)
                catalog.add_fetch_failure(SOURCE, str(path), path.absolute().as_uri(), refusal, run_id)
                counts["unreadable"] += 1
                continue
            digest = content_digest(data)
            sighting = SightingRecord(
                source=SOURCE,
                source_id=digest,
                url=path.resolve().as_uri(),
                license=from_term(license),
                license_text=license,
            )
            stored = writer.add(data, sighting, name_hint=path.name, sha256=digest)
            counts["offered"] += 1
            if stored is not None:
                written = "" if stored.object_written else " (already stored)"
                logger.info("%s -> %s%s", path, stored.image.raw_key, written)
    counts.update(writer.counts)
    return dict(counts)

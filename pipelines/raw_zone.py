"""The raw zone: original bytes, content-addressed, plus the catalog rows that say where they came from.

Every source hands its fetched bytes to a `RawZoneWriter` (one photo: `ingest_photo`). Keys are
`raw/<sha256[:2]>/<sha256>.<ext>`, so storing the same photo twice (a rerun, or the same photo from two
sources) costs nothing and leaves one object; each (source, source id) pair becomes one sighting.

A photo a takedown withdrew is refused here, by its source id before it is fetched and by its bytes after:
nothing is written, and the refusal is a fetch failure naming the takedown, so it is never silent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass

from PIL import Image

from pipelines.catalog import Catalog, NewImage, SightingRecord, Tombstones
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

# Pillow format names to the extension the raw key carries; MPO is the multi-picture JPEG cameras write.
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp"}
UNKNOWN_EXTENSION = "bin"
RAW_PREFIX = "raw"
QUARANTINE_PREFIX = "quarantine"


def sniff_extension(data: bytes, fallback: str | None = None) -> str:
    """The extension for `data` judged by its content; the name's suffix only when Pillow cannot tell.

    Only the header is read. Files Pillow refuses are still kept (the quality stage rejects them with a
    reason), so nothing a source offered is lost without a record.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
    except Exception:  # any undecodable header: unknown format, judged later
        image_format = ""
    if image_format in EXTENSIONS:
        return EXTENSIONS[image_format]
    suffix = (fallback or "").lower().lstrip(".")
    return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix) else UNKNOWN_EXTENSION


def content_digest(data: bytes) -> str:
    """The SHA-256 that names an image everywhere in Colorflow."""
    return hashlib.sha256(data).hexdigest()


def raw_key(sha256: str, extension: str) -> str:
    return f"{RAW_PREFIX}/{sha256[:2]}/{sha256}.{extension}"


def quarantine_key(sha256: str, raw_key: str) -> str:
    """Where a rejected image's bytes are kept for audit, beside (not instead of) its raw object."""
    extension = raw_key.rsplit(".", 1)[-1] if "." in raw_key.rsplit("/", 1)[-1] else UNKNOWN_EXTENSION
    return f"{QUARANTINE_PREFIX}/{sha256}.{extension}"


@dataclass(frozen=True)
class IngestOutcome:
    """What storing one offered photo changed; all False on a rerun."""

    sha256: str
    key: str
    object_written: bool
    image_added: bool
    sighting_added: bool


@dataclass(frozen=True)
class StoredObject:
    """A photo's bytes, in the lake under their content address, waiting for their catalog rows."""

    image: NewImage
    sighting: SightingRecord
    object_written: bool


def store_object(
    store: ObjectStore, data: bytes, sighting: SightingRecord, name_hint: str | None = None, sha256: str | None = None
) -> StoredObject:
    """Write `data` to the raw zone unless it is there; safe to run from many threads at once (the hash, the
    format sniff and the upload are the per-photo work worth spreading)."""
    sha256 = sha256 or content_digest(data)
    extension = sniff_extension(data, fallback=(name_hint or "").rpartition(".")[2] if name_hint else None)
    key = raw_key(sha256, extension)
    written = store.put_if_absent(key, data)
    return StoredObject(NewImage(sha256, key, extension, len(data)), sighting, written)


class RawZoneWriter:
    """Stores photos as they come and records their rows in batches: a few catalog transactions per task
    instead of two per photo. Objects are always written before the rows that name them, so a task killed
    between the two leaves objects a retry finds in place (`put_if_absent`) and rows it then adds; nothing is
    lost or doubled. Use it as a context manager: what is still queued is recorded on the way out."""

    def __init__(self, store: ObjectStore, catalog: Catalog, run_id: str, batch_size: int = 200) -> None:
        self.store, self.catalog, self.run_id, self.batch_size = store, catalog, run_id, batch_size
        self.counts: Counter[str] = Counter(objects_written=0, images_added=0, sightings_added=0)
        self.tombstones: Tombstones = catalog.tombstones()
        self._refusals = threading.Lock()
        self._queued: list[StoredObject] = []

    def __enter__(self) -> RawZoneWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()

    def refuses(self, sighting: SightingRecord, sha256: str | None = None) -> bool:
        """Whether a takedown withdrew this photo (by source id, or by `sha256` once its bytes are in hand);
        a refusal is recorded as the run's fetch failure naming the takedown. Safe from many threads."""
        takedown = self.tombstones.takedown_of(sighting, sha256)
        if takedown is None:
            return False
        reason = f"withdrawn by takedown {takedown}: refused"
        logger.warning("refusing %s %s: %s", sighting.source, sighting.source_id, reason)
        self.catalog.add_fetch_failure(sighting.source, sighting.source_id, sighting.url, reason, self.run_id)
        with self._refusals:
            self.counts["withdrawn"] += 1
        return True

    def write(
        self, data: bytes, sighting: SightingRecord, name_hint: str | None = None, sha256: str | None = None
    ) -> StoredObject | None:
        """Write one photo's bytes to the lake unless a takedown refuses them (None); safe from many threads,
        with the rows queued by the caller (`queue`)."""
        sha256 = sha256 or content_digest(data)
        if self.refuses(sighting, sha256):
            return None
        return store_object(self.store, data, sighting, name_hint, sha256)

    def add(
        self, data: bytes, sighting: SightingRecord, name_hint: str | None = None, sha256: str | None = None
    ) -> StoredObject | None:
        """Store one photo's bytes now and queue its rows; None when a takedown refuses it."""
        stored = self.write(data, sighting, name_hint, sha256)
        if stored is not None:
            self.queue(stored)
        return stored

    def queue(self, stored: StoredObject) -> None:
        """Queue the rows of an object another thread stored; a full batch is recorded at once."""
        self._queued.append(stored)
        if len(self._queued) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        images = list({stored.image.sha256: stored.image for stored in queued}.values())
        added = self.catalog.add_images(images)
        sightings = self.catalog.add_sightings(
            [(stored.image.sha256, stored.sighting) for stored in queued], self.run_id
        )
        self.counts["objects_written"] += sum(stored.object_written for stored in queued)
        self.counts["images_added"] += len(added)
        self.counts["sightings_added"] += sightings


def ingest_photo(
    store: ObjectStore,
    catalog: Catalog,
    data: bytes,
    sighting: SightingRecord,
    run_id: str,
    name_hint: str | None = None,
    sha256: str | None = None,
) -> IngestOutcome | None:
    """Store `data` in the raw zone (if new) and record the image and its sighting in the catalog, for one
    photo (`RawZoneWriter` does the same for many); None when a takedown refuses it.

    The object is written before the catalog rows, so a row never points at a missing object.
    `sha256` may be passed when the caller already hashed `data` (to use it as a source id).
    """
    with RawZoneWriter(store, catalog, run_id) as writer:
        stored = writer.write(data, sighting, name_hint, sha256)
    if stored is None:
        return None
    image_added = catalog.add_image(**asdict(stored.image))
    sighting_added = catalog.add_sighting(stored.image.sha256, sighting, run_id)
    return IngestOutcome(stored.image.sha256, stored.image.raw_key, stored.object_written, image_added, sighting_added)

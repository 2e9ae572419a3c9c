"""The raw zone: original bytes, content-addressed, plus the catalog rows that say where they came from.

Every source hands its fetched bytes to `ingest_photo`. Keys are `raw/<sha256[:2]>/<sha256>.<ext>`, so
storing the same photo twice (a rerun, or the same photo from two sources) costs nothing and leaves one
object; each (source, source id) pair becomes one sighting.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass

from PIL import Image

from pipelines.catalog import Catalog, SightingRecord
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


def ingest_photo(
    store: ObjectStore,
    catalog: Catalog,
    data: bytes,
    sighting: SightingRecord,
    run_id: str,
    name_hint: str | None = None,
    sha256: str | None = None,
) -> IngestOutcome:
    """Store `data` in the raw zone (if new) and record the image and its sighting in the catalog.

    The object is written before the catalog rows, so a row never points at a missing object.
    `sha256` may be passed when the caller already hashed `data` (to use it as a source id).
    """
    sha256 = sha256 or content_digest(data)
    extension = sniff_extension(data, fallback=(name_hint or "").rpartition(".")[2] if name_hint else None)
    key = raw_key(sha256, extension)
    object_written = store.put_if_absent(key, data)
    image_added = catalog.add_image(sha256=sha256, raw_key=key, format=extension, byte_size=len(data))
    sighting_added = catalog.add_sighting(sha256, sighting, run_id)
    return IngestOutcome(sha256, key, object_written, image_added, sighting_added)

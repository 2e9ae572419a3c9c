"""The perceptual hashes of every accepted image, kept in the lake between validation runs.

Every run compares its new images with all those accepted before it (`duplicates.mark_duplicates`). Reading a
million accepted hashes back from the catalog and decoding them from hex each day would cost more than
the search itself, so the hashes live in the lake as arrays, one version per catalog state:
`indexes/near_duplicates/hex<length>/<verdict time>-<count>.npz`, with `latest.json` naming the newest.
A run loads the latest version and adds only the images accepted after it (their verdict time is later
than the version's); the merged arrays are sorted by sha256, so the outcome is the one a rebuild from the
catalog gives. When the catalog no longer agrees with the version plus the new images (an image left the
accepted set), the version is not trusted and the arrays are rebuilt from the catalog.

Versions are immutable objects: a run that dies while writing one leaves `latest.json` on the previous
version. The two newest versions are kept.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import ColumnElement, func, select

from pipelines.catalog import Catalog, Image, ImageStatus
from pipelines.near_duplicates import hash_codes
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

INDEX_PREFIX = "indexes/near_duplicates"
VERSIONS_KEPT = 2


@dataclass(frozen=True)
class KeptHashes:
    """Accepted images with a hash of one length, in sha256 order: sha256 (bytes of hex), hash codes (rows of
    `near_duplicates.hash_codes`), width and height, and the latest verdict time they include."""

    sha256: np.ndarray
    codes: np.ndarray
    width: np.ndarray
    height: np.ndarray
    verdict_at: datetime | None

    def __len__(self) -> int:
        return len(self.sha256)

    def merged(self, other: KeptHashes) -> KeptHashes:
        order = np.argsort(np.concatenate([self.sha256, other.sha256]), kind="stable")
        times = [time for time in (self.verdict_at, other.verdict_at) if time is not None]
        return KeptHashes(
            np.concatenate([self.sha256, other.sha256])[order],
            np.concatenate([self.codes, other.codes])[order],
            np.concatenate([self.width, other.width])[order],
            np.concatenate([self.height, other.height])[order],
            max(times, default=None),
        )


def kept_hashes(store: ObjectStore, catalog: Catalog, hash_length: int) -> KeptHashes:
    """Every accepted image's hash of `hash_length` hex digits: the latest version in the lake and the images
    accepted since, or all of them from the catalog when there is no version or it no longer holds."""
    folder = f"{INDEX_PREFIX}/hex{hash_length}"
    accepted = _accepted_count(catalog, hash_length)
    latest_key = f"{folder}/latest.json"
    if store.exists(latest_key):
        version = _load(store, json.loads(store.get(latest_key)))
        added = _accepted_since(catalog, hash_length, version.verdict_at)
        if len(version) + len(added) == accepted:
            logger.info("kept hashes: %d from the lake, %d accepted since", len(version), len(added))
            kept = version.merged(added)
            if len(added):
                _save(store, folder, kept)
            return kept
        logger.warning(
            "kept hashes in the lake (%d, with %d accepted since) disagree with the catalog's %d; rebuilding",
            len(version),
            len(added),
            accepted,
        )
    kept = _accepted_since(catalog, hash_length, None)
    logger.info("kept hashes: %d read from the catalog", len(kept))
    if len(kept):
        _save(store, folder, kept)
    return kept


def _accepted(hash_length: int) -> ColumnElement[bool]:
    return (Image.status == ImageStatus.ACCEPTED) & Image.phash.is_not(None) & (func.length(Image.phash) == hash_length)


def _accepted_count(catalog: Catalog, hash_length: int) -> int:
    with catalog.session() as session:
        return int(session.scalar(select(func.count()).select_from(Image).where(_accepted(hash_length))))


def _accepted_since(catalog: Catalog, hash_length: int, after: datetime | None) -> KeptHashes:
    query = select(Image.sha256, Image.phash, Image.width, Image.height, Image.verdict_at).where(_accepted(hash_length))
    if after is not None:
        query = query.where(Image.verdict_at > after)
    with catalog.session() as session:
        rows = session.execute(query.order_by(Image.sha256)).all()
    digits = hash_length + hash_length % 2
    return KeptHashes(
        np.array([row.sha256 for row in rows], dtype="S64"),
        hash_codes([row.phash for row in rows]) if rows else np.zeros((0, digits // 2), dtype=np.uint8),
        np.array([row.width or 0 for row in rows], dtype=np.int32),
        np.array([row.height or 0 for row in rows], dtype=np.int32),
        max((row.verdict_at for row in rows if row.verdict_at is not None), default=after),
    )


def _save(store: ObjectStore, folder: str, kept: KeptHashes) -> None:
    stamp = kept.verdict_at.strftime("%Y%m%dT%H%M%S%f") if kept.verdict_at else "none"
    key = f"{folder}/{stamp}-{len(kept)}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, sha256=kept.sha256, codes=kept.codes, width=kept.width, height=kept.height)
    store.put(key, buffer.getvalue())
    verdict_at = kept.verdict_at.isoformat() if kept.verdict_at else None
    store.put(f"{folder}/latest.json", json.dumps({"key": key, "verdict_at": verdict_at}).encode())
    for old in sorted(name for name in store.list(f"{folder}/") if name.endswith(".npz"))[:-VERSIONS_KEPT]:
        store.delete(old)


def _load(store: ObjectStore, latest: dict[str, str | None]) -> KeptHashes:
    with np.load(io.BytesIO(store.get(str(latest["key"])))) as arrays:
        return KeptHashes(
            arrays["sha256"],
            arrays["codes"],
            arrays["width"],
            arrays["height"],
            datetime.fromisoformat(latest["verdict_at"]) if latest["verdict_at"] else None,
        )

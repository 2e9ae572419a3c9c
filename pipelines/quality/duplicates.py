"""The same photo in other bytes: which images of a batch duplicate, exactly (the same decoded pixels) or
nearly (a close perceptual hash), an image kept before them, accepted in the catalog or earlier in the batch.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps
from sqlalchemy import select

from pipelines.catalog import Catalog, Image
from pipelines.near_duplicates import hash_codes, keep_first
from pipelines.quality.kept_hashes import kept_hashes
from pipelines.settings import MAX_PIXELS
from pipelines.storage import ObjectStore

# A perceptual hash says nothing about an image without structure (a flat fill hashes like any other flat
# fill), so images whose lightness barely varies (CIE L* standard deviation, 0-100) are not compared.
MIN_LIGHTNESS_SPREAD_FOR_PHASH = 1.0


def _keep_preference(row: Mapping[str, Any]) -> tuple:
    """Which of two copies to keep: the licensed one, then the colored one, then the larger, then the one
    seen first (the original, before sites re-served it), then by sha256.

    Plain sha256 order would be just as deterministic, but it would often keep a gray or thumbnail copy
    and reject the color original as its duplicate. First-seen times are recorded once, so reruns agree.
    """
    toned = bool(row["is_grayscale"]) or bool(row["is_sepia"])
    size = -(row["width"] * row["height"])
    return (not row["license_allowed"], toned, size, row["first_seen_at"], row["sha256"])


def pixel_digest(data: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    """SHA-256 of the pixels as shown (orientation applied, RGBA), or None when they cannot be read."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                return None
            shown = ImageOps.exif_transpose(image).convert("RGBA")
            return hashlib.sha256(f"{shown.size}".encode() + shown.tobytes()).hexdigest()
    except Exception:  # an unreadable copy is simply not proven identical
        return None


def mark_duplicates(
    store: ObjectStore, catalog: Catalog, rows: list[dict[str, Any]], max_distance: int, max_pixels: int = MAX_PIXELS
) -> None:
    """Fill `duplicate_of` and `near_duplicate_of` in `rows` (facts-table rows) in place.

    The raw zone is content-addressed, so identical bytes are already one image (a second source becomes a
    second sighting, not a duplicate). What remains is the same photo in different bytes:
    - exact duplicate: the same decoded pixels as a kept image (re-saved, metadata stripped). Found among
      images with an identical perceptual hash and size, then confirmed by hashing the pixels, so only
      suspects are decoded again.
    - near duplicate: perceptual hash within `max_distance` bits of a kept image (resized, re-encoded).
    Kept images are those already accepted in the catalog (their hashes kept in the lake, `kept_hashes`), then
    this batch's images in `_keep_preference` order, each kept unless it matches one kept before it. The
    order is total, so reruns agree.
    """
    comparable = [
        row
        for row in rows
        if row["decodes"] and row["phash"] and (row["brightness_std"] or 0.0) >= MIN_LIGHTNESS_SPREAD_FOR_PHASH
    ]
    if not comparable:
        return
    kept = kept_hashes(store, catalog, len(comparable[0]["phash"]))
    ordered = sorted(comparable, key=_keep_preference)
    codes = np.concatenate([kept.codes, hash_codes([row["phash"] for row in ordered])])
    selection = keep_first(codes, max_distance, already_kept=len(kept))
    digests: dict[str, str | None] = {}

    def at(position: int) -> dict[str, Any]:
        if position >= len(kept):
            return ordered[position - len(kept)]
        sha256 = kept.sha256[position].decode()
        return {"sha256": sha256, "width": int(kept.width[position]), "height": int(kept.height[position])}

    def digest(row: Mapping[str, Any]) -> str | None:
        if row["sha256"] not in digests:
            raw_key = row.get("raw_key") or _raw_key(catalog, row["sha256"])
            digests[row["sha256"]] = pixel_digest(store.get(raw_key), max_pixels) if raw_key else None
        return digests[row["sha256"]]

    for position in selection.dropped.tolist():
        row = at(position)
        identical = [
            suspect
            for suspect in map(at, selection.kept_twins(position))
            if (suspect["width"], suspect["height"]) == (row["width"], row["height"])
        ]
        twin = next((other for other in identical if digest(other) and digest(other) == digest(row)), None)
        if twin is not None:
            row["duplicate_of"] = twin["sha256"]
        else:
            row["near_duplicate_of"] = at(selection.nearest_kept[position])["sha256"]


def _raw_key(catalog: Catalog, sha256: str) -> str | None:
    with catalog.session() as session:
        return session.scalar(select(Image.raw_key).where(Image.sha256 == sha256))

"""The table the row suite judges: one row per pending image with its `pipelines.image_facts` measurements
and what only the batch and the catalog know (whether a sighting's license is allowed, and exact or near
duplicates, marked by `duplicates`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import pandas as pd

from pipelines.catalog import Catalog
from pipelines.image_facts import ImageFacts, extract_facts
from pipelines.licenses import license_label
from pipelines.quality.duplicates import mark_duplicates
from pipelines.quality.pending import Offer, PendingImage
from pipelines.settings import MAX_PIXELS, NEAR_DUPLICATE_DISTANCE
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 1_000  # a log line per this many images measured: progress without a line per image

FACT_COLUMNS = tuple(field.name for field in fields(ImageFacts))
NUMERIC_FACTS = (
    "byte_size",
    "width",
    "height",
    "aspect",
    "exif_orientation",
    "frames",
    "bit_depth",
    "colorfulness",
    "mean_chroma",
    "hue_spread",
    "brightness_mean",
    "brightness_std",
)
INTEGER_FACTS = frozenset({"byte_size", "width", "height", "exif_orientation", "frames", "bit_depth"})
PENDING_COLUMNS = ("sha256", "raw_key", "first_seen_at", "sources", "license", "license_allowed")
TABLE_COLUMNS = (
    *PENDING_COLUMNS,
    *FACT_COLUMNS,
    "duplicate_of",
    "near_duplicate_of",
)


def license_verdict(
    offers: Iterable[Offer], allow_list: Iterable[str], unlicensed_sources: Iterable[str] = ()
) -> tuple[bool, str]:
    """(allowed, license as a person reads it). One sighting under an allowed license is permission enough,
    since the same bytes offered twice are the same photo."""
    allowed, trusted = set(allow_list), set(unlicensed_sources)
    offers = list(offers)
    for offer in offers:
        if offer.license in allowed:
            return True, license_label(offer.license, offer.license_text)
        if offer.license is None and offer.license_text is None and offer.source in trusted:
            return True, f"none recorded (source {offer.source} needs none)"
    names = sorted(
        license_label(offer.license, offer.license_text)
        if offer.license or offer.license_text
        else f"none recorded (source {offer.source})"
        for offer in offers
    )
    return False, ", ".join(dict.fromkeys(names)) or "no sighting recorded"


def pending_frame(
    images: Sequence[PendingImage], license_allow_list: Iterable[str], unlicensed_sources: Iterable[str] = ("local",)
) -> pd.DataFrame:
    """What the batch knows of each image before it is decoded: its raw key, first sighting, the sources that
    offered it (comma-separated), its license and whether that is allowed; one row per image, in the order
    given. A group of these is what one extraction task measures."""
    allow_list, trusted = list(license_allow_list), list(unlicensed_sources)
    rows = []
    for image in images:
        allowed, license_text = license_verdict(image.offers, allow_list, trusted)
        rows.append(
            {
                "sha256": image.sha256,
                "raw_key": image.raw_key,
                "first_seen_at": image.first_seen_at.isoformat(),
                "sources": ",".join(image.sources),
                "license": license_text,
                "license_allowed": allowed,
            }
        )
    return pd.DataFrame(rows, columns=list(PENDING_COLUMNS))


def measure(
    store: ObjectStore,
    pending: pd.DataFrame,
    *,
    max_pixels: int = MAX_PIXELS,
    analysis_side: int = 256,
    progress: str = "images",
) -> pd.DataFrame:
    """`pending` with every `ImageFacts` field added: the decode-heavy step, one image's bytes at a time, so
    a group never sits in memory whole. Logs a line per `PROGRESS_EVERY` images, named by `progress`."""
    facts = []
    for done, raw_key in enumerate(pending["raw_key"], start=1):
        facts.append(asdict(extract_facts(store.get(raw_key), max_pixels=max_pixels, analysis_side=analysis_side)))
        if done % PROGRESS_EVERY == 0:
            logger.info("%s: %d of %d measured", progress, done, len(pending))
    measured = pd.concat(
        [pending.reset_index(drop=True), pd.DataFrame(facts, columns=list(FACT_COLUMNS))], axis="columns"
    )
    return _typed(measured)


def facts_table(
    store: ObjectStore,
    catalog: Catalog,
    measured: Iterable[pd.DataFrame],
    *,
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
    max_pixels: int = MAX_PIXELS,
) -> pd.DataFrame:
    """The table the row suite judges, from the batch's measured groups: one row per image in sha256 order,
    with `duplicate_of` / `near_duplicate_of` (see `mark_duplicates`), which only the whole batch and the
    catalog can tell."""
    frames = [frame for frame in measured if not frame.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*PENDING_COLUMNS, *FACT_COLUMNS])
    rows = table.sort_values("sha256", kind="stable").to_dict(orient="records")
    for row in rows:
        row.update(duplicate_of=None, near_duplicate_of=None)
        for column in NUMERIC_FACTS:
            row[column] = _plain(row[column], column)
    mark_duplicates(store, catalog, rows, near_duplicate_distance, max_pixels)
    return _typed(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    # Numbers stay numbers even when no image decodes (an all-None column would be object, and a row
    # condition such as `brightness_mean >= 5` would then fail to compare).
    for column in NUMERIC_FACTS:
        frame[column] = frame[column].astype("float64")
    return frame


def _plain(value: Any, column: str) -> Any:
    """A table cell as Python: NaN is None, counts are ints again."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if column in INTEGER_FACTS and isinstance(value, float):
        return int(value)
    return value

"""The quality gate: which raw images may be trained on, decided with Great Expectations.

A colorizer learns whatever it is fed: gray photos teach it to leave things gray, broken files crash
training, duplicates leak between splits. For the batch of pending images (`pending_images`), `facts_table`
measures each one (`pipelines.image_facts`) and adds what only the batch and the catalog know: whether a
sighting's license is allowed, and exact or near duplicates. Two Great Expectations suites, kept as JSON in
`expectations/`, then judge the table:

- `image_rows.json`, one row per image: every failed expectation rejects the images it lists, with a reason
  a person can read, written in the expectation's `meta` and filled in from the image's facts.
- `image_batch.json`, one row per source and one for the whole batch: a failure raises `BatchRejected`, so
  the task fails and on-call is paged, because a source that is mostly undecodable or mostly rejected
  has usually changed (login pages, a new error format) rather than started sending worse photos.

`apply_verdicts` records the verdicts in the catalog and copies rejected bytes to `quarantine/`;
`validate_batch` runs the whole stage and leaves a report under `reports/quality/<run>/` (see
`pipelines.quality_report`). Row verdicts are recorded even when the batch fails: an HTML page is not a
photo whatever else the source sent, and keeping the verdicts makes the run's outcome final.

Reruns change nothing: judged images are no longer pending, catalog writes are upserts that keep existing
rows, quarantine copies are skipped when present, and a run id that was already validated returns the
summary it recorded (raising `BatchRejected` again if the batch had failed, so a retry stays red).

    summary = validate_batch(open_store(), open_catalog(), run_id="manual__1")
    print(summary["accepted"], summary["rejected"], summary["by_reason"])

`great_expectations` is imported inside the functions that validate: it takes seconds to import.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image as PILImage
from PIL import ImageOps
from sqlalchemy import func, select, update

from pipelines.catalog import Catalog, Image, ImageStatus, QualityResult, Sighting, utcnow
from pipelines.image_facts import ImageFacts, extract_facts
from pipelines.licenses import license_label
from pipelines.near_duplicates import keep_first
from pipelines.raw_zone import quarantine_key
from pipelines.settings import EXPECTATIONS_DIR, MAX_PIXELS, NEAR_DUPLICATE_DISTANCE, Settings, get_settings
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

ROW_SUITE_FILE = "image_rows.json"
BATCH_SUITE_FILE = "image_batch.json"

# A perceptual hash says nothing about an image without structure (a flat fill hashes like any other flat
# fill), so images whose lightness barely varies (CIE L* standard deviation, 0-100) are not compared.
MIN_LIGHTNESS_SPREAD_FOR_PHASH = 1.0
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
TABLE_COLUMNS = (
    "sha256",
    "raw_key",
    "first_seen_at",
    "sources",
    "license",
    "license_allowed",
    *FACT_COLUMNS,
    "duplicate_of",
    "near_duplicate_of",
)
SOURCE_COLUMNS = (
    "scope",
    "source",
    "images",
    "not_decodable",
    "rejected",
    "decodable_share",
    "reject_share",
    "not_decodable_pct",
    "rejected_pct",
)
# COMPLETE lists every unexpected row, and naming them by sha256 (or by source) ties each failure to an
# image without relying on the frame's positional index.
ROW_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["sha256"]}
SOURCE_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["scope", "source"]}
NULL_EXPECTATIONS = frozenset({"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"})


class BatchRejected(RuntimeError):
    """The batch as a whole failed its expectations: a source probably changed, and on-call should look."""

    def __init__(self, message: str, failures: Sequence[str] = (), report_uri: str | None = None) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
        self.report_uri = report_uri


class QualitySuiteError(RuntimeError):
    """A suite could not be evaluated as written; a configuration error, never an image's fault."""


@dataclass(frozen=True)
class Offer:
    """One sighting of an image, reduced to what quality needs: who offered it, under what license (a term of
    `pipelines.licenses`, and the source's own words)."""

    source: str
    license: str | None
    license_text: str | None = None


@dataclass(frozen=True)
class PendingImage:
    """An image waiting for its verdict, with every sighting's source and license."""

    sha256: str
    raw_key: str
    first_seen_at: datetime
    offers: tuple[Offer, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({offer.source for offer in self.offers}))


@dataclass(frozen=True)
class CheckOutcome:
    """One row expectation's judgement of one image; `reason` is set when it failed."""

    check: str
    label: str
    passed: bool
    observed: str | None
    reason: str | None = None


@dataclass(frozen=True)
class ImageVerdict:
    """Every check that judged one image; the image is accepted when none failed."""

    sha256: str
    outcomes: tuple[CheckOutcome, ...]

    @property
    def accepted(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    @property
    def reasons(self) -> list[str]:
        """Readable reasons in suite order, each once (width and height share "too small (8x8)")."""
        return list(dict.fromkeys(outcome.reason for outcome in self.outcomes if not outcome.passed and outcome.reason))

    @property
    def rejected_for_quality(self) -> bool:
        """Rejected for something other than its license. A license outside the allow-list is the operator's
        policy, not a sign that the source changed, so the batch checks do not count it."""
        return any(not outcome.passed and outcome.check != "license" for outcome in self.outcomes)

    @property
    def labels(self) -> list[str]:
        """Short reason names, for counts and report groups."""
        return list(dict.fromkeys(outcome.label for outcome in self.outcomes if not outcome.passed))


@dataclass(frozen=True)
class BatchCheck:
    """One batch expectation: whether it held, and a message for each source (or the batch) that broke it."""

    check: str
    label: str
    description: str
    passed: bool
    failures: tuple[str, ...] = ()


def load_suite(name: str, expectations_dir: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    """A suite as the JSON dict `great_expectations.ExpectationSuite(**suite)` accepts."""
    return json.loads((expectations_dir / name).read_text(encoding="utf-8"))


def pending_images(catalog: Catalog, limit: int | None = None) -> list[PendingImage]:
    """Images not judged yet, in sha256 order: arbitrary but fixed, so a limited run is reproducible."""
    with catalog.session() as session:
        query = (
            select(Image.sha256, Image.raw_key, Image.first_seen_at)
            .where(Image.status == ImageStatus.PENDING)
            .order_by(Image.sha256)
        )
        if limit is not None:
            query = query.limit(limit)
        images = session.execute(query).all()
        offers: dict[str, list[Offer]] = defaultdict(list)
        hashes = [sha256 for sha256, _, _ in images]
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            sightings = (
                select(Sighting.image_sha256, Sighting.source, Sighting.license, Sighting.license_text)
                .where(Sighting.image_sha256.in_(chunk))
                .order_by(Sighting.image_sha256, Sighting.source, Sighting.source_id)
            )
            for sha256, source, term, words in session.execute(sightings):
                offers[sha256].append(Offer(source, term, words))
    return [PendingImage(sha256, key, seen, tuple(offers[sha256])) for sha256, key, seen in images]


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


def facts_table(
    store: ObjectStore,
    catalog: Catalog,
    images: Sequence[PendingImage],
    license_allow_list: Iterable[str],
    *,
    unlicensed_sources: Iterable[str] = ("local",),
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
    max_pixels: int = MAX_PIXELS,
    analysis_side: int = 256,
) -> pd.DataFrame:
    """One row per image, in sha256 order: its raw key, the sources that offered it (comma-separated), its
    license and whether that is allowed, every `ImageFacts` field, and `duplicate_of` / `near_duplicate_of`
    (see `mark_duplicates`).

    Bytes are read one image at a time, so a batch never sits in memory whole.
    """
    allow_list, trusted = list(license_allow_list), list(unlicensed_sources)
    rows = []
    for image in sorted(images, key=lambda pending: pending.sha256):
        facts = extract_facts(store.get(image.raw_key), max_pixels=max_pixels, analysis_side=analysis_side)
        allowed, license_text = license_verdict(image.offers, allow_list, trusted)
        rows.append(
            {
                "sha256": image.sha256,
                "raw_key": image.raw_key,
                "first_seen_at": image.first_seen_at.isoformat(),
                "sources": ",".join(image.sources),
                "license": license_text,
                "license_allowed": allowed,
                **asdict(facts),
                "duplicate_of": None,
                "near_duplicate_of": None,
            }
        )
    mark_duplicates(store, catalog, rows, near_duplicate_distance, max_pixels)
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    # Numbers stay numbers even when no image decodes (an all-None column would be object, and a row
    # condition such as `brightness_mean >= 5` would then fail to compare).
    for column in NUMERIC_FACTS:
        frame[column] = frame[column].astype("float64")
    return frame


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
    Kept images are those already accepted in the catalog, then this batch's images in `_keep_preference`
    order, each kept unless it matches one kept before it. The order is total, so reruns agree.
    """
    comparable = [
        row
        for row in rows
        if row["decodes"] and row["phash"] and (row["brightness_std"] or 0.0) >= MIN_LIGHTNESS_SPREAD_FOR_PHASH
    ]
    if not comparable:
        return
    hash_length = len(comparable[0]["phash"])
    with catalog.session() as session:
        accepted = session.execute(
            select(Image.sha256, Image.phash, Image.width, Image.height, Image.raw_key)
            .where(
                Image.status == ImageStatus.ACCEPTED, Image.phash.is_not(None), func.length(Image.phash) == hash_length
            )
            .order_by(Image.sha256)
        ).all()
    kept = [
        {"sha256": sha, "phash": phash, "width": width, "height": height, "raw_key": key}
        for sha, phash, width, height, key in accepted
    ]
    ordered = kept + sorted(comparable, key=_keep_preference)
    selection = keep_first([row["phash"] for row in ordered], max_distance, already_kept=len(kept))
    digests: dict[str, str | None] = {}

    def digest(row: Mapping[str, Any]) -> str | None:
        if row["sha256"] not in digests:
            digests[row["sha256"]] = pixel_digest(store.get(row["raw_key"]), max_pixels)
        return digests[row["sha256"]]

    for position in selection.dropped.tolist():
        row = ordered[position]
        identical = [
            ordered[suspect]
            for suspect in selection.kept_twins(position)
            if (ordered[suspect]["width"], ordered[suspect]["height"]) == (row["width"], row["height"])
        ]
        twin = next((other for other in identical if digest(other) and digest(other) == digest(row)), None)
        if twin is not None:
            row["duplicate_of"] = twin["sha256"]
        else:
            row["near_duplicate_of"] = ordered[selection.nearest_kept[position]]["sha256"]


def run_suite(frame: pd.DataFrame, suite: Mapping[str, Any], result_format: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `frame` against `suite` in an ephemeral Great Expectations context; the result as JSON.

    Ephemeral and in memory: nothing is written to a GX project folder, and no usage statistics are sent.
    """
    # GX logs its own setup at INFO (dozens of lines per context); a task log should show verdicts instead.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    name = str(suite["name"])
    batch = (
        context.data_sources.add_pandas("colorflow")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(name)
        .get_batch(batch_parameters={"dataframe": frame})
    )
    # A deep copy: ExpectationSuite writes into the dict it is given (its meta gains the GX version).
    result = batch.validate(gx.ExpectationSuite(**copy.deepcopy(dict(suite))), result_format=dict(result_format))
    # A JSON round trip turns numpy scalars into plain numbers, so the result can be stored and compared.
    return json.loads(json.dumps(result.to_json_dict(), default=str))


def _condition(kwargs: Mapping[str, Any]) -> str | None:
    condition = kwargs.get("row_condition")
    if isinstance(condition, Mapping):
        return condition.get("pass_through_filter")
    return condition or None


def _judged(frame: pd.DataFrame, expectation: Mapping[str, Any]) -> pd.DataFrame:
    """The rows an expectation looked at: those its row condition keeps, and (for all but null checks) whose
    value is present. An image that did not decode is judged by `decodes`, not called "too small" too."""
    kwargs = expectation["kwargs"]
    condition = _condition(kwargs)
    judged = frame.query(condition) if condition else frame
    column = kwargs.get("column")
    if column and expectation["type"] not in NULL_EXPECTATIONS:
        judged = judged[judged[column].notna()]
    return judged


def _plain(value: Any, column: str) -> Any:
    """A table cell as Python: NaN is None, counts are ints again."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if column in INTEGER_FACTS and isinstance(value, float):
        return int(value)
    return value


def _reason_context(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values plus the few derived texts reasons use ("100:1", a short hash)."""
    context = {column: _plain(value, column) for column, value in row.items()}
    aspect = context.get("aspect")
    context["aspect_text"] = f"{round(aspect, 1):g}:1" if aspect else "unknown"
    for column in ("duplicate_of", "near_duplicate_of"):
        context[f"{column}_short"] = (context.get(column) or "")[:12]
    context["license"] = context.get("license") or "none recorded"
    return context


def _format(template: str | None, context: Mapping[str, Any], fallback: str) -> str:
    if not template:
        return fallback
    try:
        return template.format_map(context)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError):  # a value missing or of another type
        return fallback


def _observed(value: Any) -> str | None:
    return None if value is None else str(value)


def image_verdicts(table: pd.DataFrame, validation: Mapping[str, Any]) -> dict[str, ImageVerdict]:
    """Each image's verdict from a row-suite validation result: the checks that judged it, each failure
    with its reason filled in from the image's facts."""
    contexts = {row["sha256"]: _reason_context(row) for row in table.to_dict(orient="records")}
    outcomes: dict[str, list[CheckOutcome]] = {sha256: [] for sha256 in contexts}
    for result in validation["results"]:
        expectation = result["expectation_config"]
        meta, kwargs = expectation.get("meta") or {}, expectation["kwargs"]
        column = kwargs.get("column")
        check = meta.get("check") or f"{expectation['type']}:{column}"
        label = meta.get("label") or check
        if (result.get("exception_info") or {}).get("raised_exception"):
            raise QualitySuiteError(f"row check {check} could not run: {result['exception_info']['exception_message']}")
        unexpected = {entry["sha256"] for entry in result["result"].get("unexpected_index_list") or []}
        if not result["success"] and not unexpected:
            raise QualitySuiteError(f"row check {check} failed without naming images: only per-row checks belong here")
        for sha256 in _judged(table, expectation)["sha256"]:
            context = contexts[sha256]
            value = context.get(column) if column else None
            passed = sha256 not in unexpected
            reason = None if passed else _format(meta.get("reason"), context, f"{label} ({column}={value})")
            outcomes[sha256].append(CheckOutcome(check, label, passed, _observed(value), reason))
    return {sha256: ImageVerdict(sha256, tuple(checks)) for sha256, checks in outcomes.items()}


def row_verdicts(
    table: pd.DataFrame, suite: Mapping[str, Any], chunk_rows: int
) -> tuple[dict[str, ImageVerdict], dict[str, Any]]:
    """Every image's verdict from the row suite, validated `chunk_rows` images at a time, and the validation
    results (one set per chunk, in order).

    Row checks judge each image on its own facts (`image_verdicts` refuses any that does not), so a chunk's
    verdicts are the ones a single pass gives, while Great Expectations never holds more than a chunk's
    frame and failure lists."""
    verdicts: dict[str, ImageVerdict] = {}
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(table), chunk_rows):
        chunk = table.iloc[start : start + chunk_rows]
        validation = run_suite(chunk, suite, ROW_RESULT_FORMAT)
        verdicts.update(image_verdicts(chunk, validation))
        chunks.append(validation)
    evaluated = sum(validation["statistics"]["evaluated_expectations"] for validation in chunks)
    successful = sum(validation["statistics"]["successful_expectations"] for validation in chunks)
    validation = {
        "success": all(validation["success"] for validation in chunks),
        "chunks": len(chunks),
        "chunk_rows": chunk_rows,
        "statistics": {
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
            "success_percent": 100.0 * successful / evaluated if evaluated else None,
        },
        "results": [result for validation in chunks for result in validation["results"]],
    }
    return verdicts, validation


def source_table(table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict]) -> pd.DataFrame:
    """One row for the whole batch (scope "batch", source "*") and one per source; an image offered by two
    sources counts for both, since either may be the one that changed."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    decodes = dict(zip(table["sha256"], table["decodes"], strict=True))
    for sha256, sources in zip(table["sha256"], table["sources"], strict=True):
        groups["batch", "*"].append(sha256)
        for source in sources.split(",") if sources else ["(none)"]:
            groups["source", source].append(sha256)
    rows = []
    for (scope, source), members in sorted(groups.items()):
        images = len(members)
        not_decodable = sum(1 for sha256 in members if not decodes[sha256])
        rejected = sum(1 for sha256 in members if verdicts[sha256].rejected_for_quality)
        rows.append(
            {
                "scope": scope,
                "source": source,
                "images": images,
                "not_decodable": not_decodable,
                "rejected": rejected,
                "decodable_share": (images - not_decodable) / images,
                "reject_share": rejected / images,
                "not_decodable_pct": 100.0 * not_decodable / images,
                "rejected_pct": 100.0 * rejected / images,
            }
        )
    return pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))


def batch_checks(sources: pd.DataFrame, validation: Mapping[str, Any]) -> list[BatchCheck]:
    """Each batch expectation's outcome, with its message filled in for every group that broke it."""
    rows = {(row["scope"], row["source"]): row for row in sources.to_dict(orient="records")}
    checks = []
    for result in validation["results"]:
        expectation = result["expectation_config"]
        meta = expectation.get("meta") or {}
        check = meta.get("check") or f"{expectation['type']}:{expectation['kwargs'].get('column')}"
        label = meta.get("label") or check
        if (result.get("exception_info") or {}).get("raised_exception"):
            raise QualitySuiteError(
                f"batch check {check} could not run: {result['exception_info']['exception_message']}"
            )
        messages = []
        for entry in result["result"].get("unexpected_index_list") or []:
            row = rows[entry["scope"], entry["source"]]
            messages.append(_format(meta.get("message"), row, f"{label}: {entry['scope']} {entry['source']}"))
        if not result["success"] and not messages:
            messages.append(f"{label} (no group named)")
        checks.append(
            BatchCheck(check, label, expectation.get("notes") or "", bool(result["success"]), tuple(messages))
        )
    return checks


def apply_verdicts(
    store: ObjectStore, catalog: Catalog, table: pd.DataFrame, results: Mapping[str, ImageVerdict], run_id: str
) -> dict[str, int]:
    """Record verdicts: rejected bytes copied to quarantine, then in one transaction each pending image's
    status, reasons, verdict time and measured size and hash, and a quality result per image and check.
    Returns how many images each reason rejected (an image with two reasons counts under both).

    Quarantine comes first so that a crash leaves images pending (and judged again) rather than rejected
    with no quarantined copy. Only pending images are updated and result rows are inserted only when
    missing, so applying the same verdicts again changes nothing.
    """
    rows = {row["sha256"]: row for row in table.to_dict(orient="records")}
    for sha256, verdict in sorted(results.items()):
        if not verdict.accepted:
            target = quarantine_key(sha256, rows[sha256]["raw_key"])
            if not store.exists(target):
                store.copy(rows[sha256]["raw_key"], target)
    judged_at = utcnow()
    with catalog.session() as session:
        for sha256, verdict in sorted(results.items()):
            row = rows[sha256]
            session.execute(
                update(Image)
                .where(Image.sha256 == sha256, Image.status == ImageStatus.PENDING)
                .values(
                    status=ImageStatus.ACCEPTED if verdict.accepted else ImageStatus.REJECTED,
                    reject_reasons=None if verdict.accepted else verdict.reasons,
                    verdict_at=judged_at,
                    width=_plain(row["width"], "width"),
                    height=_plain(row["height"], "height"),
                    phash=row["phash"],
                )
            )
        checks = [
            {
                "run_id": run_id,
                "image_sha256": sha256,
                "check": outcome.check,
                "passed": outcome.passed,
                "observed": outcome.observed,
            }
            for sha256, verdict in sorted(results.items())
            for outcome in verdict.outcomes
        ]
        catalog.upsert(session, QualityResult, checks, key=["run_id", "image_sha256", "check"])
    return dict(sorted(Counter(label for verdict in results.values() for label in verdict.labels).items()))


def report_prefix(run_id: str) -> str:
    """`reports/quality/<run>/`, the run id made safe as one key segment (Airflow ids hold ':' and '+')."""
    segment = re.sub(r"[^A-Za-z0-9._+=:-]", "_", run_id).lstrip(".") or "_"
    return f"reports/quality/{segment}/"


def _recorded_counts(catalog: Catalog, run_id: str, labels: Mapping[str, str]) -> dict[str, Any] | None:
    """Counts of a run already recorded in the catalog, or None when the run recorded nothing."""
    with catalog.session() as session:
        judged = list(
            session.scalars(
                select(QualityResult.image_sha256)
                .distinct()
                .where(QualityResult.run_id == run_id)
                .order_by(QualityResult.image_sha256)
            )
        )
        if not judged:
            return None
        failed = session.execute(
            select(QualityResult.image_sha256, QualityResult.check).where(
                QualityResult.run_id == run_id, QualityResult.passed.is_(False)
            )
        ).all()
    failed_labels: dict[str, set[str]] = defaultdict(set)
    for sha256, check in failed:
        failed_labels[sha256].add(labels.get(check, check))
    by_reason = Counter(label for names in failed_labels.values() for label in names)
    return {
        "images": len(judged),
        "accepted": len(judged) - len(failed_labels),
        "rejected": len(failed_labels),
        "by_reason": dict(sorted(by_reason.items())),
    }


def _raise_if_failed(summary: Mapping[str, Any]) -> None:
    failures = summary.get("batch_failures") or []
    if failures:
        message = f"{'; '.join(failures)} — the source probably changed; see report {summary['report_uri']}"
        raise BatchRejected(message, failures, summary["report_uri"])


def validate_batch(
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    settings: Settings | None = None,
    *,
    limit: int | None = None,
) -> dict[str, Any]:
    """Judge every pending image (at most `limit`, else `batch_limit`), record verdicts, write the report,
    and return the run's summary: images, accepted, rejected, by_reason, report_uri, batch_failures.

    The stage reads the `quality` section of `settings` (default: the process's). Raises BatchRejected
    after recording the verdicts and writing the report when a batch expectation fails. A run id validated
    before returns its recorded summary (and raises again if it had failed).
    """
    from pipelines.quality_report import write_report

    quality = (settings or get_settings()).quality
    row_suite = load_suite(ROW_SUITE_FILE, quality.expectations_dir)
    batch_suite = load_suite(BATCH_SUITE_FILE, quality.expectations_dir)
    prefix = report_prefix(run_id)
    summary_key = f"{prefix}summary.json"
    labels = {
        (expectation.get("meta") or {}).get("check"): (expectation.get("meta") or {}).get("label")
        for expectation in row_suite["expectations"]
    }
    # A run is done once its verdicts are in the catalog (or it found nothing to judge): the summary
    # written beside the report gives the batch outcome, the catalog the counts.
    recorded = _recorded_counts(catalog, run_id, labels)
    stored = json.loads(store.get(summary_key)) if store.exists(summary_key) else None
    if recorded is not None or (stored is not None and stored["images"] == 0):
        summary = stored or {"run_id": run_id, "report_uri": store.uri(f"{prefix}index.html"), "batch_failures": []}
        summary.update(recorded or {})
        logger.info("run %s was validated before; its report: %s", run_id, summary["report_uri"])
        _raise_if_failed(summary)
        return summary

    images = pending_images(catalog, limit if limit is not None else quality.batch_limit)
    logger.info("validating %d pending images in run %s", len(images), run_id)
    table = facts_table(
        store,
        catalog,
        images,
        quality.license_allow_list,
        unlicensed_sources=quality.unlicensed_sources,
        near_duplicate_distance=quality.near_duplicate_distance,
        max_pixels=quality.max_pixels,
        analysis_side=quality.analysis_side,
    )
    verdicts, row_validation = row_verdicts(table, row_suite, quality.suite_chunk_rows)
    batch_validation: dict[str, Any] = {"success": True, "results": []}
    sources = source_table(table, verdicts)
    if not table.empty:
        batch_validation = run_suite(sources, batch_suite, SOURCE_RESULT_FORMAT)
    checks = batch_checks(sources, batch_validation)
    by_reason = Counter(label for verdict in verdicts.values() for label in verdict.labels)
    accepted = sum(1 for verdict in verdicts.values() if verdict.accepted)
    summary = {
        "run_id": run_id,
        "images": len(verdicts),
        "accepted": accepted,
        "rejected": len(verdicts) - accepted,
        "by_reason": dict(sorted(by_reason.items())),
        "report_uri": store.uri(f"{prefix}index.html"),
        "batch_failures": [message for check in checks for message in check.failures],
    }
    # The report is written before the verdicts are committed: a crash in between leaves the images
    # pending, and the rerun rewrites the same report.
    write_report(
        store,
        prefix,
        summary=summary,
        table=table,
        verdicts=verdicts,
        sources=sources,
        checks=checks,
        row_validation=row_validation,
        batch_validation=batch_validation,
    )
    store.put(summary_key, json.dumps(summary, indent=2).encode())
    logger.info("quality report for run %s: %s", run_id, summary["report_uri"])
    apply_verdicts(store, catalog, table, verdicts, run_id)
    logger.info(
        "run %s: %d accepted, %d rejected %s", run_id, summary["accepted"], summary["rejected"], summary["by_reason"]
    )
    _raise_if_failed(summary)
    return summary

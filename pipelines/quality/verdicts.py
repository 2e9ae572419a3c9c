"""Verdicts: what each row check said about each image and what each batch check said, and how they are
recorded (`apply_verdicts`: the catalog, and rejected bytes copied to `quarantine/`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import update

from pipelines.catalog import Catalog, Image, ImageStatus, QualityResult, utcnow
from pipelines.quality.facts import _plain
from pipelines.raw_zone import quarantine_key
from pipelines.storage import ObjectStore


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

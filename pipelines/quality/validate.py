"""Judging a measured batch (`judge_batch`): the suites run over every group's facts, verdicts recorded and
the report written, once per run id; and the whole stage in one call (`validate_batch`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from pipelines.catalog import Catalog, QualityResult
from pipelines.quality.facts import facts_table
from pipelines.quality.groups import extract_group, plan_batch, planned_groups
from pipelines.quality.report import write_report
from pipelines.quality.run_files import facts_key, read_frame, report_prefix, summary_key
from pipelines.quality.suites import (
    BATCH_SUITE_FILE,
    ROW_SUITE_FILE,
    SOURCE_RESULT_FORMAT,
    batch_checks,
    load_suite,
    row_verdicts,
    run_suite,
    source_table,
)
from pipelines.quality.verdicts import apply_verdicts
from pipelines.settings import Settings, get_settings
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)


class BatchRejected(RuntimeError):
    """The batch as a whole failed its expectations: a source probably changed, and on-call should look."""

    def __init__(self, message: str, failures: Sequence[str] = (), report_uri: str | None = None) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
        self.report_uri = report_uri


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
    """The whole stage in one process: plan the batch, measure every group, judge. What the DAG runs as
    mapped tasks, for the command line and tests; same arguments and outcome as `judge_batch`."""
    for group in plan_batch(store, catalog, run_id, settings, limit=limit):
        extract_group(store, run_id, group, settings)
    return judge_batch(store, catalog, run_id, settings)


def judge_batch(store: ObjectStore, catalog: Catalog, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Judge the run's measured batch (`groups.plan_batch`, `groups.extract_group`), record verdicts, write
    the report, and return the run's summary: images, accepted, rejected, by_reason, report_uri,
    batch_failures.

    The stage reads the `quality` section of `settings` (default: the process's). Raises BatchRejected
    after recording the verdicts and writing the report when a batch expectation fails. A run id judged
    before returns its recorded summary (and raises again if it had failed).
    """
    quality = (settings or get_settings()).quality
    row_suite = load_suite(ROW_SUITE_FILE, quality.expectations_dir)
    batch_suite = load_suite(BATCH_SUITE_FILE, quality.expectations_dir)
    prefix = report_prefix(run_id)
    labels = {
        (expectation.get("meta") or {}).get("check"): (expectation.get("meta") or {}).get("label")
        for expectation in row_suite["expectations"]
    }
    # A run is done once its verdicts are in the catalog (or it found nothing to judge): the summary
    # written beside the report gives the batch outcome, the catalog the counts.
    recorded = _recorded_counts(catalog, run_id, labels)
    stored = json.loads(store.get(summary_key(run_id))) if store.exists(summary_key(run_id)) else None
    if recorded is not None or (stored is not None and stored["images"] == 0):
        summary = stored or {"run_id": run_id, "report_uri": store.uri(f"{prefix}index.html"), "batch_failures": []}
        summary.update(recorded or {})
        logger.info("run %s was validated before; its report: %s", run_id, summary["report_uri"])
        _raise_if_failed(summary)
        return summary

    groups = planned_groups(store, run_id)
    if groups is None:
        raise RuntimeError(f"run {run_id} has no plan: its plan task never finished")
    missing = [group for group in range(groups) if not store.exists(facts_key(run_id, group))]
    if missing:
        raise RuntimeError(f"run {run_id}: groups {missing} were never measured; their extraction did not finish")
    table = facts_table(
        store,
        catalog,
        (read_frame(store, facts_key(run_id, group)) for group in range(groups)),
        near_duplicate_distance=quality.near_duplicate_distance,
        max_pixels=quality.max_pixels,
    )
    logger.info("judging %d images of run %s", len(table), run_id)
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
    store.put(summary_key(run_id), json.dumps(summary, indent=2).encode())
    logger.info("quality report for run %s: %s", run_id, summary["report_uri"])
    apply_verdicts(store, catalog, table, verdicts, run_id)
    logger.info(
        "run %s: %d accepted, %d rejected %s", run_id, summary["accepted"], summary["rejected"], summary["by_reason"]
    )
    _raise_if_failed(summary)
    return summary

"""The Great Expectations suites and what their results say: each image's verdict from the row suite (run
in chunks), and the per-source table the batch suite judges with the outcome of each batch check.

`great_expectations` is imported inside `run_suite`: it takes seconds to import.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.quality.facts import _plain
from pipelines.quality.verdicts import BatchCheck, CheckOutcome, ImageVerdict
from pipelines.settings import EXPECTATIONS_DIR

ROW_SUITE_FILE = "image_rows.json"
BATCH_SUITE_FILE = "image_batch.json"

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


class QualitySuiteError(RuntimeError):
    """A suite could not be evaluated as written; a configuration error, never an image's fault."""


def load_suite(name: str, expectations_dir: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    """A suite as the JSON dict `great_expectations.ExpectationSuite(**suite)` accepts."""
    return json.loads((expectations_dir / name).read_text(encoding="utf-8"))


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

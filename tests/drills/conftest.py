"""Reliability and security drills: each test injects one fault into the real stack (or a real server)
and proves Colorflow came through with nothing lost and no one let in.

A drill is a test marked `@pytest.mark.drill(name, fault)`; it tells the report what happened through the
`drill_report` fixture (`outcome`, `objects_lost`, and `audit`: what the lake audit found after the fault).
At the end of the session a table of every drill (drill, fault injected, outcome, objects lost, lake audit)
is printed and written to `.colorflow/drills.md`; pytest's
exit status is non-zero when any drill failed. `make drills` runs them all; `make test` runs all but those
marked `slow_drill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPORT = Path(__file__).resolve().parents[2] / ".colorflow" / "drills.md"
RESULTS_KEY = pytest.StashKey[list["DrillRow"]]()
REPORT_KEY = pytest.StashKey[dict[str, Any]]()


@dataclass
class DrillRow:
    drill: str
    fault: str
    outcome: str = "not run"
    objects_lost: int | None = None
    audit: str | None = None
    passed: bool = False


@pytest.fixture
def drill_report(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the drill found: set `outcome` (a few words), `objects_lost` (must end up 0) and `audit` (the
    lake audit's verdict after the fault, `tests.drills.audit.audit_after_fault` sets it)."""
    report: dict[str, Any] = {}
    request.node.stash[REPORT_KEY] = report
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    marker = item.get_closest_marker("drill")
    if marker is None or (report.when != "call" and not (report.when == "setup" and report.failed)):
        return report
    name, fault = marker.args
    found = item.stash.get(REPORT_KEY, {})
    if report.passed:
        outcome = found.get("outcome", "passed")
    else:
        reason = str(call.excinfo.value).strip().splitlines()[0] if call.excinfo else "failed"
        outcome = f"FAILED: {reason[:100]}"
    row = DrillRow(name, fault, outcome, found.get("objects_lost"), found.get("audit"), report.passed)
    item.config.stash.setdefault(RESULTS_KEY, []).append(row)
    return report


def drill_table(rows: list[DrillRow]) -> str:
    header = ("drill", "fault injected", "outcome", "objects lost", "lake audit")
    lines = [
        (
            row.drill,
            row.fault,
            row.outcome,
            "?" if row.objects_lost is None else str(row.objects_lost),
            row.audit or "n/a",
        )
        for row in rows
    ]
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(line) + " |" for line in lines),
        ]
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(RESULTS_KEY, [])
    if not rows:
        return
    table = drill_table(rows)
    failed = sum(not row.passed for row in rows)
    terminalreporter.section(f"drills: {len(rows) - failed} passed, {failed} failed")
    terminalreporter.write_line(table)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(table + "\n")
    terminalreporter.write_line(f"(written to {REPORT})")

"""Runs collect their data interval; runs triggered without a logical date collect the day before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from colorflow_context import data_window
from pipelines.sources.web import Window

DAY = datetime(2026, 11, 22, tzinfo=UTC)


def test_a_scheduled_or_backfilled_run_collects_its_data_interval() -> None:
    context = {
        "data_interval_start": DAY,
        "data_interval_end": DAY + timedelta(days=1),
        "dag_run": SimpleNamespace(run_after=DAY + timedelta(days=1)),
    }
    assert data_window(context) == Window(DAY, DAY + timedelta(days=1))


def test_a_run_triggered_without_a_logical_date_collects_the_previous_day() -> None:
    context = {"dag_run": SimpleNamespace(run_after=DAY + timedelta(days=1, hours=16))}
    assert data_window(context) == Window(DAY, DAY + timedelta(days=1))

"""What Colorflow tasks read from Airflow's task context."""

from __future__ import annotations

from typing import Any

from pipelines.sources.web import Window, run_window


def data_window(context: Any) -> Window:
    """The window this run collects: its data interval, which runs triggered with no logical date lack."""
    return run_window(
        context.get("data_interval_start"), context.get("data_interval_end"), context["dag_run"].run_after
    )

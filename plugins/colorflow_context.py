"""What Colorflow tasks read from Airflow's task context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.sources.web import Window


def data_window(context: Any) -> Window:
    """The window this run collects: its data interval, which runs triggered with no logical date lack."""
    from pipelines.sources.web import run_window

    return run_window(
        context.get("data_interval_start"), context.get("data_interval_end"), context["dag_run"].run_after
    )

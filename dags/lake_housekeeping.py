"""
### lake_housekeeping

Keeps the lake's lifecycle rules in force every day (`pipelines.lake_lifecycle`): `raw/` to cheaper storage
classes as it ages, `quarantine/` and `reports/` deleted after their days, the intermediate checkpoints of
finished runs deleted (never a run's final checkpoint, the one a model is registered from), unfinished
multipart uploads thrown away. Days and classes come from the `COLORFLOW_LIFECYCLE_*` settings.

On an S3 lake the task (re)applies the rules to the bucket, which does the work itself; applying them again
changes nothing unless a setting changed. On a `file://` lake nothing acts by itself, so the task deletes what
the rules expire; the task log has the count per rule. A bucket that refuses the rules (MinIO without remote
tiers) fails the task at once, with the settings to change. The same from a shell:
`colorflow lake lifecycle --help`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task

from colorflow_alerts import fail_fast, task_defaults


@dag(
    dag_id="lake_housekeeping",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "operations"],
    default_args=task_defaults(),
    doc_md=__doc__,
)
def lake_housekeeping() -> None:
    @task
    def housekeep() -> dict[str, int]:
        from pipelines.lake_lifecycle import RulesRefused, keep_house
        from pipelines.settings import get_settings
        from pipelines.storage import open_store

        settings = get_settings()
        with fail_fast(RulesRefused):
            return keep_house(open_store(settings=settings), settings.lifecycle)

    housekeep()


lake_housekeeping()

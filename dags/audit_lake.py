"""
### audit_lake

Compares the lake with the catalog every day: raw objects with no image row, image rows whose object is
missing, sightings of unknown images, dataset members in missing shards, and staged writes or multipart
uploads left unfinished for more than a day (`pipelines.lake_audit`). The report goes to
`reports/audit/<run>.json` in the lake and its summary to the task log. Drift fails the task, which alerts
on-call: nothing else would notice it.

Trigger with `repair` to rebuild what the lake can rebuild (image rows from their objects' bytes, raw
objects from their quarantine copies) and throw stale unfinished writes away; `checksums` also hashes
every raw object and shard. The same from a shell: `colorflow lake audit --help`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task

from colorflow_alerts import fail_fast, task_defaults


@dag(
    dag_id="audit_lake",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "operations"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "repair": Param(False, type="boolean", description="Rebuild what can be rebuilt."),
        "checksums": Param(False, type="boolean", description="Hash every raw object and shard."),
        "grace_minutes": Param(60, type="number", minimum=0, description="Leave out what is younger."),
    },
)
def audit_lake() -> None:
    @task
    def audit() -> dict[str, int]:
        from datetime import timedelta

        from pipelines.catalog import open_catalog
        from pipelines.lake_audit import LakeDrift, check_lake
        from pipelines.storage import open_store

        context = get_current_context()
        params = context["params"]
        with fail_fast(LakeDrift):
            report = check_lake(
                open_store(),
                open_catalog(),
                context["run_id"],
                repair=params["repair"],
                checksums=params["checksums"],
                grace=timedelta(minutes=params["grace_minutes"]),
            )
        return {**report.scanned, **report.counts()}

    audit()


audit_lake()

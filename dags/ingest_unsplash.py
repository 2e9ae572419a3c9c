"""
### ingest_unsplash

Collects color photos from Unsplash for the run's data interval: searches each query (newest first),
keeps the photos created in the window, and stores each new one in the raw zone with its attribution
(photographer, profile, photo page). `download_location` is triggered once per stored photo, as the
Unsplash API guidelines require. Set `mode` to `dataset` and `dataset_tsv` to read the Unsplash Dataset
TSV instead, the route Unsplash offers for machine learning.

Connection `unsplash_default`: host = API base URL, password = access key. Emits `raw_images`.
Backfill: `airflow backfill create --dag-id ingest_unsplash --from-date D1 --to-date D2`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from colorflow_alerts import task_defaults
from colorflow_ingest import discover_photos, store_photos, summarize


@dag(
    dag_id="ingest_unsplash",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),  # each run covers [D, D+1)
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    tags=["colorflow", "ingest", "web"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("unsplash_default", type="string", description="Airflow connection to use."),
        "queries": Param(
            ["cat", "flower", "coffee", "space", "portrait", "temple"], type="array", description="Search terms."
        ),
        "mode": Param("search", enum=["search", "dataset"], description="API search, or the Dataset TSV."),
        "dataset_tsv": Param(None, type=["null", "string"], description="Path or URL of photos.tsv000."),
        "limit": Param(200, type="integer", minimum=1, description="At most this many photos per run."),
        "batch_size": Param(20, type="integer", minimum=1, description="Photos per mapped task."),
    },
)
def ingest_unsplash() -> None:
    summarize(store_photos.partial(source="unsplash").expand(batch=discover_photos("unsplash")))


ingest_unsplash()

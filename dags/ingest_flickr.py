"""
### ingest_flickr

Collects openly licensed color photos from Flickr uploaded in the run's data interval: searches by tags
within the upload-date window (split further while a window holds more than Flickr's 4,000 searchable
results), keeps only the license allow-list, and stores each new photo with its owner and license name.
Flickr's "photo unavailable" placeholder is recorded as a fetch failure, never stored.

Connection `flickr_default`: host = REST endpoint, password = API key. Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from colorflow_alerts import task_defaults
from colorflow_ingest import discover_photos, store_photos, summarize


@dag(
    dag_id="ingest_flickr",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),  # each run covers [D, D+1)
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    tags=["colorflow", "ingest", "web"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("flickr_default", type="string", description="Airflow connection to use."),
        "tags": Param(
            ["flower", "cat", "space", "portrait", "architecture"],
            type="array",
            description="Photos with any of these tags.",
        ),
        "licenses": Param(
            None,
            type=["null", "array"],
            description="Licenses to collect, as terms (CC-BY-4.0, CC0-1.0, public-domain-mark...); empty: the"
            " quality allow-list. Flickr's own license table says which of its ids each means.",
        ),
        "limit": Param(200, type="integer", minimum=1, description="At most this many photos per run."),
        "batch_size": Param(20, type="integer", minimum=1, description="Photos per mapped task."),
    },
)
def ingest_flickr() -> None:
    summarize(store_photos.partial(source="flickr").expand(batch=discover_photos("flickr")))


ingest_flickr()

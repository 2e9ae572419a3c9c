"""
### ingest_coco

Takes a slice of COCO 2017: the annotations zip (for each image's license and Flickr origin) and the image
zips of the chosen splits, downloaded with HTTP Range resume and verified against the md5s pinned in the
connection before anything is registered (COCO publishes none), read member by member with every path and
size checked. Each image's license id is mapped to its license name, and the Flickr photo id in
`flickr_url` is kept so the same photo from Flickr and COCO is recognized as one.

A `plan` task downloads and verifies every zip once and writes each split's wanted sightings beside it, then
divides the zips' members into `parts` ranges for the mapped `ingest` tasks.

Connection `coco_default`: host = dump host base URL, extra `{"md5": {"<zip>": "<md5>"}}`. Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag

from colorflow_alerts import task_defaults
from colorflow_ingest import ingest_part, plan_dump, summarize
from pipelines.fan_out import DUMP_PARTS


@dag(
    dag_id="ingest_coco",
    schedule="@monthly",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "ingest", "dump"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("coco_default", type="string", description="Airflow connection to use."),
        "splits": Param(["val2017"], type="array", description="Splits to take (train2017, val2017)."),
        "classes": Param([], type="array", description="Category names to take; empty: all."),
        "max_images": Param(None, type=["null", "integer"], minimum=1, description="At most this many images."),
        "parts": Param(DUMP_PARTS, type="integer", minimum=1, description="Mapped tasks the slice is divided into."),
    },
)
def ingest_coco() -> None:
    summarize(ingest_part.partial(source="coco").expand(part=plan_dump(source="coco")))


ingest_coco()

"""
### ingest_kaggle

Takes the Kaggle `image-colorization` dataset (MIRFLICKR L and ab channels as `.npy` arrays in OpenCV 8-bit
Lab): lists its files through the Kaggle API, downloads the arrays from their signed storage URLs with
HTTP Range resume and md5 checks, verifies shapes and dtypes (`allow_pickle=False`, memory-mapped), and
stores each sample as a Lab array, with no detour through RGB or JPEG, so it goes on to the shards as is.

A Kaggle dataset is one part: its samples need rows of several arrays at once.

Connection `kaggle_default`: host = API base URL, login = username, password = key (or `KAGGLE_USERNAME` /
`KAGGLE_KEY`). Emits `raw_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag

from colorflow_alerts import task_defaults
from colorflow_ingest import ingest_part, plan_dump, summarize


@dag(
    dag_id="ingest_kaggle",
    schedule="@monthly",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "ingest", "dump"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "connection_id": Param("kaggle_default", type="string", description="Airflow connection to use."),
        "dataset": Param("shravankumar9892/image-colorization", type="string", description="owner/dataset."),
        "max_images": Param(None, type=["null", "integer"], minimum=1, description="At most this many samples."),
    },
)
def ingest_kaggle() -> None:
    summarize(ingest_part.partial(source="kaggle").expand(part=plan_dump(source="kaggle")))


ingest_kaggle()

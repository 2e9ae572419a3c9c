"""
### validate_images

Decides what may be trained on. For the images still pending, builds a table of facts (decodes fully,
format, size, aspect, EXIF orientation, colorfulness, chroma, grayscale or sepia, brightness, exact and
near duplicates, license) and validates it with the Great Expectations suites in `expectations/`. A row
failure rejects one image with every reason; rejected bytes are copied to `quarantine/`. A batch failure
(most of a batch undecodable, or a source mostly rejected) fails the task at once, which pages on-call:
that usually means a source changed. Each run writes an HTML report to `reports/quality/<run>/` in the
lake; its address is in the task log.

Scheduled by `raw_images`; emits `validated_images`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task

from colorflow_alerts import fail_fast, task_defaults
from colorflow_assets import RAW_IMAGES, VALIDATED_IMAGES


@dag(
    dag_id="validate_images",
    schedule=[RAW_IMAGES],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "quality"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={"limit": Param(None, type=["null", "integer"], minimum=1, description="At most this many images.")},
)
def validate_images() -> None:
    @task(outlets=[VALIDATED_IMAGES])
    def validate() -> dict:
        from pipelines.catalog import open_catalog
        from pipelines.quality import BatchRejected, validate_batch
        from pipelines.settings import get_settings
        from pipelines.storage import open_store

        context = get_current_context()
        with fail_fast(BatchRejected):
            return validate_batch(
                open_store(), open_catalog(), context["run_id"], get_settings(), limit=context["params"]["limit"]
            )

    validate()


validate_images()

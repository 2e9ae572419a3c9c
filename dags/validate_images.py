"""
### validate_images

Decides what may be trained on. `plan` cuts the images still pending into groups (`fact_group_images`
each); one mapped `measure` task per group decodes its images and measures their facts (decodes fully,
format, size, aspect, EXIF orientation, colorfulness, chroma, grayscale or sepia, brightness), so a retry
measures its own group again and nothing else. `judge` then adds exact and near duplicates and validates
the whole table, license verdicts included, with the Great Expectations suites in `expectations/`. A row
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
    params={
        "limit": Param(None, type=["null", "integer"], minimum=1, description="At most this many images."),
        "group_images": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Images per measuring task (default: the fact_group_images setting, 5,000).",
        ),
    },
)
def validate_images() -> None:
    @task
    def plan() -> list[int]:
        """Choose the batch and cut it into groups; the group numbers are what `measure` maps over."""
        from pipelines.catalog import open_catalog
        from pipelines.quality import plan_batch
        from pipelines.settings import get_settings
        from pipelines.storage import open_store

        context = get_current_context()
        params = context["params"]
        return plan_batch(
            open_store(),
            open_catalog(),
            context["run_id"],
            get_settings(),
            limit=params["limit"],
            group_images=params["group_images"],
        )

    @task
    def measure(group: int) -> dict:
        from pipelines.quality import extract_group
        from pipelines.settings import get_settings
        from pipelines.storage import open_store

        return extract_group(open_store(), get_current_context()["run_id"], group, get_settings())

    # none_failed: a batch with nothing pending maps no `measure`, and the run still gets its (empty) report.
    @task(outlets=[VALIDATED_IMAGES], trigger_rule="none_failed")
    def judge() -> dict:
        from pipelines.catalog import open_catalog
        from pipelines.quality import BatchRejected, judge_batch
        from pipelines.settings import get_settings
        from pipelines.storage import open_store

        with fail_fast(BatchRejected):
            return judge_batch(open_store(), open_catalog(), get_current_context()["run_id"], get_settings())

    measure.expand(group=plan()) >> judge()


validate_images()

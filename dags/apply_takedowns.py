"""
### apply_takedowns

Removes photos at their author's request (`pipelines.takedowns`). Name them one way: `source` and
`source_id`, `page_url`, `author`, or `sha256`; give the `reason` and who asked (`requested_by`).

`apply` deletes their raw objects and quarantine copies, marks them withdrawn in the catalog (every later
build leaves them out, and ingestion refuses the same bytes or source ids with a fetch failure naming the
takedown), tags the registered model versions trained on them `contains_withdrawn`, and writes the impact
report to `reports/takedowns/<id>.json` and `.html` in the lake: the dataset versions that contain them,
the training runs on those versions and the model versions with their aliases. The task log prints it.

With `rebuild`, `rebuild` triggers `build_dataset` once per affected dataset version with its params; the
new version leaves the photos out, and its publication triggers `train_colorizer`. A repeated takedown
changes nothing; one that names nothing known says so in the log and changes nothing. The same from a
shell: `colorflow takedown --help`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from colorflow_alerts import fail_fast, task_defaults


def _named(description: str) -> Param:
    return Param(None, type=["null", "string"], description=description)


@dag(
    dag_id="apply_takedowns",
    schedule=None,
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    tags=["colorflow", "operations"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "source": _named("Source of the photo (unsplash, flickr, ...), with source_id."),
        "source_id": _named("The photo's id at that source."),
        "page_url": _named("The photo's page (or image) URL."),
        "author": _named("Every photo by this author (name or profile URL, any case)."),
        "sha256": _named("The image with these bytes."),
        "reason": Param("", type="string", minLength=1, description="Why the photos are removed."),
        "requested_by": Param("", type="string", minLength=1, description="Who asked."),
        "rebuild": Param(False, type="boolean", description="Rebuild the affected dataset versions, then train."),
    },
)
def apply_takedowns() -> None:
    @task
    def apply() -> list[dict]:
        """Apply the takedown; the build_dataset confs of the rebuilds asked for (none without `rebuild`)."""
        from pipelines.catalog import open_catalog
        from pipelines.settings import get_settings
        from pipelines.storage import open_store
        from pipelines.takedowns import TakedownRequest, apply_takedown, describe

        params, settings = get_current_context()["params"], get_settings()
        named = ("source", "source_id", "page_url", "author", "sha256")
        with fail_fast(ValueError):
            request = TakedownRequest(params["reason"], params["requested_by"], **{key: params[key] for key in named})
        outcome = apply_takedown(request, open_store(), open_catalog(), settings.mlflow_tracking_uri)
        if not outcome.known:
            print(f"nothing known matches {request.describe()}: nothing changed")
            return []
        print(describe(outcome.report))
        return outcome.rebuild_confs() if params["rebuild"] else []

    TriggerDagRunOperator.partial(task_id="rebuild", trigger_dag_id="build_dataset").expand(conf=apply())


apply_takedowns()

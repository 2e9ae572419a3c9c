"""
### train_colorizer

Trains the pix2pix colorizer (U-Net generator predicting a/b from L, PatchGAN discriminator) on a dataset
version and tracks the run in MLflow (experiment `colorizer`): params, losses, validation metrics, sample
grids (input gray | prediction | truth), the dataset as input with its card, and the final checkpoint.

The task runs on queue `gpu` in pool `gpu` (one training at a time per slot) and launches `torchrun` with
one process per visible GPU. A node without a GPU (the embedded setup) trains a small configuration on the
CPU. Checkpoints go to `checkpoints/<mlflow run id>/` in the lake every few hundred steps, so a retry of
the task (after a crash or a preemption) resumes the same MLflow run where it stopped.

`evaluate_and_promote` then scores the final generator on the test split and a fixed panel of photos,
each beside the gray baseline, logs a comparison grid, the model (registered as `colorizer`) and its model
card (`model_card.md`, also the version's description), and moves the `champion` alias when the primary
metric (`eval_psnr`) improves and the guards hold; the old champion stays reachable as `previous`.

Scheduled by `lab_dataset` (the version comes from the event); triggered by hand, `dataset_version` picks
one (empty: the newest) and the other params override the training config. A run still going after
`COLORFLOW_TRAIN_DEADLINE_HOURS` (default 8) raises an overdue alert.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, get_current_context, task

from colorflow_alerts import overdue_run_alert, task_defaults
from colorflow_assets import LAB_DATASET
from colorflow_training import train_from_context
from pipelines.settings import get_settings

DEADLINE = timedelta(hours=get_settings().train_deadline_hours)


def _optional(kind: str, description: str, **bounds: object) -> Param:
    return Param(None, type=["null", kind], description=f"{description} (empty: the default)", **bounds)


@dag(
    dag_id="train_colorizer",
    schedule=[LAB_DATASET],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "training"],
    default_args=task_defaults(retries=1),
    doc_md=__doc__,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=DEADLINE,
        callback=AsyncCallback(overdue_run_alert, kwargs={"expected": f"finished within {DEADLINE}"}),
    ),
    params={
        "dataset_version": _optional("string", "Dataset version to train on; empty: the triggering or newest"),
        "steps": _optional("integer", "Optimizer steps", minimum=1),
        "batch_size": _optional("integer", "Images per step and GPU", minimum=1),
        "lr_g": _optional("number", "Generator learning rate", exclusiveMinimum=0),
        "lr_d": _optional("number", "Discriminator learning rate", exclusiveMinimum=0),
        "ngf": _optional("integer", "Generator width", minimum=1),
        "ndf": _optional("integer", "Discriminator width", minimum=1),
        "crop_size": _optional("integer", "Training crop side", minimum=16),
        "checkpoint_every": _optional("integer", "Steps between checkpoints (a retry resumes there)", minimum=1),
        "resume_run_id": _optional("string", "MLflow run id to resume from its last checkpoint"),
    },
)
def train_colorizer() -> None:
    @task(queue="gpu", pool="gpu")
    def train() -> dict:
        return train_from_context(get_current_context())

    @task
    def evaluate_and_promote(summary: dict) -> dict:
        from models.registry import register_run
        from pipelines.catalog import open_catalog
        from pipelines.settings import get_settings

        settings = get_settings()
        return register_run(summary["run_id"], settings.mlflow_tracking_uri, settings.lake_url, open_catalog(settings))

    evaluate_and_promote(train())


train_colorizer()

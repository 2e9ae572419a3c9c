"""The train_colorizer task's side of training: what it reads from Airflow's task context (params, the
triggering asset event, the try number) before it hands a plain config to `models.launch`, which knows
nothing of Airflow."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# DAG params that override the training config when set (the rest come from the node's profile).
TRAINING_PARAMS = ("steps", "batch_size", "lr_g", "lr_d", "ngf", "ndf", "crop_size", "checkpoint_every")


def train_from_context(context: Any) -> dict:
    """Pick the dataset version (params, else the triggering event, else the newest), resume an earlier try
    of this same task if it left a checkpoint, and train; returns the trainer's summary."""
    from models.launch import for_this_node, git_commit, launch
    from models.tracking import EXPERIMENT, run_tagged
    from models.train import TrainConfig
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings
    from pipelines.stitch import latest_version

    params, settings = context["params"], get_settings()
    events = [event for events in (context.get("triggering_asset_events") or {}).values() for event in events]
    from_event = next((event.extra.get("version") for event in reversed(events) if event.extra), None)
    version = params.get("dataset_version") or from_event or latest_version(open_catalog(settings))
    if not version:
        raise ValueError("no dataset version is published yet: run build_dataset first")
    ti = context["ti"]
    tags = {"dag_id": ti.dag_id, "airflow_run_id": ti.run_id, "airflow_try_number": str(ti.try_number)}
    tags |= {"git_commit": git_commit(), "dataset_version": version}
    resume = params.get("resume_run_id") or ""
    if not resume and ti.try_number > 1:
        resume = run_tagged(settings.mlflow_tracking_uri, EXPERIMENT, {"airflow_run_id": ti.run_id})
        logger.info("try %d resumes run %s", ti.try_number, resume or "(none found: starting over)")
    overrides = {name: params[name] for name in TRAINING_PARAMS if params.get(name) is not None}
    config = for_this_node(TrainConfig(dataset=version, resume=resume), overrides)
    return launch(config, tags=tags)

"""The demo: run Colorflow's pipeline through the embedded Airflow, then say what it did and where to look,
and check in a real browser that the Airflow and MLflow UIs show it (screenshots in `<home>/screenshots/`).

Ingestion DAGs on a daily schedule are backfilled over the last few days, exactly as an operator would
(`POST /api/v2/backfills`), so the demo also shows one run per day, each collecting its own window.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from embedded.airflow_api import AirflowClient
from embedded.polling import wait_until
from embedded.settings import StackSettings
from pipelines.catalog import FetchFailure, Image, ImageStatus, Sighting, open_catalog
from pipelines.stitch import card_keys, describe, latest_version, load_manifest
from pipelines.storage import open_store

logger = logging.getLogger(__name__)

PROXIED_ARTIFACTS = "mlflow-artifacts:"  # what an artifact URI starts with when the server stores artifacts

BACKFILL_DAYS = 3


@dataclass(frozen=True)
class Step:
    dag_id: str
    backfill_days: int = 0  # 0: one manual run
    conf: dict | None = None
    follows: str = ""  # a DAG whose asset event schedules this one: wait for that run, else run by hand


DEMO_STEPS = (
    Step("ingest_local"),
    Step("ingest_unsplash", backfill_days=BACKFILL_DAYS),
    Step("ingest_flickr", backfill_days=BACKFILL_DAYS),
    Step("ingest_instagram"),
    Step("ingest_imagenet"),
    Step("ingest_coco"),
    Step("ingest_kaggle"),
    # Also scheduled by the raw_images asset; run here so the demo waits for every verdict.
    Step("validate_images"),
    # Also scheduled by the validated_images asset: a second run finds the version published and skips.
    Step("build_dataset"),
    # Scheduled by the lab_dataset asset: a new version from the step above starts it on its own.
    Step("train_colorizer", follows="build_dataset"),
    # Daily in production; here last, with no grace period, over everything the demo wrote.
    Step("audit_lake", conf={"grace_minutes": 0, "checksums": True}),
)


@dataclass(frozen=True)
class Outcome:
    dag_id: str
    how: str
    states: list[str]
    run_ids: list[str]

    @property
    def succeeded(self) -> bool:
        return bool(self.states) and all(state == "success" for state in self.states)


def lake_counts(settings: StackSettings) -> dict[str, int]:
    store = open_store(settings=settings)
    catalog = open_catalog(settings)
    return {
        "raw objects": sum(1 for _ in store.list("raw/")),
        "images": catalog.count(Image),
        "sightings": catalog.count(Sighting),
        "fetch failures": catalog.count(FetchFailure),
    }


def verdict_counts(settings: StackSettings) -> dict[str, int]:
    """Accepted images, and rejected ones by reason (an image with several reasons counts under each)."""
    counts: Counter[str] = Counter()
    with open_catalog(settings).session() as session:
        for status, reasons in session.execute(select(Image.status, Image.reject_reasons)):
            if status != ImageStatus.REJECTED:
                counts[status] += 1
                continue
            for reason in reasons or ["(no reason recorded)"]:
                counts[f"rejected: {reason.split(':')[0].split(' of ')[0].split(' (')[0]}"] += 1
    return dict(sorted(counts.items()))


def latest_dataset(settings: StackSettings) -> str:
    """The newest published dataset version, described for people."""
    version = latest_version(open_catalog(settings))
    if version is None:
        return "no dataset version published yet"
    return describe(load_manifest(open_store(settings=settings), version)).replace("\n", "\n  ")


def dataset_card_location(settings: StackSettings) -> str:
    """Where the newest dataset version's card is in the lake."""
    version = latest_version(open_catalog(settings))
    if version is None:
        return "no dataset version published yet"
    store, key = open_store(settings=settings), card_keys(version)["card.md"]
    return store.uri(key) if store.exists(key) else f"none yet: `colorflow dataset card {version}` writes it"


def model_card_location(settings: StackSettings) -> str:
    """Where the champion's model card is: the run's artifact (a file the stack's MLflow keeps in the lake)
    and its model version's page, where the card is the description."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from models.model_card import MODEL_CARD_ARTIFACT
    from models.registry import MODEL_NAME

    client = MlflowClient(settings.mlflow_tracking_uri)
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        return "no champion yet"
    artifact = f"{client.get_run(champion.run_id).info.artifact_uri}/{MODEL_CARD_ARTIFACT}"
    if artifact.startswith(PROXIED_ARTIFACTS):  # kept by the server itself, under its artifacts destination
        artifact = f"{settings.mlflow_artifacts_url}/{artifact.removeprefix(PROXIED_ARTIFACTS).lstrip('/')}"
    page = f"{settings.mlflow_tracking_uri}/#/models/{MODEL_NAME}/versions/{champion.version}"
    return f"{artifact}\n               (also the description of {page})"


def latest_training(settings: StackSettings) -> str:
    """The newest colorizer run in MLflow: its status, metrics and where to see it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("colorizer")
    runs = (
        client.search_runs([experiment.experiment_id], order_by=["start_time DESC"], max_results=1)
        if experiment
        else []
    )
    if not runs:
        return "no training run yet"
    run = runs[0]
    shown = ("loss_g_l1", "val_l1_ab", "val_psnr", "val_ssim", "val_colorfulness_ratio")
    metrics = ", ".join(f"{name} {run.data.metrics[name]:.3f}" for name in shown if name in run.data.metrics)
    page = f"{settings.mlflow_tracking_uri}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    dataset = run.data.tags.get("dataset_version")
    return f"run {run.info.run_id} {run.info.status} on dataset {dataset}\n  {metrics}\n  {page}"


def colorize_panel(settings: StackSettings) -> str:
    """Colorize the evaluation panel with the champion, into <home>/colorized/; says what and where."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.colorize import colorize_files, load_colorizer
    from models.registry import MODEL_NAME, panel_paths

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        return "no champion yet"
    folder = settings.home / "colorized"
    written = colorize_files(load_colorizer(f"models:/{MODEL_NAME}@champion"), panel_paths(), folder, progress=False)
    decision = champion.tags.get("promotion_reason", "")
    return f"{MODEL_NAME} version {champion.version} ({decision})\n  {len(written)} panel photos colorized: {folder}"


def run_step(client: AirflowClient, step: Step, today: datetime, started: datetime) -> Outcome:
    client.wait_for_dag(step.dag_id)
    client.unpause(step.dag_id)
    if step.follows and client.asset_events(source_dag_id=step.follows, timestamp_gte=started.isoformat()):
        run_id = wait_for_asset_run(client, step.dag_id, started)
        print(f"running {step.dag_id} ({run_id}), scheduled by {step.follows}'s new asset ...", flush=True)
        state = client.wait_for_run(step.dag_id, run_id, timeout_s=1800)
        return Outcome(step.dag_id, "asset-triggered run", [state], [run_id])
    if not step.backfill_days:
        run_id = client.trigger(step.dag_id, step.conf)
        print(f"running {step.dag_id} ({run_id}) ...", flush=True)
        return Outcome(step.dag_id, "manual run", [client.wait_for_run(step.dag_id, run_id)], [run_id])
    first, last = today - timedelta(days=step.backfill_days), today - timedelta(days=1)
    backfill = client.backfill(step.dag_id, first, last)
    print(f"backfilling {step.dag_id} from {first:%Y-%m-%d} to {last:%Y-%m-%d} ...", flush=True)
    runs = client.wait_for_backfill(backfill)
    how = f"backfill {first:%m-%d}..{last:%m-%d}"
    return Outcome(step.dag_id, how, [run["state"] for run in runs], [run["dag_run_id"] for run in runs])


def wait_for_asset_run(client: AirflowClient, dag_id: str, since: datetime, timeout_s: float = 120) -> str:
    """The run an asset event created for `dag_id` after `since` (the scheduler makes it within seconds)."""
    runs = wait_until(
        lambda: client.runs(dag_id, run_type="asset_triggered", run_after_gte=since.isoformat()),
        timeout_s=timeout_s,
        interval_s=2,
        what=f"no asset-triggered run of {dag_id} appeared",
    )
    return runs[0]["dag_run_id"]


def run_demo(settings: StackSettings) -> int:
    """Run each demo step in turn; returns a process exit code."""
    client = AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    before, started = lake_counts(settings), datetime.now(UTC)
    # Airflow drops asset events for paused DAGs: a follower must be live before its asset is published.
    for step in DEMO_STEPS:
        if step.follows:
            client.wait_for_dag(step.dag_id)
            client.unpause(step.dag_id)
    outcomes = [run_step(client, step, today, started) for step in DEMO_STEPS]
    print(summary(settings, outcomes, before, lake_counts(settings)))
    if settings.executor == "celery":
        print(where_tasks_ran(client, outcomes))
    if not all(outcome.succeeded for outcome in outcomes):
        return 1
    # Last, look at the result as a person would: the runs in the Airflow UI, the model in MLflow's.
    from embedded import ui_check

    print("\nChecking the Airflow and MLflow UIs in headless Chromium ...", flush=True)
    status = ui_check.report(settings)
    print(cards(settings))
    return status


def cards(settings: StackSettings) -> str:
    """What the demo ends with: the cards that say what the data and the model are, and may be used for."""
    return "\n".join(
        [
            "",
            "Cards:",
            f"  dataset card {dataset_card_location(settings)}",
            f"  model card   {model_card_location(settings)}",
        ]
    )


def where_tasks_ran(client: AirflowClient, outcomes: list[Outcome]) -> str:
    """Which Celery worker ran each task, as Airflow's API records it: the proof that work spread over the
    default workers and that training went to the gpu queue."""
    lines = ["", "Where the tasks ran (task instances' hostname and queue, from the Airflow API):"]
    for outcome in outcomes:
        hosts: dict[str, Counter[str]] = {}
        for run_id in outcome.run_ids:
            for task in client.task_instances(outcome.dag_id, run_id):
                where = f"{task['hostname'] or '(not run)'} [{task['queue']}]"
                hosts.setdefault(task["task_id"], Counter())[where] += 1
        for task_id, counts in hosts.items():
            spread = ", ".join(f"{where} x{count}" for where, count in sorted(counts.items()))
            lines.append(f"  {outcome.dag_id + '.' + task_id:<42} {spread}")
    return "\n".join(lines)


def summary(settings: StackSettings, outcomes: list[Outcome], before: dict[str, int], after: dict[str, int]) -> str:
    lines = ["", "Colorflow demo", "=============="]
    for outcome in outcomes:
        states = ", ".join(f"{outcome.states.count(state)} {state}" for state in sorted(set(outcome.states)))
        lines.append(f"  {outcome.dag_id:<18} {outcome.how:<22} {states}")
    lines += ["", "Lake and catalog (now, and added by this demo):"]
    lines += [f"  {name:<15} {after[name]:>6}   (+{after[name] - before[name]})" for name in after]
    lines += ["", "Quality verdicts:"]
    lines += [f"  {verdict:<40} {count:>6}" for verdict, count in verdict_counts(settings).items()]
    lines += ["", "Dataset:", f"  {latest_dataset(settings)}"]
    lines += ["", "Training:", f"  {latest_training(settings)}"]
    lines += ["", "Champion:", f"  {colorize_panel(settings)}"]
    lines += ["", "Images per source (sightings):"]
    lines += [f"  {source:<15} {count:>6}" for source, count in open_catalog(settings).count_by_source().items()]
    lines += [
        "",
        f"  lake         {settings.lake_url}",
        f"  catalog      {settings.catalog_url}",
        f"  Airflow UI   {settings.airflow_url}   login {settings.airflow_username} / {settings.airflow_password}",
        f"  MLflow UI    {settings.mlflow_tracking_uri}",
        f"  Studio       {settings.studio_url}   colorize your own photos and clips",
        f"  logs         {settings.logs_dir}",
        "",
        "The services keep running; stop them with `make down`.",
    ]
    return "\n".join(lines)

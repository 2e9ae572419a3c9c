"""Dependencies failing under a running pipeline: the S3 server goes away during ingestion, the catalog's
PostgreSQL restarts or crashes mid-run, MLflow stops during training. Runs on a stack of its own whose lake
is a real S3 server (behind a switchable outage), whose catalog is a durable PostgreSQL server of its own,
and whose alerts go to a local webhook receiver. Each drill ends with the lake audit.

MLflow going away during training is ridden out, not failed: the tracking client retries each call with
backoff for about two minutes (MLflow's default `MLFLOW_HTTP_REQUEST_MAX_RETRIES` and backoff), so a
restart or a short outage leaves the run complete with every metric. A longer outage fails the training
task with MLflow's error, which alerts on-call, and its retry resumes the same MLflow run from the last
checkpoint: the run catches up, never with a silent gap.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from embedded import postgres, services
from embedded.airflow_api import AirflowClient
from embedded.polling import wait_until
from embedded.ports import free_port
from embedded.settings import StackSettings
from embedded.supervisor import Service, Supervisor
from models.launch import CPU_PROFILE
from models.tracking import EXPERIMENT, run_tagged
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.stitch import latest_version
from tests.alert_receivers import Receivers, alert_receivers
from tests.corpus import color_photo
from tests.drills.audit import audit_after_fault
from tests.drills.outage import Outage
from tests.stacks import private_stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow_drill]

BUCKET = "colorflow-drills"


@dataclass
class FaultStack:
    settings: StackSettings
    airflow: AirflowClient
    s3: Outage
    keeper: Supervisor
    catalog_server: Service
    catalog_cluster: Path
    receivers: Receivers


@pytest.fixture(scope="module")
def fault_stack(s3_endpoint: str) -> Iterator[FaultStack]:
    s3 = Outage(urlsplit(s3_endpoint).port)
    s3.restore()
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=BUCKET)
    catalog_port = free_port()
    settings = private_stack_settings(
        "colorflow-faults-",
        lake_url=f"s3://{BUCKET}/lake",
        s3_endpoint_url=s3.url,
        catalog_url=postgres.url(catalog_port),
    )
    home = settings.home
    keeper = Supervisor(home / "run", home / "logs")
    # A durable catalog, configured as production runs one: what the drill restarts must keep what it
    # acknowledged, or the drill would be testing a database set up to lose commits.
    catalog_cluster = home / "catalog-postgres"
    postgres.prepare_cluster(catalog_cluster)
    catalog_server = postgres.server_service("catalog-postgres", catalog_cluster, catalog_port)
    keeper.start(catalog_server)
    services.up(settings)
    airflow = AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    try:
        with alert_receivers() as receivers:
            webhook = "colorflow_alerts_webhook"
            airflow.put_connection(webhook, **receivers.connections()[webhook])
            yield FaultStack(settings, airflow, s3, keeper, catalog_server, catalog_cluster, receivers)
    finally:
        services.down(settings)
        keeper.stop(catalog_server.name)
        s3.begin()
        shutil.rmtree(home, ignore_errors=True)


def photo_folder(home: Path, name: str, seeds: range) -> dict[str, Path]:
    """New photos in a folder of the stack's home (every process of the stack reads it; it goes with it)."""
    folder = home / f"photos-{name}"
    folder.mkdir()
    folder.chmod(0o755)
    photos = {}
    for seed in seeds:
        data = color_photo(seed, size=(640, 480))
        path = folder / f"photo-{seed}.jpg"
        path.write_bytes(data)
        photos[hashlib.sha256(data).hexdigest()] = path
    return photos


def missing_or_doubled(settings: Settings, photos: dict[str, Path]) -> tuple[list[str], list[str]]:
    with open_catalog(settings).session() as session:
        stored = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(list(photos)))))
        doubled = session.execute(
            select(Sighting.source_id)
            .where(Sighting.image_sha256.in_(list(photos)))
            .group_by(Sighting.source_id)
            .having(func.count() > 1)
        ).all()
    return sorted(set(photos) - stored), [row[0] for row in doubled]


@pytest.mark.drill("dependency: S3 down", "the S3 server unreachable for a whole ingestion run, then back")
def test_ingestion_without_s3_fails_and_alerts_and_its_rerun_completes(
    fault_stack: FaultStack, drill_report: dict
) -> None:
    airflow, settings = fault_stack.airflow, fault_stack.settings
    photos = photo_folder(settings.home, "s3-outage", range(9700, 9720))
    folder = next(iter(photos.values())).parent
    fault_stack.s3.begin()
    try:
        run_id, state = airflow.run("ingest_local", {"folder": str(folder)}, timeout_s=900)
    finally:
        fault_stack.s3.restore()

    assert state == "failed"
    store_tries = [task for task in airflow.task_instances("ingest_local", run_id) if task["task_id"] == "store"]
    assert store_tries and all(task["state"] == "failed" and task["try_number"] == 3 for task in store_tries)
    alerts = [alert for alert in fault_stack.receivers.inbox.webhook if alert["run_id"] == run_id]
    assert [alert["task_id"] for alert in alerts] == ["store"] * len(store_tries), "one alert per failed task"

    assert airflow.rerun("ingest_local", run_id) == "success"
    missing, doubled = missing_or_doubled(settings, photos)
    drill_report.update(
        outcome=f"3 tries failed, {len(alerts)} alert(s); after S3 came back the rerun stored all {len(photos)}",
        objects_lost=len(missing),
    )
    assert missing == [] and doubled == [] and audit_after_fault(settings, drill_report) == []


CATALOG_STOPS = {
    "fast": ("catalog restart", "the catalog's PostgreSQL restarted (pg_ctl restart -m fast) while ingestion writes"),
    "immediate": (
        "catalog crash",
        "the catalog's PostgreSQL crashed (pg_ctl stop -m immediate) while ingestion writes",
    ),
}


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(mode, marks=pytest.mark.drill(f"dependency: {name}", fault), id=mode)
        for mode, (name, fault) in CATALOG_STOPS.items()
    ],
)
def test_a_catalog_restart_mid_run_loses_and_doubles_nothing(
    fault_stack: FaultStack, mode: str, drill_report: dict
) -> None:
    """Stopped as an operator restarts it (fast: sessions ended, checkpoint written) or as a crash leaves it
    (immediate: no checkpoint, the next start replays the log), a durable catalog keeps every commit it
    acknowledged: the run's retry completes the photos whose writes were cut, and nothing is lost or doubled."""
    airflow, settings, keeper = fault_stack.airflow, fault_stack.settings, fault_stack.keeper
    seeds = range(9800, 9880) if mode == "fast" else range(9880, 9960)
    photos = photo_folder(settings.home, f"catalog-{mode}", seeds)
    folder = next(iter(photos.values())).parent
    run_id = airflow.start("ingest_local", {"folder": str(folder), "batch_size": 1000})

    def stored() -> int:
        with open_catalog(settings).session() as session:
            return session.scalar(select(func.count()).select_from(Image).where(Image.sha256.in_(list(photos))))

    wait_until(stored, timeout_s=300, interval_s=0.1, what="the run's first photo in the catalog")
    postgres.stop_server(fault_stack.catalog_cluster, mode)
    keeper.start(fault_stack.catalog_server)
    kept = stored()  # every row acknowledged before the stop, as the restarted server has them

    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=600) == "success"
    missing, doubled = missing_or_doubled(settings, photos)
    tries = max(task["try_number"] for task in airflow.task_instances("ingest_local", run_id))
    # The server's own account of the stop and the start after it.
    restart = keeper.log_file(fault_stack.catalog_server.name).read_text().rpartition(f"received {mode} shutdown")[2]
    recovered = "not properly shut down; automatic recovery in progress" in restart
    drill_report.update(
        outcome=f"{kept} of {len(photos)} stored at the {mode} stop{', log replayed' if recovered else ''}; "
        f"run succeeded (store took {tries} tr{'y' if tries == 1 else 'ies'}), all {len(photos)} photos once",
        objects_lost=len(missing),
    )
    assert restart, f"the server log shows no {mode} shutdown"
    assert recovered == (mode == "immediate"), "a fast restart is clean; only a crash replays the log"
    assert missing == [] and doubled == [] and audit_after_fault(settings, drill_report) == []


@pytest.mark.drill("dependency: MLflow down", "the MLflow server stopped for 20 s in the middle of training")
def test_training_rides_out_an_mlflow_restart_with_no_gap(fault_stack: FaultStack, drill_report: dict) -> None:
    airflow, settings = fault_stack.airflow, fault_stack.settings
    photos = photo_folder(settings.home, "mlflow-outage", range(9900, 9940))
    folder = next(iter(photos.values())).parent
    assert airflow.run("ingest_local", {"folder": str(folder)})[1] == "success"
    assert airflow.run("validate_images")[1] == "success"
    assert airflow.run("build_dataset", {"load_size": 80, "shard_size": 16})[1] == "success"
    version = latest_version(open_catalog(settings))
    steps = 100
    run_id = airflow.start("train_colorizer", {"dataset_version": version, "steps": steps})
    mlflow = MlflowClient(settings.mlflow_tracking_uri)

    def training_logged() -> bool:
        training = run_tagged(settings.mlflow_tracking_uri, EXPERIMENT, {"airflow_run_id": run_id})
        return bool(training) and bool(mlflow.get_metric_history(training, "loss_g_l1"))

    wait_until(training_logged, timeout_s=600, interval_s=0.5, what="the training's first logged loss")
    mlflow_service = next(service for service in services.stack_services(settings) if service.name == "mlflow")
    services.supervisor(settings).stop("mlflow")
    time.sleep(20)
    services.supervisor(settings).start(mlflow_service)

    assert airflow.wait_for_run("train_colorizer", run_id, timeout_s=900) == "success"
    summary = airflow.xcom("train_colorizer", run_id, "train")
    logged = {point.step for point in mlflow.get_metric_history(summary["run_id"], "loss_g_l1")}
    every = CPU_PROFILE["log_every"]
    gaps = [step for step in [*range(every, steps, every), steps] if step not in logged]
    train_try = next(task for task in airflow.task_instances("train_colorizer", run_id) if task["task_id"] == "train")
    drill_report.update(
        outcome=f"training went on (try {train_try['try_number']}), MLflow run complete to step {steps}",
        objects_lost=len(gaps),
    )
    assert gaps == [] and mlflow.get_run(summary["run_id"]).info.status == "FINISHED"
    assert audit_after_fault(settings, drill_report) == []

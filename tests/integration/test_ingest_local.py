"""`ingest_local` through the real Airflow scheduler and API server: objects in the lake, rows in the
catalog, and a rerun that adds nothing.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from embedded import services
from embedded.airflow_api import AirflowClient
from pipelines.catalog import Image as ImageRow
from pipelines.catalog import Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.storage import open_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four distinct files (three photos and a login page saved as .jpg) plus one exact copy."""
    folder = tmp_path_factory.mktemp("photos")
    for color in ("tomato", "seagreen", "steelblue"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), color).save(buffer, format="JPEG")
        (folder / f"{color}.jpg").write_bytes(buffer.getvalue())
    (folder / "nested").mkdir()
    (folder / "nested" / "copy.jpg").write_bytes((folder / "tomato.jpg").read_bytes())
    (folder / "login.jpg").write_bytes(b"<html><body>Please log in</body></html>")
    return folder


def lake_snapshot(settings: Settings) -> dict[str, str]:
    store = open_store(settings=settings)
    return {key: hashlib.sha256(store.get(key)).hexdigest() for key in store.list("raw/")}


def run_ingest(airflow: AirflowClient, folder: Path) -> str:
    airflow.wait_for_dag("ingest_local")
    airflow.unpause("ingest_local")
    run_id = airflow.trigger("ingest_local", conf={"folder": str(folder), "license": "CC0", "batch_size": 2})
    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=300) == "success"
    return run_id


def test_every_service_is_healthy_and_on_loopback(stack_settings: Settings) -> None:
    assert set(services.status(stack_settings).values()) == {"healthy"}
    assert requests.get(f"{stack_settings.mlflow_tracking_uri}/health", timeout=5).ok
    assert requests.get(f"{stack_settings.sandbox_url}/healthz", timeout=5).json()["status"] == "ok"


def test_the_api_refuses_requests_without_login(stack_settings: Settings) -> None:
    assert requests.get(f"{stack_settings.airflow_url}/api/v2/dags", timeout=10).status_code == 401


def test_ingest_local_stores_each_photo_once_with_catalog_rows(
    airflow: AirflowClient, stack_settings: Settings, photo_folder: Path
) -> None:
    run_id = run_ingest(airflow, photo_folder)

    snapshot = lake_snapshot(stack_settings)
    assert len(snapshot) == 4
    assert all(key == f"raw/{digest[:2]}/{digest}.{key.rsplit('.', 1)[1]}" for key, digest in snapshot.items())
    catalog = open_catalog(stack_settings)
    assert catalog.count(ImageRow) == 4
    assert catalog.count(Sighting, source="local", license="CC0", run_id=run_id) == 4

    totals = airflow.xcom("ingest_local", run_id, "summarize")
    assert totals == {"images_added": 4, "objects_written": 4, "offered": 5, "sightings_added": 4}
    states = {
        (task["task_id"], task["map_index"]): task["state"] for task in airflow.task_instances("ingest_local", run_id)
    }
    assert states == {
        ("discover", -1): "success",
        ("store", 0): "success",
        ("store", 1): "success",
        ("store", 2): "success",
        ("summarize", -1): "success",
    }


def test_a_rerun_adds_no_objects_and_no_rows(
    airflow: AirflowClient, stack_settings: Settings, photo_folder: Path
) -> None:
    before = lake_snapshot(stack_settings)
    catalog = open_catalog(stack_settings)
    rows_before = (catalog.count(ImageRow), catalog.count(Sighting))

    run_id = run_ingest(airflow, photo_folder)

    assert lake_snapshot(stack_settings) == before
    assert (catalog.count(ImageRow), catalog.count(Sighting)) == rows_before
    assert airflow.xcom("ingest_local", run_id, "summarize")["objects_written"] == 0

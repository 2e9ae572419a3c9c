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
from embedded.settings import StackSettings
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


def folder_digests(folder: Path) -> set[str]:
    return {hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.rglob("*") if path.is_file()}


def lake_snapshot(settings: Settings, digests: set[str]) -> dict[str, str]:
    """The raw objects holding these photos, with the checksums of their bytes. Other DAGs share the
    stack's lake (and the scheduler may run them meanwhile), so only this folder's photos are looked at."""
    store = open_store(settings=settings)
    return {
        key: hashlib.sha256(store.get(key)).hexdigest()
        for key in store.list("raw/")
        if key.rsplit("/", 1)[1].split(".")[0] in digests
    }


def local_rows(settings: Settings, digests: set[str]) -> tuple[int, int]:
    """Images and `local` sightings of these photos in the catalog."""
    catalog = open_catalog(settings)
    with catalog.session() as session:
        images = session.query(ImageRow).filter(ImageRow.sha256.in_(digests)).count()
        sightings = session.query(Sighting).filter(Sighting.source == "local", Sighting.source_id.in_(digests)).count()
    return images, sightings


def run_ingest(airflow: AirflowClient, folder: Path) -> str:
    airflow.wait_for_dag("ingest_local")
    airflow.unpause("ingest_local")
    run_id = airflow.trigger("ingest_local", conf={"folder": str(folder), "license": "CC0-1.0", "batch_size": 2})
    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=300) == "success"
    return run_id


def test_every_service_is_healthy_and_on_loopback(stack_settings: StackSettings) -> None:
    assert set(services.status(stack_settings).values()) == {"healthy"}
    assert requests.get(f"{stack_settings.mlflow_tracking_uri}/health", timeout=5).ok
    assert requests.get(f"{stack_settings.sandbox_url}/healthz", timeout=5).json()["status"] == "ok"


def test_the_api_refuses_requests_without_login(stack_settings: StackSettings) -> None:
    assert requests.get(f"{stack_settings.airflow_url}/api/v2/dags", timeout=10).status_code == 401


def test_ingest_local_stores_each_photo_once_with_catalog_rows(
    airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path
) -> None:
    run_id = run_ingest(airflow, photo_folder)

    digests = folder_digests(photo_folder)
    snapshot = lake_snapshot(stack_settings, digests)
    assert len(digests) == len(snapshot) == 4
    assert all(key == f"raw/{digest[:2]}/{digest}.{key.rsplit('.', 1)[1]}" for key, digest in snapshot.items())
    assert local_rows(stack_settings, digests) == (4, 4)
    assert open_catalog(stack_settings).count(Sighting, source="local", license="CC0-1.0", run_id=run_id) == 4

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
    airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path
) -> None:
    digests = folder_digests(photo_folder)
    before = lake_snapshot(stack_settings, digests), local_rows(stack_settings, digests)

    run_id = run_ingest(airflow, photo_folder)

    assert (lake_snapshot(stack_settings, digests), local_rows(stack_settings, digests)) == before
    assert airflow.xcom("ingest_local", run_id, "summarize")["objects_written"] == 0

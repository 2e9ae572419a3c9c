"""Security drills: a hostile source cannot make Colorflow call internal addresses, hostile archives and
checkpoints run nothing and write nothing, secrets stay out of logs, MLflow and the lake, and the
services let no one in without logging in nor listen beyond loopback.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from embedded.settings import StackSettings
from models.train import load_checkpoint
from pipelines.archives import ArchiveError, iter_tar, iter_zip
from pipelines.catalog import FetchFailure, Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.sources import unsplash
from pipelines.sources.web import Window, store_candidates
from pipelines.storage import open_store
from sandbox import credentials
from tests.corpus import color_photo
from tests.drills.audit import audit_after_fault

pytestmark = [pytest.mark.integration]

INTERNAL_TARGETS = (
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://10.0.0.8/photo.jpg",
    "http://192.168.1.20/photo.jpg",
    "http://172.16.5.5/photo.jpg",
    "http://[::1]:{canary}/photo.jpg",
    "http://localhost:{canary}/photo.jpg",
    "http://127.0.0.1:{canary}/photo.jpg",
    "http://0.0.0.0:{canary}/photo.jpg",
)
KEY = "hostile-drill-access-key"


@dataclass
class Hits:
    paths: list[str] = field(default_factory=list)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def canary() -> Iterator[tuple[Hits, int]]:
    """An internal service on loopback that must never be reached: it counts every request."""
    hits = Hits()

    class Canary(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            hits.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(color_photo(1))

    server, _ = serve(Canary)
    yield hits, server.server_address[1]
    server.shutdown()


@pytest.fixture
def hostile_unsplash(canary: tuple[Hits, int]) -> Iterator[tuple[str, list[str]]]:
    """An allow-listed host speaking the Unsplash search API whose results point at internal addresses,
    directly or through a redirect, beside one honest photo."""
    _, canary_port = canary
    targets = [target.format(canary=canary_port) for target in INTERNAL_TARGETS]
    now = datetime.now(UTC)
    state: dict[str, str] = {}

    class Hostile(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            base = state["base"]
            if self.path.startswith("/search/photos"):
                urls = [*targets, f"{base}/redirect", f"{base}/honest.jpg"]
                results = [
                    {
                        "id": f"hostile-{number}",
                        "created_at": (now - timedelta(minutes=number + 1)).isoformat(),
                        "urls": {"raw": url},
                        "links": {
                            "html": f"{base}/p/{number}",
                            "download_location": f"{base}/photos/{number}/download",
                        },
                        "user": {"name": "mallory"},
                    }
                    for number, url in enumerate(urls)
                ]
                self._send(200, "application/json", json.dumps({"results": results, "total_pages": 1}).encode())
            elif self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", targets[0])
                self.end_headers()
            elif self.path.startswith("/honest.jpg"):
                self._send(200, "image/jpeg", color_photo(424242))
            else:
                self._send(200, "application/json", b"{}")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server, base = serve(Hostile)
    state["base"] = base
    yield base, targets
    server.shutdown()


@pytest.mark.drill(
    "security: hostile source", "search results pointing at 169.254.169.254, private and loopback addresses"
)
def test_a_source_pointing_at_internal_addresses_is_refused_and_recorded(
    tmp_path: Path, hostile_unsplash: tuple[str, list[str]], canary: tuple[Hits, int], drill_report: dict
) -> None:
    base, targets = hostile_unsplash
    hits, _ = canary
    host = base.removeprefix("http://")
    settings = Settings(home=tmp_path, http_allowed_hosts=[host])
    store, catalog = open_store(settings=settings), open_catalog(settings)
    config = unsplash.UnsplashConfig(api_url=base, access_key=KEY)
    http = unsplash.client(config, settings)
    window = Window(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=1))

    candidates = unsplash.discover(config, http, window, ["cat"], limit=50)
    counts = store_candidates(
        candidates, lambda candidate: unsplash.fetch(config, http, candidate), store, catalog, "drill"
    )

    with catalog.session() as session:
        failures = {row.url: row.reason for row in session.query(FetchFailure)}
        stored = session.query(Sighting).count()
    refused = [url for url in failures if "refusing" in failures[url]]
    drill_report.update(
        outcome=f"{len(refused)} internal URLs refused and recorded, honest photo stored, 0 requests reached",
        objects_lost=len(candidates) - counts.get("stored", 0) - counts.get("fetch_failed", 0),
    )
    assert hits.paths == [], "a request reached the internal service"
    assert stored == 1 and counts["fetch_failed"] == len(targets) + 1
    assert len(refused) == len(targets) + 1, failures
    assert all("internal address" in failures[url] or "only http" in failures[url] for url in refused)
    assert audit_after_fault(settings, drill_report) == []


def tar_with(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tar_entry(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data or b"")
    return info, data


def zip_with(name: str, data: bytes, method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.drill("security: hostile archives", "slips, absolute paths, links, devices and a zip bomb")
def test_hostile_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drill_report: dict
) -> None:
    monkeypatch.chdir(tmp_path)
    archives = {
        "slip.tar": tar_with(tar_entry("../../etc/cron.d/evil")),
        "absolute.tar": tar_with(tar_entry("/etc/passwd")),
        "symlink.tar": tar_with(tar_entry("photo.jpg", None, tarfile.SYMTYPE, "/etc/shadow")),
        "hardlink.tar": tar_with(tar_entry("photo.jpg", None, tarfile.LNKTYPE, "/etc/shadow")),
        "device.tar": tar_with(tar_entry("null", None, tarfile.CHRTYPE)),
        "slip.zip": zip_with("../evil.sh", b"rm -rf /"),
        "bomb.zip": zip_with("photo.jpg", bytes(600 * 1024 * 1024), zipfile.ZIP_DEFLATED),
    }
    refused = []
    for name, data in archives.items():
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        reader = iter_zip if name.endswith(".zip") else iter_tar
        with pytest.raises(ArchiveError):
            list(reader(path))
        refused.append(name)
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.parent.name != "in")
    drill_report.update(outcome=f"{len(refused)} of {len(archives)} archives refused, nothing written", objects_lost=0)
    assert refused == list(archives) and written == ["in"]


class _Payload:
    """Pickled, it would run a shell command on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.drill("security: malicious checkpoint", "a checkpoint whose pickle runs a shell command")
def test_a_malicious_checkpoint_is_refused_without_running_anything(tmp_path: Path, drill_report: dict) -> None:
    settings = Settings(home=tmp_path)
    store = open_store(settings=settings)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"generator": _Payload(marker)}, buffer)
    store.put("checkpoints/evil/step-1.pt", buffer.getvalue())

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(store, "checkpoints/evil/step-1.pt")

    drill_report.update(outcome="refused by weights_only=True, the command never ran", objects_lost=0)
    assert not marker.exists()


PLANTED = "planted-drill-secret-7f3a9c2e"


def secrets_of_the_stack() -> list[str]:
    return [
        PLANTED,
        credentials.UNSPLASH_ACCESS_KEY,
        credentials.FLICKR_API_KEY,
        credentials.INSTAGRAM_ACCESS_TOKEN,
        credentials.KAGGLE_KEY,
    ]


@pytest.mark.drill("security: secrets", "a secret planted in a connection, and every source key of the stack")
def test_secrets_never_reach_task_logs_mlflow_or_the_lake(
    airflow: AirflowClient, stack_settings: StackSettings, drill_report: dict
) -> None:
    base = stack_settings.sandbox_url
    airflow.put_connection("flickr_planted", conn_type="http", host=f"{base}/flickr/services/rest/", password=PLANTED)
    airflow.put_connection(
        "unsplash_planted",
        conn_type="http",
        host=f"{base}/unsplash/api",
        password=PLANTED,
        extra=json.dumps({"client_secret": PLANTED}),
    )
    # Both keys are wrong, so the runs fail on the API's refusal, the error path most likely to echo a key;
    # they store nothing, so the photos other tests count stay theirs. The scan below covers every log of
    # the stack, the successful runs of every other test included.
    runs = [
        airflow.run("ingest_flickr", {"connection_id": "flickr_planted"}),
        airflow.run("ingest_unsplash", {"connection_id": "unsplash_planted", "limit": 5}),
    ]
    assert [state for _, state in runs] == ["failed", "failed"], "the planted keys must be refused"

    found: list[str] = []
    # Every log Colorflow writes: task logs and the Airflow and MLflow services'. The sandbox's own access log
    # is left out: it stands for the outside service, which receives the keys by design.
    for path in stack_settings.logs_dir.rglob("*"):
        if path.is_file() and path.name != "sandbox.log":
            text = path.read_bytes()
            found += [f"log {path.name}" for secret in secrets_of_the_stack() if secret.encode() in text]
    mlflow = MlflowClient(stack_settings.mlflow_tracking_uri)
    for experiment in mlflow.search_experiments():
        for run in mlflow.search_runs([experiment.experiment_id]):
            values = json.dumps({**run.data.params, **run.data.tags})
            found += [f"mlflow run {run.info.run_id}" for secret in secrets_of_the_stack() if secret in values]
    store = open_store(settings=stack_settings)
    for key in store.list(""):
        data = store.get(key)
        found += [f"lake {key}" for secret in secrets_of_the_stack() if secret.encode() in data]
    drill_report.update(
        outcome=f"0 of {len(secrets_of_the_stack())} secrets found in logs, MLflow, lake", objects_lost=0
    )
    assert found == []


API_PATHS = ("dags", "connections", "variables", "dags/ingest_local/dagRuns", "config")


@pytest.mark.drill("security: login", "Airflow API and UI requests without a token, or with a forged one")
def test_airflow_refuses_requests_without_login(stack_settings: StackSettings, drill_report: dict) -> None:
    base = stack_settings.airflow_url
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.forged"}
    answers = {}
    for path in API_PATHS:
        answers[f"GET {path}"] = requests.get(f"{base}/api/v2/{path}", timeout=10).status_code
        answers[f"GET {path} forged"] = requests.get(f"{base}/api/v2/{path}", headers=forged, timeout=10).status_code
    answers["POST trigger"] = requests.post(f"{base}/api/v2/dags/ingest_local/dagRuns", json={}, timeout=10).status_code
    answers["POST token wrong password"] = requests.post(
        f"{base}/auth/token", json={"username": stack_settings.airflow_username, "password": "guess"}, timeout=10
    ).status_code
    answers["execution API"] = requests.get(
        f"{base}/execution/task-instances/x/previous-successful-dagrun", timeout=10
    ).status_code
    let_in = {request: status for request, status in answers.items() if status not in (401, 403)}
    drill_report.update(
        outcome=f"{len(answers) - len(let_in)} of {len(answers)} requests refused (401/403)", objects_lost=0
    )
    assert let_in == {}, answers


@pytest.mark.drill("security: listening sockets", "every port of the running stack")
def test_the_stack_listens_on_loopback_only(stack_settings: StackSettings, drill_report: dict) -> None:
    assert StackSettings().bind_host == "127.0.0.1", "the default bind address"
    ports = {
        stack_settings.airflow_port: "airflow",
        stack_settings.mlflow_port: "mlflow",
        stack_settings.sandbox_port: "sandbox",
        stack_settings.postgres_port: "postgres",
    }
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }
    exposed = [f"{ports[port]} on {ip}:{port}" for ip, port in listening if ip not in ("127.0.0.1", "::1")]
    drill_report.update(outcome=f"{len(listening)} listening sockets, all on loopback", objects_lost=0)
    assert {port for _, port in listening} == set(ports), listening
    assert exposed == []

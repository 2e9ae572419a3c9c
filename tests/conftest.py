"""Fixtures that start real servers on loopback: an S3-protocol server (moto_server), PostgreSQL, and
the whole embedded stack. Nothing here is mocked; each server is a separate process, stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from embedded import postgres, services
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port, running_server
from embedded.settings import StackSettings
from embedded.supervisor import Supervisor
from sandbox.library import PhotoLibrary
from tests.stacks import private_stack_settings

pytest_plugins = ["tests.training"]

# Airflow reads its configuration at import: give the test process a private, example-free home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="colorflow-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parent.parent / "dags"))

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol HTTP server process (moto_server) on loopback, with test credentials."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "colorflow-test",
            "AWS_SECRET_ACCESS_KEY": "colorflow-test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    with running_server(lambda port: [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]) as url:
        yield url


@pytest.fixture(scope="session")
def library() -> PhotoLibrary:
    """The photo library the sandbox serves (same anchor date: today UTC, or the pinned one), to say what
    each stand-in should answer."""
    return PhotoLibrary()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """The sandbox host (stand-ins for Unsplash, Flickr, Instagram...) as its own process on loopback."""
    with running_server(lambda port: [str(BIN / "python"), "-m", "sandbox", "--port", str(port)]) as url:
        yield url


@pytest.fixture
def sandbox_service(sandbox_url: str) -> Iterator[Callable[[str], str]]:
    """`sandbox_service("instagram")`: a stand-in's base URL, its admin state (budgets, clocks, URL
    lifetimes) reset now and again after the test, whatever the test changed."""
    used: list[str] = []

    def reset(prefix: str) -> str:
        base = f"{sandbox_url}/{prefix}"
        requests.post(f"{base}/_admin/reset", timeout=5).raise_for_status()
        used.append(base)
        return base

    yield reset
    for base in used:
        requests.post(f"{base}/_admin/reset", timeout=5).raise_for_status()


@pytest.fixture
def faults(sandbox_url: str) -> Iterator[Callable[..., None]]:
    """Switch a sandbox fault on for this test: `faults(path_prefix=..., kind="429", times=2)`."""

    def inject(**rule: object) -> None:
        requests.post(f"{sandbox_url}/_faults", json=rule, timeout=5).raise_for_status()

    yield inject
    requests.delete(f"{sandbox_url}/_faults", timeout=5).raise_for_status()


class SandboxNetwork:
    """The sandbox playing the internet (`sandbox.network`): the latency of its image and archive responses,
    and the most requests it has seen in flight at once per area."""

    def __init__(self, sandbox_url: str) -> None:
        self.url = f"{sandbox_url}/_network"

    def delay(self, latency_ms: float) -> None:
        """Set the latency and start counting in-flight requests anew."""
        requests.post(self.url, json={"latency_ms": latency_ms}, timeout=5).raise_for_status()
        requests.delete(self.url, timeout=5).raise_for_status()

    def most_in_flight(self, area: str) -> int:
        return requests.get(self.url, timeout=5).json()["most_in_flight"].get(area, 0)


@pytest.fixture
def network(sandbox_url: str) -> Iterator[SandboxNetwork]:
    """The sandbox's network for this test; back to no latency afterwards."""
    yield SandboxNetwork(sandbox_url)
    SandboxNetwork(sandbox_url).delay(0)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (its own cluster in a temporary folder) on a free loopback port."""
    folder = Path(tempfile.mkdtemp(prefix="colorflow-pg-"))
    port = free_port()
    keeper = Supervisor(folder / "run", folder / "logs")
    postgres.prepare_cluster(folder, durable=False)
    keeper.start(postgres.server_service("postgres", folder, port, durable=False))
    try:
        yield postgres.url(port)
    finally:
        keeper.stop("postgres")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[StackSettings]:
    settings = private_stack_settings("colorflow-stack-")
    home = settings.home
    services.up(settings)
    try:
        yield settings
    finally:
        stopped = services.down(settings)
        shutil.rmtree(home, ignore_errors=True)
        assert len(stopped) == len(services.stack_services(settings)), f"only {stopped} were running at the end"


@pytest.fixture(scope="session")
def airflow(stack_settings: StackSettings) -> AirflowClient:
    return AirflowClient(stack_settings.airflow_url, stack_settings.airflow_username, stack_settings.airflow_password)


@pytest.fixture(scope="module")
def photo_folder() -> Iterator[Path]:
    """A folder of photos for `ingest_local`, readable by every process of the stack (pytest's own
    temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="colorflow-photos-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

"""Fixtures that start real servers on loopback: an S3-protocol server (moto_server), PostgreSQL, and
the whole embedded stack. Nothing here is mocked; each server is a separate process, stopped at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from embedded.ports import free_port, running_server

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


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make bootstrap` (apt-get install postgresql)")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temporary folder) on a free loopback port."""
    bindir = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="colorflow-pg-"))
    data = folder / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    run = lambda *argv: subprocess.run([*as_postgres, *argv], check=True, capture_output=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)

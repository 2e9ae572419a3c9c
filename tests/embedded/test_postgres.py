"""The embedded PostgreSQL server stops cleanly: every commit it acknowledged is there after a restart, even
on the tests' non-durable cluster (which acknowledges commits before they reach its log)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from embedded import postgres
from embedded.ports import free_port
from embedded.supervisor import Supervisor


@pytest.fixture
def cluster() -> Iterator[Path]:
    # Not under pytest's private temporary folder: the server runs as its own user and must reach it.
    folder = Path(tempfile.mkdtemp(prefix="colorflow-pg-stop-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def connect(port: int):
    return psycopg2.connect(host="127.0.0.1", port=port, user=postgres.SUPERUSER, dbname="postgres")


def test_stopping_the_server_under_load_keeps_every_acknowledged_commit(cluster: Path) -> None:
    port = free_port()
    keeper = Supervisor(cluster / "run", cluster / "logs")
    service = postgres.server_service("postgres", cluster, port, durable=False)
    postgres.prepare_cluster(cluster, durable=False)
    keeper.start(service)
    setup = connect(port)
    setup.autocommit = True
    setup.cursor().execute("CREATE TABLE acknowledged (id integer PRIMARY KEY)")
    idle = connect(port)  # a pooled client that never lets go, as Airflow's and SQLAlchemy's pools do
    acknowledged: list[int] = []

    def write() -> None:
        writer = connect(port)
        try:
            for number in range(100_000):
                writer.cursor().execute("INSERT INTO acknowledged VALUES (%s)", (number,))
                writer.commit()
                acknowledged.append(number)
        except psycopg2.OperationalError:
            return  # the server went away under it

    writer = threading.Thread(target=write)
    writer.start()
    while len(acknowledged) < 200:
        time.sleep(0.01)
    started = time.monotonic()
    assert keeper.stop("postgres") is True
    stop_s = time.monotonic() - started
    writer.join()
    idle.close()

    keeper.start(service)
    with connect(port) as check, check.cursor() as cursor:
        cursor.execute("SELECT id FROM acknowledged")
        present = {row[0] for row in cursor.fetchall()}
    keeper.stop("postgres")
    log = keeper.log_file("postgres").read_text()
    assert set(acknowledged) <= present, f"{len(set(acknowledged) - present)} acknowledged commits lost"
    assert "received fast shutdown request" in log and "database system is shut down" in log
    assert "not properly shut down" not in log, "the stop was a crash"
    assert stop_s < 10, "a fast shutdown does not wait for idle clients"

"""A private PostgreSQL server on loopback: the embedded stack's Airflow metadata database, and the
catalog tests' second engine.

Airflow refuses backfills on SQLite while its scheduler runs ("not supported on SQLite under concurrent
access"), and the race can crash the scheduler, so the embedded stack keeps Airflow's metadata in
PostgreSQL from Debian's packages. initdb and postgres refuse to run as root: when this runs as root,
they run as the `postgres` user the package creates, in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import psycopg2

SUPERUSER = "postgres"


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make bootstrap` (apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def prepare_cluster(folder: Path, durable: bool = True) -> None:
    """Create a database cluster in `folder/data` unless one is there; `durable=False` skips fsync (tests)."""
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
    command = [str(server_binaries() / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"]
    result = subprocess.run(
        [*_as_server_user(), *command, *([] if durable else ["--no-sync"])], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb in {data} failed: {result.stderr.strip() or result.stdout.strip()}")


def server_command(folder: Path, port: int, durable: bool = True) -> list[str]:
    """The foreground server for the cluster in `folder`, listening on 127.0.0.1:`port` only."""
    options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}"]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return [
        *_as_server_user(),
        str(server_binaries() / "postgres"),
        "-D",
        str(folder / "data"),
        "-p",
        str(port),
        *options,
    ]


def url(port: int, database: str = "postgres") -> str:
    return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{database}"


def is_ready(port: int) -> bool:
    try:
        psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def ensure_database(port: int, name: str) -> None:
    connection = psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()

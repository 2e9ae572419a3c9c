"""A private PostgreSQL server on loopback: the embedded stack's Airflow metadata database, and the
catalog tests' second engine.

Airflow refuses backfills on SQLite while its scheduler runs ("not supported on SQLite under concurrent
access"), and the race can crash the scheduler, so the embedded stack keeps Airflow's metadata in
PostgreSQL from Debian's packages. initdb and postgres refuse to run as root: when this runs as root,
they run as the `postgres` user the package creates, in a folder it owns; a cluster meant for a folder that
user cannot reach (a repository cloned under a home folder of mode 700) lives in `/var/lib/colorflow`
instead, with a link where it was meant to be. They are started as that user
directly (not through `runuser`, which answers SIGTERM by killing the server two seconds later, so every
stop would be a crash) and stopped with PostgreSQL's fast shutdown (SIGINT), which ends the sessions,
writes a checkpoint and exits; the default smart shutdown (SIGTERM) waits for every idle pooled client.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Literal

import psycopg2

from embedded.supervisor import Service

SUPERUSER = "postgres"
SERVER_USER = "postgres"
FAST_SHUTDOWN = signal.SIGINT
# Where a cluster goes when the server user cannot reach the folder meant for it; root can create it.
RELOCATED_CLUSTERS = Path("/var/lib/colorflow/postgres")


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make bootstrap` (apt-get install postgresql)")
    return Path(found[-1]).parent


def server_user() -> str | None:
    """The user the server programs run as: the package's `postgres` user when we are root, else ourselves."""
    return SERVER_USER if os.geteuid() == 0 else None


def cluster_folder(wanted: Path) -> Path:
    """The folder that holds the cluster meant for `wanted`: `wanted` itself when the server user can reach
    it, else one under /var/lib/colorflow named after `wanted`, which then becomes a link to it (so
    `.colorflow/postgres` still shows where the data is)."""
    user = server_user()
    if wanted.is_symlink():
        return wanted.resolve()
    if user is None or (wanted / "data" / "PG_VERSION").exists() or _can_reach(user, wanted):
        return wanted
    target = RELOCATED_CLUSTERS / hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    for folder in (target, *target.parents):  # /var/lib/colorflow/... must be passable by the server user
        if folder == Path("/var/lib"):
            break
        folder.chmod(folder.stat().st_mode | 0o755)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    wanted.symlink_to(target, target_is_directory=True)
    return target


def _can_reach(user: str, folder: Path) -> bool:
    """Whether `user` can enter the deepest existing folder on the way to `folder` (mode 700 homes say no)."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    return subprocess.run(["test", "-x", str(existing)], user=user, cwd="/").returncode == 0


def _run_as_server_user(command: list[str]) -> subprocess.CompletedProcess[str]:
    # From `/`: the server user may not be allowed into the folder we were started from.
    return subprocess.run(command, user=server_user(), cwd="/", capture_output=True, text=True)


def prepare_cluster(folder: Path, durable: bool = True) -> None:
    """Create a database cluster in `folder/data` unless one is there; `durable=False` skips fsync (tests)."""
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(folder, SERVER_USER, SERVER_USER)
    command = [str(server_binaries() / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"]
    result = _run_as_server_user([*command, *([] if durable else ["--no-sync"])])
    if result.returncode != 0:
        raise RuntimeError(f"initdb in {data} failed: {result.stderr.strip() or result.stdout.strip()}")


def server_command(folder: Path, port: int, durable: bool = True) -> list[str]:
    """The foreground server for the cluster in `folder`, listening on 127.0.0.1:`port` only.

    `durable=False` (throwaway test databases) acknowledges commits before they reach the log and never
    syncs: a server killed outright then loses its last commits, so nothing that tests survival uses it."""
    options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}"]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return [str(server_binaries() / "postgres"), "-D", str(folder / "data"), "-p", str(port), *options]


def server_service(name: str, folder: Path, port: int, durable: bool = True) -> Service:
    """The server for the cluster in `folder` as a supervised service, stopped by fast shutdown."""
    return Service(
        name=name,
        argv=server_command(folder, port, durable),
        env=dict(os.environ),
        probe=lambda: is_ready(port),
        user=server_user(),
        stop_signal=FAST_SHUTDOWN,
    )


def stop_server(folder: Path, mode: Literal["fast", "immediate"]) -> None:
    """Stop the server of the cluster in `folder` as an operator does (`pg_ctl stop -m fast`) or as a crash
    does (`-m immediate`: no checkpoint, the next start recovers from the log); returns once it is gone."""
    result = _run_as_server_user([str(server_binaries() / "pg_ctl"), "stop", "-D", str(folder / "data"), "-m", mode])
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctl stop -m {mode} failed: {result.stderr.strip() or result.stdout.strip()}")


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

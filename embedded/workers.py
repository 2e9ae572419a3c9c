"""The Celery mode of the embedded stack: Redis as the broker and Celery workers beside the scheduler, run as
the production compose file runs them. This module owns what both must agree on (the worker commands, their
queues, the Celery settings and the health checks); `tests/test_compose.py` holds the compose file to it.

Workers on one machine need what separate hosts get for free: a Celery node name each, a PID file each, a
log-server port each, and a name of their own in the task instances' `hostname` (Airflow records the
worker's host there, and an operator reads it to see where a task ran). `task_hostname` gives each worker the
name the stack chose for it, and falls back to the host's own name everywhere else.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from embedded import postgres
from embedded.ports import free_port
from embedded.settings import StackSettings
from embedded.supervisor import Service

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"  # train_colorizer's queue; its pool `gpu` holds one slot per GPU
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
WORKER_HOSTNAME_VARIABLE = "COLORFLOW_WORKER_HOSTNAME"
HEARTBEAT_TIMEOUT_S = 60
SERVICE_PREFIX = "airflow-worker-"  # a worker's service name (PID file, log) is this and its name
# Redis keeps its data in an append-only file, as in the compose file, so a restarted broker still holds the
# tasks that were queued when it stopped.
REDIS_OPTIONS = ("--appendonly", "yes")


@dataclass(frozen=True)
class Worker:
    """One Celery worker: the queue it takes tasks from and how many it runs at once."""

    name: str
    queue: str
    concurrency: int

    @property
    def node(self) -> str:
        """Its Celery node name, unique on the broker (Celery's default is `celery@<host>`, one per host)."""
        return f"{self.name}@{socket.gethostname()}"


def worker_command(queue: str, concurrency: int) -> list[str]:
    """The Airflow command of a worker on `queue`; the compose file's workers run exactly this."""
    return ["airflow", "celery", "worker", "--queues", queue, "--concurrency", str(concurrency)]


def health_command(node: str) -> list[str]:
    """Whether the worker `node` answers on the broker; the compose file's health check runs exactly this."""
    return ["celery", "--app", CELERY_APP, "inspect", "ping", "-d", node]


def celery_env(broker_url: str, result_backend: str) -> dict[str, str]:
    """Airflow's settings for the CeleryExecutor, the same here and in the compose file."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": DEFAULT_QUEUE,
        # A worker host that dies takes its tasks' heartbeats with it: after this long the scheduler fails
        # those tries, and their retries go to the workers still alive (Airflow's default waits 5 minutes).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    }


def stack_celery_env(settings: StackSettings, redis_password: str) -> dict[str, str]:
    """The Celery settings of the embedded stack: its Redis, and task results in Airflow's own database."""
    database = postgres.url(settings.postgres_port, "airflow").replace("postgresql+psycopg2://", "db+postgresql://")
    return celery_env(f"redis://:{redis_password}@{settings.bind_host}:{settings.redis_port}/0", database)


def workers(settings: StackSettings) -> list[Worker]:
    """The stack's workers: `default_workers` on queue `default`, and one on queue `gpu` running one task."""
    return [
        *(
            Worker(f"default-{index}", DEFAULT_QUEUE, settings.worker_concurrency)
            for index in range(1, 1 + settings.default_workers)
        ),
        Worker("gpu-1", GPU_QUEUE, 1),
    ]


def task_hostname() -> str:
    """Airflow's `hostname_callable` on the stack's workers: the worker's own name, else the host's."""
    return os.environ.get(WORKER_HOSTNAME_VARIABLE) or socket.getfqdn()


def redis_service(settings: StackSettings, password: str) -> Service:
    """Redis on loopback with a password, its append-only file in the stack's home."""
    folder = settings.home / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        "--bind",
        settings.bind_host,
        "--port",
        str(settings.redis_port),
        "--requirepass",
        password,
        "--dir",
        str(folder),
        *REDIS_OPTIONS,
    ]
    return Service(
        name="redis",
        argv=argv,
        env=dict(os.environ),
        probe=lambda: _redis_answers(settings.bind_host, settings.redis_port, password),
    )


def _redis_answers(host: str, port: int, password: str) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, password=password, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def worker_service(worker: Worker, airflow_env: Mapping[str, str], airflow_bin: Path, run_dir: Path) -> Service:
    """A worker as a supervised service; healthy once it answers a ping on the broker."""
    env = {
        **airflow_env,
        WORKER_HOSTNAME_VARIABLE: worker.name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.task_hostname",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    command = worker_command(worker.queue, worker.concurrency)
    argv = [str(airflow_bin / command[0]), *command[1:], "--celery-hostname", worker.node]
    argv += ["--pid", str(run_dir / f"worker-{worker.name}.airflow.pid")]
    health = health_command(worker.node)
    health = [str(airflow_bin / health[0]), *health[1:], "--timeout", "5"]
    return Service(
        name=f"{SERVICE_PREFIX}{worker.name}",
        argv=argv,
        env=env,
        probe=lambda: subprocess.run(health, env=env, capture_output=True, timeout=60, check=False).returncode == 0,
        ready_timeout_s=180.0,
    )

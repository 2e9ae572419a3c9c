"""The embedded Colorflow stack: Airflow 3 (api-server, scheduler, dag-processor, triggerer; metadata in a
private PostgreSQL, see `embedded.postgres`), an MLflow tracking server (SQLite backend, artifacts in the
lake) and the sandbox host. Tasks run under the LocalExecutor, or with `executor=celery` on Celery workers fed
by Redis, as in production (`embedded.workers`).

Everything lives under the settings' `home` (`.colorflow/` by default): Airflow's home, the MLflow
database, PID files and logs. Ports and paths come from `pipelines.settings`, so a test can run a whole
second stack beside a developer's by giving it another home and other ports.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from functools import cache
from pathlib import Path

from embedded import postgres, workers
from embedded.settings import StackSettings
from embedded.supervisor import Service, Supervisor
from pipelines.catalog import open_catalog
from pipelines.settings import REPO_ROOT
from sandbox import credentials

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "triggerer")
AIRFLOW_DATABASE = "airflow"
SANDBOX_DUMP_MD5 = Path("sandbox") / "dump-md5.json"  # under the stack's home


def supervisor(settings: StackSettings) -> Supervisor:
    return Supervisor(settings.home / "run", settings.logs_dir)


def settings_env(settings: StackSettings) -> dict[str, str]:
    """The settings as `COLORFLOW_*` variables (the sections as `COLORFLOW_QUALITY_*` and `COLORFLOW_STUDIO_*`),
    so every process and task of the stack sees the same lake, catalog and thresholds."""
    values = settings.model_dump(mode="json")
    sections = {
        "COLORFLOW_": values,
        "COLORFLOW_QUALITY_": values.pop("quality"),
        "COLORFLOW_STUDIO_": values.pop("studio"),
    }
    env = {}
    for prefix, section in sections.items():
        for name, value in section.items():
            if value is not None:
                # Lists and booleans in the JSON form pydantic-settings reads back.
                env[f"{prefix}{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def _stack_secrets(settings: StackSettings) -> dict[str, str]:
    """Keys Airflow's components must share (JWT signing, Fernet), made once and kept private."""
    path = settings.home / "secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    from cryptography.fernet import Fernet

    makers = {
        "jwt_secret": lambda: secrets.token_urlsafe(32),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": lambda: Fernet.generate_key().decode(),
        "redis_password": lambda: secrets.token_hex(24),  # URL-safe: it goes into the broker URL
    }
    missing = {name: make() for name, make in makers.items() if name not in values}
    if missing:  # a home made before a key existed gets only the new one
        values |= missing
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
    return values


def sandbox_connections(settings: StackSettings) -> dict[str, str]:
    """Airflow connections that point each source at its sandbox stand-in, as `AIRFLOW_CONN_*` variables.

    Production defines the same connection ids with the real hosts and keys; nothing else changes. The
    Instagram connection records the operator's permission to crawl, which is ours to give for the sandbox.
    The dump connections pin the md5s of the stand-ins' archives, as an operator pins a mirror's: they are
    not the published archives whose md5s the connectors know.
    """
    if not settings.sandbox:
        return {}
    base = settings.sandbox_url
    dump_md5s = _sandbox_dump_md5s(settings)
    connections = {
        "unsplash_default": {
            "conn_type": "http",
            "host": f"{base}/unsplash/api",
            "password": credentials.UNSPLASH_ACCESS_KEY,
        },
        "flickr_default": {
            "conn_type": "http",
            "host": f"{base}/flickr/services/rest/",
            "password": credentials.FLICKR_API_KEY,
        },
        "imagenet_default": {"conn_type": "http", "host": f"{base}/imagenet", "extra": {"md5": dump_md5s["imagenet"]}},
        "coco_default": {"conn_type": "http", "host": f"{base}/coco", "extra": {"md5": dump_md5s["coco"]}},
        "kaggle_default": {
            "conn_type": "http",
            "host": f"{base}/kaggle/api/v1",
            "login": credentials.KAGGLE_USERNAME,
            "password": credentials.KAGGLE_KEY,
        },
        "instagram_default": {
            "conn_type": "http",
            "host": f"{base}/instagram/graph/v21.0",
            "password": credentials.INSTAGRAM_ACCESS_TOKEN,
            "extra": {
                "user_id": credentials.INSTAGRAM_USER_ID,
                "web_url": f"{base}/instagram",
                "session_token": credentials.INSTAGRAM_SESSION_COOKIE,
                "robots_permission": True,
            },
        },
    }
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()}


def _sandbox_dump_md5s(settings: StackSettings, refresh: bool = False) -> dict[str, dict[str, str]]:
    """The md5s of the sandbox's dump archives, by source and file name, kept in the stack's home: building the
    archives takes seconds and `airflow_env` runs for every Airflow command, so `up` computes them (afresh, in
    case the stand-ins changed) and everything else reads them back, computing them only when missing."""
    path = settings.home / SANDBOX_DUMP_MD5
    if refresh or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.part")
        part.write_text(json.dumps(_stand_in_dump_md5s(), indent=2))
        os.replace(part, path)
    return json.loads(path.read_text())


@cache
def _stand_in_dump_md5s() -> dict[str, dict[str, str]]:
    # Once per process: the bytes are fixed by the stand-ins' code. Imported here, as only this needs them.
    from sandbox import coco, imagenet
    from sandbox.library import PhotoLibrary

    library = PhotoLibrary()
    return {"imagenet": imagenet.archive_md5s(library), "coco": coco.archive_md5s(library)}


def airflow_env(settings: StackSettings) -> dict[str, str]:
    """Environment for every Airflow command of the embedded stack, tasks included."""
    airflow_home = settings.home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = airflow_home / "passwords.json"
    passwords.write_text(json.dumps({settings.airflow_username: settings.airflow_password}))
    keys = _stack_secrets(settings)
    base_url = settings.airflow_url
    env = {
        **os.environ,
        **settings_env(settings),
        **sandbox_connections(settings),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "plugins")]),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(settings.postgres_port, AIRFLOW_DATABASE),
        "AIRFLOW__API__HOST": settings.bind_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.logs_dir / "airflow"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    }
    if settings.executor == "celery":
        env |= workers.stack_celery_env(settings, keys["redis_password"])
    return env


def _airflow_component_healthy(component: str):
    def check(response) -> bool:
        return response.ok and response.json().get(component.replace("-", "_"), {}).get("status") == "healthy"

    return check


def postgres_service(settings: StackSettings) -> Service:
    # `up` placed the cluster (maybe elsewhere, behind a link); here it is only found.
    return postgres.server_service("postgres", (settings.home / "postgres").resolve(), settings.postgres_port)


def stack_services(settings: StackSettings) -> list[Service]:
    """The services of the embedded stack, in start order (the database and the broker before Airflow)."""
    services = [postgres_service(settings)]
    if settings.executor == "celery":
        services.append(workers.redis_service(settings, _stack_secrets(settings)["redis_password"]))
    if settings.sandbox:
        services.append(
            Service(
                name="sandbox",
                argv=[
                    str(BIN / "python"),
                    "-m",
                    "sandbox",
                    "--host",
                    settings.bind_host,
                    "--port",
                    str(settings.sandbox_port),
                ],
                env={**os.environ, **settings_env(settings)},
                health_url=f"{settings.sandbox_url}/healthz",
            )
        )
    mlflow_dir = settings.home / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    services.append(
        Service(
            name="mlflow",
            argv=[
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination",
                settings.mlflow_artifacts_url,
                "--host",
                settings.bind_host,
                "--port",
                str(settings.mlflow_port),
                "--workers",
                "1",
            ],
            env={
                **os.environ,
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                **({"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint_url} if settings.s3_endpoint_url else {}),
            },
            health_url=f"http://{settings.bind_host}:{settings.mlflow_port}/health",
        )
    )
    services.append(
        Service(
            name="studio",
            argv=[str(BIN / "colorflow"), "studio", "--host", settings.bind_host, "--port", str(settings.studio_port)],
            env={**os.environ, **settings_env(settings)},
            health_url=f"{settings.studio_url}/health",
        )
    )
    env = airflow_env(settings)
    health = f"{settings.airflow_url}/api/v2/monitor/health"
    airflow = str(BIN / "airflow")
    services.append(Service(name="airflow-api-server", argv=[airflow, "api-server"], env=env, health_url=health))
    services.extend(
        Service(
            name=f"airflow-{component}",
            argv=[airflow, component],
            env=env,
            health_url=health,
            health_check=_airflow_component_healthy(component),
        )
        for component in AIRFLOW_COMPONENTS
    )
    if settings.executor == "celery":
        run_dir = settings.home / "run"
        services.extend(workers.worker_service(worker, env, BIN, run_dir) for worker in workers.workers(settings))
    return services


# Pools the DAGs ask for: one training job at a time on the (here: CPU) training node.
POOLS = (("gpu", 1, "GPU training nodes: one training task per slot"),)


def up(settings: StackSettings) -> None:
    """Prepare the databases and start every service that is not already running; idempotent."""
    settings.home.mkdir(parents=True, exist_ok=True)
    if settings.sandbox:
        _sandbox_dump_md5s(settings, refresh=True)
    open_catalog(settings)
    keeper = supervisor(settings)
    postgres.prepare_cluster(postgres.cluster_folder(settings.home / "postgres"))
    keeper.start(postgres_service(settings))
    postgres.ensure_database(settings.postgres_port, AIRFLOW_DATABASE)
    logger.info("migrating the Airflow metadata database")
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=airflow_env(settings), check=True, stdout=subprocess.DEVNULL
    )
    for name, slots, description in POOLS:
        subprocess.run(
            [str(BIN / "airflow"), "pools", "set", name, str(slots), description],
            env=airflow_env(settings),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    services = stack_services(settings)
    # Start everything at once, then wait: the services do not need each other to boot.
    for service in services:
        keeper.start(service, wait=False)
    for service in services:
        keeper.wait_healthy(service)


def down(settings: StackSettings) -> list[str]:
    """Stop the services `up` started (by PID file), last started first; returns those that were running.

    Whichever executor `up` was given: a stack started in Celery mode is stopped by a plain `make down`."""
    keeper = supervisor(settings)
    names = [service.name for service in stack_services(settings.model_copy(update={"executor": "celery"}))]
    started_workers = (path.stem for path in keeper.run_dir.glob(f"{workers.SERVICE_PREFIX}*.pid"))
    names += sorted(name for name in started_workers if name not in names)
    return [name for name in reversed(names) if keeper.stop(name)]


def as_running(settings: StackSettings) -> StackSettings:
    """The settings with the executor the running stack was started with: Celery while its Redis runs, so a
    command run after `make up EXECUTOR=celery` talks to that stack as it is, whatever its own environment."""
    if settings.executor != "celery" and supervisor(settings).running_process("redis") is not None:
        return settings.model_copy(update={"executor": "celery"})
    return settings


def status(settings: StackSettings) -> dict[str, str]:
    """Each service's state; Redis and the workers too while a stack started in Celery mode runs them."""
    settings = as_running(settings)
    keeper = supervisor(settings)
    return {
        service.name: "healthy"
        if keeper.is_healthy(service)
        else "unhealthy"
        if keeper.running_process(service.name)
        else "stopped"
        for service in stack_services(settings)
    }
